"""Checks that every number in the tables comes from a clean run the driver planned.

* code versions: manifests' git commits grouped by the code they ran (the tkd_jax/,
  experiments/ and pyproject.toml trees), so commits that only add results count as one;
* off-plan runs: the manifest's argv differs from the command the driver plans for the cell
  (a run made by hand, or by an older plan);
* teacher provenance: a distilled student must name the same seed's teacher run, that run's
  config fingerprint and its final step (students learn from the final checkpoint), and the
  sha256 of the teacher weights -- the same for every student of that teacher.
"""

from __future__ import annotations

import pathlib
import subprocess

from experiments.tables import rows as rows_lib


def recorded_argv(manifest: dict | None) -> list[str] | None:
    """The experiments.glue arguments a manifest records (older manifests: "command")."""
    if not manifest:
        return None
    if manifest.get("argv") is not None:
        return list(manifest["argv"])
    command = manifest.get("command")
    return list(command[1:]) if command else None


def code_versions(cells, root) -> dict[str, list[str]]:
    """Manifest git commits grouped by code identity; "+dirty"/unknown commits stand alone."""
    groups: dict[str, list[str]] = {}
    keys: dict[str, str] = {}
    for runs in cells.values():
        for r in runs:
            commit = (r.manifest or {}).get("git_commit") or "unknown"
            if commit not in keys:
                keys[commit] = commit
                if not commit.endswith("+dirty") and commit != "unknown":
                    res = subprocess.run(
                        ["git", "rev-parse", f"{commit}:tkd_jax", f"{commit}:experiments",
                         f"{commit}:pyproject.toml"], cwd=root, capture_output=True, text=True)
                    if res.returncode == 0:
                        keys[commit] = "code " + res.stdout.replace("\n", " ").strip()
            groups.setdefault(keys[commit], []).append(commit)
    return groups


def _recorded_runs_dir(argv: list[str]) -> pathlib.PurePath | None:
    """The runs directory the driver ran the cell under: its --workdir minus task/row/seedN.

    The driver records paths as it was given them ("results/runs/..." from the repository
    root), while the tables may read a copy elsewhere; the plan is compared on the recorded
    directory so that only the command, not where the runs were read from, is checked."""
    try:
        return pathlib.PurePath(argv[argv.index("--workdir") + 1]).parent.parent.parent
    except (ValueError, IndexError):
        return None


def off_plan(cells) -> list[str]:
    """Runs whose recorded command is not the driver's command for their cell."""
    from experiments import reproduce

    out = []
    for (task, name), runs in cells.items():
        row = rows_lib.ROW_BY_NAME.get(name)
        if row is None:
            out.append(f"{task}/{name}: not a row of the tables")
            continue
        if row.recipe is None:
            continue
        for r in runs:
            argv = recorded_argv(r.manifest)
            if argv is None:
                out.append(f"{r.path}: the manifest records no command")
                continue
            recorded_dir = _recorded_runs_dir(argv)
            planned = {c.seed: list(c.argv) for c in reproduce.plan(
                [task], [row], r.seed + 1, runs_dir=recorded_dir)} if recorded_dir else {}
            if argv != planned.get(r.seed):
                out.append(f"{r.path}: recorded command differs from the plan's")
    return out


def teacher_problems(cells) -> list[str]:
    """Distilled students whose teacher provenance does not match their teacher cell."""
    out, weights = [], {}
    for (task, name), runs in cells.items():
        row = rows_lib.ROW_BY_NAME.get(name)
        if row is None or row.recipe not in ("tkd", "kd"):
            continue
        teachers = {t.seed: t for t in cells.get((task, "teacher"), [])}
        for r in runs:
            got = (r.manifest or {}).get("teacher") or {}
            t = teachers.get(r.seed)
            if not got.get("params_sha256"):
                out.append(f"{r.path}: no sha256 of the teacher weights in the manifest")
            else:
                weights.setdefault((task, r.seed), set()).add(got["params_sha256"])
            if t is None:
                out.append(f"{r.path}: teacher seed {r.seed} has no finished run")
                continue
            run_dir = pathlib.PurePath(str(got.get("run_dir", "")))
            if run_dir.parts[-3:] != (task, "teacher", f"seed{r.seed}"):
                out.append(f"{r.path}: learnt from {got.get('run_dir')!r}, not its teacher cell")
            if got.get("config_fingerprint") != (t.manifest or {}).get("config_fingerprint"):
                out.append(f"{r.path}: teacher config fingerprint differs from the teacher run's")
            if got.get("step") != t.final.get("steps"):
                out.append(f"{r.path}: teacher step {got.get('step')} is not the teacher's "
                           f"final step {t.final.get('steps')}")
    for (task, seed), shas in sorted(weights.items()):
        if len(shas) > 1:
            out.append(f"{task} seed {seed}: students record {len(shas)} different teacher "
                       "weights")
    return out
