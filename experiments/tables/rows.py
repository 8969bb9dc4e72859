"""What the reproduction tables hold: tasks, rows, the comparisons and the paper's numbers.

A *cell* is (task, row, seed); its run lives in ``results/runs/<task>/<row>/seed<S>`` and is
one ``python -m experiments.glue`` command (or, for the trivial baselines, a prediction computed
from the dev labels). Student seed S distils from teacher seed S, so rows are paired by seed.
Every row's hyperparameters are in the config file it names (``experiments/configs/repro_*``,
fixed before any run; the `paper` rows use the paper's own setting).
"""

from __future__ import annotations

import dataclasses

# GLUE tasks with train + dev here; MNLI, QNLI, QQP take the same code path when a user has
# their data (``--tasks mnli,qnli,qqp``).
DEFAULT_TASKS = ("cola", "sst2", "mrpc", "stsb", "rte", "wnli")
OPTIONAL_TASKS = ("mnli", "qnli", "qqp")
# Tasks small enough for the paper's 12-layer, 10-epoch setting on a CPU (30-60 min a run).
SMALL_TASKS = ("cola", "mrpc", "stsb", "rte", "wnli")
REGRESSION_TASKS = ("stsb",)
THREE_CLASS_TASKS = ("mnli",)
DEFAULT_SEEDS = 5


@dataclasses.dataclass(frozen=True)
class Row:
    """One row of the tables.

    Attributes:
      name: directory name under results/runs/<task>/ and the key used everywhere.
      label: what the tables print.
      recipe: the experiments.glue recipe; None for a trivial baseline (computed, not trained).
      config: the ``--config`` variant.
      args: extra command-line arguments (``--config.key=value``).
      teacher: distils from / is initialised from the same seed's teacher run.
      family: rows whose run times are alike (the --status estimate pools them).
      tables: the tables (2, 3) that show the row.
      tasks: the only tasks the row runs on (None: every task).
      seeded: False for deterministic rows (one run, no seed axis).
    """

    name: str
    label: str
    recipe: str | None
    config: str | None
    args: tuple[str, ...] = ()
    teacher: bool = False
    family: str = ""
    tables: tuple[int, ...] = (2, 3)
    tasks: tuple[str, ...] | None = None
    seeded: bool = True

    def applies_to(self, task: str) -> bool:
        if self.name == "positive":  # always-"class 1" only means something for binary F1
            return task not in REGRESSION_TASKS and task not in THREE_CLASS_TASKS
        if self.name == "majority":
            return task not in REGRESSION_TASKS
        return self.tasks is None or task in self.tasks


_FT = ("--config.init_teacher_source=run",)
# The Transformer rows compute in bf16 (fp32 accumulation), as the repro_* configs set it; the
# paper's own config is left as users find it, so its rows ask for bf16 here.
_BF16 = ("--config.precision=bf16",)
ROWS: tuple[Row, ...] = (
    Row("teacher", "Teacher (all-MiniLM-L6-v2, fine-tuned)", "teacher", "repro_teacher",
        family="teacher"),
    Row("tkd", "TKD-NLP (pretrained-layer init)", "tkd", "repro_student", teacher=True,
        family="student"),
    Row("tnlp", "T-NLP (pretrained-layer init)", "transformer", "repro_student",
        family="student", tables=(3,)),
    Row("tkd_scratch", "TKD-NLP (random init)", "tkd", "repro_scratch", teacher=True,
        family="student", tables=(3,)),
    Row("tnlp_scratch", "T-NLP (random init)", "transformer", "repro_scratch",
        family="student", tables=(3,)),
    Row("tkd_ft", "TKD-NLP (fine-tuned-teacher init)", "tkd", "repro_student", _FT,
        teacher=True, family="student", tables=(3,)),
    Row("tnlp_ft", "T-NLP (fine-tuned-teacher init)", "transformer", "repro_student", _FT,
        teacher=True, family="student", tables=(3,)),
    Row("kd", "KD-NLP (BiLSTM + distillation)", "kd", "repro_bilstm", teacher=True,
        family="bilstm", tables=(3,)),
    Row("bilstm", "BiLSTM (no teacher)", "lstm", "repro_bilstm", family="bilstm",
        tables=(3,)),
    Row("rnn", "RNN", "rnn", "repro_baseline", family="baseline", tables=(2,)),
    Row("lstm", "LSTM", "lstm", "repro_baseline", family="baseline", tables=(2,)),
    Row("cnn", "CNN", "cnn", "repro_baseline", family="baseline", tables=(2,)),
    Row("tkd_paper", "TKD-NLP (paper setting)", "tkd", "paper", _BF16, teacher=True,
        family="paper", tasks=SMALL_TASKS),
    Row("tnlp_paper", "T-NLP (paper setting)", "transformer", "paper", _BF16, family="paper",
        tables=(3,), tasks=SMALL_TASKS),
    Row("majority", "Majority class of dev (constant)", None, None, family="trivial",
        seeded=False),
    Row("positive", "Always class 1 (constant)", None, None, family="trivial", seeded=False),
)
ROW_BY_NAME = {r.name: r for r in ROWS}


def rows_for(table: str) -> tuple[Row, ...]:
    """Rows of table "2", "3" or "all"; a student's teacher row is always included."""
    if table == "all":
        return ROWS
    return tuple(r for r in ROWS if int(table) in r.tables or r.name == "teacher")


# Comparisons A vs B (A claimed better), with the claim they test.
COMPARISONS: tuple[tuple[str, str, str], ...] = (
    ("tkd", "tnlp", "c"), ("tkd_scratch", "tnlp_scratch", "c-scratch"),
    ("tkd_ft", "tnlp_ft", "c-ft"), ("tkd_paper", "tnlp_paper", "c-paper"),
    ("tkd", "kd", "c"), ("tnlp", "kd", "c"), ("kd", "bilstm", "kd-gain"),
    ("tkd", "cnn", "b"), ("cnn", "lstm", "b"), ("lstm", "rnn", "b"),
    ("tkd", "rnn", "baseline"), ("tkd", "lstm", "baseline"),
    ("tkd", "majority", "trivial"), ("tkd", "positive", "trivial"),
)

# The paper's Table II / III (Mei et al., 2024), task unnamed, percentages.
PAPER = {
    "tkd": {"accuracy": 98.32, "f1": 97.14},
    "rnn": {"accuracy": 92.41, "f1": 95.31},
    "lstm": {"accuracy": 93.31, "f1": 94.25},
    "cnn": {"accuracy": 96.58, "f1": 93.78},
    "tnlp": {"accuracy": 94.48, "f1": 93.89},
    "kd": {"accuracy": 90.26, "f1": 92.14},
}


def glue_metric(task: str) -> str:
    """The key of the task's GLUE number in final_metrics.json["metrics"]."""
    return {"cola": "mcc"}.get(task, "glue_score" if task in ("mrpc", "qqp", "stsb")
                               else "accuracy")


def claim_metric(task: str) -> str:
    """The metric the paper's claims are read on: accuracy (STS-B has none: its GLUE score)."""
    return "glue_score" if task in REGRESSION_TASKS else "accuracy"


def bootstrap_expr(task: str, key: str) -> str:
    """A final_metrics key as a tkd_jax.stats.batched_metric expression for the task."""
    if key != "glue_score":
        return key
    return {"mrpc": "f1+accuracy", "qqp": "f1+accuracy", "stsb": "pearson+spearman",
            "cola": "mcc"}.get(task, "accuracy")


def table_metrics(task: str) -> tuple[str, ...]:
    """Columns of a task in the tables: its GLUE metric, then accuracy and F1 (paper)."""
    if task in REGRESSION_TASKS:
        return ("glue_score", "pearson", "spearman")
    glue = glue_metric(task)
    return tuple(dict.fromkeys((glue, "accuracy", "f1")))
