"""Run generated DAGs without a scheduler: for the demo, the tests and debugging."""
