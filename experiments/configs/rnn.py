"""Baseline (paper Table II): Elman RNN classifier on task labels."""

from experiments.configs import default


def override(c):
    c.model = "rnn"
    c.learning_rate = 1e-3
    return c


def get_config():
    return override(default.get_config())
