"""The compression study's report: Markdown table, plots of accuracy against latency and size.

``write(records, run_dir, out_dir)`` writes the records of ``study.compress_run`` as
``results.json``, the table as ``table.md``, ``accuracy_vs_latency.png``,
``accuracy_vs_size.png`` and ``manifest.json`` (run, settings, machine, packages);
``figure(records, ...)`` draws the same two plots as one pyplot figure for a notebook.
"""

from __future__ import annotations

import os
import pathlib
import time

from tkd_jax import data as data_lib
from tkd_jax import hardware
from tkd_jax.compress import measure, run_io
from tkd_jax.train import reporting


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _seq(rows: list[dict]) -> int:
    """The timed sequence length (the same for every row of one study)."""
    return rows[0]["latency_b1"]["seq"] if rows else 128


def _split(rows: list[dict]) -> str:
    """The evaluation split's name: dev, or holdout for a run that held out part of train
    (a record's "dev" key holds the metrics of this split either way)."""
    return rows[0].get("eval_split", "dev") if rows else "dev"


def machine_note(rows: list[dict], machine: dict) -> str:
    """The CPU the timings are from, and why a bf16 or int8 runtime is slow on it if so.

    ``machine``: ``measure.cpu_info()``'s record ({"cpu", "flags", ...}). The speed methods
    gain only where the CPU multiplies bf16 or int8 in hardware (measured on an AVX2-only
    EPYC: bf16 0.73-0.75x, int8 dynamic 0.85-0.87x of fp32), and a table that shows them
    slower than fp32 needs the reason beside it."""
    flags = machine.get("flags") or []
    line = f"Timed on {machine.get('cpu') or 'an unrecorded CPU'} ({' '.join(flags)})."
    runtimes = {r.get("runtime") for r in rows}
    for kind, runtime, has, isa in (
            ("bf16", "bf16", hardware.has_bf16_matmul, hardware.BF16_MATMUL_FLAGS),
            ("int8", "int8_dynamic", hardware.has_int8_matmul, hardware.INT8_MATMUL_FLAGS)):
        if runtime in runtimes and has(flags) is False:
            line += (f" It has no {kind} dot instructions ({', '.join(isa)}), without which "
                     f"XLA:CPU's {kind} dots are no faster than f32 ones: the {kind} runtimes "
                     "are not expected to beat fp32 here.")
    return line


def markdown_table(rows: list[dict], *, metric: str, title: str,
                   machine: dict | None = None) -> str:
    """One row per method: metric, file size (and ratio), params, latency b1 and b32; with
    ``machine`` (``measure.cpu_info()``), a line under it on the CPU that timed them."""
    acc = metric != "accuracy" and all("accuracy" in r["dev"] for r in rows)
    seq, split = _seq(rows), _split(rows)
    lines = [f"# {title}", "",
             f"| method | {split} {metric} | Δ vs fp32 |{f' {split} accuracy |' if acc else ''} "
             "file | × smaller | Dense kernels × smaller "
             f"| params | b1×{seq} median / p90 | × faster | b32×{seq} median / p90 | ex/s "
             "| × faster | cost |",
             "|---|---|---|" + ("---|" if acc else "") + "---|---|---|---|---|---|---|---|---|---|"]
    base = next((r for r in rows if r["method"] == "fp32"), None)
    for r in rows:
        m = 100 * r["dev"][metric]
        delta = "" if base is None else f"{m - 100 * base['dev'][metric]:+.2f}"
        size = _mb(r["file_bytes"])
        if r.get("stored_nonzero_note"):
            size += f" ({r['stored_nonzero_note']})"
        b1, b32 = r["latency_b1"], r["latency_b32"]
        cost = r.get("cost_seconds", 0.0)
        accuracy = f" {100 * r['dev']['accuracy']:.2f} |" if acc else ""
        lines.append(
            f"| {r['method']} | {m:.2f} | {delta} |{accuracy} {size} | {r['size_ratio']:.2f} | "
            f"{r['kernel_ratio']:.2f} | {r['num_params']:,} | "
            f"{b1['median_ms']:.2f} / {b1['p90_ms']:.2f} ms | {b1['speedup']:.2f} | "
            f"{b32['median_ms']:.0f} / {b32['p90_ms']:.0f} ms | "
            f"{b32['examples_per_second']:.0f} | {b32['speedup']:.2f} | {cost:.0f} s |")
    if machine is not None:
        lines += ["", machine_note(rows, machine)]
    return "\n".join(lines) + "\n"


# x axis of each plot: (label, file name, value of a row)
AXES = {
    "latency": ("latency, batch 1 x {seq} (median ms)", "accuracy_vs_latency.png",
                lambda r: r["latency_b1"]["median_ms"]),
    "size": ("size on disk (MiB)", "accuracy_vs_size.png", lambda r: r["file_bytes"] / 2**20),
}


def _draw(ax, rows: list[dict], key: str, *, metric: str, title: str) -> None:
    """One labelled point per method: ``metric`` (on the evaluation split) against the ``key``
    axis."""
    xlabel, _, xfn = AXES[key]
    for r in rows:
        x, y = xfn(r), 100 * r["dev"][metric]
        ax.scatter([x], [y], s=30)
        ax.annotate(r["method"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(xlabel.format(seq=_seq(rows)))
    ax.set_ylabel(f"{_split(rows)} {metric} (%)")
    ax.set_title(f"{title}: {metric} vs {key}", fontsize=10)
    ax.grid(alpha=0.3)


def plots(rows: list[dict], out_dir: pathlib.Path, *, metric: str, title: str) -> list[str]:
    """accuracy_vs_latency.png and accuracy_vs_size.png, one labelled point per method."""
    # A bare Figure renders with Agg and leaves pyplot's backend (e.g. a notebook's) alone.
    from matplotlib.figure import Figure

    written = []
    for key, (_, fname, _) in AXES.items():
        fig = Figure(figsize=(6.4, 4.4))
        _draw(fig.subplots(), rows, key, metric=metric, title=title)
        fig.tight_layout()
        fig.savefig(pathlib.Path(out_dir) / fname, dpi=120)
        written.append(fname)
    return written


def figure(rows: list[dict], *, metric: str, title: str, axes=("latency", "size")):
    """The plots side by side as one pyplot Figure (a notebook shows it). Returns it."""
    import matplotlib.pyplot as plt

    fig, panels = plt.subplots(1, len(axes), figsize=(6.4 * len(axes), 4.4), squeeze=False)
    for ax, key in zip(panels[0], axes, strict=True):
        _draw(ax, rows, key, metric=metric, title=title)
    fig.tight_layout()
    return fig


def _describe(run_dir: pathlib.Path):
    """(task spec, run manifest, model description, title) of the run studied."""
    manifest, desc = run_io.run_manifest(run_dir), run_io.model_description(run_dir)
    spec = data_lib.get_task(manifest["task"])
    title = f"{spec.name} {manifest.get('recipe')} run `{run_dir.name}` ({desc.get('name')})"
    return spec, manifest, desc, title


def heading(run_dir) -> tuple[str, str]:
    """(title, the task's main dev metric) of the study of ``run_dir``."""
    spec, _, _, title = _describe(pathlib.Path(run_dir))
    return title, spec.main_metric


def write(records: list[dict], run_dir, out_dir=None, *, settings: dict,
          command: str | None = None, git_commit: str | None = None) -> pathlib.Path:
    """Write the study's files to ``out_dir`` and return it.

    ``out_dir`` None = ``results/compression/<task>/<run name>`` under the current directory.
    ``settings`` (the study's arguments) and ``command`` go into manifest.json as given;
    ``git_commit`` None = this checkout's commit now (a caller writing into a tracked
    directory reads it before it writes anything, as the CLI does).
    """
    run_dir = pathlib.Path(run_dir)
    spec, manifest, desc, title = _describe(run_dir)
    if git_commit is None:
        git_commit = reporting.git_commit()
    out = pathlib.Path(out_dir or f"results/compression/{spec.name}/{run_dir.name}")
    out.mkdir(parents=True, exist_ok=True)
    reporting.write_json(out / "results.json", records)
    pngs = plots(records, out, metric=spec.main_metric, title=title)
    machine = measure.cpu_info()
    (out / "table.md").write_text(markdown_table(records, metric=spec.main_metric, title=title,
                                                 machine=machine))
    reporting.write_json(out / "manifest.json", {
        "command": command, "git_commit": git_commit, "created_unix": time.time(),
        "run": {"dir": str(run_dir), "task": spec.name, "recipe": manifest.get("recipe"),
                "git_commit": manifest.get("git_commit"), "model": desc},
        "settings": settings, "machine": machine,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "packages": reporting.package_versions(), "plots": pngs})
    return out
