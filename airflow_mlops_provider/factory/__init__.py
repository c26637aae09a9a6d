"""Factory of the MLOps provider."""
