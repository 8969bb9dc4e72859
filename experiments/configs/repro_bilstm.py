"""Reproduction tables (issue 12), the BiLSTM pair: KD-NLP and the same BiLSTM without a teacher.

`kd` distils into the BiLSTM (eq 9, T = 1, alpha = 0.5); its twin runs the `lstm` recipe on the
*same* bidirectional model, data and schedule with hard labels only, so the pair differs only
in the teacher term. lr 1e-3 is the kd and lstm recipes' default (tkd_jax/recipes.py), fixed
before any run.

    python -m experiments.glue --task sst2 --recipe kd --config repro_bilstm \
        --workdir results/runs/sst2/kd/seed0 --seed 0 --teacher_run results/runs/sst2/teacher/seed0
    python -m experiments.glue --task sst2 --recipe lstm --config repro_bilstm \
        --workdir results/runs/sst2/bilstm/seed0 --seed 0
"""

from tkd_jax.defaults import default_config

PER_TASK = {}


def override(c):
    c.model = "bilstm"
    c.learning_rate = 1e-3
    c.batch_size = 32
    c.num_epochs = 3
    c.schedule = "linear"
    c.warmup_ratio = 0.1
    c.distill.alpha = 0.5
    c.distill.temperature = 1.0
    c.distill.kind = "ce"
    return c


def get_config():
    return override(default_config())
