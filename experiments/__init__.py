"""Experiment runners: train CNNs on MNIST-style data and log every run to MLflow.

settings -> data -> models -> adapters -> train -> diagnosis -> run (tracking, schema) -> specs, sweeps -> cli
(docs/architecture.md says it in one page)
"""
