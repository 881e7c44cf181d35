"""The errors a user can act on, under one base.

Three kinds matter to whoever runs driftmon, and each says what to fix:

- :class:`ConfigError`: the configuration or the command line is wrong (the message starts with
  the field or option it names);
- :class:`InputError`: data driftmon was given cannot be used — a reference, an image directory,
  a model file, a record, a request;
- :class:`UnavailableError`: something driftmon depends on cannot be reached right now — a broker,
  a relabel or ticket sink, a claim-check store.

The CLI turns a :class:`DriftmonError` into its message and exit status 2. Anything else is a bug:
it propagates with its traceback (exit status 1), and nothing of the batch in flight is committed.
"""

from __future__ import annotations


class DriftmonError(Exception):
    """An error whose message tells a user what to fix."""


class ConfigError(DriftmonError):
    """An invalid configuration or command line; the message starts with the field it names."""


class InputError(DriftmonError):
    """Data driftmon was given that it cannot use."""


class UnavailableError(DriftmonError):
    """A dependency that cannot be reached; retrying later may succeed."""
