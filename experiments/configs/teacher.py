"""Fine-tune the pretrained teacher (all-MiniLM-L6-v2 by default) on the task."""

from experiments.configs import default


def override(c):
    c.model = "pretrained"  # the encoder of --teacher, with a new task head
    c.learning_rate = 5e-5
    c.batch_size = 32
    c.num_epochs = 3
    return c


def get_config():
    return override(default.get_config())
