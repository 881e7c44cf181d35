"""A camera fleet on this machine, for the demo, the tests and the benchmarks: synthetic cameras
(``fleet``), an embedded Kafka-protocol broker (``broker``) and ``driftmon demo`` (``demo``).
The daemon never imports this package."""
