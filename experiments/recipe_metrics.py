"""Final metrics of one tiny run per recipe, recorded or checked against a record.

    python -m experiments.recipe_metrics --out results/recipe_metrics [--check]

Every recipe (teacher on a small random HF-format teacher, transformer, tkd with cached and
with online soft labels, kd, rnn, lstm, cnn, mlm) trains on a slice of real RTE (64 train /
48 dev examples) through the command line, in a fresh scratch directory. The record is
``final_metrics.json`` of each run without its timing keys, plus the logged training losses
(``train_loss``, from metrics.jsonl). With ``--check`` the runs are
compared with the record: exit 0 when every recipe's metrics are bitwise identical, 1 otherwise
(the differing recipes and keys are printed). This is how an engine change proves it left the
computation alone.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile

import jax
import numpy as np

from experiments import cli
from tkd_jax.models import Transformer, get_config
from tkd_jax.models.hf_export import save_hf_bert
from tkd_jax.models.teacher import resolve_teacher

SMALL = ["--config.max_len=64", "--config.batch_size=16", "--config.eval_batch_size=16",
         "--config.max_train_examples=64", "--config.max_eval_examples=48",
         "--config.progress_bar=false", "--config.learning_rate=1e-3", "--config.num_epochs=2"]
TINY = ["--config.model=tiny"]
TIMING_KEYS = ("train_seconds", "train_examples_per_second")

# name -> (recipe, extra arguments); "{teacher_run}" is the teacher run's workdir.
RUNS: dict[str, tuple[str, list[str]]] = {
    "teacher": ("teacher", []),
    "transformer": ("transformer", TINY),
    "tkd_cached": ("tkd", [*TINY, "--teacher_run", "{teacher_run}"]),
    "tkd_online": ("tkd", [*TINY, "--teacher_run", "{teacher_run}",
                           "--config.distill.soft_labels=online"]),
    "kd": ("kd", ["--teacher_run", "{teacher_run}"]),
    "rnn": ("rnn", []),
    "lstm": ("lstm", []),
    "cnn": ("cnn", []),
    "mlm": ("mlm", TINY),
}


def write_tiny_teacher(path: pathlib.Path) -> pathlib.Path:
    """A 2-layer, 16-wide random BERT with the real uncased vocabulary, as an HF directory."""
    config = get_config("tiny", num_labels=0, vocab_size=30522, hidden_size=16, num_heads=2,
                        intermediate_size=32, num_layers=2, max_len=128, position="learned",
                        activation="gelu", use_pooler=True)
    ids = np.zeros((1, 8), np.int32)
    params = Transformer(config).init(jax.random.PRNGKey(0), ids, np.ones_like(ids))["params"]
    return save_hf_bert(path, config, params, resolve_teacher(None) / "vocab.txt")


def run_all(root: pathlib.Path, data_dir: str) -> dict[str, dict]:
    teacher = write_tiny_teacher(root / "hf_teacher")
    common = ["--task", "rte", "--data_dir", data_dir, "--teacher", str(teacher), *SMALL]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    out = {}
    for name, (recipe, extra) in RUNS.items():
        workdir = root / name
        args = [a.format(teacher_run=root / "teacher") for a in extra]
        cmd = [sys.executable, "-m", "experiments.glue", *common, "--recipe", recipe,
               "--workdir", str(workdir), *args]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{name}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
        metrics = json.loads((workdir / "final_metrics.json").read_text())
        out[name] = {k: v for k, v in metrics.items() if k not in TIMING_KEYS}
        records = map(json.loads, (workdir / "metrics.jsonl").read_text().splitlines())
        out[name]["train_loss"] = [r["loss"] for r in records if r["kind"] == "train"]
        print(f"{name}: {json.dumps(out[name]['metrics'], sort_keys=True)}", flush=True)
    return out


def main(argv: list[str]) -> int:
    p = cli.make_parser(__doc__.splitlines()[0])
    p.add_argument("--out", default="results/recipe_metrics", help="record directory")
    p.add_argument("--check", action="store_true", help="compare with the record instead")
    p.add_argument("--data_dir", default=os.environ.get("GLUE_DIR"))
    args = p.parse_args(argv)
    if not args.data_dir:
        raise cli.ConfigError("--data_dir: not given and GLUE_DIR is unset")
    out = pathlib.Path(args.out)
    with tempfile.TemporaryDirectory() as tmp:
        got = run_all(pathlib.Path(tmp), args.data_dir)
    if not args.check:
        out.mkdir(parents=True, exist_ok=True)
        for name, metrics in got.items():
            (out / f"{name}.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        return 0
    differ = 0
    for name, metrics in got.items():
        want = json.loads((out / f"{name}.json").read_text())
        keys = sorted(k for k in set(want) | set(metrics) if want.get(k) != metrics.get(k))
        if keys:
            differ += 1
            print(f"DIFFERS {name}: {', '.join(keys)}")
    print("identical" if not differ else f"{differ} recipe(s) differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
