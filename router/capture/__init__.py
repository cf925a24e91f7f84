"""Opt-in data capture: sampled outcomes (and, when an experiment keeps them, inputs) written off
the request path to rotating JSON Lines files under the state folder, with retention and a cap."""
