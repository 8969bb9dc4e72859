"""The train loop: steps, periodic eval, checkpoints, logging, SIGTERM and non-finite handling.

Explicit arguments only (the experiment entry point reads the config). The data position is
a pure function of the global step (epoch = step // steps_per_epoch), and batch order is a pure
function of (seed, epoch), so a resumed run feeds exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from tkd_jax.errors import NonFiniteError


@dataclasses.dataclass(frozen=True)
class Schedule:
    total_steps: int
    steps_per_epoch: int
    eval_every: int  # steps between evals (<= 0: end of each epoch)
    checkpoint_every: int  # steps between checkpoints (<= 0: at each eval)
    log_every: int

    def is_eval(self, step: int) -> bool:
        every = self.eval_every if self.eval_every > 0 else self.steps_per_epoch
        return step % every == 0 or step == self.total_steps

    def is_checkpoint(self, step: int) -> bool:
        if self.checkpoint_every > 0 and step % self.checkpoint_every == 0:
            return True
        return self.is_eval(step)


class _SigtermFlag:
    """Turns SIGTERM into a flag checked after each step (the loop then saves and returns)."""

    def __init__(self):
        self.raised = False
        self._old = None

    def __enter__(self):
        try:
            self._old = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread
            self._old = None
        return self

    def _handle(self, signum, frame):
        self.raised = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


@dataclasses.dataclass
class FitResult:
    state: Any
    step: int
    last_eval: dict[str, Any] | None
    interrupted: bool
    train_seconds: float
    train_examples: float


def _check_finite(pending: list[tuple[int, dict]], fp16: bool, last_ckpt: int | None):
    for step, m in pending:
        loss = float(m["loss"])
        if math.isfinite(loss):
            continue
        if fp16 and not bool(m["finite"]):
            continue  # an overflow step that dynamic loss scaling skipped
        where = f"last good checkpoint: step {last_ckpt}" if last_ckpt else "no checkpoint saved"
        raise NonFiniteError(f"training loss is {loss} at step {step}; stopping ({where})")


def fit(
    *, state, dp, train_step: Callable, batches_for_epoch: Callable[[int, int], Any],
    rng, frozen, schedule: Schedule, start_step: int,
    evaluate: Callable[[Any], dict[str, Any]], main_metric: str, checkpointer, writer,
    make_meta: Callable[[int, float, float], dict], console, fp16: bool = False,
    hooks: Sequence[Callable[[str, int, Any], None]] = (), last_eval: dict | None = None,
    learning_rate: Callable[[int], Any] | None = None,
) -> FitResult:
    """Run from `start_step` to `schedule.total_steps`.

    batches_for_epoch(epoch, start_index) yields NumPy batches of that epoch from start_index.
    evaluate(state) -> {"main": float, ...metrics}; hooks get ("step"|"checkpoint", step, state).
    make_meta(step, seconds, examples) -> JSON saved with the checkpoint (data position, timing).
    learning_rate(step) (optional) is logged with the train metrics.
    """
    step = start_step
    pending: list[tuple[int, dict]] = []
    examples = 0.0
    console.begin(total=schedule.total_steps, initial=start_step,
                  steps_per_epoch=schedule.steps_per_epoch)
    last_ckpt = checkpointer.latest_step()
    t0 = time.perf_counter()
    window_t, window_ex = t0, 0.0
    interrupted = False

    def flush():
        nonlocal pending, examples, window_t, window_ex
        host = [(s, dp.first(m)) for s, m in pending]
        _check_finite(host, fp16, last_ckpt)
        pending = []
        if not host:
            return
        ex = sum(float(m["examples"]) for _, m in host)
        examples += ex
        window_ex += ex
        now = time.perf_counter()
        summary = {k: float(np.mean([float(m[k]) for _, m in host]))
                   for k in host[-1][1] if k not in ("finite", "examples")}
        if learning_rate is not None:
            summary["learning_rate"] = float(learning_rate(host[-1][0] - 1))
        summary["examples_per_second"] = window_ex / max(now - window_t, 1e-9)
        window_t, window_ex = now, 0.0
        writer.write(host[-1][0], "train", summary)
        console.train_metrics(summary)

    with _SigtermFlag() as sigterm:
        while step < schedule.total_steps and not sigterm.raised:
            epoch, index = divmod(step, schedule.steps_per_epoch)
            for batch in batches_for_epoch(epoch, index):
                state, m = train_step(state, dp.put_batch(batch), rng, frozen)
                step += 1
                pending.append((step, m))
                console.step(step)
                for hook in hooks:
                    hook("step", step, state)
                if step % schedule.log_every == 0:
                    flush()
                metrics = None
                if schedule.is_eval(step):
                    flush()
                    last_eval = evaluate(state)
                    writer.write(step, "eval", last_eval)
                    console.evaluation(step, last_eval)
                    metrics = {main_metric: last_eval["main"]}
                if schedule.is_checkpoint(step) or sigterm.raised:
                    flush()
                    checkpointer.save(step, dp.unreplicate(state),
                                      make_meta(step, time.perf_counter() - t0, examples),
                                      metrics=metrics)
                    last_ckpt = step
                    for hook in hooks:
                        hook("checkpoint", step, state)
                if step >= schedule.total_steps or sigterm.raised:
                    break
        flush()
        interrupted = sigterm.raised and step < schedule.total_steps
    checkpointer.wait()
    console.end()
    jax.effects_barrier()
    return FitResult(state=state, step=step, last_eval=last_eval, interrupted=interrupted,
                     train_seconds=time.perf_counter() - t0, train_examples=examples)
