"""Reproduction tables (issue 12), Table II baselines: RNN, LSTM and CNN on task labels.

The recipe picks the model (`rnn`, `lstm`: one-directional, `cnn`: Kim 2014); this file fixes
the optimisation, the same for all three and the same as the BiLSTM pair's. lr 1e-3 is the
baseline recipes' default (tkd_jax/recipes.py), fixed before any run.

    python -m experiments.glue --task cola --recipe cnn --config repro_baseline \
        --workdir results/runs/cola/cnn/seed0 --seed 0
"""

from tkd_jax.defaults import default_config

PER_TASK = {}


def override(c):
    c.learning_rate = 1e-3
    c.batch_size = 32
    c.num_epochs = 3
    c.schedule = "linear"
    c.warmup_ratio = 0.1
    return c


def get_config():
    return override(default_config())
