"""Run outputs: metrics.jsonl, TensorBoard events, manifest.json, final_metrics.json, progress bar.

Files are written atomically (temp file + rename) so a killed run never leaves a truncated JSON.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import pathlib
import platform
import subprocess
import sys
import time
from typing import Any

import jax
import numpy as np

from tkd_jax import hardware, host_memory

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "datasets", "tokenizers",
            "safetensors", "numpy", "ml-collections", "tensorflow-datasets", "tkd_jax")


def to_jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [to_jsonable(v) for v in x]
    if isinstance(x, np.ndarray | jax.Array):
        return to_jsonable(np.asarray(x).tolist())
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def write_json(path: str | os.PathLike, obj: Any) -> None:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(to_jsonable(obj), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def git_commit() -> str | None:
    root = pathlib.Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        # results/ holds outputs, not code: a benchmark that rewrites a tracked result file
        # does not make the next command's code "dirty"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":!results"],
                               cwd=root, capture_output=True, text=True, timeout=10).stdout
        return out + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def device_info() -> dict[str, Any]:
    info = {
        "backend": jax.default_backend(),
        "process_count": jax.process_count(),
        "process_index": jax.process_index(),
        "devices": [str(d) for d in jax.devices()],
        "device_kind": jax.devices()[0].device_kind,
        "keep_freed_memory": host_memory.keep_freed_memory(),  # glibc heap reuse (host_memory)
    }
    # A CPU run is bit-reproducible on the same CPU type and core count only (hardware.py).
    return {**info, **hardware.cpu_record()}



def portable_data_files(files: dict[str, str]) -> dict[str, str]:
    """Absolute data paths -> "<TASK dir>/<file>" (the GLUE layout), so manifests carry no
    machine-specific paths; other keys (hub fingerprints, TFDS names) are kept."""
    out = {}
    for key, digest in files.items():
        path = pathlib.PurePath(key)
        out[str(pathlib.PurePath(*path.parts[-2:])) if path.is_absolute() else key] = digest
    return out


def manifest(*, config: dict, task: str, recipe: str, seed: int, data_files: dict[str, str],
             extra: dict | None = None) -> dict[str, Any]:
    return {
        "task": task, "recipe": recipe, "seed": seed, "config": config,
        "data_files_sha256": portable_data_files(data_files), "packages": package_versions(),
        "git_commit": git_commit(), "devices": device_info(),
        "command": [pathlib.Path(sys.argv[0]).name] + sys.argv[1:],
        "created_unix": time.time(), **(extra or {}),
    }


class MetricWriter:
    """Appends one JSON object per record to metrics.jsonl and mirrors scalars to TensorBoard."""

    def __init__(self, workdir: str | os.PathLike, *, enabled: bool = True, tensorboard=True):
        self.enabled = enabled
        self.path = pathlib.Path(workdir) / "metrics.jsonl"
        self._tb = None
        if enabled and tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(pathlib.Path(workdir) / "tensorboard"))

    def write(self, step: int, kind: str, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        rec = {"step": int(step), "kind": kind, **to_jsonable(values)}
        with self.path.open("a") as f:
            f.write(json.dumps(rec, sort_keys=True) + "\n")
        if self._tb is not None:
            for k, v in values.items():
                if isinstance(v, int | float | np.number) and not isinstance(v, bool):
                    self._tb.add_scalar(f"{kind}/{k}", float(v), int(step))
            self._tb.flush()

    def truncate_after(self, step: int) -> None:
        """On resume: drop records past the restored step (they will be written again)."""
        if not (self.enabled and self.path.exists()):
            return
        keep = [ln for ln in self.path.read_text().splitlines()
                if ln.strip() and json.loads(ln)["step"] <= step]
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(ln + "\n" for ln in keep))
        os.replace(tmp, self.path)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def progress_bar(total: int, initial: int, enabled: bool):
    """tqdm bar, silent unless stdout is a terminal (logs and CI stay clean)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not (enabled and sys.stdout.isatty()),
                dynamic_ncols=True, unit="step")
