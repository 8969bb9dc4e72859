"""Run a named plan of experiments one after another and collect the results.

    python -m experiments.reproduce --plan sst2_baselines [--runs_dir runs] [--results_dir results]
    python -m experiments.reproduce --plan mrpc_tkd --only teacher,tkd

Each entry is one `python -m experiments.glue` command (printed, and run in a subprocess so a
crash of one run does not lose the others). Runs resume when re-run. After each run its
final_metrics.json, manifest.json and command land in results/<plan>/<entry>/, and
results/<plan>/README.md is regenerated as a table. Checkpoints stay in runs/ (not committed).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shlex
import subprocess
import sys
import time

_SST2_SUBSET = ["--config.max_train_examples=16000"]
# MRPC student: minilm_l3 (3 layers at the teacher's width) for 3 epochs, started from the
# fine-tuned teacher's embeddings, layers 0, 2, 4, pooler and classifier.
_MRPC_HEAD = ["--config.model=minilm_l3", "--config.num_epochs=3",
              "--config.init_from_teacher_layers=0,2,4", "--config.init_teacher_source=run",
              "--config.init_teacher_head=true", "--teacher_run", "{runs}/teacher"]
_MRPC_T2 = ["--config.learning_rate=1e-4", "--config.distill.temperature=2",
            "--config.distill.t2_scaling=true", "--config.distill.alpha=0.9"]
_MRPC_AUG = ["--config.preprocess.augment=delete,swap", "--config.preprocess.augment_copies=3"]
_MRPC_REP = ["--config.preprocess.augment=replace", "--config.preprocess.augment_copies=3"]


def _sst2_tkd(epochs: int, extra: tuple[str, ...] | list[str] = ()):
    """SST-2 teacher, minilm_l3 students (tkd, transformer) from its layers, BiLSTM kd."""
    student = ["--config.model=minilm_l3", f"--config.num_epochs={epochs}",
               "--config.init_from_teacher_layers=0,2,4", "--config.init_teacher_source=run",
               "--config.learning_rate=5e-5", "--teacher_run", "{runs}/teacher", *extra]
    return [("teacher", "sst2", "teacher", [f"--config.num_epochs={epochs}", *extra]),
            ("tkd", "sst2", "tkd", student),
            ("transformer", "sst2", "transformer", student),
            ("kd", "sst2", "kd", ["--config.num_epochs=3", "--teacher_run", "{runs}/teacher",
                                  *extra])]


# entry: (name, task, recipe, extra args). "{runs}" expands to the plan's runs directory.
PLANS: dict[str, list[tuple[str, str, str, list[str]]]] = {
    # Issue: SST-2 baselines within 3 epochs (paper Table II families).
    "sst2_baselines": [
        ("lstm", "sst2", "lstm", ["--config.num_epochs=3"]),
        ("cnn", "sst2", "cnn", ["--config.num_epochs=3"]),
        ("transformer_small", "sst2", "transformer", ["--config.num_epochs=3"]),
    ],
    # TKD-NLP on MRPC: fine-tuned MiniLM teacher, a 3-layer student initialised from teacher
    # layers 0,2,4 trained with (tkd) and without (transformer = T-NLP) distillation.
    "mrpc_tkd": [
        ("teacher", "mrpc", "teacher", ["--config.num_epochs=3"]),
        ("tkd", "mrpc", "tkd", ["--config.model=minilm_l3", "--config.num_epochs=3",
                                "--config.init_from_teacher_layers=0,2,4",
                                "--config.learning_rate=5e-5", "--teacher_run",
                                "{runs}/teacher"]),
        ("transformer", "mrpc", "transformer", ["--config.model=minilm_l3",
                                                "--config.num_epochs=3",
                                                "--config.init_from_teacher_layers=0,2,4",
                                                "--config.learning_rate=5e-5"]),
        # The same two students initialised from the *fine-tuned* teacher's layers 0, 2, 4.
        ("tkd_ft_init", "mrpc", "tkd", ["--config.model=minilm_l3", "--config.num_epochs=3",
                                        "--config.init_from_teacher_layers=0,2,4",
                                        "--config.init_teacher_source=run",
                                        "--config.learning_rate=5e-5", "--teacher_run",
                                        "{runs}/teacher"]),
        # Stronger distillation signal: T = 2 with the T^2 factor, alpha = 0.9, lr 1e-4.
        ("tkd_ft_init_t2", "mrpc", "tkd", [
            "--config.model=minilm_l3", "--config.num_epochs=3",
            "--config.init_from_teacher_layers=0,2,4", "--config.init_teacher_source=run",
            "--config.learning_rate=1e-4", "--config.distill.temperature=2",
            "--config.distill.t2_scaling=true", "--config.distill.alpha=0.9",
            "--teacher_run", "{runs}/teacher"]),
        ("transformer_ft_init", "mrpc", "transformer", [
            "--config.model=minilm_l3", "--config.num_epochs=3",
            "--config.init_from_teacher_layers=0,2,4", "--config.init_teacher_source=run",
            "--config.learning_rate=5e-5", "--teacher_run", "{runs}/teacher"]),
        # The student also starts from the fine-tuned teacher's pooler and classifier.
        ("tkd_head", "mrpc", "tkd", [*_MRPC_HEAD, *_MRPC_T2]),
        ("tkd_head_135", "mrpc", "tkd", [*_MRPC_HEAD, *_MRPC_T2,
                                         "--config.init_from_teacher_layers=1,3,5"]),
        # + intermediate-layer distillation (online teacher): hidden states and attention maps.
        ("tkd_head_feat", "mrpc", "tkd", [*_MRPC_HEAD, *_MRPC_T2,
                                          "--config.distill.soft_labels=online",
                                          "--config.distill.feature_weight=1.0",
                                          "--config.distill.attention_weight=1.0",
                                          "--config.distill.attention_kind=kl"]),
        # + 3 augmented copies of every training pair (word deletion and swaps); the teacher
        # labels each augmented view. The T-NLP twin sees the same data with hard labels only.
        ("tkd_head_aug", "mrpc", "tkd", [*_MRPC_HEAD, *_MRPC_T2, *_MRPC_AUG]),
        ("transformer_head_aug", "mrpc", "transformer", [*_MRPC_HEAD, *_MRPC_AUG,
                                                         "--config.learning_rate=1e-4"]),
        # TinyBERT-style augmentation: words replaced by neighbours in the teacher's
        # word-embedding space (p = 0.3 per word), 3 copies.
        ("tkd_head_rep", "mrpc", "tkd", [*_MRPC_HEAD, *_MRPC_T2, *_MRPC_REP]),
        ("transformer_head", "mrpc", "transformer", [*_MRPC_HEAD,
                                                     "--config.learning_rate=1e-4"]),
    ],
    # TKD-NLP on SST-2, full training set: the teacher and the Transformer students train for
    # 2 epochs, the BiLSTM student (kd) for 3; dev is complete. The plain LSTM beside `kd` is
    # sst2_baselines' `lstm` (the same command).
    "sst2_tkd": _sst2_tkd(epochs=2),
    # The same study on a subset (an earlier, cheaper run): the teacher and every student see
    # the first 16,000 training examples (of 67,349) for one epoch (BiLSTMs: 3).
    "sst2_tkd_subset": [*_sst2_tkd(epochs=1, extra=_SST2_SUBSET),
                        ("lstm", "sst2", "lstm", ["--config.num_epochs=3", *_SST2_SUBSET])],
}

# What each plan's table is about (placed under its heading in results/<plan>/README.md).
DESCRIPTIONS: dict[str, str] = {
    "sst2_baselines": "Paper Table II families on SST-2: LSTM, CNN and a small Transformer "
                      "trained from scratch on the full training set for 3 epochs.",
    "mrpc_tkd": (
        "TKD-NLP on MRPC, 3 epochs each. `teacher` is all-MiniLM-L6-v2 fine-tuned; every "
        "student is minilm_l3 (3 layers at the teacher's width, initialised from teacher "
        "layers 0, 2, 4 and its embeddings). `tkd*` rows distil (eq 9), `transformer*` rows are "
        "their no-distillation twins (T-NLP). Suffixes: `ft_init` = layers taken from the "
        "fine-tuned teacher run (not the pretrained checkpoint); `head` = also its pooler and "
        "classifier; `t2` = T 2 with the T^2 factor, alpha 0.9, lr 1e-4 (all `tkd_head*` rows); "
        "`135` = layers 1, 3, 5; `feat` = + hidden-state MSE and attention KL (online teacher); "
        "`aug` = + 3 word-deletion/swap copies of every pair; `rep` = + 3 copies with words "
        "replaced by teacher-embedding neighbours. The teacher labels every augmented view. "
        "The headline student recipe (`tkd_head_aug`) was chosen on dev F1 among these rows."),
    "sst2_tkd": "TKD-NLP on SST-2, full training set: teacher and minilm_l3 students 2 epochs "
                "(students initialised from the fine-tuned teacher's layers 0, 2, 4), the "
                "BiLSTM `kd` student 3 epochs. Its plain-LSTM counterpart (same data, same "
                "3 epochs, no teacher) is `lstm` in results/sst2_baselines.",
    "sst2_tkd_subset": "The SST-2 study on the first 16,000 training examples, 1 epoch "
                       "(BiLSTMs 3); an earlier, cheaper run kept for comparison.",
}

METRIC_COLUMNS = ("accuracy", "f1", "mcc", "pearson", "spearman", "glue_score")


def _command(task, recipe, workdir, extra, runs_dir, seed):
    extra = [a.replace("{runs}", str(runs_dir)) for a in extra]
    return [sys.executable, "-m", "experiments.glue", "--task", task, "--recipe", recipe,
            "--workdir", str(workdir), "--seed", str(seed), *extra]


def write_table(plan: str, results: pathlib.Path, invocation: str = "") -> None:
    """results/<plan>/README.md: the plan's description, a metrics table, every command."""
    invocation = invocation or f"python -m experiments.reproduce --plan {plan}"
    rows = []
    for d in sorted(p for p in results.iterdir() if (p / "final_metrics.json").exists()):
        f = json.loads((d / "final_metrics.json").read_text())
        cmd = (d / "command.txt").read_text().strip()
        rows.append((d.name, f, cmd))
    lines = [f"# {plan}", "", *([DESCRIPTIONS[plan], ""] if plan in DESCRIPTIONS else []),
             f"Produced by `{invocation}` on CPU; each row's exact command is below the "
             "table.", "",
             "| run | task | recipe | " + " | ".join(METRIC_COLUMNS) +
             " | params | train s | examples/s |",
             "|---" * (6 + len(METRIC_COLUMNS)) + "|"]
    for name, f, _ in rows:
        m = f["metrics"]
        vals = [f"{m[k]:.4f}" if k in m else "" for k in METRIC_COLUMNS]
        lines.append(f"| {name} | {f['task']} | {f['recipe']} | " + " | ".join(vals) +
                     f" | {f['num_params']:,} | {f['train_seconds']:.0f} | "
                     f"{f['train_examples_per_second']:.1f} |")
    lines += ["", "Commands:", ""] + [f"- {name}: `{cmd}`" for name, _, cmd in rows]
    (results / "README.md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--plan", required=True, choices=sorted(PLANS))
    p.add_argument("--runs_dir", default="runs")
    p.add_argument("--results_dir", default="results")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", default="", help="comma-separated entry names")
    args = p.parse_args(argv)
    runs_dir = pathlib.Path(args.runs_dir) / args.plan
    results = pathlib.Path(args.results_dir) / args.plan
    only = {x for x in args.only.split(",") if x}
    invocation = shlex.join(["python", "-m", "experiments.reproduce", "--plan", args.plan] + [
        f"--{k}={v}" for k, v, default in (("runs_dir", args.runs_dir, "runs"),
                                           ("results_dir", args.results_dir, "results"),
                                           ("seed", args.seed, 0)) if v != default])
    failed = 0
    for name, task, recipe, extra in PLANS[args.plan]:
        if only and name not in only:
            continue
        workdir = runs_dir / name
        cmd = _command(task, recipe, workdir, extra, runs_dir, args.seed)
        shown = shlex.join(["python"] + cmd[1:])
        print(f"[{time.strftime('%H:%M:%S')}] {shown}", flush=True)
        proc = subprocess.run(cmd, env=os.environ)
        if proc.returncode != 0:
            print(f"  failed with exit code {proc.returncode}", flush=True)
            failed += 1
            continue
        out = results / name
        out.mkdir(parents=True, exist_ok=True)
        for f in ("final_metrics.json", "manifest.json"):
            (out / f).write_text((workdir / f).read_text())
        if runs_dir.is_absolute():  # keep machine paths out of committed results
            shown = shown.replace(str(runs_dir), f"runs/{args.plan}")
        (out / "command.txt").write_text(shown + "\n")
        write_table(args.plan, results, invocation)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
