"""Baseline (paper Table II): Kim (2014) CNN classifier on task labels."""

from experiments.configs import default


def override(c):
    c.model = "cnn"
    c.learning_rate = 1e-3
    return c


def get_config():
    return override(default.get_config())
