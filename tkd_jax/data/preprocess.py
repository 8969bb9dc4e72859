"""The paper's text preprocessing (section V.A), every step a switch, all off by default.

A pretrained WordPiece tokenizer does its own normalisation (BERT uncased lower-cases and
splits punctuation), so with a teacher vocabulary these steps stay off; they exist for the
paper's pipeline and for students with a vocabulary trained on the task.

Steps run in this order (each only if switched on):

  expand_contractions  "won't" -> "will not", "does n't" -> "does not", "e.g." -> "for
                       example", ... (the table ``CONTRACTIONS`` / ``ABBREVIATIONS`` below)
  lowercase            ``str.lower()``
  strip_punctuation    every Unicode punctuation char and ASCII symbol
                       (``string.punctuation``) becomes a space; runs of spaces collapse
  drop_missing         train: rows with an empty (or all-space) text or no label are
                       dropped; eval: they are counted but kept, so the dev set stays the
                       official one
  dedup                train only: rows whose texts and label equal an earlier row's
  augment              train only: ``augment_copies`` extra copies of every row with random
                       word replacement by an embedding neighbour, deletion and / or swap
                       (seeded, in that order), appended after the originals

Each step reports how many examples it changed, removed or added.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import string
import unicodedata
from collections.abc import Mapping

import numpy as np

from tkd_jax.data.examples import Split
from tkd_jax.errors import ConfigError

_APOS = "['\u2019]"  # ASCII apostrophe or right single quotation mark

# Contractions, in the order they are applied. Each handles the plain form ("don't") and the
# Penn-Treebank-tokenised form of SST-2 / MRPC ("do n't", "you 're"). "'s" is left alone: it
# can be "is", "has" or a possessive. "'d" is read as "would" (it can also be "had").
CONTRACTIONS: tuple[tuple[str, str], ...] = (
    (rf"\bwo ?n{_APOS}t\b", "will not"),
    (rf"\bca ?n{_APOS}t\b", "can not"),
    (rf"\bsha ?n{_APOS}t\b", "shall not"),
    (rf"\bai ?n{_APOS}t\b", "is not"),
    (rf"\blet ?{_APOS}s\b", "let us"),
    (rf" ?n{_APOS}t\b", " not"),
    (rf" ?{_APOS}re\b", " are"),
    (rf" ?{_APOS}ve\b", " have"),
    (rf" ?{_APOS}ll\b", " will"),
    (rf" ?{_APOS}m\b", " am"),
    (rf" ?{_APOS}d\b", " would"),
)

# Abbreviations (matched case-insensitively, not inside a longer word).
ABBREVIATIONS: dict[str, str] = {
    "e.g.": "for example",
    "i.e.": "that is",
    "etc.": "et cetera",
    "vs.": "versus",
    "approx.": "approximately",
    "govt.": "government",
    "dept.": "department",
    "mr.": "mister",
    "mrs.": "missus",
    "dr.": "doctor",
    "u.s.": "United States",
    "u.k.": "United Kingdom",
    "u.n.": "United Nations",
}

_RULES = [(re.compile(p, re.IGNORECASE), r) for p, r in CONTRACTIONS] + [
    (re.compile(rf"(?<!\w){re.escape(k)}", re.IGNORECASE), v) for k, v in ABBREVIATIONS.items()
]

_SPACES = re.compile(r"\s+")
AUGMENT_OPS = ("replace", "delete", "swap")


@dataclasses.dataclass
class PreprocessConfig:
    """Switches for :func:`preprocess` (all off: the data passes through unchanged).

    Attributes:
      expand_contractions: expand the CONTRACTIONS / ABBREVIATIONS tables.
      lowercase: lower-case every text.
      strip_punctuation: punctuation and ASCII symbols -> spaces, whitespace collapsed.
      drop_missing: drop train rows with an empty text or no label (eval rows are counted).
      dedup: drop train rows equal (texts and label) to an earlier row.
      augment: augmentation ops, any of "replace", "delete", "swap": a tuple, or a string
        such as "delete", "replace,swap" or "none".
      augment_copies: augmented copies added per train row.
      augment_prob: probability of deleting each word ("delete").
      augment_swaps: word pairs swapped per text ("swap").
      augment_replace_prob: probability of replacing each word that has neighbours
        ("replace").
      augment_neighbors: neighbours per word kept in the replacement table ("replace"; the
        table itself is ``neighbors``).
      neighbors: {lower-cased word: candidate replacements}, e.g. from
        :func:`tkd_jax.data.neighbors.embedding_neighbors`; required by "replace".
      seed: seed of the augmentation.
    """

    expand_contractions: bool = False
    lowercase: bool = False
    strip_punctuation: bool = False
    drop_missing: bool = False
    dedup: bool = False
    augment: tuple[str, ...] | str = ()
    augment_copies: int = 1
    augment_prob: float = 0.1
    augment_swaps: int = 1
    augment_replace_prob: float = 0.3
    augment_neighbors: int = 10
    neighbors: Mapping[str, tuple[str, ...]] | None = None
    seed: int = 0

    def __post_init__(self):
        ops = self.augment
        if isinstance(ops, str):
            ops = () if ops.strip().lower() == "none" else ops.replace("+", ",").split(",")
        self.augment = tuple(op.strip() for op in ops if op.strip())
        bad = [op for op in self.augment if op not in AUGMENT_OPS]
        if bad:
            raise ConfigError(f"augment: unknown op(s) {bad}; expected any of {AUGMENT_OPS}")
        if self.augment_copies < 0 or not 0.0 <= self.augment_prob <= 1.0:
            raise ConfigError(
                f"augment_copies must be >= 0 and augment_prob in [0, 1], got "
                f"{self.augment_copies}, {self.augment_prob}"
            )
        if not 0.0 <= self.augment_replace_prob <= 1.0 or self.augment_neighbors < 1:
            raise ConfigError(
                f"augment_replace_prob must be in [0, 1] and augment_neighbors >= 1, got "
                f"{self.augment_replace_prob}, {self.augment_neighbors}"
            )


def _keep_case(repl: str, match: re.Match) -> str:
    capital = match.group(0).lstrip()[:1].isupper() and repl[:1].islower()
    return repl[0].upper() + repl[1:] if capital else repl


def expand_contractions(text: str) -> str:
    """Apply the CONTRACTIONS then ABBREVIATIONS tables; keeps a leading capital."""
    for rule, repl in _RULES:
        text = rule.sub(functools.partial(_keep_case, repl), text)
    return text


@functools.cache
def _punctuation_table() -> dict[int, str]:
    # Built on first use: scanning all code points takes a noticeable fraction of a second.
    return {
        i: " "
        for i in range(0x110000)
        if unicodedata.category(chr(i)).startswith("P") or chr(i) in string.punctuation
    }


def remove_punctuation(text: str) -> str:
    """Punctuation / ASCII symbols -> space, whitespace runs -> one space, stripped."""
    out = text.translate(_punctuation_table())
    return text if out == text else _SPACES.sub(" ", out).strip()


def _map_texts(split: Split, fn) -> tuple[Split, dict]:
    """Apply ``fn`` to every text; counts the examples with any text changed."""
    a = [fn(t) for t in split.text_a]
    b = None if split.text_b is None else [fn(t) for t in split.text_b]
    out = dataclasses.replace(split, text_a=a, text_b=b)
    changed = sum(out.texts(i) != split.texts(i) for i in range(len(split)))
    return out, {"changed": int(changed)}


def _missing_rows(split: Split) -> np.ndarray:
    """[N] bool: some text of the row is empty / all space, or the label is missing."""
    empty = [any(not t.strip() for t in split.texts(i)) for i in range(len(split))]
    no_label = ~np.isfinite(split.label) if split.label.dtype.kind == "f" else split.label < 0
    return np.asarray(empty, bool) | no_label


def _drop_missing(split: Split, is_train: bool) -> tuple[Split, dict]:
    missing = _missing_rows(split)
    if not is_train:
        return split, {"removed": 0, "missing_kept": int(missing.sum())}
    return split.select(np.flatnonzero(~missing)), {"removed": int(missing.sum())}


def _remove_duplicates(split: Split) -> tuple[Split, dict]:
    seen, keep = set(), []
    for i in range(len(split)):
        key = (split.texts(i), float(split.label[i]))
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return split.select(keep), {"removed": len(split) - len(keep)}


def _augment_text(text: str, config: PreprocessConfig, rng: np.random.Generator) -> str:
    words = text.split()
    if "replace" in config.augment:
        words = [_replace_word(w, config, rng) for w in words]
    if "delete" in config.augment and len(words) > 1:
        kept = [w for w in words if rng.random() >= config.augment_prob]
        words = kept or [words[rng.integers(len(words))]]
    if "swap" in config.augment and len(words) > 1:
        for _ in range(config.augment_swaps):
            i, j = rng.choice(len(words), size=2, replace=False)
            words[i], words[j] = words[j], words[i]
    return " ".join(words)


def _replace_word(word: str, config: PreprocessConfig, rng: np.random.Generator) -> str:
    options = config.neighbors.get(word.lower())
    if not options or rng.random() >= config.augment_replace_prob:
        return word
    new = options[rng.integers(len(options))]
    if word.isupper() and len(word) > 1:
        return new.upper()
    return new[:1].upper() + new[1:] if word[:1].isupper() else new


def _augment(split: Split, config: PreprocessConfig) -> tuple[Split, dict]:
    if "replace" in config.augment and config.neighbors is None:
        raise ConfigError("augment=replace needs a neighbour table (PreprocessConfig.neighbors)")
    rng = np.random.default_rng(config.seed)
    a, b = list(split.text_a), None if split.text_b is None else list(split.text_b)
    for _ in range(config.augment_copies):
        for i in range(len(split)):
            a.append(_augment_text(split.text_a[i], config, rng))
            if b is not None:
                b.append(_augment_text(split.text_b[i], config, rng))
    reps = config.augment_copies + 1
    out = Split(
        text_a=a,
        text_b=b,
        label=np.tile(split.label, reps),
        idx=np.tile(split.idx, reps),  # a copy keeps the id of the row it came from
        name=split.name,
    )
    return out, {"added": len(out) - len(split)}


# name -> (is it on?, train only?, step(split, config, is_train) -> (split, counts)), in order.
STEPS = {
    "expand_contractions": (
        lambda c: c.expand_contractions,
        False,
        lambda s, c, t: _map_texts(s, expand_contractions),
    ),
    "lowercase": (lambda c: c.lowercase, False, lambda s, c, t: _map_texts(s, str.lower)),
    "strip_punctuation": (
        lambda c: c.strip_punctuation,
        False,
        lambda s, c, t: _map_texts(s, remove_punctuation),
    ),
    "drop_missing": (lambda c: c.drop_missing, False, lambda s, c, t: _drop_missing(s, t)),
    "dedup": (
        lambda c: c.dedup,
        True,
        lambda s, c, t: _remove_duplicates(s),
    ),
    "augment": (
        lambda c: bool(c.augment) and c.augment_copies > 0,
        True,
        lambda s, c, t: _augment(s, c),
    ),
}


def preprocess(split: Split, config: PreprocessConfig, *, is_train: bool) -> tuple[Split, dict]:
    """Run the switched-on steps on ``split``.

    Returns:
      (new Split, report) with report ``{"split", "is_train", "examples_in", "examples_out",
      "steps": {step: {"changed" | "removed" | "added" | "missing_kept": count}}}``; steps
      that are off are absent, train-only steps on an eval split report ``{"skipped": True}``.
    """
    report = {"split": split.name, "is_train": is_train, "examples_in": len(split), "steps": {}}
    for name, (enabled, train_only, step) in STEPS.items():
        if not enabled(config):
            continue
        if train_only and not is_train:
            report["steps"][name] = {"skipped": True}
            continue
        split, report["steps"][name] = step(split, config, is_train)
    report["examples_out"] = len(split)
    return split, report
