"""Smoke-test variant: short sequences, small batches, one epoch (pair with --config.model=tiny)."""

from tkd_jax.defaults import default_config


def override(c):
    c.max_len = 64
    c.batch_size = 16
    c.eval_batch_size = 32
    c.num_epochs = 1
    c.log_every_steps = 5
    return c


def get_config():
    return override(default_config())
