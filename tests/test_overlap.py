"""`python -m experiments.overlap`: dev accuracy split by the examples that contradict train."""

import json

import pytest

from experiments import cli
from experiments import overlap as overlap_cmd


@pytest.fixture(scope="module")
def wnli(glue_dir):
    """WNLI dev with, by pandas alone, whether each example contradicts train."""
    pd = pytest.importorskip("pandas")
    read = lambda f: pd.read_csv(glue_dir / "WNLI" / f, sep="\t", quoting=3)  # noqa: E731
    train, dev = read("train.tsv"), read("dev.tsv")
    labels = train.groupby("sentence1")["label"].agg(set)
    dev["contradicts"] = [s in labels.index and y not in labels[s]
                          for s, y in zip(dev["sentence1"], dev["label"], strict=True)]
    return dev


def _write_run(path, index, labels, preds):
    path.mkdir(parents=True)
    acc = sum(p == y for p, y in zip(preds, labels, strict=True)) / len(labels)
    (path / "final_metrics.json").write_text(json.dumps(
        {"split": "dev", "metrics": {"accuracy": acc}}))
    (path / "predictions.json").write_text(json.dumps(
        {"dev": {"index": index, "label": labels, "prediction": preds}}))


def test_accuracy_on_the_contradicting_examples(tmp_path, glue_dir, wnli, capsys):
    index, labels = wnli["index"].tolist(), wnli["label"].tolist()
    flip = wnli["contradicts"].tolist()
    assert sum(flip) == 54
    # "memorise" answers what train says for the 54 (the other label), the truth elsewhere
    memorise = [1 - y if f else y for y, f in zip(labels, flip, strict=True)]
    for seed in (0, 1):
        _write_run(tmp_path / "wnli" / "memorise" / f"seed{seed}", index, labels, memorise)
    _write_run(tmp_path / "wnli" / "truth" / "seed0", index, labels, labels)
    code = cli.run_main(overlap_cmd.main, ["--task", "wnli", "--runs_dir", str(tmp_path),
                                           "--data_dir", str(glue_dir)])
    out = capsys.readouterr().out
    assert code == 0
    assert "wnli dev: 54 of 71 examples contradict train" in out
    assert "| memorise | 2 | 0.0 ± 0.0 | 100.0 | 23.9 |" in out  # 17 / 71 right
    assert "| truth | 1 | 100.0 | 100.0 | 100.0 |" in out


def test_bad_input_exits_2(tmp_path, glue_dir, capsys):
    args = ["--runs_dir", str(tmp_path), "--data_dir", str(glue_dir)]
    assert cli.run_main(overlap_cmd.main, ["--task", "stsb", *args]) == 2
    assert cli.run_main(overlap_cmd.main, ["--task", "wnli", *args]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["error: --task stsb: a regression task; no answer to contradict",
                   f"error: --runs_dir {tmp_path}: no wnli run with dev predictions"]
