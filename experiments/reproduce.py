"""Reproduce the paper's Tables II and III: plan, run, resume and count every (task, row, seed).

    GLUE_DIR=/path/to/glue python -m experiments.reproduce --table 2|3|all
        [--tasks cola,sst2,...] [--seeds 5 | --only_seeds 5,6,7] [--rows tkd,tnlp,...]
        [--status] [--dry_run]

Each cell is one `python -m experiments.glue` command run in a subprocess with its workdir
`results/runs/<task>/<row>/seed<S>` (trivial baselines are computed from the dev labels in
process). Finished cells (final_metrics.json and predictions.json present) are skipped; an
interrupted one is run again with the same command, which resumes from its checkpoint, so the
driver can be stopped (Ctrl-C, SIGTERM: the running cell checkpoints first) and restarted at
any time, also in a new checkout: a finished teacher whose checkpoint is not there (only the
evidence files are committed) is re-run from its manifest before its students, and used only
if the re-run is identical (``restore_teacher``). Students of seed S wait for the teacher of
seed S. The driver refuses to start from a working tree with uncommitted changes (new,
untracked run outputs under the runs directory aside), so every manifest records a clean
commit; it commits nothing itself. `--only_seeds 5,6,7` plans just those seeds, with the
commands `--seeds 8` would give them: stand-ins for planned seeds whose teacher ran on a
machine no longer at hand (the report and `--status` count them in place of the missing
ones).

`--status` prints done / left / estimated hours (median train_seconds of the finished runs
of the same row, else of the same row family, on any task and seed, scaled by the task's
cost; times the pace of the last finished runs against earlier runs of their rows, when the
machine or its load has changed; students of a teacher made on another kind of CPU, which
cannot be re-made here, are counted apart). Tables and the report:
`python -m experiments.tables`.

Replaces the old `--plan NAME` mode: those results stay under results/<plan>/ as produced by
older code (results/README.md).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import os
import pathlib
import shlex
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

from experiments import cli
from experiments.tables import rows as rows_lib
from experiments.tables import trivial
from tkd_jax.errors import ConfigError

RUNS_DIR = "results/runs"
# Training examples per task (GLUE train splits): scales a row family's measured time.
TRAIN_SIZES = {"cola": 8551, "sst2": 67349, "mrpc": 3668, "stsb": 5749, "rte": 2490,
               "wnli": 635, "qnli": 104743, "qqp": 363846, "mnli": 392702}


def finished(workdir: pathlib.Path) -> bool:
    # the engine writes predictions.json after final_metrics.json: a cell stopped between
    # the two is re-run, which resumes at its last step and writes both
    return all((workdir / f).exists() for f in ("final_metrics.json", "predictions.json"))


@dataclasses.dataclass(frozen=True)
class Cell:
    task: str
    row: rows_lib.Row
    seed: int
    workdir: pathlib.Path
    argv: tuple[str, ...]  # experiments.glue arguments; () for a computed (trivial) row
    teacher: pathlib.Path | None  # the teacher cell this one waits for

    @property
    def done(self) -> bool:
        return finished(self.workdir)

    @property
    def started(self) -> bool:
        return self.workdir.exists() and not self.done

    def shown(self) -> str:
        if not self.argv:
            return f"(computed) {self.task} {self.row.name} -> {self.workdir}"
        return shlex.join(["python", "-m", "experiments.glue", *self.argv])


def _flag(key: str, value) -> str:
    value = str(value).lower() if isinstance(value, bool) else value
    return f"--config.{key}={value}"


def plan(tasks, rows, seeds: int, *, runs_dir=RUNS_DIR, overrides=()) -> list[Cell]:
    """Every cell, seed-major (all tasks' seed 0 first), the teacher first within a seed."""
    runs_dir = pathlib.Path(runs_dir)
    cells = []
    for seed in range(seeds):
        for task in tasks:
            for row in rows:
                if not row.applies_to(task) or (not row.seeded and seed > 0):
                    continue
                workdir = runs_dir / task / row.name / f"seed{seed}"
                if row.recipe is None:
                    cells.append(Cell(task, row, seed, workdir, (), None))
                    continue
                per_task = getattr(cli.load_config_module(row.config), "PER_TASK", {})
                argv = ["--task", task, "--recipe", row.recipe, "--workdir", str(workdir),
                        "--seed", str(seed), "--config", row.config,
                        *(_flag(k, v) for k, v in per_task.get(task, {}).items()),
                        *row.args, *(f"--config.{o}" for o in overrides)]
                teacher = None
                if row.teacher:
                    teacher = runs_dir / task / "teacher" / f"seed{seed}"
                    argv += ["--teacher_run", str(teacher)]
                cells.append(Cell(task, row, seed, workdir, tuple(argv), teacher))
    return cells


def _train_seconds(cell: Cell) -> float | None:
    try:
        return float(json.loads((cell.workdir / "final_metrics.json").read_text())
                     ["train_seconds"])
    except (OSError, KeyError, ValueError, TypeError):
        return None


def estimate_seconds(cells: list[Cell], measured: list[Cell] | None = None,
                     pace: dict[str, float] | None = None) -> tuple[float, int]:
    """(estimated seconds of the cells left, how many of them have no measurement to go by).

    ``measured``: the cells whose finished runs the estimate goes by (default ``cells``; the
    driver passes every row's cells, so that ``--rows`` narrows what is counted, not what is
    known).

    A left cell takes the median train_seconds of finished cells of its (task, row); else of
    its (task, row family); else of its row family on other tasks, scaled by how much longer
    its task takes than theirs on the rows finished on both (median ratio; training-set size
    when they share none: sentence length makes e.g. CoLA's 8551 examples cheaper than RTE's
    2490 pairs, which the size alone would get wrong by a factor of four). ``pace``: a factor
    per row family that the estimate is multiplied by (``recent_pace``).
    """
    done = [(c, s) for c in (cells if measured is None else measured)
            if c.done and (s := _train_seconds(c)) is not None]
    by_cell: dict[tuple[str, str], list[float]] = {}
    for d, s in done:
        by_cell.setdefault((d.task, d.row.name), []).append(s)
    med = {k: float(np.median(v)) for k, v in by_cell.items()}

    @functools.cache
    def task_ratio(a: str, b: str) -> float:
        shared = [med[a, r] / med[b, r] for (t, r) in med if t == b and (a, r) in med
                  and med[b, r] > 0]
        if shared:
            return float(np.median(shared))
        return TRAIN_SIZES.get(a, 1) / TRAIN_SIZES.get(b, 1)

    def median(pairs):
        return float(np.median([s for _, s in pairs])) if pairs else None

    total, unknown = 0.0, 0
    for c in cells:
        if c.done or c.row.recipe is None:
            continue
        same_row = med.get((c.task, c.row.name))
        same_family = median([(d, s) for d, s in done if d.task == c.task
                              and d.row.family == c.row.family])
        scaled = [(d, s * task_ratio(c.task, d.task))
                  for d, s in done if d.row.family == c.row.family]
        est = next((x for x in (same_row, same_family, median(scaled)) if x is not None), None)
        if est is None:
            unknown += 1
        else:
            total += est * (pace or {}).get(c.row.family, 1.0)
    return total, unknown


def _started_unix(cell: Cell) -> float | None:
    try:
        return float(json.loads((cell.workdir / "manifest.json").read_text())["created_unix"])
    except (OSError, KeyError, ValueError, TypeError):
        return None


def recent_pace(cells: list[Cell], last: int = 6) -> dict[str, tuple[float, int]]:
    """Per row family: (how much slower runs go now than the earlier runs, how many say so).

    A table spread over days may move between machines (or share one with other work), so
    the pooled medians can be off by a factor, and not the same factor for every family (a
    CPU without bf16 instructions slows the bf16 Transformers more than the fp32 baselines).
    For each of a family's ``last`` finished runs (by their manifest's start time; at most
    half of its runs): its train_seconds over the median of the earlier finished runs of its
    (task, row); the family's pace is the median of those ratios. Families with no such pair
    are left out.
    """
    done = sorted(((t, c, s) for c in cells if c.done
                   and (s := _train_seconds(c)) is not None
                   and (t := _started_unix(c)) is not None), key=lambda x: x[0])
    pace = {}
    for family in dict.fromkeys(c.row.family for _, c, _ in done):
        runs = [(c, s) for _, c, s in done if c.row.family == family]
        k = min(last, len(runs) // 2)  # keep earlier runs to compare with
        recent, earlier = runs[len(runs) - k:], runs[:len(runs) - k]
        ratios = []
        for c, s in recent:
            peers = [e for d, e in earlier if (d.task, d.row.name) == (c.task, c.row.name)]
            if peers and np.median(peers) > 0:
                ratios.append(s / float(np.median(peers)))
        if ratios:
            pace[family] = (float(np.median(ratios)), len(ratios))
    return pace


def blocked_here(cells: list[Cell]) -> dict[pathlib.Path, str]:
    """The cells left that cannot run on this machine: workdir -> the CPU their teacher was
    made on.

    A finished teacher without its checkpoint (a new checkout) is re-made before its
    students, which works only on the kind of CPU that made it (``restore_teacher``); its
    students are skipped elsewhere. Counting them as work left would promise hours this
    machine cannot spend. Manifests name their CPU since dbbf81d; of an older teacher
    nothing can be told, and its students count as runnable.
    """
    from experiments import verify

    @functools.cache
    def made_on(teacher: pathlib.Path) -> str | None:
        if not (teacher / "final_metrics.json").exists() or has_checkpoint(teacher):
            return None
        try:
            return verify.other_cpu(json.loads((teacher / "manifest.json").read_text()))
        except (OSError, ValueError):
            return None  # restore_teacher re-runs it and verify reports the manifest

    return {c.workdir: cpu for c in cells
            if not c.done and c.teacher is not None and (cpu := made_on(c.teacher))}


def stood_in(cells: list[Cell],
             blocked: dict[pathlib.Path, str] | None = None) -> set[pathlib.Path]:
    """The planned cells left that finished runs at seeds beyond the plan stand in for.

    A planned seed whose teacher ran on a machine no longer at hand is made up for by a run
    at a new seed (``--only_seeds``); the report counts such a run in place of a missing
    planned seed of its (task, row) (experiments/tables/reproduction.py), and so does the
    status, so that both give the same count and no hours are promised for those cells. The
    cells stood in for: blocked ones first (``blocked``, default ``blocked_here(cells)``), then
    the highest seeds.
    """
    out: set[pathlib.Path] = set()
    blocked = blocked_here(cells) if blocked is None else blocked
    for key in dict.fromkeys((c.task, c.row.name) for c in cells):
        group = [c for c in cells if (c.task, c.row.name) == key]
        if not group[0].row.seeded:
            continue
        planned = {c.seed for c in group}
        row_dir = group[0].workdir.parent
        beyond = [d for d in row_dir.glob("seed*") if d.name[4:].isdigit()
                  and int(d.name[4:]) > max(planned) and finished(d)]
        left = sorted((c for c in group if not c.done),
                      key=lambda c: (c.workdir not in blocked, -c.seed))
        out.update(c.workdir for c in left[:len(beyond)])
    return out


def status(cells: list[Cell], measured: list[Cell] | None = None,
           paced: list[Cell] | None = None,
           blocked: dict[pathlib.Path, str] | None = None,
           filled: set[pathlib.Path] = frozenset()) -> str:
    """Per-row done / left and the totals. ``measured``: the cells the estimate goes by;
    ``paced``: the cells whose latest runs say how fast the machine goes now (default
    ``measured``; the driver passes every task's, as one task's last runs may be old).
    Cells blocked on this CPU (``blocked``, default ``blocked_here(cells)``) are counted as
    left but not estimated; cells that runs beyond the plan stand in for (``filled``,
    ``stood_in``) count as done. The train hours "so far" are those of every finished run of
    these (task, row) pairs in ``measured``: the runs beyond the plan too."""
    blocked = blocked_here(cells) if blocked is None else blocked
    blocked = {k: v for k, v in blocked.items() if k not in filled}
    lines = [f"{'task':<6} {'row':<13} done  left  (interrupted)"
             + ("  [blocked here]" if blocked else "")
             + ("  +stand-ins beyond the plan" if filled else "")]
    keys = dict.fromkeys((c.task, c.row.name) for c in cells)  # ordered, a set
    for task, name in keys:
        group = [c for c in cells if (c.task, c.row.name) == (task, name)]
        stand = sum(c.workdir in filled for c in group)
        done = sum(c.done for c in group) + stand
        started = sum(c.started and c.workdir not in filled for c in group)
        stuck = sum(c.workdir in blocked for c in group)
        lines.append(f"{task:<6} {name:<13} {done:>4}  {len(group) - done:>4}"
                     + (f"  ({started})" if started else "")
                     + (f"  [{stuck}]" if stuck else "")
                     + (f"  +{stand}" if stand else ""))
    done = sum(c.done or c.workdir in filled for c in cells)
    pace = recent_pace(paced or measured or cells)
    runnable = [c for c in cells if c.workdir not in blocked and c.workdir not in filled]
    seconds, unknown = estimate_seconds(runnable, measured,
                                        {f: p for f, (p, _) in pace.items()})
    # every finished run of these rows that is known, seeds beyond the plan included (the
    # report's total counts them too), not only the planned cells'
    pool = [c for c in (measured or cells) if (c.task, c.row.name) in keys]
    hours = sum(s for c in pool if c.done and (s := _train_seconds(c)) is not None) / 3600
    lines.append(f"total: {done} done"
                 + (f" ({len(filled)} by runs at seeds beyond the plan)" if filled else "")
                 + f", {len(cells) - done} left"
                 + (f" ({len(blocked)} blocked here)" if blocked else "")
                 + f"; measured {hours:.2f} train hours so far; "
                 f"estimated {seconds / 3600:.2f} hours left"
                 + (" for the others" if blocked else "")
                 + (f" + {unknown} cells with no measurement of their row family yet"
                    if unknown else ""))
    for cpu, n in collections.Counter(blocked.values()).items():
        lines.append(f"  blocked here: {n} student cell{'s' * (n > 1)} of teachers made on "
                     f"{cpu}; only that kind of CPU can re-make their checkpoints")
    changed = {f: (p, n) for f, (p, n) in pace.items() if abs(p - 1.0) > 0.1}
    if changed:  # the machine (or its load) changed: say what the estimate was scaled by
        pooled = estimate_seconds(runnable, measured)[0]
        lines.append("  at the pace of the last finished runs against earlier runs of their "
                     "rows: " + ", ".join(f"{f} {p:.2f}x ({n} run{'s' * (n > 1)})"
                                          for f, (p, n) in changed.items())
                     + f"; {pooled / 3600:.2f} hours at the earlier pace")
    return "\n".join(lines)


def repo_root() -> pathlib.Path:
    return pathlib.Path(__file__).resolve().parents[1]


def uncommitted(root: pathlib.Path, runs_dir: pathlib.Path) -> list[str]:
    """`git status --porcelain` lines other than untracked run outputs under runs_dir.

    Modified tracked files anywhere (results included) count: the engine would stamp the next
    manifest "+dirty".
    """
    out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=root,
                         capture_output=True, text=True, check=True).stdout
    runs = pathlib.Path(os.path.relpath(runs_dir.resolve(), root.resolve())).as_posix()
    return [line for line in out.splitlines() if line.strip() and not (
        line.startswith("?? ") and not runs.startswith("..")
        and (line[3:].strip('"') + "/").startswith(runs.rstrip("/") + "/"))]


class _Runner:
    """Runs one cell's subprocess; SIGTERM to the driver is passed on so the cell checkpoints."""

    def __init__(self):
        self.proc = None
        self.stopping = False

    def handle_sigterm(self, signum, frame):
        self.stopping = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def run(self, argv, heartbeat=None) -> int:
        """The child's exit code; ``heartbeat()`` is called every HEARTBEAT_SECONDS."""
        self.proc = subprocess.Popen([sys.executable, "-m", "experiments.glue", *argv])
        try:
            while True:
                try:
                    return self.proc.wait(timeout=HEARTBEAT_SECONDS)
                except subprocess.TimeoutExpired:
                    if heartbeat is not None:
                        heartbeat()
        except KeyboardInterrupt:  # the child got SIGINT too (same process group)
            self.stopping = True
            return self.proc.wait()
        finally:
            self.proc = None


def has_checkpoint(workdir: pathlib.Path) -> bool:
    ckpts = workdir / "checkpoints"
    return ckpts.is_dir() and any(p.name.isdigit() for p in ckpts.iterdir())


def restore_teacher(workdir: pathlib.Path) -> tuple[bool, list[str]]:
    """Give a finished teacher cell back its checkpoint, which is never committed.

    In a new checkout a teacher cell is done (its evidence files are committed) but its
    students cannot learn from it: the checkpoint, the tokenizer and the other local files are
    gone. The cell is re-run from its manifest into a scratch directory with
    ``experiments.verify``; only if the re-run is identical (final metrics, logged records and
    every prediction) are the files the cell lacks moved in, so a student learns from exactly
    the teacher whose numbers are committed. The re-run stops at its first logged record that
    differs (``fail_fast``): a teacher made on another kind of CPU, whose manifest is too old to
    say so, costs minutes instead of its whole run. Returns (restored, verify's report).

    A teacher whose manifest names another CPU type is not re-run: XLA:CPU compiles other
    kernels there, the re-run would differ in the last digits, and the hours would be lost.
    """
    from experiments import verify

    try:
        manifest = json.loads((workdir / "manifest.json").read_text())
    except (OSError, ValueError):
        manifest = {}  # verify reports it
    if (made_on := verify.other_cpu(manifest)) is not None:
        return False, [f"made on {made_on}; a re-run on this CPU cannot be identical, so its "
                       "students can only be made on that kind of CPU"]
    scratch = workdir.parent / f".restore_{workdir.name}"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        code, lines = verify.verify(workdir, scratch, fail_fast=True)
        if code == 0:
            for item in scratch.iterdir():
                if not (workdir / item.name).exists():
                    shutil.move(str(item), str(workdir / item.name))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return code == 0, lines


DRIVER_FILE = "driver.json"  # wall-clock seconds of every attempt at the cell, summed
# How often a running attempt's wall time is written: an attempt killed with its machine (no
# signal reaches the driver) is still counted, short by at most this much.
HEARTBEAT_SECONDS = 60.0


class _WallClock:
    """One attempt's clock: each call writes ``driver.json`` = the record before this attempt
    plus this attempt so far (so a call replaces the previous one's share, never adds to it)."""

    def __init__(self, workdir: pathlib.Path):
        self.path = workdir / DRIVER_FILE
        self.prior = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.start = time.monotonic()

    def __call__(self) -> None:
        if not self.path.parent.is_dir():  # the run refused its arguments before making it
            return
        seconds = time.monotonic() - self.start
        record = {"wall_seconds": self.prior.get("wall_seconds", 0.0) + seconds,
                  "attempts": self.prior.get("attempts", 0) + 1}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.path)


def run_cells(cells: list[Cell], *, runner=None) -> int:
    """Run every cell left, in order; returns the number of cells that failed.

    Data come from $GLUE_DIR (else the hub) for the runs and the trivial baselines alike, so
    the recorded commands hold no machine paths.
    """
    runner = runner or _Runner()
    failed: set[pathlib.Path] = set()
    for c in cells:
        if runner.stopping:
            print("stopped; re-run the same command to continue", flush=True)
            break
        if c.done:
            continue
        if c.teacher is not None and not (c.teacher / "final_metrics.json").exists():
            print(f"skip {c.workdir}: its teacher {c.teacher} has not finished", flush=True)
            failed.add(c.workdir)
            continue
        if c.teacher is not None and c.teacher not in failed and not has_checkpoint(c.teacher):
            print(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] restore: {c.teacher} has no "
                  "checkpoint here; re-running it to check it and get one back", flush=True)
            restored, lines = restore_teacher(c.teacher)
            print("\n".join(f"  {line}" for line in lines), flush=True)
            if not restored:
                print("  not restored: its students are skipped", flush=True)
                failed.add(c.teacher)
        if c.teacher is not None and c.teacher in failed:
            print(f"skip {c.workdir}: its teacher {c.teacher} could not be restored", flush=True)
            failed.add(c.workdir)
            continue
        verb = "resume" if c.started else "start"
        print(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {verb}: {c.shown()}", flush=True)
        if c.row.recipe is None:
            trivial.write_run(c.task, c.row.name, c.workdir)
            continue
        wall = _WallClock(c.workdir)
        code = runner.run(c.argv, heartbeat=wall)
        wall()
        if code != 0 and not runner.stopping:
            print(f"  failed with exit code {code}: {c.workdir}", flush=True)
            failed.add(c.workdir)
    return len(failed)


def _seeds_on_disk(runs_dir: pathlib.Path) -> int:
    """One more than the largest seed with a workdir under ``runs_dir`` (0 if none)."""
    found = [int(d.name[4:]) for d in runs_dir.glob("*/*/seed*") if d.name[4:].isdigit()]
    return max(found, default=-1) + 1


def _seed_list(text: str) -> set[int]:
    seeds = [s.strip() for s in text.split(",") if s.strip()]
    if not all(s.isdigit() for s in seeds):
        raise ConfigError(f"--only_seeds {text}: expected comma-separated seeds >= 0")
    return {int(s) for s in seeds}


def _parse(argv):
    p = cli.make_parser(__doc__.splitlines()[0])
    p.add_argument("--table", required=True, choices=("2", "3", "all"))
    p.add_argument("--tasks", default=",".join(rows_lib.DEFAULT_TASKS),
                   help="comma-separated GLUE tasks (add mnli,qnli,qqp when you have them)")
    p.add_argument("--seeds", type=int, default=None,
                   help=f"seeds 0..N-1 of every cell (default {rows_lib.DEFAULT_SEEDS})")
    p.add_argument("--only_seeds", default="", metavar="S,S,...",
                   help="just these seeds, e.g. stand-ins beyond the plan for a row whose "
                   "planned seed's teacher ran on a machine no longer at hand (the cells "
                   "--seeds max(S)+1 plans for them)")
    p.add_argument("--rows", default="", help="comma-separated row names (default: all of "
                   "the table's rows)")
    p.add_argument("--status", action="store_true", help="print done / left / hours and exit")
    p.add_argument("--dry_run", action="store_true", help="print the commands left and exit")
    p.add_argument("--runs_dir", default=RUNS_DIR)
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="development only: add --config.KEY=VALUE to every run (needs a "
                   "--runs_dir other than the tables')")
    p.add_argument("--allow_dirty", action="store_true", help="development only: run from an "
                   "uncommitted tree (the manifests say +dirty; the report flags them)")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = _parse(argv)
    tasks = [t.strip().lower() for t in args.tasks.split(",") if t.strip()]
    from tkd_jax.data import get_task

    tasks = [get_task(t).name for t in tasks]  # ConfigError on an unknown task
    only = _seed_list(args.only_seeds)
    if only and args.seeds is not None:
        raise ConfigError("--seeds and --only_seeds: give one of them")
    seeds = max(only) + 1 if only else (
        rows_lib.DEFAULT_SEEDS if args.seeds is None else args.seeds)
    if seeds < 1:
        raise ConfigError(f"--seeds {seeds}: expected at least 1")
    rows = rows_lib.rows_for(args.table)
    if args.rows:
        wanted = [r.strip() for r in args.rows.split(",") if r.strip()]
        unknown = [r for r in wanted if r not in rows_lib.ROW_BY_NAME]
        if unknown:
            raise ConfigError(f"--rows {','.join(unknown)}: unknown row (expected some of "
                              f"{', '.join(rows_lib.ROW_BY_NAME)})")
        rows = tuple(r for r in rows_lib.ROWS if r.name in wanted)
    if args.override and pathlib.Path(args.runs_dir) == pathlib.Path(RUNS_DIR):
        raise ConfigError("--override: the table runs use the fixed configs; pass a "
                          "--runs_dir of your own for development runs")
    cells = plan(tasks, rows, seeds, runs_dir=args.runs_dir, overrides=args.override)
    if only:
        cells = [c for c in cells if c.seed in only]
    if args.status:
        # estimate and pace from every run there is: every task's, row's and seed's, so
        # that --tasks, --rows and --seeds narrow what is counted, not what is known
        known = plan(list(TRAIN_SIZES), rows_lib.ROWS,
                     max(seeds, _seeds_on_disk(pathlib.Path(args.runs_dir))),
                     runs_dir=args.runs_dir, overrides=args.override)
        # --only_seeds plans the stand-ins themselves: nothing beyond them to count
        blocked = blocked_here(cells)  # reads every teacher's manifest: once
        print(status(cells, known, blocked=blocked,
                     filled=set() if only else stood_in(cells, blocked)))
        return 0
    if args.dry_run:
        blocked = blocked_here(cells)
        filled = set() if only else stood_in(cells, blocked)
        for c in cells:  # what a run would do: it runs stood-in-for cells too, when it can
            if c.workdir in blocked:
                print(f"blocked here (teacher made on {blocked[c.workdir]}): {c.shown()}")
            elif not c.done:
                print(("resume: " if c.started else "") + c.shown())
        text = status(cells, blocked=blocked, filled=filled)
        print(text[text.index("\ntotal:") + 1:])  # the totals, without the per-row lines
        return 0
    dirty = uncommitted(repo_root(), pathlib.Path(args.runs_dir))
    if dirty and not args.allow_dirty:
        raise ConfigError(f"working tree: {len(dirty)} uncommitted change(s) (first: "
                          f"{dirty[0].strip()}); commit or stash them so every manifest "
                          "records a clean commit")
    runner = _Runner()
    previous = signal.signal(signal.SIGTERM, runner.handle_sigterm)
    try:
        failed = run_cells(cells, runner=runner)
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(status(cells))
    print("tables and report: python -m experiments.tables; commit results/ when you are done")
    if runner.stopping:
        return 143
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
