"""Sticky A/B: a user keeps one variant, chosen by hashing their key with the experiment's salt."""

from __future__ import annotations

from router.config.experiments import ABPolicy, Experiment
from router.routing.policies.assign import WeightedAssigner, WeightedPolicy
from router.routing.policies.base import Policy


def build(experiment: Experiment) -> Policy:
    config = experiment.policy
    assert isinstance(config, ABPolicy)
    assigner = WeightedAssigner.for_experiment(experiment, config.weights, config.sticky)
    return WeightedPolicy(assigner)
