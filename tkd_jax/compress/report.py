"""The compression study's Markdown table and plots (accuracy against latency and size)."""

from __future__ import annotations

import pathlib


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def markdown_table(rows: list[dict], *, metric: str, title: str) -> str:
    """One row per method: metric, file size (and ratio), params, latency b1 and b32."""
    acc = metric != "accuracy" and all("accuracy" in r["dev"] for r in rows)
    lines = [f"# {title}", "",
             f"| method | dev {metric} | Δ vs fp32 |{' dev accuracy |' if acc else ''} "
             "file | × smaller | Dense kernels × smaller "
             "| params | b1×128 median / p90 | × faster | b32×128 median / p90 | ex/s "
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
    return "\n".join(lines) + "\n"


def plots(rows: list[dict], out_dir: pathlib.Path, *, metric: str, title: str) -> list[str]:
    """accuracy_vs_latency.png and accuracy_vs_size.png, one labelled point per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for key, xlabel, fname, xfn in (
        ("latency", "latency, batch 1 x 128 (median ms)", "accuracy_vs_latency.png",
         lambda r: r["latency_b1"]["median_ms"]),
        ("size", "size on disk (MiB)", "accuracy_vs_size.png",
         lambda r: r["file_bytes"] / 2**20),
    ):
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        for r in rows:
            x, y = xfn(r), 100 * r["dev"][metric]
            ax.scatter([x], [y], s=30)
            ax.annotate(r["method"], (x, y), textcoords="offset points", xytext=(4, 4),
                        fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"dev {metric} (%)")
        ax.set_title(f"{title}: {metric} vs {key}", fontsize=10)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out_dir / fname, dpi=120)
        plt.close(fig)
        written.append(fname)
    return written
