"""The long-running service around the pipeline: the consume loop (``daemon``), Prometheus metrics
(``metrics``), the HTTP server (``http``), per-stream checkpoints (``checkpoint``) and the
command line (``cli``)."""
