"""Re-run one cell from its manifest into a scratch directory and print what differs.

    python -m experiments.verify results/runs/mrpc/tkd/seed0 [--scratch DIR] [--keep]
        [--fail_fast]

The command is the manifest's "argv" (the `experiments.glue` arguments, paths as given, so run
this from the directory the driver ran in: the repository root) with `--workdir` pointed at the
scratch directory; a trivial baseline is recomputed from the dev labels. final_metrics.json is
compared key by key, timing keys excluded, predictions.json example by example, and
metrics.jsonl record by record (the first record that differs is named). Exit 0 when everything
is identical, 1 otherwise (a failed re-run included); a run directory without a readable
manifest is a user error (exit 2). `--fail_fast` watches the re-run's metrics.jsonl and stops
it at the first logged record that differs from the recorded one: a training curve that has
left the recorded one does not come back to bit-identity, so on the wrong machine the answer
comes after the first logged step instead of after the whole run. Bitwise equality is expected
on the same CPU type, core count and package versions; the manifest's git commit is printed
beside the current one, and a note when the recorded CPU or core count differs from this one.
When the re-run is not identical but every prediction is, the report ends with the largest
relative difference in the final metrics, which tells float drift from a different result.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys
import tempfile

from experiments import cli
from tkd_jax.errors import CheckpointError

TIMING_KEYS = ("train_seconds", "train_examples_per_second", "compile",
               "examples_per_second")  # the last: metrics.jsonl's train records
RECORDS = "metrics.jsonl"


def rerun_argv(manifest: dict, workdir: str) -> list[str]:
    """The manifest's experiments.glue arguments with --workdir replaced."""
    argv = manifest.get("argv")
    if argv is None:  # manifests written before the engine recorded "argv"
        argv = list(manifest.get("command", [])[1:])
    argv = list(argv)
    if not argv:
        raise CheckpointError("manifest.json: no \"argv\" (or \"command\") to re-run")
    if "--workdir" in argv:
        argv[argv.index("--workdir") + 1] = workdir
    else:
        argv += ["--workdir", workdir]
    return argv


def differences(recorded, rerun, path: str = "") -> list[str]:
    """Every key path where two JSON values differ (exact equality; timing keys skipped)."""
    if isinstance(recorded, dict) and isinstance(rerun, dict):
        out = []
        for key in sorted(set(recorded) | set(rerun)):
            if key in TIMING_KEYS and not path:
                continue
            where = f"{path}.{key}" if path else key
            if key not in rerun:
                out.append(f"{where}: only in the recorded run")
            elif key not in recorded:
                out.append(f"{where}: only in the re-run")
            else:
                out += differences(recorded[key], rerun[key], where)
        return out
    if isinstance(recorded, list) and isinstance(rerun, list) and len(recorded) == len(rerun):
        if all(not isinstance(x, dict | list) for x in recorded + rerun):
            bad = [i for i, (x, y) in enumerate(zip(recorded, rerun, strict=True)) if x != y]
            return [f"{path}: {len(bad)} of {len(recorded)} entries differ (first at "
                    f"{bad[0]}: {recorded[bad[0]]!r} vs {rerun[bad[0]]!r})"] if bad else []
        return [d for i, (x, y) in enumerate(zip(recorded, rerun, strict=True))
                for d in differences(x, y, f"{path}[{i}]")]
    return [] if recorded == rerun else [f"{path}: {recorded!r} recorded, {rerun!r} re-run"]


def largest_drift(recorded, rerun, path: str = "") -> tuple[float, str] | None:
    """The largest relative difference between numbers at the same key path (timing keys
    skipped), with its path; None when no two numbers differ. Tells float drift (a loss off in
    the 6th digit) from a different result when a re-run is not bit-identical."""
    if isinstance(recorded, dict) and isinstance(rerun, dict):
        found = [largest_drift(recorded[k], rerun[k], f"{path}.{k}" if path else k)
                 for k in sorted(set(recorded) & set(rerun))
                 if not (k in TIMING_KEYS and not path)]
    elif isinstance(recorded, list) and isinstance(rerun, list):
        found = [largest_drift(x, y, f"{path}[{i}]")
                 for i, (x, y) in enumerate(zip(recorded, rerun, strict=False))]
    elif (isinstance(recorded, int | float) and isinstance(rerun, int | float)
          and not isinstance(recorded, bool) and recorded != rerun):
        return abs(recorded - rerun) / max(abs(recorded), abs(rerun)), path
    else:
        return None
    found = [f for f in found if f is not None]
    return max(found) if found else None


def read_records(path: pathlib.Path, *, writing: bool = False) -> list[dict]:
    """metrics.jsonl's records in the order written; of a run still `writing`, only the lines
    it has ended (it may be half-way through the last). Not ``tkd_jax.viz.read_metrics``: that
    one sorts by kind and step, and wants a finished file."""
    try:
        lines = path.read_text().split("\n")
    except FileNotFoundError:
        return []
    records = []
    for number, line in enumerate(lines[:-1] if writing else lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            raise CheckpointError(f"{path}: line {number} is not a JSON record") from None
    return records


def first_divergence(recorded: list[dict], rerun: list[dict], *,
                     finished: bool = False) -> str | None:
    """The first re-run record, in the order written, that differs from the recorded record of
    the same kind and step (timing keys excluded), as one line; None when none does. With
    `finished` (the re-run has ended) a recorded record the re-run did not write differs too.

    The re-run starts afresh; the recorded run may have been stopped and resumed. Stopped by
    SIGTERM it logged the steps since its last record at the stop (a step off the logging
    schedule), and, resumed, its next train record averages only the steps after the stop, so
    that one record is not compared. (Killed, it resumed from its last checkpoint, a logging
    step, and rewrote every later record: comparable.) Eval records always are.
    """
    at = {(r.get("kind"), r.get("step")): r for r in recorded}
    written = {r.get("step") for r in rerun}
    off_schedule = sorted({r.get("step") for r in recorded} - written)
    previous = 0
    for rec in rerun:
        step, kind = rec.get("step"), rec.get("kind")
        old = at.get((kind, step))
        if old is None:
            return f"step {step}: {kind} record only in the re-run"
        resumed = kind == "train" and any(previous < s < step for s in off_schedule)
        if not resumed and (diffs := differences(old, rec)):
            drift = largest_drift(old, rec)  # float drift (another CPU) or another run?
            size = f" (at most {drift[0]:.1e} relative, {drift[1]})" if drift else ""
            return f"step {step}, {kind} record: {diffs[0]}{size}"
        previous = step
    if finished:  # a missing train record inside the re-run's steps is a stop's extra record
        keys = {(r.get("kind"), r.get("step")) for r in rerun}
        for kind, step in at:
            if (kind, step) not in keys and (kind != "train" or step > previous):
                return f"step {step}: {kind} record only in the recorded run"
    return None


def run_watched(command: list[str], recorded: list[dict], records: pathlib.Path,
                poll: float = 2.0) -> tuple[int | None, str | None]:
    """Run `command`, reading the `records` file it writes every `poll` seconds, and kill it at
    the first record that differs from `recorded`. Returns (exit code or None when killed,
    the divergence or None). Killed, not stopped with SIGTERM: a stopped run would save a
    checkpoint that nobody reads (the re-run's directory is scratch)."""
    proc = subprocess.Popen(command)
    try:
        while True:
            try:
                code = proc.wait(timeout=poll)
            except subprocess.TimeoutExpired:
                code = None
            found = first_divergence(recorded, read_records(records, writing=code is None))
            if found is not None:
                return code, found
            if code is not None:
                return code, None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _read(path: pathlib.Path):
    return json.loads(path.read_text()) if path.exists() else None


def _head() -> str:
    from tkd_jax.train import reporting

    return str(reporting.git_commit())


def other_cpu(manifest: dict) -> str | None:
    """The recorded CPU ("model (flags)") when the manifest names one other than this host's
    for a CPU run; None when it is the same or not recorded."""
    from tkd_jax import hardware

    devices = manifest.get("devices") or {}
    cpu, flags = devices.get("cpu"), devices.get("cpu_flags")
    if devices.get("backend") != "cpu" or cpu is None:
        return None
    if (cpu, flags) == (hardware.cpu_model(), hardware.isa_flags()):
        return None
    return f"{cpu} ({' '.join(flags or [])})"


def machine_notes(manifest: dict) -> list[str]:
    """Warning lines when the run was made on another CPU type or core count than we have now.

    XLA:CPU compiles other kernels for another instruction set (AVX-512/AMX vs AVX2 changed
    the 7th digit of a dev loss here) and sums in another order on another core count. Older
    manifests lack these fields: then only the core count (or nothing) can be checked.
    """
    from tkd_jax import hardware

    devices = manifest.get("devices") or {}
    if devices.get("backend") != "cpu":
        return []
    notes = []
    here = f"{hardware.cpu_model()} ({' '.join(hardware.isa_flags())})"
    if devices.get("cpu") is None:
        notes.append(f"note: the manifest does not record its CPU (re-run on "
                     f"{hardware.cpu_model()}); a re-run is bit-identical only on the CPU type "
                     "that made it")
    elif (recorded_cpu := other_cpu(manifest)) is not None:
        notes.append(f"note: recorded on {recorded_cpu}, re-run on {here}: XLA:CPU compiles "
                     "other kernels for another CPU, so the last digits may differ")
    recorded, now = devices.get("cpu_cores"), hardware.cpu_cores()
    if recorded is not None and recorded != now:
        notes.append(f"note: recorded on {recorded} CPU cores, re-run on {now}: XLA:CPU sums "
                     "in another order on another core count, so the last digits may differ")
    return notes


def verify(run_dir, scratch, *, fail_fast: bool = False) -> tuple[int, list[str]]:
    """(exit code, report lines) for one run directory re-run into `scratch`; with `fail_fast`
    the re-run is stopped at its first logged record that differs from the recorded run's."""
    run_dir, scratch = pathlib.Path(run_dir), pathlib.Path(scratch)
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{run_dir / 'manifest.json'}: cannot read the run's manifest "
                              f"({type(e).__name__})") from None
    recorded_records = read_records(run_dir / RECORDS)  # read once: watched and compared
    lines = [f"recorded at commit {manifest.get('git_commit')}; now at {_head()}"]
    lines += machine_notes(manifest)
    if manifest.get("computed_by") == "experiments.tables.trivial":
        from experiments.tables import trivial

        trivial.write_run(manifest["task"], manifest["recipe"], scratch)
        lines.append(f"recomputed {manifest['recipe']} on {manifest['task']}")
    else:
        argv = rerun_argv(manifest, str(scratch))
        lines.append("re-run: " + " ".join(["python", "-m", "experiments.glue", *argv]))
        command = [sys.executable, "-m", "experiments.glue", *argv]
        if fail_fast:
            code, diverged = run_watched(command, recorded_records, scratch / RECORDS)
            if diverged is not None and code is None:
                return 1, [*lines, f"{RECORDS}: {diverged}",
                           "stopped the re-run there (--fail_fast)"]
        else:
            code = subprocess.run(command).returncode
        if code != 0:
            return 1, [*lines, f"the re-run failed with exit code {code}"]
    diffs, found = [], {}
    for name in ("final_metrics.json", "predictions.json"):
        recorded, rerun = _read(run_dir / name), _read(scratch / name)
        if recorded is None and rerun is None:
            continue
        if recorded is None or rerun is None:
            diffs.append(f"{name}: only in the {'re-run' if recorded is None else 'recorded run'}")
            continue
        found[name] = (differences(recorded, rerun), recorded, rerun)
        diffs += [f"{name}: {d}" for d in found[name][0]]
    if (run_dir / RECORDS).exists():
        diverged = first_divergence(recorded_records, read_records(scratch / RECORDS),
                                    finished=True)
        if diverged is not None:
            diffs.append(f"{RECORDS}: {diverged}")
    if diffs:
        lines += [f"{len(diffs)} difference(s):", *diffs]
        preds, metrics = found.get("predictions.json"), found.get("final_metrics.json")
        if preds is not None and not preds[0] and metrics is not None and metrics[0]:
            drift = largest_drift(metrics[1], metrics[2])
            if drift is not None:
                lines.append(f"every prediction is identical; the final metrics differ by at "
                             f"most {drift[0]:.1e} relative ({drift[1]})")
        return 1, lines
    return 0, [*lines, "identical (final metrics and logged records without timing keys, and "
                       "every prediction)"]


def main(argv: list[str]) -> int:
    p = cli.make_parser(__doc__.splitlines()[0])
    p.add_argument("run_dir", help="a finished run directory (results/runs/TASK/ROW/seedS)")
    p.add_argument("--scratch", help="where to re-run (default: a new temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    p.add_argument("--fail_fast", action="store_true",
                   help="stop the re-run at its first logged record that differs")
    args = p.parse_args(argv)
    base = pathlib.Path(args.scratch or tempfile.mkdtemp(prefix="tkd_verify_"))
    scratch = base / "run"
    if scratch.exists():
        raise CheckpointError(f"--scratch {base}: already holds a run/ directory; a re-run "
                              "there would resume instead of starting afresh")
    try:
        code, lines = verify(args.run_dir, scratch, fail_fast=args.fail_fast)
    finally:
        if not args.keep:
            shutil.rmtree(scratch if args.scratch else base, ignore_errors=True)
    print("\n".join(lines))
    return code


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
