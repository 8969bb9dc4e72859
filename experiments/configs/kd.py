"""KD-NLP ablation: BiLSTM student + the same distillation."""

from experiments.configs import default


def override(c):
    c.model = "bilstm"
    c.learning_rate = 1e-3
    c.distill.enabled = True
    return c


def get_config():
    return override(default.get_config())
