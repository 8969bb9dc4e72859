"""Recipes (DESIGN section 4): each decides what a run trains, on what objective, with what.

A :class:`Recipe` names the model family it trains (the pretrained encoder, our Transformer, a
non-Transformer baseline), its objective (task labels; labels + distillation from teacher runs;
masked-LM pre-training), and the few config defaults that make it that recipe. A config that
contradicts its recipe is a ConfigError naming both (``Recipe.check``), never a silent swap:
what ``manifest.json`` and ``final_metrics.json`` record as the recipe is what ran.

    config = recipe_config("tkd")          # default_config() + the recipe's defaults
    config.task = "mrpc"; config.distill.teacher_runs = ("runs/mrpc/teacher",)
    tkd_jax.train_and_evaluate(config, "runs/mrpc/tkd")
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import ml_collections

from tkd_jax.defaults import default_config
from tkd_jax.errors import ConfigError
from tkd_jax.models.baselines import BASELINES
from tkd_jax.models.transformer import PRESETS

FAMILIES = {
    "pretrained": ("pretrained",),  # the encoder of the teacher checkpoint (--teacher)
    "transformer": tuple(sorted(PRESETS)),  # our Transformer (paper eqs 1-8)
    "baseline": tuple(sorted(BASELINES)),  # RNN / LSTM / BiLSTM / CNN
}
OBJECTIVES = ("labels", "distill", "mlm")


@dataclasses.dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    family: str  # key of FAMILIES
    objective: str  # one of OBJECTIVES
    defaults: Mapping[str, Any]  # dotted config key -> value, set by recipe_config
    models: tuple[str, ...] = ()  # allowed config.model values (() = the whole family)
    hint: str = ""  # where to go instead when the model does not fit

    @property
    def allowed_models(self) -> tuple[str, ...]:
        return self.models or FAMILIES[self.family]

    @property
    def distils(self) -> bool:
        return self.objective == "distill"

    def check(self, *, model: str, distill_enabled: bool, teacher_runs: tuple) -> None:
        """ConfigError when the config contradicts this recipe (one line naming both)."""
        if model not in self.allowed_models:
            raise ConfigError(
                f"config.model={model} contradicts --recipe {self.name}, which trains "
                f"{self.description} (config.model: {' | '.join(self.allowed_models)})"
                + (f"; {self.hint}" if self.hint else ""))
        if distill_enabled != self.distils:
            want = "needs" if self.distils else "has no"
            other = ("use --recipe tkd (Transformer) or kd (baseline)" if not self.distils
                     else "use --recipe transformer or a baseline recipe")
            raise ConfigError(f"config.distill.enabled={str(distill_enabled).lower()} "
                              f"contradicts --recipe {self.name}, which {want} distillation; "
                              f"{other}")
        if self.distils and not teacher_runs:
            raise ConfigError(f"--recipe {self.name}: config.distill.teacher_runs is empty; pass "
                              "--teacher_run DIR (the workdir of a finished `--recipe teacher` "
                              "run on this task)")


def _recipe(name, description, family, objective, models=(), hint="", **defaults) -> Recipe:
    return Recipe(name=name, description=description, family=family, objective=objective,
                  models=models, hint=hint,
                  defaults={k.replace("__", "."): v for k, v in defaults.items()})


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    _recipe("teacher", "the pretrained encoder fine-tuned on task labels", "pretrained",
            "labels", model="pretrained", learning_rate=5e-5, batch_size=32, num_epochs=3,
            hint="train our Transformer with --recipe transformer or tkd"),
    _recipe("transformer", "our Transformer on task labels only (T-NLP)", "transformer",
            "labels", model="student_small", learning_rate=3e-4,
            hint="baselines have their own recipes (rnn, lstm, cnn)"),
    _recipe("tkd", "our Transformer with distillation from teacher runs (TKD-NLP)",
            "transformer", "distill", model="student_small", learning_rate=3e-4,
            distill__enabled=True, hint="a non-Transformer student is --recipe kd"),
    _recipe("kd", "a non-Transformer student with distillation (KD-NLP)", "baseline",
            "distill", model="bilstm", learning_rate=1e-3, distill__enabled=True,
            hint="a Transformer student is --recipe tkd"),
    _recipe("rnn", "the Elman RNN baseline on task labels", "baseline", "labels",
            models=("rnn",), model="rnn", learning_rate=1e-3),
    _recipe("lstm", "the (Bi)LSTM baseline on task labels", "baseline", "labels",
            models=("lstm", "bilstm"), model="lstm", learning_rate=1e-3),
    _recipe("cnn", "the Kim (2014) CNN baseline on task labels", "baseline", "labels",
            models=("cnn",), model="cnn", learning_rate=1e-3),
    _recipe("mlm", "our Transformer with a tied MLM head, masked-LM pre-training",
            "transformer", "mlm", model="student_small", learning_rate=5e-4, num_epochs=3),
)}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ConfigError(f"--recipe {name or '(none)'}: unknown recipe "
                          f"(expected one of {', '.join(RECIPES)})")
    return RECIPES[name]


def recipe_config(name: str) -> ml_collections.ConfigDict:
    """``default_config()`` with ``recipe`` set and the recipe's defaults applied."""
    recipe = get_recipe(name)
    c = default_config()
    c.recipe = name
    for key, value in recipe.defaults.items():
        *parents, leaf = key.split(".")
        target = c
        for part in parents:
            target = target[part]
        target[leaf] = value
    return c
