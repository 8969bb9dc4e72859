"""tkd_jax: knowledge distillation and efficient Transformers on GLUE in JAX/Flax."""

__version__ = "0.1.0"
