"""From an evaluation to something done about it (docs/actions.md): drift events (``events``) named
in words (``explain``), the frames worth relabelling (``selection``, ``fetch``), the evidence
(``report``), relabel sinks (``sinks``), refresh tickets (``tickets``), coordinated by
:class:`~monitor.actions.coordinator.Actions`, served over HTTP by ``routes`` and counted by
``metrics``."""
