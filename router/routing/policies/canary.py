"""Canary: weighted split; sticky by key when configured, random otherwise."""

from __future__ import annotations

from router.config.experiments import CanaryPolicy, Experiment
from router.routing.policies.assign import WeightedAssigner, WeightedPolicy
from router.routing.policies.base import Policy


def build(experiment: Experiment) -> Policy:
    config = experiment.policy
    assert isinstance(config, CanaryPolicy)
    assigner = WeightedAssigner.for_experiment(experiment, config.weights, config.sticky)
    return WeightedPolicy(assigner)
