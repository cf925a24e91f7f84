"""Turnout: a traffic router for machine-learning model versions."""
