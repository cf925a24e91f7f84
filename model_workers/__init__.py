"""Training recipes, the model registry and the worker service."""
