"""Read finished runs and draw them: training curves from metrics.jsonl, result tables as bars.

What the notebooks in colab/ call after training (they hold no logic of their own). Only
reads files a run or a study leaves behind (DESIGN section 5), so it works on any machine
that has them; matplotlib is imported lazily, on the first plot.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

from tkd_jax.errors import DataError


def read_metrics(workdir: str | pathlib.Path) -> dict[str, list[dict[str, Any]]]:
    """A run's metrics.jsonl grouped by record kind ("train", "eval", ...), in step order."""
    path = pathlib.Path(workdir) / "metrics.jsonl"
    if not path.exists():
        raise DataError(f"{path}: not found; expected the workdir of a run")
    out: dict[str, list[dict]] = {}
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            kind, step = rec["kind"], int(rec["step"])
        except (ValueError, KeyError, TypeError):
            raise DataError(f"{path} line {i}: expected a JSON object with kind and step") \
                from None
        out.setdefault(kind, []).append(rec | {"step": step})
    for recs in out.values():
        recs.sort(key=lambda r: r["step"])
    return out


def curve(records: Sequence[Mapping], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of `key` over the records that have it as a number."""
    pts = [(r["step"], float(r[key])) for r in records
           if isinstance(r.get(key), int | float) and not isinstance(r.get(key), bool)]
    return [s for s, _ in pts], [v for _, v in pts]


def plot_training_curves(runs: Mapping[str, str | pathlib.Path], *,
                         train_keys: Sequence[str] = ("loss",),
                         eval_keys: Sequence[str] = ("main",)):
    """One panel per key: train keys (e.g. loss components, learning_rate) and eval keys
    (e.g. "main", "dev/accuracy"), one line per run (label -> workdir). Returns the Figure."""
    import matplotlib.pyplot as plt

    data = {label: read_metrics(wd) for label, wd in runs.items()}
    panels = [("train", k) for k in train_keys] + [("eval", k) for k in eval_keys]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.4), squeeze=False)
    for ax, (kind, key) in zip(axes[0], panels, strict=True):
        for label, recs in data.items():
            steps, values = curve(recs.get(kind, []), key)
            if steps:
                ax.plot(steps, values, marker="o" if kind == "eval" else None, ms=3,
                        label=label)
        ax.set_title(f"{kind}/{key}")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _final_metrics(root: pathlib.Path, pattern: str, expected: str):
    """(path, parsed JSON) of every file under ``root`` matching ``pattern``, sorted."""
    if not root.is_dir():
        raise DataError(f"{root}: not a directory; expected {expected}")
    for path in sorted(root.glob(pattern)):
        try:
            yield path, json.loads(path.read_text())
        except ValueError:
            raise DataError(f"{path}: not valid JSON") from None


def load_results(results_dir: str | pathlib.Path) -> list[dict[str, Any]]:
    """Every final_metrics.json under `results_dir` as a row: {"study", "run", "task",
    "recipe", "seed", <metric>: value, "num_params", "train_seconds"}, sorted by study, run.

    `study` is the path of the run's parent directory relative to `results_dir`
    (e.g. "mrpc_tkd", "seed1/mrpc_tkd"), `run` its directory name.
    """
    root = pathlib.Path(results_dir)
    rows = []
    for path, fm in _final_metrics(root, "**/final_metrics.json", "a results/ tree"):
        rel = path.parent.relative_to(root)
        rows.append({"study": str(rel.parent), "run": rel.name, "task": fm.get("task"),
                     "recipe": fm.get("recipe"), "seed": fm.get("seed"),
                     **fm.get("metrics", {}), "num_params": fm.get("num_params"),
                     "train_seconds": fm.get("train_seconds")})
    rows.sort(key=lambda r: (r["study"], r["run"]))
    return rows


def plot_results(rows: Sequence[Mapping[str, Any]], *, metric: str = "accuracy",
                 study: str | None = None):
    """Horizontal bars of `metric` per run, one panel per study. Returns the Figure."""
    import matplotlib.pyplot as plt

    studies: dict[str, list[Mapping]] = {}
    for r in rows:
        if (study is None or r["study"] == study) and isinstance(r.get(metric), int | float):
            studies.setdefault(r["study"], []).append(r)
    if not studies:
        raise DataError(f"no results with metric {metric!r}"
                        + (f" in study {study!r}" if study else ""))
    fig, axes = plt.subplots(len(studies), 1, squeeze=False,
                             figsize=(7, sum(0.35 * len(v) + 0.9 for v in studies.values())),
                             gridspec_kw={"height_ratios": [len(v) for v in studies.values()]})
    for ax, (name, rs) in zip(axes[:, 0], studies.items(), strict=True):
        labels = [f"{r['run']} ({r['recipe']})" for r in rs]
        values = [float(r[metric]) for r in rs]
        ax.barh(labels, values, color=["C1" if r["recipe"] == "tkd" else "C0" for r in rs])
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:.4f}", va="center", fontsize=7)
        ax.set_title(f"{name}: dev {metric}", fontsize=9)
        ax.invert_yaxis()
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def load_reproduction(runs_dir: str | pathlib.Path) -> list[dict[str, Any]]:
    """Every cell of the reproduction tables, ``<runs_dir>/<task>/<row>/seed<S>/``, as a row
    {"task", "row", "seed", <metric>: value, ...}, sorted by task, row, seed."""
    root = pathlib.Path(runs_dir)
    rows = []
    for path, fm in _final_metrics(root, "*/*/seed*/final_metrics.json",
                                   "results/runs/<task>/<row>/seed<S>"):
        task, row, seed = path.parent.relative_to(root).parts
        rows.append({"task": task, "row": row, "seed": int(seed.removeprefix("seed")),
                     **fm.get("metrics", {})})
    return rows


def plot_reproduction(rows: Sequence[Mapping[str, Any]], *, metric: str = "accuracy"):
    """One panel per task: per row the mean of `metric` over its seeds (bar), the standard
    deviation (error bar, from 2 seeds on) and every seed (dots). Returns the Figure."""
    import matplotlib.pyplot as plt
    import numpy as np

    tasks: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        if isinstance(r.get(metric), int | float):
            tasks.setdefault(r["task"], {}).setdefault(r["row"], []).append(float(r[metric]))
    if not tasks:
        raise DataError(f"no reproduction cells with metric {metric!r}")
    height = max(len(v) for v in tasks.values())
    fig, axes = plt.subplots(1, len(tasks), squeeze=False, sharex=True,
                             figsize=(3.4 * len(tasks), 0.35 * height + 1.2))
    for ax, (task, by_row) in zip(axes[0], sorted(tasks.items()), strict=True):
        names = list(by_row)
        means = [float(np.mean(v)) for v in by_row.values()]
        sds = [float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for v in by_row.values()]
        ax.barh(names, means, xerr=sds, color=["C1" if n.startswith("tkd") else "C0"
                                               for n in names], alpha=0.7)
        for y, values in enumerate(by_row.values()):
            ax.plot(values, [y] * len(values), "k.", ms=3)
        ax.set_title(f"{task}: dev {metric} (n = {max(map(len, by_row.values()))} seeds)",
                     fontsize=9)
        ax.invert_yaxis()
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def compare(runs: Mapping[str, str | pathlib.Path],
            metrics: Sequence[str] = ("accuracy", "f1", "mcc")) -> list[dict[str, Any]]:
    """Rows {"run": label, <metric>: value} from each run's final_metrics.json."""
    rows = []
    for label, wd in runs.items():
        path = pathlib.Path(wd) / "final_metrics.json"
        if not path.exists():
            raise DataError(f"{path}: not found; has the run finished?")
        fm = json.loads(path.read_text())
        rows.append({"run": label, **{m: fm["metrics"].get(m) for m in metrics}})
    return rows
