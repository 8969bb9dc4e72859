"""Distillation: teacher runs loaded once and frozen (never checkpointed), the soft-label cache.

The distance itself is a pure function in :mod:`tkd_jax.losses` (eq 9), combined with the task
loss in :class:`tkd_jax.train.objectives.TaskObjective`.
"""
