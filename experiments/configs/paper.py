"""The paper's setting (Mei et al., 2024, section V): a 12-layer, 8-head Transformer
(d_model 512, d_ff 2048, ReLU, sinusoidal positions), batch 64, 10 epochs, AdamW with linear
warmup then linear decay; distillation with T = 1 and alpha = 0.5 when the recipe distils.

    python -m experiments.glue --task sst2 --recipe tkd --config paper --workdir runs/sst2_paper
"""

from tkd_jax.defaults import default_config


def override(c):
    c.model = "paper"
    c.batch_size = 64
    c.num_epochs = 10
    c.learning_rate = 1e-4
    c.schedule = "linear"
    c.warmup_ratio = 0.1
    c.distill.alpha = 0.5
    c.distill.temperature = 1.0
    return c


def get_config():
    return override(default_config())
