"""Helpers for end-to-end tests: run the CLI in a subprocess on a small slice of real GLUE."""

import contextlib
import io
import json
import os
import pathlib
import re
import subprocess
import sys

from experiments.verify import TIMING_KEYS  # keys that vary run to run

REPO = pathlib.Path(__file__).resolve().parents[1]

# A small, fast configuration on real RTE data (64 train / 48 dev examples).
SMALL = [
    "--config.model=tiny", "--config.max_len=64", "--config.batch_size=16",
    "--config.eval_batch_size=16", "--config.max_train_examples=64",
    "--config.max_eval_examples=48", "--config.progress_bar=false",
    "--config.learning_rate=1e-3",
]


def run_cli(args, *, env=None, timeout=600, module="experiments.glue"):
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("JAX_PLATFORMS", "cpu")
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO,
                          env=full_env, capture_output=True, text=True, timeout=timeout)


def run_python(code: str, *, env=None, timeout=900):
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("JAX_PLATFORMS", "cpu")
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def final_metrics(workdir) -> dict:
    out = json.loads((pathlib.Path(workdir) / "final_metrics.json").read_text())
    for k in TIMING_KEYS:
        out.pop(k, None)
    return out


def records(workdir, kind="train") -> list[dict]:
    lines = (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def readme_snippet_output(marker: str) -> str:
    """What the README's first ```python block containing ``marker`` prints, run as written."""
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"),
                        re.S)
    snippet = next(b for b in blocks if marker in b)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(snippet, "README.md", "exec"), {})
    return out.getvalue()
