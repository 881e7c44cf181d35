"""What live windows are compared against: the reference artefact and its store (``store``), the
frames a reference is built from (``collect``: a directory, a topic, a recorded clip) and
everything fitted on it once (``fit``)."""
