"""The consume loop's stages, in data-flow order: ``source`` (Kafka records -> frames),
``decode`` (bytes -> RGB at analysis size), ``features`` (image statistics), ``embed``
(embeddings), ``predictions`` (the deployed model's outputs), ``streams`` (per-camera windows),
``drift_tests`` (the registry of drift tests) and ``engine`` (windows judged against references,
hysteresis)."""
