"""experiments.reproduce (the table driver) and experiments.tables (statistics, report)."""

import dataclasses
import json
import pathlib
import subprocess
import types

import numpy as np
import pytest
from scipy import stats as sps

from experiments import cli, glue, reproduce
from experiments.tables import analysis, plan, reproduction, trivial, write
from experiments.tables import rows as rows_lib
from tests.experiment_utils import SMALL, run_cli
from tkd_jax.config import RunConfig
from tkd_jax.errors import ConfigError

ALL_TASKS = rows_lib.DEFAULT_TASKS + rows_lib.OPTIONAL_TASKS


def test_every_planned_command_builds_its_config():
    cells = reproduce.plan(ALL_TASKS, rows_lib.ROWS, seeds=2, runs_dir="results/runs")
    for c in cells:
        if not c.argv:
            continue
        rest, overrides = cli.split_overrides(list(c.argv))
        args = dict(zip(rest[::2], rest[1::2], strict=True))
        assert (args["--task"], args["--recipe"], args["--seed"]) == (
            c.task, c.row.recipe, str(c.seed))
        assert args["--workdir"] == f"results/runs/{c.task}/{c.row.name}/seed{c.seed}"
        _, config = glue.parse(list(c.argv))  # raises on a bad key or value
        RunConfig.from_config_dict(config, num_devices=1)  # and on a contradiction
        for key, value in overrides:
            node = config
            for part in key.split("."):
                node = node[part]
            assert node == cli._coerce(key, node, value), (c.workdir, key)
        if c.row.teacher:  # a student learns from the same seed's teacher
            assert args["--teacher_run"] == f"results/runs/{c.task}/teacher/seed{c.seed}"
        else:
            assert "--teacher_run" not in args
        family = {"teacher": "pretrained", "student": "minilm_l3", "bilstm": "bilstm",
                  "paper": "paper"}
        if c.row.family in family:
            assert config.model == family[c.row.family], c.workdir
        if c.row.name in ("rnn", "lstm", "cnn"):
            assert config.model == c.row.name
        assert config.distill.enabled == (c.row.recipe in ("tkd", "kd"))


def test_plan_covers_the_issue_rows_and_pairs_seeds():
    cells = reproduce.plan(rows_lib.DEFAULT_TASKS, rows_lib.ROWS, seeds=5)
    count = lambda row: sum(c.row.name == row for c in cells)
    assert count("teacher") == count("tkd") == count("tnlp") == count("kd") == 6 * 5
    assert count("tkd_paper") == count("tnlp_paper") == 5 * 5  # not on SST-2
    assert count("majority") == 5 and count("positive") == 5  # no STS-B, one run each
    assert len(cells) == len({c.workdir for c in cells})
    order = [c.workdir for c in cells]
    for c in cells:  # teachers come before their students
        if c.teacher is not None:
            assert order.index(c.teacher) < order.index(c.workdir)
    sst2 = [c for c in cells if c.task == "sst2" and c.row.name == "teacher"]
    assert "--config.num_epochs=2" in sst2[0].argv
    table2 = {r.name for r in rows_lib.rows_for("2")}
    assert table2 == {"teacher", "tkd", "rnn", "lstm", "cnn", "tkd_paper", "majority",
                      "positive"}
    assert {"tnlp", "tkd_scratch", "tnlp_ft", "kd", "bilstm"} <= {
        r.name for r in rows_lib.rows_for("3")}


def _finish(cell, seconds):
    cell.workdir.mkdir(parents=True, exist_ok=True)
    (cell.workdir / "final_metrics.json").write_text(json.dumps({"train_seconds": seconds}))
    (cell.workdir / "predictions.json").write_text("{}")


def test_status_estimates_from_measured_times(tmp_path):
    rows = [rows_lib.ROW_BY_NAME[n] for n in ("teacher", "tkd", "tnlp")]
    cells = reproduce.plan(["mrpc", "rte"], rows, seeds=2, runs_dir=tmp_path)
    by = {(c.task, c.row.name, c.seed): c for c in cells}
    _finish(by["mrpc", "teacher", 0], 300.0)
    _finish(by["mrpc", "teacher", 1], 500.0)
    _finish(by["mrpc", "tkd", 0], 100.0)
    by["rte", "tkd", 0].workdir.mkdir(parents=True)  # interrupted
    (by["rte", "tkd", 0].workdir / "final_metrics.json").write_text("{}")  # no predictions yet
    seconds, unknown = reproduce.estimate_seconds(cells)
    # mrpc/tkd seed1: its row's median 100; mrpc/tnlp x2: the student family on mrpc, 100;
    # rte teacher x2: the teacher family scaled by train size, 400 * 2490 / 3668; rte
    # students x4: 100 * 2490 / 3668.
    expect = 100 + 2 * 100 + 2 * 400 * 2490 / 3668 + 4 * 100 * 2490 / 3668
    assert unknown == 0 and seconds == pytest.approx(expect)
    text = reproduce.status(cells)
    assert "mrpc   teacher          2     0" in text
    assert "rte    tkd              0     2  (1)" in text
    assert f"estimated {expect / 3600:.2f} hours left" in text.splitlines()[-1]


def test_status_scales_other_tasks_by_their_measured_relative_cost(tmp_path):
    rows = [rows_lib.ROW_BY_NAME[n] for n in ("teacher", "tkd", "cnn")]
    cells = reproduce.plan(["mrpc", "rte"], rows, seeds=1, runs_dir=tmp_path)
    by = {(c.task, c.row.name): c for c in cells}
    _finish(by["mrpc", "teacher"], 300.0)
    _finish(by["mrpc", "tkd"], 100.0)
    _finish(by["mrpc", "cnn"], 20.0)
    _finish(by["rte", "tkd"], 50.0)
    _finish(by["rte", "cnn"], 30.0)
    # rte/teacher: mrpc's teacher time x rte's measured cost relative to mrpc, the median of
    # 50/100 and 30/20 (1.0), not the training-set ratio 2490/3668
    seconds, unknown = reproduce.estimate_seconds(cells)
    assert unknown == 0 and seconds == pytest.approx(300.0 * 1.0)
    _finish(by["rte", "cnn"], 10.0)  # ratios 0.5 and 0.5
    assert reproduce.estimate_seconds(cells)[0] == pytest.approx(150.0)
    # counting only the teacher row still goes by every row's measurements
    teachers = [c for c in cells if c.row.name == "teacher"]
    assert reproduce.estimate_seconds(teachers, cells)[0] == pytest.approx(150.0)
    assert reproduce.estimate_seconds(teachers)[0] == pytest.approx(300.0 * 2490 / 3668)


def test_status_scales_by_the_recent_pace_of_each_row_family(tmp_path):
    rows = [rows_lib.ROW_BY_NAME[n] for n in ("teacher", "tkd", "cnn")]
    cells = reproduce.plan(["mrpc"], rows, seeds=4, runs_dir=tmp_path)
    by = {(c.row.name, c.seed): c for c in cells}

    def finish(name, seed, seconds, started):
        _finish(by[name, seed], seconds)
        (by[name, seed].workdir / "manifest.json").write_text(
            json.dumps({"created_unix": started}))

    # seeds 0 and 1 on a fast machine, then seed 2 on one where students take 3x and the
    # CNN 1.5x; the teacher's last run is seed 1, as fast as seed 0
    for seed, t0 in ((0, 0), (1, 100)):
        finish("teacher", seed, 300.0, t0)
        finish("tkd", seed, 100.0, t0 + 1)
        finish("cnn", seed, 20.0, t0 + 2)
    finish("tkd", 2, 300.0, 1000)
    finish("cnn", 2, 30.0, 1001)
    pace = reproduce.recent_pace(cells)  # the last half of each family's runs: one each
    assert pace == {"teacher": (1.0, 1), "student": (3.0, 1), "baseline": (1.5, 1)}
    # left: teacher seeds 2, 3 (300 each), tkd seed 3 (median 100 x 3), cnn seed 3 (20 x 1.5)
    paced = {f: p for f, (p, _) in pace.items()}
    assert reproduce.estimate_seconds(cells, pace=paced)[0] == pytest.approx(600 + 300 + 30)
    assert reproduce.estimate_seconds(cells)[0] == pytest.approx(600 + 100 + 20)
    text = reproduce.status(cells)
    assert "estimated 0.26 hours left" in text  # 930 s
    assert "student 3.00x (1 run)" in text and "teacher" not in text.splitlines()[-1]
    # the pace can come from other cells (every task's) than the ones estimated
    teachers = [c for c in cells if c.row.name == "teacher"]
    assert "student 3.00x" in reproduce.status(teachers, teachers, cells)
    assert "pace" not in reproduce.status(teachers, teachers)
    # without start times there is nothing to order by: no pace
    for c in cells:
        (c.workdir / "manifest.json").unlink(missing_ok=True)
    assert reproduce.recent_pace(cells) == {}


def _git(root, *args):
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def test_uncommitted_ignores_only_new_run_outputs(tmp_path):
    _git(tmp_path, "init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "table.md").write_text("old\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    runs = tmp_path / "results" / "runs"
    (runs / "rte" / "tkd" / "seed0").mkdir(parents=True)
    (runs / "rte" / "tkd" / "seed0" / "final_metrics.json").write_text("{}")
    assert reproduce.uncommitted(tmp_path, runs) == []
    (tmp_path / "results" / "table.md").write_text("edited\n")  # tracked: next run +dirty
    (tmp_path / "new.py").write_text("")
    assert reproduce.uncommitted(tmp_path, runs) == [" M results/table.md", "?? new.py"]


class _FakeRunner:
    stopping = False

    def __init__(self, fail=()):
        self.calls, self.fail = [], set(fail)

    def run(self, argv, heartbeat=None):
        self.calls.append(argv)
        workdir = argv[argv.index("--workdir") + 1]
        if workdir in self.fail:
            return 2
        heartbeat()  # before the engine made the workdir: nothing to write into yet
        _finish(reproduce.Cell("", rows_lib.ROWS[0], 0, pathlib.Path(workdir), (), None), 1.0)
        (pathlib.Path(workdir) / "checkpoints" / "7").mkdir(parents=True)  # as the engine
        return 0


def test_run_cells_skips_done_waits_for_teachers_and_counts_failures(tmp_path):
    rows = [rows_lib.ROW_BY_NAME[n] for n in ("teacher", "tkd", "cnn")]
    cells = reproduce.plan(["rte"], rows, seeds=2, runs_dir=tmp_path)
    by = {(c.row.name, c.seed): c for c in cells}
    _finish(by["cnn", 0], 5.0)
    runner = _FakeRunner(fail={str(by["teacher", 1].workdir)})
    failed = reproduce.run_cells(cells, runner=runner)
    ran = [a[a.index("--workdir") + 1] for a in runner.calls]
    assert ran == [str(by[k].workdir) for k in (("teacher", 0), ("tkd", 0), ("teacher", 1),
                                                ("cnn", 1))]
    assert failed == 2  # the failed teacher and its student, which never started
    assert not by["tkd", 1].workdir.exists()
    record = json.loads((by["teacher", 0].workdir / reproduce.DRIVER_FILE).read_text())
    assert record["attempts"] == 1 and record["wall_seconds"] >= 0
    assert not (by["cnn", 0].workdir / reproduce.DRIVER_FILE).exists()  # finished before
    runner = _FakeRunner()
    assert reproduce.run_cells(cells, runner=runner) == 0  # restart: only what is left
    assert [a[a.index("--workdir") + 1] for a in runner.calls] == [
        str(by["teacher", 1].workdir), str(by["tkd", 1].workdir)]


def test_an_attempt_killed_with_its_machine_keeps_its_wall_time(tmp_path, monkeypatch):
    # The session's end kills driver and child alike (no signal handler runs), so the record
    # must already be on disk while the attempt runs; the next attempt adds to it, once.
    cell = reproduce.plan(["rte"], [rows_lib.ROW_BY_NAME["cnn"]], seeds=1, runs_dir=tmp_path)[0]
    record = lambda: json.loads((cell.workdir / reproduce.DRIVER_FILE).read_text())  # noqa: E731
    monkeypatch.setattr(reproduce, "HEARTBEAT_SECONDS", 0.05)

    class Killed(Exception):
        pass

    popen, children = subprocess.Popen, []

    def killed_child(argv, **_):
        cell.workdir.mkdir(parents=True)
        children.append(popen(["sleep", "5"]))
        return children[-1]

    monkeypatch.setattr(reproduce.subprocess, "Popen", killed_child)

    def heartbeat_then_die():
        wall()
        if record()["wall_seconds"] > 0.2:
            raise Killed  # the machine goes away after this heartbeat

    runner, wall = reproduce._Runner(), reproduce._WallClock(cell.workdir)
    with pytest.raises(Killed):
        runner.run(cell.argv, heartbeat=heartbeat_then_die)
    children[0].kill()
    first = record()
    assert first["attempts"] == 1 and 0.2 < first["wall_seconds"] < 2.0

    class Finishes:
        stopping = False

        def run(self, argv, heartbeat=None):
            for _ in range(3):  # each heartbeat replaces this attempt's share, never adds
                heartbeat()
                assert record()["attempts"] == 2
                assert first["wall_seconds"] <= record()["wall_seconds"] < first["wall_seconds"] + 1
            _finish(cell, 1.0)
            return 0

    assert reproduce.run_cells([cell], runner=Finishes()) == 0
    second = record()
    assert second["attempts"] == 2
    assert first["wall_seconds"] <= second["wall_seconds"] < first["wall_seconds"] + 1.0


def test_a_finished_teacher_without_checkpoint_is_restored_only_if_identical(tmp_path,
                                                                          monkeypatch):
    """A new checkout has the teacher's committed files but no checkpoint: the driver re-runs
    it (experiments.verify) before its students and moves in only what the cell lacks."""
    from experiments import verify

    rows = [rows_lib.ROW_BY_NAME[n] for n in ("teacher", "tkd")]
    cells = reproduce.plan(["rte"], rows, seeds=2, runs_dir=tmp_path)
    by = {(c.row.name, c.seed): c for c in cells}
    for seed in (0, 1):
        _finish(by["teacher", seed], 3.0)
    committed = (by["teacher", 0].workdir / "final_metrics.json").read_text()
    verified = []

    def fake_verify(run_dir, scratch, fail_fast):  # the re-run leaves a whole run in scratch
        verified.append(pathlib.Path(run_dir))
        assert fail_fast  # a teacher that cannot be identical stops at its first record
        (scratch / "checkpoints" / "9").mkdir(parents=True)
        (scratch / "tokenizer.json").write_text("{}")
        (scratch / "final_metrics.json").write_text('{"rerun": true}')
        same = pathlib.Path(run_dir) == by["teacher", 0].workdir
        return (0, ["identical"]) if same else (1, ["1 difference(s):", "metrics.f1: ..."])

    monkeypatch.setattr(verify, "verify", fake_verify)
    runner = _FakeRunner()
    assert reproduce.run_cells(cells, runner=runner) == 2  # teacher 1 and its student
    assert verified == [by["teacher", 0].workdir, by["teacher", 1].workdir]
    restored = by["teacher", 0].workdir
    assert reproduce.has_checkpoint(restored) and (restored / "tokenizer.json").exists()
    assert (restored / "final_metrics.json").read_text() == committed  # never overwritten
    assert not reproduce.has_checkpoint(by["teacher", 1].workdir)  # differed: not used
    assert not list(tmp_path.rglob(".restore_*"))  # scratch directories are removed
    ran = [a[a.index("--workdir") + 1] for a in runner.calls]
    assert ran == [str(by["tkd", 0].workdir)]


def test_a_teacher_made_on_another_cpu_is_not_re_run(tmp_path, monkeypatch):
    """Its re-run could not be identical: the driver says so instead of spending its hours."""
    from experiments import verify
    from tkd_jax import hardware

    cell = reproduce.plan(["rte"], [rows_lib.ROW_BY_NAME["teacher"]], 1, runs_dir=tmp_path)[0]
    _finish(cell, 3.0)
    devices = {"backend": "cpu", "cpu": "Other CPU", "cpu_flags": ["avx2"], "cpu_cores": 2}
    (cell.workdir / "manifest.json").write_text(json.dumps({"devices": devices}))
    monkeypatch.setattr(verify, "verify", lambda *a: pytest.fail("re-ran the teacher"))
    restored, lines = reproduce.restore_teacher(cell.workdir)
    assert not restored and lines == [
        "made on Other CPU (avx2); a re-run on this CPU cannot be identical, so its students "
        "can only be made on that kind of CPU"]
    devices.update(cpu=hardware.cpu_model(), cpu_flags=hardware.isa_flags())  # this CPU: re-run
    (cell.workdir / "manifest.json").write_text(json.dumps({"devices": devices}))
    monkeypatch.setattr(verify, "verify", lambda run_dir, scratch, **kw: (1, ["1 difference(s):"]))
    assert reproduce.restore_teacher(cell.workdir) == (False, ["1 difference(s):"])


def test_status_counts_students_of_another_cpus_teachers_as_blocked(tmp_path, capsys):
    """They are left, but this machine cannot make them: no hours are promised for them."""
    from tkd_jax import hardware

    rows = [rows_lib.ROW_BY_NAME[n] for n in ("teacher", "tkd", "tnlp", "cnn")]
    cells = reproduce.plan(["mrpc"], rows, seeds=3, runs_dir=tmp_path)
    by = {(c.row.name, c.seed): c for c in cells}
    here = {"backend": "cpu", "cpu": hardware.cpu_model(), "cpu_flags": hardware.isa_flags()}
    other = {"backend": "cpu", "cpu": "Other CPU", "cpu_flags": ["avx2"]}
    # seed 0's teacher: another CPU, no checkpoint; seed 1's: this CPU (re-made here);
    # seed 2's: another CPU, but its checkpoint is still here
    for seed, devices in ((0, other), (1, here), (2, other)):
        _finish(by["teacher", seed], 300.0)
        (by["teacher", seed].workdir / "manifest.json").write_text(
            json.dumps({"devices": devices}))
    (by["teacher", 2].workdir / "checkpoints" / "345").mkdir(parents=True)
    _finish(by["tnlp", 0], 80.0)
    _finish(by["cnn", 0], 20.0)
    # only the distilled student of seed 0 needs that teacher; T-NLP and the CNN learn alone
    blocked = reproduce.blocked_here(cells)
    assert blocked == {by["tkd", 0].workdir: "Other CPU (avx2)"}
    text = reproduce.status(cells)
    assert "mrpc   tkd              0     3  [1]" in text
    assert "mrpc   tnlp             1     2\n" in text
    last = [line for line in text.splitlines() if line.startswith("total:")][0]
    # left and runnable: tkd 1, 2 and tnlp 1, 2 (the student family's 80 s), cnn 1, 2 (20 s)
    assert last.startswith("total: 5 done, 7 left (1 blocked here);")
    assert f"estimated {(4 * 80 + 2 * 20) / 3600:.2f} hours left for the others" in last
    assert reproduce.estimate_seconds(cells)[0] == pytest.approx(5 * 80 + 2 * 20)
    assert text.splitlines()[-1] == ("  blocked here: 1 student cell of teachers made on "
                                     "Other CPU (avx2); only that kind of CPU can re-make "
                                     "their checkpoints")
    assert reproduce.main(["--table", "all", "--tasks", "mrpc", "--rows", "teacher,tkd,tnlp,cnn",
                           "--seeds", "3", "--dry_run", "--runs_dir", str(tmp_path)]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert shown[0] == ("blocked here (teacher made on Other CPU (avx2)): "
                        + by["tkd", 0].shown())
    assert shown[1:7] == [by[n, s].shown() for s in (1, 2) for n in ("tkd", "tnlp", "cnn")]
    (by["tkd", 0].workdir / "checkpoints").mkdir(parents=True)  # started: still blocked
    assert list(reproduce.blocked_here(cells)) == [by["tkd", 0].workdir]
    _finish(by["tkd", 0], 90.0)  # made elsewhere and copied in: done, not blocked
    assert reproduce.blocked_here(cells) == {}
    assert "blocked" not in reproduce.status(cells)


def test_status_counts_runs_beyond_the_plan_in_place_of_missing_seeds(tmp_path, capsys):
    """As the report does: a finished stand-in seed fills a missing planned seed of its row,
    a blocked one first; an unfinished stand-in fills nothing."""
    from tkd_jax import hardware

    rows = [rows_lib.ROW_BY_NAME[n] for n in ("teacher", "tkd", "tnlp")]
    cells = reproduce.plan(["mrpc"], rows, seeds=3, runs_dir=tmp_path)
    by = {(c.row.name, c.seed): c for c in cells}
    later = {(c.row.name, c.seed): c for c in reproduce.plan(["mrpc"], rows, seeds=6,
                                                             runs_dir=tmp_path)}
    for seed in (0, 1, 2):
        _finish(by["teacher", seed], 300.0)
    (by["teacher", 0].workdir / "manifest.json").write_text(json.dumps(
        {"devices": {"backend": "cpu", "cpu": "Other CPU", "cpu_flags": ["avx2"]}}))
    (by["teacher", 1].workdir / "manifest.json").write_text(json.dumps(
        {"devices": {"backend": "cpu", "cpu": hardware.cpu_model(),
                     "cpu_flags": hardware.isa_flags()}}))
    _finish(by["tkd", 1], 100.0)
    _finish(by["tnlp", 1], 80.0)
    for name in ("teacher", "tkd"):
        _finish(later[name, 4], 100.0)  # stand-in seed 4 for tkd's blocked seed 0
    (later["tnlp", 5].workdir / "checkpoints").mkdir(parents=True)  # started, not finished
    assert reproduce.stood_in(cells) == {by["tkd", 0].workdir}
    text = reproduce.status(cells, filled=reproduce.stood_in(cells))
    assert "mrpc   tkd              2     1  +1" in text
    assert "mrpc   tnlp             1     2\n" in text
    assert "blocked" not in text  # the one blocked cell is stood in for
    last = [line for line in text.splitlines() if line.startswith("total:")][0]
    assert last.startswith("total: 6 done (1 by runs at seeds beyond the plan), 3 left;")
    assert f"estimated {(100 + 2 * 80) / 3600:.2f} hours left" in last
    assert reproduce.main(["--table", "all", "--tasks", "mrpc", "--rows", "teacher,tkd,tnlp",
                           "--seeds", "3", "--dry_run", "--runs_dir", str(tmp_path)]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert shown[0].startswith("blocked here")  # listed as before: the driver skips it here
    assert shown[1:-1] == [by[n, s].shown() for n, s in (("tnlp", 0), ("tkd", 2), ("tnlp", 2))]
    assert shown[-1] == last
    assert f"measured {(3 * 300 + 100 + 80) / 3600:.2f} train hours so far" in last
    assert reproduce.main(["--table", "all", "--tasks", "mrpc", "--rows", "teacher,tkd,tnlp",
                           "--seeds", "3", "--status", "--runs_dir", str(tmp_path)]) == 0
    # --status measures every run on disk: the stand-ins' hours (seed 4) count too
    assert f"measured {(3 * 300 + 100 + 80 + 2 * 100) / 3600:.2f} train hours so far" in (
        capsys.readouterr().out)
    _finish(later["tnlp", 5], 80.0)  # now it stands in for the highest missing seed
    assert reproduce.stood_in(cells) == {by["tkd", 0].workdir, by["tnlp", 2].workdir}


@pytest.mark.parametrize("argv, match", [
    (["--table", "4"], "invalid choice"),
    (["--table", "2", "--rows", "tkd,bert"], "--rows bert: unknown row"),
    (["--table", "2", "--tasks", "rte,imdb"], "unknown GLUE task 'imdb'"),
    (["--table", "2", "--override", "model=tiny"], "--override: the table runs"),
    (["--table", "2", "--seeds", "0"], "--seeds 0: expected at least 1"),
    (["--table", "2", "--seeds", "3", "--only_seeds", "5"], "--seeds and --only_seeds: give one"),
    (["--table", "2", "--only_seeds", "5,x"], "--only_seeds 5,x: expected comma-separated"),
])
def test_bad_arguments_are_config_errors(argv, match):
    with pytest.raises(ConfigError, match=match):
        reproduce.main(argv)


def test_only_seeds_plans_those_seeds_as_a_longer_plan_would(tmp_path, capsys):
    """Stand-in seeds: the same cells and commands as --seeds max+1, without the seeds below."""
    rows = [rows_lib.ROW_BY_NAME[n] for n in ("teacher", "tkd_paper", "tnlp_paper", "majority")]
    every = reproduce.plan(["wnli"], rows, seeds=8, runs_dir=tmp_path)
    wanted = [c for c in every if c.seed in (5, 7)]
    assert [(c.row.name, c.seed) for c in wanted] == [
        (n, s) for s in (5, 7) for n in ("teacher", "tkd_paper", "tnlp_paper")]
    assert reproduce.main(["--table", "all", "--tasks", "wnli", "--rows",
                           "teacher,tkd_paper,tnlp_paper,majority", "--only_seeds", "7,5",
                           "--dry_run", "--runs_dir", str(tmp_path)]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert shown[:-1] == [c.shown() for c in wanted]
    assert shown[-1].startswith("total: 0 done, 6 left;")
    assert wanted[-2].argv[-2:] == ("--teacher_run", str(tmp_path / "wnli/teacher/seed7"))


def test_status_estimates_from_runs_of_every_task_and_seed(tmp_path, capsys):
    """A row family measured only on WNLI's stand-in seeds estimates RTE's cells."""
    rows = [rows_lib.ROW_BY_NAME[n] for n in ("teacher", "tkd_paper", "tnlp_paper")]
    wnli = {c.row.name: c for c in reproduce.plan(["wnli"], rows, seeds=8, runs_dir=tmp_path)
            if c.seed == 7}
    for name, seconds in (("teacher", 60.0), ("tkd_paper", 600.0), ("tnlp_paper", 500.0)):
        _finish(wnli[name], seconds)
    assert reproduce.main(["--table", "all", "--tasks", "rte", "--rows",
                           "teacher,tkd_paper,tnlp_paper", "--only_seeds", "5,6", "--status",
                           "--runs_dir", str(tmp_path)]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    per_seed = (60.0 + 600.0 + 500.0) * reproduce.TRAIN_SIZES["rte"] / reproduce.TRAIN_SIZES["wnli"]
    assert last == (f"total: 0 done, 6 left; measured 0.00 train hours so far; "
                    f"estimated {2 * per_seed / 3600:.2f} hours left")


def test_refuses_a_dirty_tree(tmp_path, monkeypatch):
    monkeypatch.setattr(reproduce, "uncommitted", lambda root, runs: [" M tkd_jax/stats.py"])
    with pytest.raises(ConfigError, match=r"working tree: 1 uncommitted change\(s\) \(first: "
                       r"M tkd_jax/stats.py\)"):
        reproduce.main(["--table", "2", "--tasks", "rte", "--runs_dir", str(tmp_path)])
    assert not any(tmp_path.iterdir())


def test_trivial_baselines_on_a_three_class_stand_in(tmp_path):
    mnli = tmp_path / "MNLI"
    mnli.mkdir()
    labels = ["neutral", "entailment", "neutral", "contradiction", "neutral"]
    for name, labs in (("dev_matched", labels), ("dev_mismatched", labels[:3])):
        rows = ["index\tsentence1\tsentence2\tgold_label"] + [
            f"{i}\tA premise {i}.\tA hypothesis.\t{lab}" for i, lab in enumerate(labs)]
        (mnli / f"{name}.tsv").write_text("\n".join(rows) + "\n")
    run = tmp_path / "runs" / "mnli" / "majority" / "seed0"
    final = trivial.write_run("mnli", "majority", run, data_dir=tmp_path)
    assert final["split"] == "dev_matched" and final["metrics"]["accuracy"] == 0.6
    assert final["other_splits"]["dev_mismatched"]["accuracy"] == pytest.approx(2 / 3)
    preds = json.loads((run / "predictions.json").read_text())
    assert preds["dev_matched"]["prediction"] == [1] * 5  # neutral is class 1
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["class_name"] == "neutral" and "MNLI/dev_matched.tsv" in manifest[
        "data_files_sha256"]
    assert not rows_lib.ROW_BY_NAME["positive"].applies_to("mnli")


# ----------------------------------------------------------------------- tables and report

N_DEV = 200


def _fake_run(root, task, row, seed, pred, labels):
    d = root / task / row / f"seed{seed}"
    d.mkdir(parents=True)
    acc = float(np.mean(pred == labels))
    tp, fp, fn = [int(np.sum((pred == p) & (labels == t))) for p, t in ((1, 1), (1, 0), (0, 1))]
    metrics = {"accuracy": acc, "f1": 2 * tp / (2 * tp + fp + fn)}
    metrics["glue_score"] = (metrics["accuracy"] + metrics["f1"]) / 2
    (d / "final_metrics.json").write_text(json.dumps({
        "task": task, "split": "dev", "metrics": metrics, "num_params": 10,
        "train_seconds": 60.0}))
    (d / "predictions.json").write_text(json.dumps({"dev": {
        "index": list(range(N_DEV)), "prediction": pred.tolist(), "label": labels.tolist()}}))
    (d / "manifest.json").write_text(json.dumps({"git_commit": "0" * 40}))


@pytest.fixture(scope="module")
def fake_runs(tmp_path_factory):
    """MRPC-shaped runs, errors per seed s: tkd 2+s, cnn 40+2s, lstm 41+(3s mod 5) (no
    better than cnn), rnn 70+(s mod 2); tnlp and kd have 2 seeds only."""
    root = tmp_path_factory.mktemp("runs")
    labels = (np.arange(N_DEV) % 3 != 0).astype(int)
    errors = {"tkd": lambda s: 2 + s, "cnn": lambda s: 40 + 2 * s,
              "lstm": lambda s: 41 + 3 * s % 5, "rnn": lambda s: 70 + s % 2,
              "tnlp": lambda s: 30 + s, "kd": lambda s: 50 + s}
    for row, count in errors.items():
        for seed in range(2 if row in ("tnlp", "kd") else 5):
            pred = labels.copy()
            wrong = (np.arange(count(seed)) * 7 + seed) % N_DEV
            pred[wrong] = 1 - pred[wrong]
            _fake_run(root, "mrpc", row, seed, pred, labels)
    _fake_run(root, "mrpc", "positive", 0, np.ones(N_DEV, int), labels)
    return root


def test_cell_summary_and_table_text(fake_runs):
    cells = analysis.collect(fake_runs)
    acc = [c.metric("accuracy") for c in cells["mrpc", "cnn"]]
    assert acc == [1 - (40 + 2 * s) / N_DEV for s in range(5)]
    s = analysis.summarize(cells["mrpc", "cnn"], "accuracy")
    lo, hi = sps.t.interval(0.95, 4, loc=np.mean(acc), scale=sps.sem(acc))
    assert (s.ci_low, s.ci_high) == (pytest.approx(lo), pytest.approx(hi))
    text = write.table_markdown("2", cells, ["mrpc"])
    assert (f"| CNN | {write.cell_text(analysis.summarize(cells['mrpc', 'cnn'], 'glue_score'))}"
            f" | {write.cell_text(s)} |") in text
    assert "| CNN | " in text and " | 96.58 / 93.78 |" in text
    assert "| Always class 1 (constant) | " in text and "(n=1)" in text
    assert "| RNN | " in text and "| Teacher (all-MiniLM-L6-v2, fine-tuned) | — | — | — |" in text


def test_comparisons_and_verdicts(fake_runs):
    cells = analysis.collect(fake_runs)
    comps = analysis.comparisons(cells, ["mrpc"], n_resamples=2000)
    get = lambda a, b, m="accuracy": next(c for c in comps if (c.a, c.b, c.metric) == (a, b, m))
    tkd_cnn = get("tkd", "cnn")
    va = [r.metric("accuracy") for r in cells["mrpc", "tkd"]]
    vb = [r.metric("accuracy") for r in cells["mrpc", "cnn"]]
    assert tkd_cnn.ttest.p == pytest.approx(sps.ttest_rel(va, vb).pvalue)
    assert tkd_cnn.bootstrap.diff == pytest.approx(np.mean(va) - np.mean(vb))
    assert tkd_cnn.verdict() == "holds"
    assert get("cnn", "lstm").verdict() == "not supported"
    assert get("lstm", "rnn").verdict() == "holds"
    assert get("tkd", "tnlp").verdict() == "not supported"  # 2 seeds
    assert get("tkd", "kd").ttest.n == 2
    assert get("tkd", "positive").ttest.n == 5  # one-sample against the constant
    scratch = next(c for c in comps if c.a == "tkd_scratch")
    assert scratch.verdict() == "not supported" and "no runs of tkd_scratch" in scratch.note
    tested = [c for c in comps if c.metric == "accuracy" and c.ttest and c.ttest.p == c.ttest.p]
    adjusted = analysis.stats.holm([c.ttest.p for c in tested])
    assert [c.p_t_holm for c in tested] == pytest.approx(list(adjusted))
    md = reproduction.render(cells, ["mrpc"], comps, seeds=5, provenance={
        "runs": 28, "code": {"code x": ["0" * 40]}, "dirty": 0, "mismatches": [],
        "train_hours": 0.5})
    assert "- mrpc (accuracy): **not supported**" in md  # cnn > lstm is not shown
    assert "tkd > cnn: **holds**" in md
    assert "- mrpc: accuracy consistent: ours 98.00 [" in md  # 2-6 errors in 200
    done = sum(len(runs) for (task, _), runs in cells.items() if task == "mrpc")
    planned = sum(5 if r.seeded else 1 for r in rows_lib.ROWS if r.applies_to("mrpc"))
    assert reproduction.cell_counts(cells, ["mrpc"], 5) == (done, planned)
    assert f"**Partial**: {done} of {planned} planned cells (1 task, 5 seeds)" in md
    assert md.split("## Missing cells\n\n")[1].splitlines()[1:] == [
        "- mrpc: seeds 2, 3, 4 of tnlp, kd", "- mrpc: seed 0 of majority"]
    assert md.split("## Missing cells\n\n")[1].startswith(
        "- mrpc: seeds 0, 1, 2, 3, 4 of teacher, tkd_scratch, ")
    assert analysis.prediction_mismatches(cells) == []


def test_a_trivial_baseline_that_answers_as_another_is_tested_once(fake_runs, tmp_path):
    """MRPC's majority class is class 1: always-positive is the majority baseline, and
    testing both would put one hypothesis twice into the Holm family."""
    import shutil

    root = tmp_path / "runs"
    shutil.copytree(fake_runs, root)
    labels = (np.arange(N_DEV) % 3 != 0).astype(int)
    _fake_run(root, "mrpc", "majority", 0, np.ones(N_DEV, int), labels)
    cells = analysis.collect(root)
    assert analysis.folded_trivials(cells, ["mrpc"]) == [("mrpc", "positive", "majority")]
    comps = analysis.comparisons(cells, ["mrpc"], n_resamples=200)
    assert {c.b for c in comps if c.a == "tkd"} >= {"majority", "cnn"}
    assert not any(c.b == "positive" for c in comps)
    tested = [c for c in comps if c.metric == "accuracy" and c.ttest and c.ttest.p == c.ttest.p]
    assert [c.p_t_holm for c in tested] == pytest.approx(
        list(analysis.stats.holm([c.ttest.p for c in tested])))
    md = reproduction.render(cells, ["mrpc"], comps, seeds=5, provenance={
        "runs": 29, "code": {"code x": ["0" * 40]}, "dirty": 0, "mismatches": [],
        "train_hours": 0.5})
    assert ("On mrpc, `positive` answers every dev example as `majority` does, so comparisons "
            "with it are tested once, as `majority` (not twice in the Holm family).") in md
    (root / "mrpc" / "majority" / "seed0").rename(root / "mrpc" / "majority" / "x")
    _fake_run(root, "mrpc", "majority", 0, np.zeros(N_DEV, int), labels)  # another answer
    assert analysis.folded_trivials(analysis.collect(root), ["mrpc"]) == []


def test_tables_command_writes_every_file(fake_runs, tmp_path):
    from experiments.tables.__main__ import build

    written = build(fake_runs, tmp_path, ["mrpc"], seeds=5, n_resamples=200,
                    root=reproduce.repo_root())
    names = sorted(p.relative_to(tmp_path).as_posix() for p in written)
    assert names == ["REPRODUCTION.md", "tables/comparisons.csv", "tables/table2.csv",
                     "tables/table2.md", "tables/table2.png", "tables/table3.csv",
                     "tables/table3.md", "tables/table3.png"]
    rows = (tmp_path / "tables" / "table2.csv").read_text().splitlines()
    assert rows[0] == "task,row,label,metric,n,mean,sd,ci_low,ci_high,seeds,paper"
    assert any(r.startswith("mrpc,cnn,CNN,accuracy,5,") and r.endswith(",0 1 2 3 4,96.58")
               for r in rows)
    assert (tmp_path / "tables" / "table2.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_driver_runs_resumes_and_verify_reproduces_a_tiny_cell(glue_dir, tmp_path):
    """The command-line path end to end: a tiny T-NLP cell on an RTE slice and the majority
    baseline; a second start runs nothing; experiments.verify re-runs the cell exactly."""
    runs = tmp_path / "runs"
    args = ["--table", "3", "--tasks", "rte", "--seeds", "1", "--rows",
            "tnlp_scratch,majority", "--runs_dir", runs, "--allow_dirty",
            *(f"--override={a[len('--config.'):]}" for a in SMALL), "--override=num_epochs=1"]
    env = {"GLUE_DIR": str(glue_dir)}
    first = run_cli(args, module="experiments.reproduce", env=env)
    assert first.returncode == 0, first.stdout + first.stderr[-2000:]
    cell = runs / "rte" / "tnlp_scratch" / "seed0"
    manifest = json.loads((cell / "manifest.json").read_text())
    assert json.loads((cell / "final_metrics.json").read_text())["recipe"] == "transformer"
    assert manifest["config"]["model"] == "tiny" and manifest["seed"] == 0
    again = run_cli(args, module="experiments.reproduce", env=env)
    assert again.returncode == 0 and "start:" not in again.stdout
    assert "total: 2 done, 0 left" in again.stdout
    proc = run_cli([cell, "--fail_fast"], module="experiments.verify", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert proc.stdout.strip().endswith(
        "identical (final metrics and logged records without timing keys, and every "
        "prediction)")


def test_provenance_checks_catch_off_plan_runs_and_wrong_teachers(tmp_path):
    from experiments.tables import provenance

    rows = [rows_lib.ROW_BY_NAME[n] for n in ("teacher", "tkd")]
    # The driver records the paths it was given ("results/runs/..."); the tables read a copy.
    cells = reproduce.plan(["rte"], rows, seeds=2, runs_dir="results/runs")
    for c in cells:
        c = dataclasses.replace(c, workdir=tmp_path / c.workdir.relative_to("results/runs"))
        c.workdir.mkdir(parents=True)
        steps = 10 + c.seed
        (c.workdir / "final_metrics.json").write_text(json.dumps(
            {"split": "dev", "metrics": {}, "steps": steps}))
        manifest = {"argv": list(c.argv), "config_fingerprint": f"fp{c.seed}"}
        if c.row.name == "tkd":
            manifest["teacher"] = {"run_dir": str(c.teacher), "config_fingerprint": f"fp{c.seed}",
                                   "step": steps, "params_sha256": f"{c.seed}" * 64}
        (c.workdir / "manifest.json").write_text(json.dumps(manifest))
    collected = analysis.collect(tmp_path)
    assert provenance.off_plan(collected) == []
    assert provenance.teacher_problems(collected) == []
    student = tmp_path / "rte" / "tkd" / "seed1"
    manifest = json.loads((student / "manifest.json").read_text())
    manifest["argv"].append("--config.learning_rate=1e-3")
    manifest["teacher"].update(step=5, run_dir="results/runs/rte/teacher/seed0")
    (student / "manifest.json").write_text(json.dumps(manifest))
    collected = analysis.collect(tmp_path)
    assert provenance.off_plan(collected) == [
        f"{student}: recorded command differs from the plan's"]
    assert provenance.teacher_problems(collected) == [
        f"{student}: learnt from 'results/runs/rte/teacher/seed0', not its "
        "teacher cell",
        f"{student}: teacher step 5 is not the teacher's final step 11"]


def test_missing_cells_group_the_rows_that_miss_the_same_seeds():
    def runs(*seeds):
        return [types.SimpleNamespace(seed=s) for s in seeds]

    main = [r.name for r in rows_lib.ROWS if r.family != "trivial" and r.applies_to("wnli")
            and r.family != "paper"]
    cells = {("wnli", name): runs(0, 1, 2) for name in main}
    cells[("wnli", "tkd_paper")] = runs(0)
    cells[("wnli", "majority")] = runs(0)
    cells[("stsb", "teacher")] = runs(1)
    lines = reproduction.missing_cells(cells, ["wnli", "stsb"], seeds=4)
    assert lines[0] == f"wnli: seed 3 of {', '.join(main)}"
    assert lines[1] == "wnli: seeds 1, 2, 3 of tkd_paper"
    assert lines[2] == "wnli: seeds 0, 1, 2, 3 of tnlp_paper"
    assert lines[3] == "wnli: seed 0 of positive"
    assert lines[4] == "stsb: seeds 0, 2, 3 of teacher"
    # Every other STS-B row misses every seed; STS-B (regression) has no trivial rows.
    rest = [r.name for r in rows_lib.ROWS if r.applies_to("stsb") and r.name != "teacher"]
    assert "majority" not in rest and "tkd_paper" in rest
    assert lines[5:] == [f"stsb: seeds 0, 1, 2, 3 of {', '.join(rest)}"]
    wnli = [r for r in rows_lib.ROWS if r.applies_to("wnli")]
    full = {("wnli", r.name): runs(*range(4 if r.seeded else 1)) for r in wnli}
    assert reproduction.missing_cells(full, ["wnli"], seeds=4) == []
    assert reproduction._completeness(full, ["wnli"], 4) == (
        f"**Complete**: all {len(full) * 4 - 2 * 3} planned cells (4 seeds) have finished.")


def test_runs_beyond_the_planned_seeds_stand_in_for_missing_ones():
    """Seed 4's teacher could not be re-made here: its dependent rows ran at seed 5 with a
    seed-5 teacher, which fills their fifth place; seed 5 of a complete row is extra."""
    def runs(*seeds):
        return [types.SimpleNamespace(seed=s) for s in seeds]

    cells = {("mrpc", r.name): runs(*range(5 if r.seeded else 1)) for r in rows_lib.ROWS
             if r.applies_to("mrpc")}
    for name in ("teacher", "tkd"):
        cells[("mrpc", name)] = runs(0, 1, 2, 3, 4, 5)
    for name in ("tkd_scratch", "kd"):
        cells[("mrpc", name)] = runs(0, 1, 2, 3, 5)
    cells[("mrpc", "tkd_ft")] = runs(0, 1, 5)  # two short even with seed 5 in place of one
    done, planned = reproduction.cell_counts(cells, ["mrpc"], 5)
    assert planned - done == 2  # tkd_ft lost three planned seeds and has one stand-in
    assert reproduction.missing_cells(cells, ["mrpc"], 5) == [
        "mrpc: seeds 2, 3, 4 of tkd_ft (seed 5 in place of 1 of them)"]
    assert reproduction.stand_ins(cells, ["mrpc"], 5) == [
        "mrpc: seed 5 beside the planned seeds of teacher, tkd",
        "mrpc: seed 5 in place of seed 4 of tkd_scratch, kd",
        "mrpc: seed 5 in place of 1 of seeds 2, 3, 4 of tkd_ft"]
    assert reproduction._completeness(cells, ["mrpc"], 5).startswith(
        f"**Partial**: {planned - 2} of {planned} planned cells (1 task, 5 seeds) have "
        "finished (a run at a seed beyond the plan counts in place of")
    assert reproduction.stand_ins({("mrpc", "tkd"): runs(0, 1)}, ["mrpc"], 5) == []
    beside = {("wnli", r.name): runs(*range(5 if r.seeded else 1)) for r in rows_lib.ROWS
              if r.applies_to("wnli")}
    beside[("wnli", "teacher")] = runs(*range(6))  # an extra seed fills no hole
    assert reproduction._completeness(beside, ["wnli"], 5) == (
        f"**Complete**: all {len(beside) * 5 - 2 * 4} planned cells (5 seeds) have finished.")


@pytest.mark.parametrize("argv, match", [
    (["--seeds", "0"], "--seeds 0: expected at least 1"),
    (["--resamples", "-1"], "--resamples -1: expected at least 1"),
    (["--tasks", "nope"], "nope"),
    (["--runs_dir", "/nonexistent/runs"], "--runs_dir /nonexistent/runs: not a directory"),
])
def test_tables_command_rejects_bad_arguments_before_reading_runs(argv, match):
    from experiments.tables.__main__ import main

    with pytest.raises(ConfigError, match=match):
        main(argv)


def test_a_comparison_plans_the_seeds_of_its_stand_ins_and_their_partners():
    def runs(*seeds):
        return [types.SimpleNamespace(seed=s) for s in seeds]

    cells = {("sst2", "tkd"): runs(*range(6)), ("sst2", "lstm"): runs(*range(6)),
             ("sst2", "tnlp"): runs(*range(6)), ("sst2", "kd"): runs(0, 2, 3, 4, 5, 6),
             ("sst2", "tkd_paper"): runs(0, 1, 5, 7, 8, 9)}
    assert plan.stand_in_seeds(cells["sst2", "kd"], rows_lib.ROW_BY_NAME["kd"], 5) == (5,)
    # Both rows complete: their seed 5 was run after the plan.
    assert plan.pair_seeds(cells, "sst2", "tkd", "lstm", 5) == {0, 1, 2, 3, 4}
    # kd's seed 5 stands in for its seed 1, and tnlp's seed 5 is its partner; seed 6 is extra.
    assert plan.pair_seeds(cells, "sst2", "tnlp", "kd", 5) == {0, 1, 2, 3, 4, 5}
    # Three lost seeds, three stand-ins (the lowest extra seeds); seed 9 is extra.
    assert plan.pair_seeds(cells, "sst2", "tkd_paper", "tnlp_paper", 5) == {*range(5), 5, 7, 8}
    assert plan.pair_seeds(cells, "sst2", "tkd", "majority", 5) == {0, 1, 2, 3, 4}


def test_a_verdict_that_turns_on_seeds_beyond_the_plan_is_flagged(fake_runs, tmp_path):
    """With a plan of 2 seeds, fake_runs' seeds 2-4 of the complete rows are beyond it: the
    report tests every comparison again on seeds 0-1 (Holm over those tests) and flags the
    ones whose verdict changes."""
    from experiments.tables.__main__ import build

    cells = analysis.collect(fake_runs)
    comps = analysis.comparisons(cells, ["mrpc"], n_resamples=500, seeds=2)
    get = lambda a, b, m="accuracy": next(c for c in comps if (c.a, c.b, c.metric) == (a, b, m))
    lstm_rnn = get("lstm", "rnn", "glue_score")  # Holm p 0.02 over 5 seeds, 0.053 over 2
    assert lstm_rnn.seeds == (0, 1, 2, 3, 4) and lstm_rnn.planned.seeds == (0, 1)
    va, vb = ([r.metric("glue_score") for r in cells["mrpc", row][:2]] for row in ("lstm", "rnn"))
    assert lstm_rnn.planned.ttest.p == pytest.approx(sps.ttest_rel(va, vb).pvalue)
    tested = [c.planned for c in comps if c.metric == "glue_score" and c.planned.ttest
              and c.planned.ttest.p == c.planned.ttest.p]
    assert [c.p_t_holm for c in tested] == pytest.approx(
        list(analysis.stats.holm([c.ttest.p for c in tested])))
    assert lstm_rnn.verdict() == "holds" and lstm_rnn.planned.verdict() == "not supported"
    assert lstm_rnn.turns_on_extra_seeds()
    tkd_kd = get("tkd", "kd")  # kd has seeds 0-1 only: the same pairs under the plan
    assert not tkd_kd.beyond_plan() and tkd_kd.planned.bootstrap is tkd_kd.bootstrap
    assert get("tkd", "positive").planned.seeds == (0, 1)  # against a constant: a's seeds
    md = reproduction.render(cells, ["mrpc"], comps, seeds=2, provenance={
        "runs": 28, "code": {"code x": ["0" * 40]}, "dirty": 0, "mismatches": [],
        "train_hours": 0.5})
    flagged = md.split("### Verdicts that turn on seeds beyond the plan\n\n")[1].split("\n\n")
    assert f"- mrpc (glue_score): {reproduction.link_text(lstm_rnn)}" in flagged[1].splitlines()
    assert "; over the 2 planned seeds (0, 1): **not supported**, diff " in flagged[1]
    assert "**the verdict turns on seeds beyond the plan**" in flagged[1]
    assert len(flagged[1].splitlines()) == sum(c.turns_on_extra_seeds() for c in comps)
    assert "| mrpc | tkd > kd | accuracy | not supported | " in md and "| same seeds |" in md
    # tkd > rnn (accuracy): the same difference at seeds 0 and 1, so no t-test under the plan.
    assert reproduction.chain_verdict(comps, "mrpc", ("tkd", "rnn"))[0] == (
        "**holds** (over the planned seeds: **not supported**; not counted)")
    assert reproduction.chain_verdict(comps, "mrpc", ("tkd", "cnn"))[0] == "**holds**"
    five = analysis.comparisons(cells, ["mrpc"], n_resamples=500, seeds=5)
    assert not any(c.beyond_plan() or c.turns_on_extra_seeds() for c in five)
    build(fake_runs, tmp_path, ["mrpc"], seeds=2, n_resamples=500, root=reproduce.repo_root())
    rows = (tmp_path / "tables" / "comparisons.csv").read_text().splitlines()
    head = rows[0].split(",")
    line = dict(zip(head, next(r for r in rows if r.startswith("mrpc,lstm,rnn,b,glue_score,"))
                    .split(","), strict=True))
    assert (line["seeds"], line["planned_seeds"]) == ("0 1 2 3 4", "0 1")
    assert (line["verdict"], line["planned_verdict"]) == ("holds", "not supported")
    assert line["verdict_turns_on_extra_seeds"] == "True"


def test_cost_lines_read_latency_of_the_seed0_runs(tmp_path):
    # Seed 1 ran on a slower machine: its times must not enter seed 0's cost line.
    for row, params, secs, seed in (("teacher", 22713986, 300.0, 0), ("tkd", 17390594, 100.0, 0),
                                    ("teacher", 22713986, 1500.0, 1), ("tkd", 17390594, 500.0, 1),
                                    ("teacher", 22713986, 1400.0, 2), ("tkd", 17390594, 450.0, 2),
                                    ("teacher", 22713601, 900.0, 1), ("tkd", 17390209, 400.0, 2)):
        d = tmp_path / ("mrpc" if params % 2 == 0 else "stsb") / row / f"seed{seed}"
        d.mkdir(parents=True)
        (d / "final_metrics.json").write_text(json.dumps(
            {"num_params": params, "train_seconds": secs, "metrics": {}}))
    cells = analysis.collect(tmp_path)
    latency = [{"run": "results/runs/mrpc/teacher/seed0", "median_ms": 10.24},
               {"run": "results/runs/mrpc/tkd/seed0/", "median_ms": 4.91}]
    lines = reproduction.cost_lines(cells, ["mrpc", "rte"], latency)
    assert lines[2] == "| mrpc | 22,713,986 | 17,390,594 | 300 / 100 | 10.24 / 4.91 (2.09x) |"
    assert not any(line.startswith("| rte") for line in lines)
    assert reproduction.cost_lines(cells, ["stsb"], latency)[2] == (
        "| stsb | 22,713,601 | 17,390,209 | 900 / 400 (seeds 1 / 2) | not measured |")
    assert reproduction.cost_lines(cells, ["mrpc"], None)[2].endswith("| not measured |")
    wrapped = {"command": "python -m experiments.latency ...", "runs": latency}
    assert reproduction.cost_lines(cells, ["mrpc"], wrapped)[2] == lines[2]


def test_a_link_with_the_same_difference_at_every_seed_says_the_t_test_is_undefined():
    stats = analysis.stats
    same = stats.paired_t_test([0.90, 0.80], [0.85, 0.75])  # +5 points at both seeds
    boot = stats.Bootstrap(n_examples=100, n_resamples=10, diff=0.05, ci_low=0.02, ci_high=0.08,
                           p=0.001)
    c = analysis.Comparison("sst2", "lstm", "rnn", "b", "accuracy", same, boot,
                            p_boot_holm=0.01)
    text = reproduction.link_text(c)
    assert "diff 5.00 points at each of 2 seeds (no spread: t-test undefined)" in text
    assert "nan" not in text and c.verdict() == "not supported"  # one test is not both
    varied = stats.paired_t_test([0.90, 0.81], [0.85, 0.75])
    assert "t-test p " in reproduction.link_text(dataclasses.replace(c, ttest=varied))
