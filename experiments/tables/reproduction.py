"""results/REPRODUCTION.md: the paper's numbers beside ours and a verdict per claim and task.

Claims (Mei et al. 2024, Tables II and III, task unnamed):
  (a) TKD-NLP reaches 98.32 accuracy / 97.14 F1;
  (b) TKD-NLP > CNN > LSTM > RNN (accuracy);
  (c) TKD-NLP > T-NLP > KD-NLP (accuracy).
A link "A > B" holds on a task when A - B is positive and significant at 0.05 after Holm's
correction (one family per test and metric kind, over every comparison of every task) in both
the paired t-test over seeds and the paired bootstrap over dev examples (10,000 resamples);
"reversed" when both are significant the other way; otherwise it is not supported. A claim
holds on a task when all its links hold. (a) is read from the interval of our TKD-NLP cell.
Each comparison is tested again over the planned seeds only (stand-ins and their partners
counted as planned: `experiments/tables/plan.py`), with Holm's correction over those tests;
a verdict that differs between the two turns on seeds run beyond the plan, and is not counted
as a finding either way: the runs do not record why a seed was added, and one added after
seeing a verdict would be optional stopping.
"""

from __future__ import annotations

import math

from experiments.tables import analysis, collapse, fit, plan
from experiments.tables import rows as rows_lib
from experiments.tables.write import cell_text, pct

CHAINS = {"b": ("tkd", "cnn", "lstm", "rnn"), "c": ("tkd", "tnlp", "kd")}
LABEL = {r.name: r.label for r in rows_lib.ROWS}


def _links(chain) -> list[tuple[str, str]]:
    return list(zip(chain[:-1], chain[1:], strict=True))


def _p(x: float) -> str:
    return "—" if x is None or math.isnan(x) else (f"{x:.2g}" if x >= 1e-4 else f"{x:.1e}")


def absolute_verdict(cells, task: str, key: str, paper: float) -> str:
    s = analysis.summarize(cells.get((task, "tkd"), []), key)
    if s is None:
        return f"not supported: no TKD-NLP runs on {task}"
    if s.n < 2:
        return f"not supported: one seed ({pct(s.mean)})"
    where = (f"ours {pct(s.mean)} [{pct(s.ci_low)}, {pct(s.ci_high)}] vs paper {paper:.2f}")
    if s.ci_high < paper / 100:
        return f"not reproduced: {where} (interval below)"
    if s.ci_low > paper / 100:
        return f"exceeded: {where} (interval above)"
    return f"consistent: {where} (interval contains it)"


def link_text(c: analysis.Comparison) -> str:
    if c.ttest is None:
        return f"{c.a} > {c.b}: not supported ({c.note})"
    t, b = c.ttest, c.bootstrap
    boot = (f"bootstrap {pct(b.diff)} [{pct(b.ci_low)}, {pct(b.ci_high)}], "
            f"p {_p(b.p)} (Holm {_p(c.p_boot_holm)})") if b else f"no bootstrap ({c.note})"
    if t.sd_diff == 0.0:  # the same difference at every seed: no spread, t undefined
        test = f"at each of {t.n} seeds (no spread: t-test undefined)"
    else:
        test = (f"[{pct(t.ci_low)}, {pct(t.ci_high)}], t-test p {_p(t.p)} "
                f"(Holm {_p(c.p_t_holm)}), d_z {t.dz:.2f} [{t.dz_low:.2f}, {t.dz_high:.2f}]")
    return (f"{c.a} > {c.b}: **{c.verdict()}** — diff {pct(t.mean_diff)} points {test}; "
            f"{boot}{planned_text(c)}")


def planned_text(c: analysis.Comparison) -> str:
    """What the comparison says over the planned seeds, when it paired any beyond them."""
    if not c.beyond_plan():
        return ""
    p, t = c.planned, c.planned.ttest
    flag = " — **the verdict turns on seeds beyond the plan**" if c.turns_on_extra_seeds() else ""
    if t is None:
        return f"; over the planned seeds: **{p.verdict()}** ({p.note}){flag}"
    return (f"; over the {t.n} planned seeds ({', '.join(map(str, p.seeds))}): "
            f"**{p.verdict()}**, diff {pct(t.mean_diff)} [{pct(t.ci_low)}, {pct(t.ci_high)}], "
            f"Holm p {_p(p.p_t_holm)} / bootstrap {_p(p.p_boot_holm)}{flag}")


def _find(comps, task, a, b, key):
    return next((c for c in comps if (c.task, c.a, c.b, c.metric) == (task, a, b, key)), None)


def chain_verdict(comps, task: str, chain) -> tuple[str, list[str]]:
    """The chain's verdict in Markdown (with the planned seeds' where it differs) and one
    line per link."""
    key = rows_lib.claim_metric(task)
    links = [_find(comps, task, a, b, key) for a, b in _links(chain)]
    texts = [link_text(c) if c else f"{a} > {b}: not compared" for c, (a, b) in
             zip(links, _links(chain), strict=True)]
    overall = f"**{_chain([c.verdict() if c else 'not supported' for c in links])}**"
    if any(c and c.planned for c in links):
        planned = f"**{_chain([c.planned.verdict() if c else 'not supported' for c in links])}**"
        if planned != overall:
            overall += f" (over the planned seeds: {planned}; not counted)"
    return overall, texts


def _planned_cell(c: analysis.Comparison) -> str:
    if c.planned is None:
        return "—"
    if not c.beyond_plan():
        return "same seeds"
    p = c.planned
    text = f"{p.verdict()} ({len(p.seeds)} seeds)"
    return f"**{text}: differs**" if c.turns_on_extra_seeds() else text


def _chain(verdicts: list[str]) -> str:
    if all(v == "holds" for v in verdicts):
        return "holds"
    if any(v == "reversed" for v in verdicts):
        return "contradicted (a link is significantly reversed)"
    return "not supported"


def cell_counts(cells, tasks, seeds: int) -> tuple[int, int]:
    """(finished, planned) cells of the tables: every applicable row x its seeds per task; a
    run beyond the planned seeds fills the place of a planned one that is missing."""
    done = planned = 0
    for task in tasks:
        for r in rows_lib.ROWS:
            if r.applies_to(task):
                n = len(plan.planned_seeds(r, seeds))
                planned += n
                done += n - plan.seed_use(cells.get((task, r.name), []), r, seeds)[2]
    return done, planned


def _rows_by(cells, task: str, seeds: int, key) -> dict[tuple, list[str]]:
    """The task's row names, in the tables' order, grouped by ``key(*plan.seed_use(...))``; rows
    whose key is None are left out."""
    out: dict[tuple, list[str]] = {}
    for r in rows_lib.ROWS:
        if r.applies_to(task):
            k = key(*plan.seed_use(cells.get((task, r.name), []), r, seeds))
            if k is not None:
                out.setdefault(k, []).append(r.name)
    return out


def _grouped(task: str, by_key: dict[tuple, list[str]], text) -> list[str]:
    """One line per key: ``text(*key)`` gives what goes before and after the row names."""
    return [f"{task}: {before} of {', '.join(names)}{after}"
            for key, names in by_key.items() for before, after in [text(*key)]]


def _seeds(seeds: tuple[int, ...]) -> str:
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"


def missing_cells(cells, tasks, seeds: int) -> list[str]:
    """Planned cells without a finished run: per task, the rows missing the same seeds on one
    line (a task's main rows usually stop at the same seed), in the tables' row order. Rows
    whose missing seeds runs at other seeds make up for are left out (``stand_ins``)."""
    out = []
    for task in tasks:
        by_lost = _rows_by(cells, task, seeds,
                           lambda lost, extra, short: (lost, extra) if short else None)
        out += _grouped(task, by_lost, lambda lost, extra: (_seeds(lost), (
            f" ({_seeds(extra)} in place of {len(extra)} of them)" if extra else "")))
    return out


def stand_ins(cells, tasks, seeds: int) -> list[str]:
    """Runs at seeds beyond the plan, grouped like ``missing_cells``: in place of which planned
    seeds (when the row lacks any), or beside a complete row (a teacher and the rows paired
    with the stand-ins)."""
    out = []
    for task in tasks:
        by_use = _rows_by(cells, task, seeds,
                          lambda lost, extra, short: (extra, lost) if extra else None)
        out += _grouped(task, by_use, lambda extra, lost: (_seeds(extra) + _use(extra, lost), ""))
    return out


def _use(extra, lost) -> str:
    """What runs at seeds ``extra`` beyond the plan do for a row missing planned seeds ``lost``."""
    if not lost:
        return " beside the planned seeds"
    if len(lost) <= len(extra):
        return f" in place of {_seeds(lost)}"
    return f" in place of {len(extra)} of {_seeds(lost)}"


LATENCY_COMMAND = ("python -m experiments.latency results/runs/TASK/teacher/seed0 "
                   "results/runs/TASK/tkd/seed0 [...] --json results/tables/latency.json")


def cost_lines(cells, tasks, latency: list[dict] | None) -> list[str]:
    """Parameters, train time and (from experiments.latency's JSON) batch-1 latency.

    Train time is the first seed's (seed 0 when it has run), like the latency: the seeds ran
    on different machines (results/README.md), so a median over them would mix CPUs."""
    if isinstance(latency, dict):  # experiments.latency's file: {command, ..., runs: [...]}
        latency = latency["runs"]
    by_run = {str(x["run"]).rstrip("/"): x for x in latency or []}
    out = ["| task | teacher params | TKD-NLP params | teacher / TKD-NLP train s (seed 0) | "
           "teacher / TKD-NLP latency ms (median, batch 1) |", "|---" * 5 + "|"]
    for task in tasks:
        t, s = cells.get((task, "teacher"), []), cells.get((task, "tkd"), [])
        if not t or not s:
            continue
        first = [min(rs, key=lambda r: r.seed) for rs in (t, s)]
        secs = [float(r.final.get("train_seconds", 0.0)) for r in first]
        which = "" if first[0].seed == first[1].seed == 0 else (
            f" (seeds {first[0].seed} / {first[1].seed})")
        lat = [next((by_run[k]["median_ms"] for r in rs for k in by_run
                     if k.endswith(f"{task}/{r.row}/seed{r.seed}")), None) for rs in (t, s)]
        lat_text = (f"{lat[0]:.2f} / {lat[1]:.2f} ({lat[0] / lat[1]:.2f}x)"
                    if None not in lat else "not measured")
        out.append(f"| {task} | {t[0].final.get('num_params', 0):,} | "
                   f"{s[0].final.get('num_params', 0):,} | {secs[0]:.0f} / {secs[1]:.0f}{which} | "
                   f"{lat_text} |")
    out += ["", "Latency comes from `results/tables/latency.json` when present, written by "
            f"`{LATENCY_COMMAND}` on the runs' local checkpoints (one process, the runs "
            "timed interleaved round by round; that file names the commit and the machine)."]
    return out


def _completeness(cells, tasks, seeds: int) -> str:
    done, planned = cell_counts(cells, tasks, seeds)
    fills = any(_rows_by(cells, task, seeds,
                         lambda lost, extra, short: () if lost and extra else None)
                for task in tasks)
    counted = (" (a run at a seed beyond the plan counts in place of a planned seed that could "
               "not be made: Seeds beyond the plan)" if fills else "")
    if done == planned:
        return (f"**Complete**: all {planned} planned cells ({seeds} seeds) have "
                f"finished{counted}.")
    return (f"**Partial**: {done} of {planned} planned cells ({len(tasks)} "
            f"task{'s' * (len(tasks) != 1)}, {seeds} seeds) have finished{counted}; the others "
            "are listed under Missing cells. The verdicts are those of the finished cells and "
            "can change as the others come in.")


def render(cells, tasks, comps, *, seeds: int, provenance: dict,
           latency: list[dict] | None = None) -> str:
    lines = ["# Reproduction of Tables II and III (Mei et al., 2024)", "",
             "Generated by `python -m experiments.tables` from the runs that "
             "`python -m experiments.reproduce --table all` made; nothing here is typed in. "
             "Dev sets, final-epoch metrics; hyperparameters fixed per model family in "
             "`experiments/configs/repro_*.py` (and `paper.py`) before any run; no selection "
             "on dev.", "", _completeness(cells, tasks, seeds), "", "## Provenance", ""]
    lines += [f"- {provenance['runs']} runs; code versions (tkd_jax/, experiments/, "
              f"pyproject.toml trees): {len(provenance['code'])}"]
    for key, commits in provenance["code"].items():
        lines.append(f"  - {key}: {len(commits)} runs, commits "
                     f"{', '.join(sorted(set(c[:12] for c in commits)))}")
    lines += [f"- manifests marked +dirty: {provenance['dirty']}",
              f"- runs without dev predictions (no paired bootstrap for them): "
              f"{len(provenance.get('no_predictions', []))}",
              f"- runs whose predictions.json disagrees with final_metrics.json: "
              f"{len(provenance['mismatches'])}",
              f"- runs whose recorded command is not the driver's plan for their cell: "
              f"{len(provenance.get('off_plan', []))}",
              f"- distilled students whose teacher provenance does not check out: "
              f"{len(provenance.get('teacher', []))}",
              f"- total train time of the runs (train_seconds; compile, evaluation and "
              f"soft-label passes not counted): {provenance['train_hours']:.2f} hours; "
              f"wall-clock time of the driver's runs (every attempt, start-up included; a "
              f"lower bound: the drivers at the tables' commits recorded an attempt only when "
              f"it ended, so an attempt killed with its machine is not counted): "
              f"{provenance.get('wall_hours', 0.0):.2f} hours", ""]
    lines += ["## The paper's numbers beside ours", "",
              "Ours: accuracy and F1 in percent, mean ± sd [95% t interval, clipped to "
              "0-100] over seeds.", "",
              "| task | row | paper acc | ours acc | paper F1 | ours F1 |", "|---" * 6 + "|"]
    for task in tasks:
        if task in rows_lib.REGRESSION_TASKS:
            continue
        for name, paper in rows_lib.PAPER.items():
            runs = cells.get((task, name), [])
            lines.append(f"| {task} | {LABEL[name]} | {paper['accuracy']:.2f} | "
                         f"{cell_text(analysis.summarize(runs, 'accuracy'))} | "
                         f"{paper['f1']:.2f} | {cell_text(analysis.summarize(runs, 'f1'))} |")
    resamples = sorted({c.bootstrap.n_resamples for c in comps if c.bootstrap})
    lines += ["", "## Verdicts", "", __doc__.split("\n\n", 1)[1].strip(),
              f"Bootstrap resamples: {', '.join(map(str, resamples)) or 'none run'} "
              f"(seed {analysis.BOOTSTRAP_SEED}).", ""]
    lines += ["### (a) TKD-NLP reaches 98.32 accuracy / 97.14 F1", ""]
    for task in tasks:
        if task in rows_lib.REGRESSION_TASKS:
            lines.append(f"- {task}: not applicable (regression; no accuracy or F1)")
            continue
        lines.append(f"- {task}: accuracy {absolute_verdict(cells, task, 'accuracy', 98.32)}; "
                     f"F1 {absolute_verdict(cells, task, 'f1', 97.14)}")
    for claim, title in (("b", "TKD-NLP > CNN > LSTM > RNN"), ("c", "TKD-NLP > T-NLP > KD-NLP")):
        lines += ["", f"### ({claim}) {title}", ""]
        for task in tasks:
            overall, texts = chain_verdict(comps, task, CHAINS[claim])
            lines.append(f"- {task} ({rows_lib.claim_metric(task)}): {overall}")
            lines += [f"  - {t}" for t in texts]
    lines += ["", "### Other comparisons", "",
              "| task | A > B | metric | verdict | diff (points) [95% CI] | p (Holm) | "
              "bootstrap p (Holm) | over the planned seeds |", "|---" * 8 + "|"]
    for c in comps:
        if c.claim in CHAINS and (c.a, c.b) in _links(CHAINS[c.claim]):
            continue
        t = c.ttest
        diff = f"{pct(t.mean_diff)} [{pct(t.ci_low)}, {pct(t.ci_high)}]" if t else c.note
        bp = _p(c.p_boot_holm) if c.bootstrap else "—"
        lines.append(f"| {c.task} | {c.a} > {c.b} | {c.metric} | {c.verdict()} | {diff} | "
                     f"{_p(c.p_t_holm)} | {bp} | {_planned_cell(c)} |")
    turned = [c for c in comps if c.turns_on_extra_seeds()]
    lines += ["", "### Verdicts that turn on seeds beyond the plan", "",
              "Not counted as findings (see the rule above):", ""]
    lines += [f"- {c.task} ({c.metric}): {link_text(c)}" for c in turned] or ["- none"]
    folded = analysis.folded_trivials(cells, tasks)
    by_pair: dict[tuple[str, str], list[str]] = {}
    for task, row, twin in folded:
        by_pair.setdefault((row, twin), []).append(task)
    for (row, twin), where in by_pair.items():
        lines += ["", f"On {', '.join(where)}, `{row}` answers every dev example as `{twin}` "
                  f"does, so comparisons with it are tested once, as `{twin}` (not twice in "
                  "the Holm family)."]
    lines += ["", "## Runs that answer one class on every dev example", "",
              "Such a run has learnt the class prior, not the task: its accuracy is a constant "
              "baseline's, and its cell's mean counts it as one of the seeds. Trained rows of "
              "the classification tasks, from each run's predictions.json "
              "(`experiments/tables/collapse.py`):", ""]
    lines += collapse.lines(collapse.constant_runs(cells, tasks)) or ["- none"]
    lines += ["", "## Did each row fit its training set", "",
              "A row at chance on dev has either learnt nothing (training loss flat, near "
              "the best constant answer's) or fit its training set without generalising "
              "(training loss well below its dev loss). Hard-label training loss "
              "(cross-entropy; MSE on STS-B; dropout on) of the first and the last logged "
              "window, and the dev loss of the last evaluation (of the same kind), means "
              "over the row's runs, from each run's metrics.jsonl; and the dev loss of "
              "answering every example with the dev labels' class frequencies (their "
              "entropy), on STS-B with their mean (their variance) "
              "(`experiments/tables/fit.py`):", ""]
    lines += fit.lines(fit.row_fits(cells, tasks), cells)
    lines += ["", "## What the student costs", "", *cost_lines(cells, tasks, latency),
              "", "## Missing cells", ""]
    missing = missing_cells(cells, tasks, seeds)
    lines += [f"- {m}" for m in missing] or ["- none"]
    if extra := stand_ins(cells, tasks, seeds):
        lines += ["", "## Seeds beyond the plan", "",
                  "A student learns from its own seed's teacher checkpoint, which is not "
                  "committed, and a teacher re-made on another kind of CPU is not the committed "
                  "one (results/README.md). Where a planned seed's teacher ran on a machine no "
                  "longer at hand, its students run at a new seed with a new teacher instead "
                  "(`python -m experiments.reproduce ... --only_seeds`); every table and test "
                  "uses every seed a row has, and comparisons pair the seeds both rows have; "
                  "each verdict is also given over the planned seeds, stand-ins and their "
                  "partners included (Verdicts).",
                  ""] + [f"- {m}" for m in extra]
    for key, title in (("no_predictions", "Runs without predictions.json"),
                       ("mismatches", "Predictions that disagree with final metrics"),
                       ("off_plan", "Runs not made by the driver's plan"),
                       ("teacher", "Students whose teacher provenance does not check out")):
        if provenance.get(key):
            lines += ["", f"## {title}", ""] + [f"- {m}" for m in provenance[key]]
    return "\n".join(lines) + "\n"
