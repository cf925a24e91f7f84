"""Drift checks: each version's predictions against its reference, versions against each other on
the same traffic, inputs (with Evidently, optional); verdicts in Redis for the gateway's gauges."""
