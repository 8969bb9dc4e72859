"""T-NLP ablation: our Transformer student trained on task labels only."""

from experiments.configs import default


def override(c):
    c.model = "student_small"
    c.learning_rate = 3e-4
    return c


def get_config():
    return override(default.get_config())
