"""results/tables/: table2.md, table3.md, their CSVs, comparisons.csv and a plot per table.

Numbers are percentages (x100, as the paper prints them), 2 decimals: ``mean ± sd
[95% CI] n=S`` over the cell's seeds. Every value comes from a final_metrics.json under the
runs directory; nothing is typed in.
"""

from __future__ import annotations

import csv
import math
import pathlib

from experiments.tables import analysis
from experiments.tables import rows as rows_lib

METRIC_NAMES = {"accuracy": "accuracy", "f1": "F1", "mcc": "MCC", "pearson": "Pearson",
                "spearman": "Spearman", "glue_score": "GLUE score"}


def pct(x: float | None) -> str:
    return "" if x is None or math.isnan(x) else f"{100 * x:.2f}"


def cell_text(s) -> str:
    if s is None:
        return "—"
    if s.n < 2:
        return f"{pct(s.mean)} (n=1)"
    return f"{pct(s.mean)} ± {pct(s.sd)} [{pct(s.ci_low)}, {pct(s.ci_high)}] n={s.n}"


def metric_header(task: str, key: str) -> str:
    if key == "glue_score":
        return {"mrpc": "GLUE (F1+acc)/2", "qqp": "GLUE (F1+acc)/2",
                "stsb": "GLUE (P+S)/2"}.get(task, "GLUE score")
    return METRIC_NAMES[key]


def table_markdown(table: str, cells, tasks) -> str:
    rows = [r for r in rows_lib.rows_for(table)]
    lines = [f"# Table {table}: {'models vs baselines' if table == '2' else 'ablation'}", "",
             "Dev-set metrics, final epoch, in percent: mean ± sd [95% t interval, clipped to "
             "the metric's range] over seeds "
             "(student seed S learns from teacher seed S). Paper: Mei et al. 2024, task "
             "unnamed. Produced by `python -m experiments.tables` from the runs of "
             "`python -m experiments.reproduce`.", ""]
    for task in tasks:
        keys = rows_lib.table_metrics(task)
        lines += [f"## {task}", "",
                  "| row | " + " | ".join(metric_header(task, k) for k in keys)
                  + " | paper acc / F1 |", "|---" * (len(keys) + 2) + "|"]
        for r in rows:
            if not r.applies_to(task):
                continue
            runs = cells.get((task, r.name), [])
            paper = None if task in rows_lib.REGRESSION_TASKS else rows_lib.PAPER.get(r.name)
            ptxt = f"{paper['accuracy']:.2f} / {paper['f1']:.2f}" if paper else ""
            vals = [cell_text(analysis.summarize(runs, k)) for k in keys]
            lines.append(f"| {r.label} | " + " | ".join(vals) + f" | {ptxt} |")
        lines.append("")
    return "\n".join(lines)


def table_rows_csv(table: str, cells, tasks) -> list[dict]:
    out = []
    for task in tasks:
        for r in rows_lib.rows_for(table):
            if not r.applies_to(task):
                continue
            runs = cells.get((task, r.name), [])
            for k in rows_lib.table_metrics(task):
                s = analysis.summarize(runs, k)
                out.append({"task": task, "row": r.name, "label": r.label, "metric": k,
                            "n": s.n if s else 0, "mean": s.mean if s else "",
                            "sd": s.sd if s else "", "ci_low": s.ci_low if s else "",
                            "ci_high": s.ci_high if s else "",
                            "seeds": " ".join(str(x.seed) for x in runs),
                            "paper": rows_lib.PAPER.get(r.name, {}).get(k, "")})
    return out


def comparison_rows(comps) -> list[dict]:
    out = []
    for c in comps:
        t, b = c.ttest, c.bootstrap
        out.append({
            "task": c.task, "a": c.a, "b": c.b, "claim": c.claim, "metric": c.metric,
            "n_seeds": t.n if t else 0, "mean_diff": t.mean_diff if t else "",
            "t_ci_low": t.ci_low if t else "", "t_ci_high": t.ci_high if t else "",
            "p_t": t.p if t else "", "p_t_holm": c.p_t_holm, "dz": t.dz if t else "",
            "dz_low": t.dz_low if t else "", "dz_high": t.dz_high if t else "",
            "n_examples": b.n_examples if b else 0, "boot_diff": b.diff if b else "",
            "boot_ci_low": b.ci_low if b else "", "boot_ci_high": b.ci_high if b else "",
            "p_boot": b.p if b else "", "p_boot_holm": c.p_boot_holm,
            "verdict": c.verdict(), "note": c.note, "seeds": " ".join(map(str, c.seeds)),
            **_planned_columns(c)})
    return out


def _planned_columns(c) -> dict:
    """The comparison over the planned seeds only (empty without a plan)."""
    p = c.planned
    t = p.ttest if p else None
    return {"planned_seeds": " ".join(map(str, p.seeds)) if p else "",
            "planned_mean_diff": t.mean_diff if t else "",
            "planned_t_ci_low": t.ci_low if t else "", "planned_t_ci_high": t.ci_high if t else "",
            "planned_p_t_holm": p.p_t_holm if p else "",
            "planned_p_boot_holm": p.p_boot_holm if p else "",
            "planned_verdict": p.verdict() if p else "",
            "verdict_turns_on_extra_seeds": c.turns_on_extra_seeds()}


def write_csv(path: pathlib.Path, records: list[dict]) -> None:
    with path.open("w", newline="") as f:
        if not records:
            return
        w = csv.DictWriter(f, fieldnames=list(records[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(records)


def plot_table(path: pathlib.Path, table: str, cells, tasks) -> None:
    """Per task, each row's mean of the claim metric with its 95% interval (sd-free: n=1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows_lib.rows_for(table)]
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 0.35 * len(rows) + 1.5),
                             sharey=True, squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        key = rows_lib.claim_metric(task)
        for y, r in enumerate(rows):
            s = analysis.summarize(cells.get((task, r.name), []), key)
            if s is None or not r.applies_to(task):
                continue
            err = None if s.n < 2 else [[100 * (s.mean - s.ci_low)], [100 * (s.ci_high - s.mean)]]
            ax.errorbar([100 * s.mean], [y], xerr=err, fmt="o", capsize=3,
                        color="C1" if r.recipe is None else "C0")
        ax.set_title(f"{task} ({metric_header(task, key)})", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(range(len(rows)), [r.label for r in rows], fontsize=7)
    axes[0][0].invert_yaxis()
    fig.suptitle(f"Table {table}: mean and 95% interval over seeds (percent)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_tables(out_dir, cells, tasks, comps) -> list[pathlib.Path]:
    out = pathlib.Path(out_dir) / "tables"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for table in ("2", "3"):
        md = out / f"table{table}.md"
        md.write_text(table_markdown(table, cells, tasks) + "\n")
        write_csv(out / f"table{table}.csv", table_rows_csv(table, cells, tasks))
        plot_table(out / f"table{table}.png", table, cells, tasks)
        written += [md, out / f"table{table}.csv", out / f"table{table}.png"]
    write_csv(out / "comparisons.csv", comparison_rows(comps))
    return written + [out / "comparisons.csv"]
