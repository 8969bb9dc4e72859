"""tkd_jax: knowledge distillation and efficient Transformers on GLUE in JAX/Flax.

    import tkd_jax
    config = tkd_jax.recipe_config("tkd")       # the recipe's defaults (ml_collections)
    config.task = "mrpc"
    config.distill.teacher_runs = ("runs/mrpc/teacher",)
    final = tkd_jax.train_and_evaluate(config, "runs/mrpc/tkd")
"""

__version__ = "0.1.0"

from tkd_jax.host_memory import keep_freed_memory  # noqa: E402

# Before anything allocates: XLA:CPU steps page-fault fresh memory every call otherwise
# (tkd_jax/host_memory.py); where buffers live, not what is computed.
keep_freed_memory()

from tkd_jax.defaults import default_config  # noqa: E402
from tkd_jax.recipes import RECIPES, recipe_config  # noqa: E402
from tkd_jax.train.trainer import inspect, train_and_evaluate  # noqa: E402

__all__ = ["RECIPES", "default_config", "inspect", "recipe_config", "train_and_evaluate"]
