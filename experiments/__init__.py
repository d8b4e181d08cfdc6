"""Experiment runners: train CNNs on MNIST-style data and log every run to MLflow.

data -> models (numpy_cnn) -> train -> run (tracking, schema, diagnosis, summary) -> suites -> cli
"""
