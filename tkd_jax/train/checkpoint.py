"""Orbax checkpoints: keep the last k and the best by a dev metric; exact resume.

A checkpoint holds two items: "state" (the TrainState pytree: params, optimizer state, step,
RNG, loss-scale state) and "meta" (JSON: data-iterator position, the eval metrics of that step,
and a config fingerprint). Orbax writes each step to a temporary directory and renames it when
complete, so a run killed mid-save leaves no checkpoint that a resume would trust.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as cm

from tkd_jax.errors import CheckpointError


class Checkpointer:
    """Thin wrapper over ocp.CheckpointManager with the project's retention policy."""

    def __init__(self, directory: str | pathlib.Path, *, keep: int = 2,
                 best_metric: str | None = None, best_mode: str = "max",
                 async_save: bool = True):
        self.directory = pathlib.Path(directory).absolute()
        policies = [cm.LatestN(n=max(keep, 1))]
        if best_metric:
            policies.append(cm.BestN(
                get_metric_fn=lambda m: m[best_metric], reverse=best_mode == "min", n=1,
                keep_checkpoints_without_metrics=False,
            ))
        options = ocp.CheckpointManagerOptions(
            preservation_policy=cm.AnyPreservationPolicy(policies),
            enable_async_checkpointing=async_save,
            create=True,
        )
        self._mngr = ocp.CheckpointManager(self.directory, options=options,
                                           item_names=("state", "meta"))

    def latest_step(self) -> int | None:
        return self._mngr.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._mngr.all_steps())

    def save(self, step: int, state, meta: dict[str, Any], metrics: dict[str, float] | None = None,
             *, force: bool = True) -> bool:
        """Save (asynchronously); returns True if a checkpoint was started."""
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        return self._mngr.save(int(step), args=args, metrics=metrics, force=force)

    def restore(self, abstract_state, step: int | None = None):
        """Restore (state, meta) at `step` (default: latest). Returns None when there is none."""
        step = self.latest_step() if step is None else step
        if step is None:
            return None
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        try:
            restored = self._mngr.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
        except Exception as e:  # orbax raises many types for corrupt or mismatched checkpoints
            raise CheckpointError(
                f"{self.directory}/{step}: cannot restore checkpoint "
                f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                "expected one written by the same config — use a fresh --workdir") from None
        return restored["state"], restored["meta"]

    def restore_meta(self, step: int) -> dict[str, Any]:
        args = ocp.args.Composite(meta=ocp.args.JsonRestore())
        return self._mngr.restore(step, args=args)["meta"]

    def wait(self) -> None:
        self._mngr.wait_until_finished()

    def close(self) -> None:
        self._mngr.wait_until_finished()
        self._mngr.close()
