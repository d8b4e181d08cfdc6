"""Experiment runners: train CNNs on MNIST-style data and log every run to MLflow.

config -> data -> models -> adapters -> train -> run (run_logger, heartbeat, spool) -> specs, sweeps -> cli,
all on core/ (schema, settings, diagnosis, store)
(docs/architecture.md says it in one page)
"""
