"""TKD-NLP: Transformer student + distillation from fine-tuned teacher(s) (paper eq 9)."""

from experiments.configs import default


def override(c):
    c.model = "student_small"
    c.learning_rate = 3e-4
    c.distill.enabled = True
    return c


def get_config():
    return override(default.get_config())
