"""Recovery fine-tuning of a compressed model, optionally distilling from the unpruned one.

``finetune(module, params, encoded_train, ...)`` runs the library's own update step
(``tkd_jax.train.steps.train_step``, the one every recipe uses) with the library's AdamW
chain, for a few epochs over the task's training split:

- ``teacher=(module, params)``: the soft-label term of paper eq 9 from that frozen model,
  computed online in the step (alpha, temperature as the ``tkd`` recipe);
  ``feature_weight > 0`` adds its hidden-state MSE, every hidden state (embeddings and each
  layer's output) to the same one of the teacher's (a pruned model keeps its depth and width);
- ``prune=dict(final_sparsity=..., begin=..., end=..., frequency=..., scope=...)``: the
  optax chain is wrapped by :func:`magnitude.pruned_optimizer` (cubic schedule, masks kept);
- ``train_module``: the module that is differentiated, e.g. the QAT wrapper of ``module``
  (``qat.qat_module``); its params are ``module``'s.

This is a small loop of its own, not the engine's ``train_and_evaluate``: it starts from
params in memory (a compressed model, possibly with other shapes than any preset), has no
workdir, checkpoints or evaluation, and lasts minutes. Training runs that prune or quantize
from the start use the engine instead (``config.prune.*`` and ``config.qat`` put the same
``magnitude.pruned_optimizer`` and ``qat.qat_module`` into its step).
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from tkd_jax import data as data_lib
from tkd_jax.compress import magnitude
from tkd_jax.train import objectives, optim, steps
from tkd_jax.train.state import create_train_state


def finetune(module, params, encoded_train, *, num_labels: int, regression: bool = False,
             teacher=None, alpha: float = 0.5, temperature: float = 1.0, epochs: int = 1,
             learning_rate: float = 3e-5, batch_size: int = 32, warmup_ratio: float = 0.1,
             seed: int = 0, max_len: int = 128, prune: dict | None = None,
             train_module=None, bucket_ratio: float = 1.4, feature_weight: float = 0.0,
             log=print) -> tuple[dict, dict]:
    """(fine-tuned params as NumPy, {"steps", "seconds", "final_loss"}).

    ``bucket_ratio``: coarser length buckets than training's 1.12 mean fewer compiled shapes
    of a step that also runs the teacher (a few compiles instead of ~a dozen per task).
    """
    batcher = data_lib.TrainBatcher(encoded_train, batch_size=batch_size, seed=seed,
                                    buckets=data_lib.bucket_lengths(max_len, ratio=bucket_ratio))
    total = batcher.steps_per_epoch * epochs
    tx, _ = optim.make_optimizer(learning_rate=learning_rate, total_steps=total,
                                 warmup_steps=int(warmup_ratio * total))
    if prune is not None:
        tx = magnitude.pruned_optimizer(tx, **prune)
    state = create_train_state(apply_fn=None, params={"model": jax.tree.map(jnp.asarray, params)},
                               tx=tx, precision="fp32", rng=jax.random.PRNGKey(seed))
    distill, frozen = None, {}
    if teacher is not None:
        n_states = module.config.num_layers + 1 if feature_weight else 0
        layers = tuple((i, i) for i in range(n_states))
        distill = objectives.DistillSpec(alpha=alpha, temperature=temperature,
                                         teachers=(teacher[0],), feature_weight=feature_weight,
                                         feature_layers=layers)
        frozen = {"teachers": (jax.tree.map(jnp.asarray, teacher[1]),)}
    objective = objectives.TaskObjective(task="compress", regression=regression,
                                         num_labels=num_labels, distill=distill)
    step = jax.jit(functools.partial(steps.train_step, spec=steps.StepSpec(objective=objective),
                                     model=train_module or module), donate_argnums=0)
    rng = jax.random.PRNGKey(seed + 1)
    start, loss, n = time.perf_counter(), float("nan"), 0
    for epoch in range(epochs):
        for batch in batcher.epoch(epoch):
            batch = {k: v for k, v in batch.items() if k != "index"}
            state, m = step(state, batch, rng, frozen)
            n += 1
            if n % 50 == 0 or n == total:
                loss = float(m["loss"])
                log(f"  finetune step {n}/{total}: loss {loss:.4f}")
    seconds = time.perf_counter() - start
    out = jax.tree.map(np.asarray, state.params["model"])
    return out, {"steps": n, "seconds": seconds, "final_loss": loss}
