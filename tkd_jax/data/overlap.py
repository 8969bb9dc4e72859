"""How much of an evaluation split the training split already holds.

Two things a dev score can hide: leakage (dev examples that are training examples) and
adversarial overlap, where a dev example repeats a training text with the other label. The
second is WNLI's design (GLUE: its dev set shares sentences with train and flips the answer),
which is why a model that fits WNLI's train set scores below the majority class on dev. The
data report prints both so that a number like that is read for what it is.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from tkd_jax.data.examples import Split


def _labels_by(keys, labels) -> dict:
    seen = defaultdict(set)
    for key, label in zip(keys, labels.tolist(), strict=True):
        if label >= 0:  # unlabeled rows say nothing about a text's answer
            seen[key].add(label)
    return seen


def _pairs(split: Split) -> list[tuple]:
    return list(zip(split.text_a, split.text_b or [None] * len(split), strict=True))


def _unseen_label(train_keys, train_labels, keys, labels) -> np.ndarray:
    seen = _labels_by(train_keys, train_labels)
    return np.array([y >= 0 and k in seen and y not in seen[k]
                     for k, y in zip(keys, labels.tolist(), strict=True)], dtype=bool)


def contradicts_train(train: Split, other: Split) -> np.ndarray:
    """[len(other)] bool: labeled examples whose first text occurs in ``train``, where no
    training example with that text has their label (WNLI dev: 54 of 71)."""
    return _unseen_label(train.text_a, train.label, other.text_a, other.label)


def train_overlap(train: Split, other: Split, *, classification: bool) -> dict:
    """Count the examples of ``other`` whose texts occur in ``train`` (exact strings).

    Texts are compared as the source has them: no case or whitespace folding, so a
    near-duplicate is not counted. Returns a JSON-able dict:

    - ``examples``: ``len(other)``;
    - ``same_text_a`` / ``same_text_b``: examples whose first / second text is the first /
      second text of some training example (``same_text_b`` is None for single-text tasks);
    - ``same_pair``: examples whose whole input (both texts) is a training example's;
    - for classification, over the labeled examples of ``other``: ``label_unseen_text_a``,
      those sharing their first text with training examples none of which has their label,
      and ``label_unseen_pair``, the same for identical inputs (a leaked example answered
      the other way). Both are None for regression tasks.
    """
    pairs_train, pairs_other = _pairs(train), _pairs(other)
    text_a, text_b, pair = set(train.text_a), set(train.text_b or ()), set(pairs_train)
    out = {
        "examples": len(other),
        "same_text_a": sum(t in text_a for t in other.text_a),
        "same_text_b": (None if other.text_b is None or train.text_b is None
                        else sum(t in text_b for t in other.text_b)),
        "same_pair": sum(p in pair for p in pairs_other),
        "label_unseen_text_a": None,
        "label_unseen_pair": None,
    }
    if classification:
        out["label_unseen_text_a"] = int(contradicts_train(train, other).sum())
        out["label_unseen_pair"] = int(
            _unseen_label(pairs_train, train.label, pairs_other, other.label).sum())
    return out


def format_overlap(overlap: dict) -> str:
    """One line for the data report."""
    n, a = overlap["examples"], overlap["same_text_a"]
    parts = [f"{a} of {n} share text_a ({100 * a / (n or 1):.1f}%)"]
    if overlap["same_text_b"] is not None:
        parts.append(f"{overlap['same_text_b']} share text_b")
    parts.append(f"{overlap['same_pair']} are identical inputs")
    line = "  overlap with train: " + ", ".join(parts)
    if overlap["label_unseen_text_a"] is not None:
        line += (f"; a label no train example of the same text has: "
                 f"{overlap['label_unseen_text_a']} of the {a} sharing text_a, "
                 f"{overlap['label_unseen_pair']} of the {overlap['same_pair']} identical")
    return line
