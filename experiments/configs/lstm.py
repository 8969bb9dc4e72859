"""Baseline (paper Table II): LSTM classifier on task labels."""

from experiments.configs import default


def override(c):
    c.model = "lstm"
    c.learning_rate = 1e-3
    return c


def get_config():
    return override(default.get_config())
