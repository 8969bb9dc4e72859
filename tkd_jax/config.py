"""The typed run config: built once from the ml_collections ConfigDict, checked there.

``RunConfig.from_config_dict(config)`` turns the user-facing ConfigDict
(:func:`tkd_jax.defaults.default_config` + recipe + variant + overrides) into frozen
dataclasses: lists are tuples of the right element type (``init_from_teacher_layers`` ints,
``teacher_weights`` floats, layer maps ``(s, t)`` pairs), every range is checked (epochs and
steps >= 1, batch sizes >= 1 and divisible by the devices, a finite learning rate > 0,
temperature > 0, alpha in [0, 1], weights >= 0, max_len within the model's positions, known
names), and the recipe's contradictions are caught (:meth:`tkd_jax.recipes.Recipe.check`) —
all before any data is read or anything is written. Every failure is one ConfigError line
naming the key. Everything below the trainer receives these typed values.

``computation_config`` / ``config_fingerprint`` describe what changes the computation (not
logging or checkpoint cadence); a checkpoint resumes only under the config that wrote it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterable
from typing import Any

import ml_collections

from tkd_jax.data.holdout import with_holdout
from tkd_jax.data.preprocess import AUGMENT_OPS, PreprocessConfig
from tkd_jax.data.tasks import TaskSpec, get_task
from tkd_jax.errors import ConfigError
from tkd_jax.recipes import Recipe, get_recipe

PRECISIONS = ("fp32", "bf16", "fp16")
PARALLEL = ("jit", "pmap")
PARAM_LAYOUTS = ("replicated", "tensor", "fsdp")
SCHEDULES = ("linear", "cosine", "constant")
DATA_SOURCES = ("auto", "local", "hub", "tfds")
TOKENIZERS = ("teacher", "trained")
SOFT_KINDS = ("ce", "kl")
SOFT_LABELS = ("cached", "online")
FEATURE_KINDS = ("mse", "cosine")
ATTENTION_KINDS = ("mse", "kl")
INIT_SOURCES = ("pretrained", "run")
QAT_KINDS = ("none", "int8")  # tkd_jax.compress.qat.QAT_KINDS (not imported here: qwix is heavy)
PRUNE_SCOPES = ("global", "layer", "output")  # tkd_jax.compress.magnitude.SCOPES
# Keys that do not change the computation (a resume may change them freely).
# Paths are not computation either: what they hold is hashed into the manifest.
NOT_COMPUTATION = ("log_every_steps", "progress_bar", "async_checkpoints", "keep_checkpoints",
                   "checkpoint_every_steps", "quiet", "compile_cache_dir", "data_dir", "teacher")


# ----------------------------------------------------------------------------- parsing
def _tuple(key: str, value) -> tuple:
    """A list-valued key: a tuple/list as given, or a comma-separated string."""
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if isinstance(value, Iterable):
        return tuple(value)
    raise ConfigError(f"config.{key}={value!r}: expected a list")


def _typed(key: str, value, kind, what: str) -> tuple:
    try:
        return tuple(kind(v) for v in _tuple(key, value))
    except (TypeError, ValueError):
        raise ConfigError(f"config.{key}={value!r}: expected {what}") from None


def _pairs(key: str, value) -> tuple[tuple[int, int], ...]:
    def pair(v):
        if isinstance(v, str):
            v = v.split(":")
        s, t = (int(x) for x in v)
        return s, t
    return _typed(key, value, pair, "'s:t' layer pairs, e.g. 0:1,1:3")


def _choice(key: str, value, valid) -> str:
    if value not in valid:
        raise ConfigError(f"config.{key}={value!r}: expected one of {', '.join(valid)}")
    return value


def _at_least(key: str, value, low, what: str = "") -> Any:
    if not value >= low:
        raise ConfigError(f"config.{key}={value}: expected {what or f'>= {low}'}")
    return value


def _positive(key: str, value) -> float:
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"config.{key}={value}: expected a finite number > 0")
    return float(value)


def _fraction(key: str, value) -> float:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"config.{key}={value}: expected a number in [0, 1]")
    return float(value)


# ----------------------------------------------------------------------------- sections
@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """Paper eq 9 and its variants; ``enabled`` only for the distilling recipes."""

    enabled: bool
    alpha: float
    temperature: float
    kind: str
    t2_scaling: bool
    soft_labels: str
    teacher_runs: tuple[str, ...]
    teacher_weights: tuple[float, ...]
    feature_weight: float
    feature_kind: str
    feature_layers: tuple[tuple[int, int], ...]
    attention_weight: float
    attention_kind: str
    attention_layers: tuple[tuple[int, int], ...]

    @property
    def online(self) -> bool:
        """The teachers run inside the step (always so for feature/attention terms)."""
        return (self.soft_labels == "online" or self.feature_weight > 0
                or self.attention_weight > 0)

    @classmethod
    def from_dict(cls, d) -> DistillConfig:
        runs = tuple(str(r) for r in _tuple("distill.teacher_runs", d.teacher_runs))
        weights = _typed("distill.teacher_weights", d.teacher_weights, float, "numbers")
        if weights and len(weights) != len(runs):
            raise ConfigError(f"config.distill.teacher_weights: {len(weights)} weights for "
                              f"{len(runs)} teacher runs")
        if any(not (math.isfinite(w) and w >= 0) for w in weights) or (
                weights and sum(weights) <= 0):
            raise ConfigError(f"config.distill.teacher_weights={weights}: expected weights "
                              ">= 0 with a positive sum")
        return cls(
            enabled=bool(d.enabled), alpha=_fraction("distill.alpha", d.alpha),
            temperature=_positive("distill.temperature", d.temperature),
            kind=_choice("distill.kind", d.kind, SOFT_KINDS), t2_scaling=bool(d.t2_scaling),
            soft_labels=_choice("distill.soft_labels", d.soft_labels, SOFT_LABELS),
            teacher_runs=runs, teacher_weights=weights or (1.0,) * len(runs),
            feature_weight=_at_least("distill.feature_weight", d.feature_weight, 0.0),
            feature_kind=_choice("distill.feature_kind", d.feature_kind, FEATURE_KINDS),
            feature_layers=_pairs("distill.feature_layers", d.feature_layers),
            attention_weight=_at_least("distill.attention_weight", d.attention_weight, 0.0),
            attention_kind=_choice("distill.attention_kind", d.attention_kind, ATTENTION_KINDS),
            attention_layers=_pairs("distill.attention_layers", d.attention_layers),
        )


@dataclasses.dataclass(frozen=True)
class MLMConfig:
    text_file: str
    mask_prob: float
    first_regular_id: int

    @classmethod
    def from_dict(cls, d) -> MLMConfig:
        if not 0.0 < d.mask_prob <= 1.0:
            raise ConfigError(f"config.mlm.mask_prob={d.mask_prob}: expected a number in (0, 1]")
        return cls(text_file=d.text_file, mask_prob=float(d.mask_prob),
                   first_regular_id=_at_least("mlm.first_regular_id", d.first_regular_id, 0))


@dataclasses.dataclass(frozen=True)
class PruneConfig:
    """Magnitude pruning during training on the cubic (Zhu & Gupta) schedule."""

    sparsity: float
    scope: str
    begin_ratio: float
    end_ratio: float
    frequency: int

    @classmethod
    def from_dict(cls, d) -> PruneConfig:
        if not 0.0 <= d.sparsity < 1.0:
            raise ConfigError(f"config.prune.sparsity={d.sparsity}: expected a number in [0, 1)")
        begin = _fraction("prune.begin_ratio", d.begin_ratio)
        end = _fraction("prune.end_ratio", d.end_ratio)
        if end < begin:
            raise ConfigError(f"config.prune.end_ratio={end}: expected >= prune.begin_ratio "
                              f"({begin})")
        return cls(sparsity=float(d.sparsity),
                   scope=_choice("prune.scope", d.scope, PRUNE_SCOPES), begin_ratio=begin,
                   end_ratio=end, frequency=_at_least("prune.frequency", d.frequency, 1))


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """AdamW chain and schedule (tkd_jax.train.optim)."""

    learning_rate: float
    schedule: str
    warmup_ratio: float
    weight_decay: float
    adam_b1: float
    adam_b2: float
    adam_eps: float
    grad_clip_norm: float
    grad_accum_steps: int

    @classmethod
    def from_dict(cls, c) -> OptimConfig:
        for key in ("adam_b1", "adam_b2"):
            if not 0.0 <= c[key] < 1.0:
                raise ConfigError(f"config.{key}={c[key]}: expected a number in [0, 1)")
        return cls(
            learning_rate=_positive("learning_rate", c.learning_rate),
            schedule=_choice("schedule", c.schedule, SCHEDULES),
            warmup_ratio=_fraction("warmup_ratio", c.warmup_ratio),
            weight_decay=_at_least("weight_decay", c.weight_decay, 0.0),
            adam_b1=float(c.adam_b1), adam_b2=float(c.adam_b2),
            adam_eps=_positive("adam_eps", c.adam_eps),
            grad_clip_norm=_at_least("grad_clip_norm", c.grad_clip_norm, 0.0, ">= 0 (0 = off)"),
            grad_accum_steps=_at_least("grad_accum_steps", c.grad_accum_steps, 1),
        )


# ----------------------------------------------------------------------------- the run
@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a run needs, typed and checked. Build with :meth:`from_config_dict`."""

    task: TaskSpec
    recipe: Recipe
    seed: int
    data_dir: str | None
    teacher: str | None
    data_source: str
    # model
    model: str
    dropout_rate: float  # < 0: the preset's own
    attention_dropout_rate: float  # < 0: the preset's own
    init_from: str
    init_from_teacher_layers: tuple[int, ...]
    init_teacher_source: str
    init_teacher_head: bool
    # data
    max_len: int
    bucket_ratio: float  # 0: balanced_bucket_lengths over the training lengths
    tokenizer: str
    vocab_size: int
    max_train_examples: int
    max_eval_examples: int
    holdout_examples: int  # > 0: evaluate on this many held-out training examples, not dev
    preprocess: PreprocessConfig
    # optimisation
    batch_size: int
    eval_batch_size: int
    num_epochs: int
    num_train_steps: int  # > 0 overrides num_epochs
    optim: OptimConfig
    # efficiency
    precision: str
    loss_scale: float
    loss_scale_growth_interval: int
    parallel: str
    num_devices: int
    param_layout: str
    model_parallelism: int
    # compression while training
    qat: str
    prune: PruneConfig
    # objectives
    distill: DistillConfig
    mlm: MLMConfig
    # loop and output
    eval_every_steps: int
    checkpoint_every_steps: int
    keep_checkpoints: int
    log_every_steps: int
    progress_bar: bool
    quiet: bool
    compile_cache_dir: str
    async_checkpoints: bool
    raw: ml_collections.ConfigDict = dataclasses.field(compare=False, repr=False)
    # The run's pretrained teacher checkpoint: located (lazily) and read once per run.
    pretrained: Any = dataclasses.field(compare=False, repr=False, default=None)

    @classmethod
    def from_config_dict(cls, c: ml_collections.ConfigDict, *,
                         num_devices: int | None = None) -> RunConfig:
        """Check ``c`` and build the typed config (ConfigError on the first bad key).

        ``num_devices`` (default: config.num_devices, else every device jax sees) checks
        batch divisibility. Cheap: reads at most the teacher's config.json (for max_len).
        """
        if not c.task:
            raise ConfigError("config.task: not set (expected a GLUE task, e.g. mrpc)")
        recipe = get_recipe(c.recipe)
        holdout = _at_least("holdout_examples", c.get("holdout_examples", 0), 0,
                            ">= 0 (0 = evaluate on dev)")
        if holdout and recipe.objective == "mlm":
            raise ConfigError(f"config.holdout_examples={holdout}: the {recipe.name} recipe "
                              "has no labels to hold out (expected 0)")
        task = with_holdout(get_task(c.task), holdout)
        distill = DistillConfig.from_dict(c.distill)
        recipe.check(model=c.model, distill_enabled=distill.enabled,
                     teacher_runs=distill.teacher_runs)
        layers = _typed("init_from_teacher_layers", c.init_from_teacher_layers, int,
                        "teacher layer indices, e.g. 0,2,4")
        if c.init_teacher_head and (not layers or c.init_teacher_source != "run"):
            raise ConfigError("config.init_teacher_head=true needs init_from_teacher_layers "
                              "(e.g. 0,2,4) and init_teacher_source=run (a fine-tuned head)")
        if (c.qat != "none" or c.prune.sparsity > 0) and recipe.family == "baseline":
            raise ConfigError(f"config.qat / config.prune: --recipe {recipe.name} trains "
                              f"{recipe.description}; quantization-aware training and pruning "
                              "apply to Transformers")
        if layers and recipe.family != "transformer":
            raise ConfigError(f"config.init_from_teacher_layers: --recipe {recipe.name} trains "
                              f"{recipe.description}, which has no Transformer layers")
        if c.init_teacher_source == "run" and layers and not distill.teacher_runs:
            raise ConfigError("config.init_teacher_source=run: pass --teacher_run DIR")
        if distill.online and recipe.family != "transformer" and (
                distill.feature_weight > 0 or distill.attention_weight > 0):
            raise ConfigError("config.distill.feature_weight/attention_weight: need a "
                              "Transformer student (use soft labels only for baselines)")
        augment = _typed("preprocess.augment", c.preprocess.augment, str, "augmentation ops")
        augment = tuple(a for a in augment if a.lower() != "none")
        for op in augment:
            _choice("preprocess.augment", op, AUGMENT_OPS)
        pre = c.preprocess.to_dict()
        pre["augment"] = augment
        preprocess = PreprocessConfig(**pre, seed=int(c.seed))
        max_len = _at_least("max_len", c.max_len, 2)
        from tkd_jax.models.teacher import PretrainedCheckpoint

        pretrained = PretrainedCheckpoint(c.teacher or None)
        model_max_len = _model_positions(c.model, pretrained)
        if model_max_len is not None and max_len > model_max_len:
            raise ConfigError(f"config.max_len={max_len}: the model has only {model_max_len} "
                              "positions")
        if not (c.bucket_ratio == 0 or c.bucket_ratio > 1):
            raise ConfigError(f"config.bucket_ratio={c.bucket_ratio}: expected a ratio > 1 "
                              "(or 0: balance compiled shapes against padding)")
        devices = num_devices if num_devices is not None else _device_count(c.num_devices)
        for key in ("batch_size", "eval_batch_size"):
            _at_least(key, c[key], 1)
            if c[key] % devices:
                raise ConfigError(f"config.{key}: {c[key]} is not divisible by the {devices} "
                                  "devices")
        if c.num_train_steps <= 0 and c.num_epochs < 1:
            raise ConfigError(f"config.num_epochs={c.num_epochs}: expected >= 1 (or "
                              "config.num_train_steps >= 1)")
        if c.num_train_steps == 0 or c.num_train_steps < -1:
            raise ConfigError(f"config.num_train_steps={c.num_train_steps}: expected >= 1 "
                              "(or -1: use num_epochs)")
        for key in ("dropout_rate", "attention_dropout_rate"):
            if not (c[key] < 0 or c[key] < 1):
                raise ConfigError(f"config.{key}={c[key]}: expected a rate in [0, 1) "
                                  "(< 0: the preset's own)")
        return cls(
            task=task, recipe=recipe, seed=int(c.seed), data_dir=c.data_dir or None,
            teacher=c.teacher or None,
            data_source=_choice("data_source", c.data_source, DATA_SOURCES),
            model=c.model, dropout_rate=float(c.dropout_rate),
            attention_dropout_rate=float(c.attention_dropout_rate), init_from=c.init_from,
            init_from_teacher_layers=layers,
            init_teacher_source=_choice("init_teacher_source", c.init_teacher_source,
                                        INIT_SOURCES),
            init_teacher_head=bool(c.init_teacher_head), max_len=max_len,
            bucket_ratio=float(c.bucket_ratio),
            tokenizer=_choice("tokenizer", c.tokenizer, TOKENIZERS),
            vocab_size=_at_least("vocab_size", c.vocab_size, 16),
            max_train_examples=_at_least("max_train_examples", c.max_train_examples, 0,
                                         ">= 0 (0 = all)"),
            max_eval_examples=_at_least("max_eval_examples", c.max_eval_examples, 0,
                                        ">= 0 (0 = all)"),
            holdout_examples=holdout,
            preprocess=preprocess, batch_size=c.batch_size, eval_batch_size=c.eval_batch_size,
            num_epochs=c.num_epochs, num_train_steps=c.num_train_steps,
            optim=OptimConfig.from_dict(c),
            precision=_choice("precision", c.precision, PRECISIONS),
            loss_scale=_positive("loss_scale", c.loss_scale),
            loss_scale_growth_interval=_at_least("loss_scale_growth_interval",
                                                 c.loss_scale_growth_interval, 1),
            parallel=_choice("parallel", c.parallel, PARALLEL),
            num_devices=_at_least("num_devices", c.num_devices, 0, ">= 0 (0 = all)"),
            param_layout=_choice("param_layout", c.param_layout, PARAM_LAYOUTS),
            model_parallelism=_at_least("model_parallelism", c.model_parallelism, 1),
            qat=_choice("qat", c.qat, QAT_KINDS), prune=PruneConfig.from_dict(c.prune),
            distill=distill, mlm=MLMConfig.from_dict(c.mlm),
            eval_every_steps=_at_least("eval_every_steps", c.eval_every_steps, 0),
            checkpoint_every_steps=_at_least("checkpoint_every_steps", c.checkpoint_every_steps,
                                             0),
            keep_checkpoints=_at_least("keep_checkpoints", c.keep_checkpoints, 1),
            log_every_steps=_at_least("log_every_steps", c.log_every_steps, 1),
            progress_bar=bool(c.progress_bar), quiet=bool(c.quiet),
            compile_cache_dir=c.compile_cache_dir, async_checkpoints=bool(c.async_checkpoints),
            raw=c, pretrained=pretrained,
        )

    @property
    def fp16(self) -> bool:
        return self.precision == "fp16"


def _model_positions(model: str, pretrained) -> int | None:
    """Positions the model can embed (None: unbounded, e.g. sinusoidal or a baseline)."""
    from tkd_jax.models.transformer import PRESETS

    if model == "pretrained":
        return pretrained.max_positions
    preset = PRESETS.get(model)
    return preset.max_len if preset is not None and preset.position == "learned" else None


def _device_count(requested: int) -> int:
    import jax

    available = jax.device_count()
    if requested > available:
        raise ConfigError(f"config.num_devices: {requested} requested, {available} available")
    return requested or available


# ----------------------------------------------------------------------------- fingerprints
def computation_config(config: ml_collections.ConfigDict) -> dict:
    """Flat {dotted key: value} of everything that changes the computation."""
    def flat(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from flat(v, f"{prefix}{k}.")
            elif k not in NOT_COMPUTATION:
                yield f"{prefix}{k}", list(v) if isinstance(v, tuple) else v
    return dict(flat(config.to_dict()))


def config_fingerprint(config: ml_collections.ConfigDict) -> str:
    """Hash of everything that changes the computation (not logging/checkpoint cadence)."""
    return hashlib.sha256(json.dumps(computation_config(config), sort_keys=True)
                          .encode()).hexdigest()[:16]
