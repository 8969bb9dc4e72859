"""NumPy batches with length bucketing, exact resume and per-process sharding.

A batch is a dict of NumPy arrays, ``B`` rows padded to a length ``L`` taken from a small
fixed set of bucket lengths (so a jitted step compiles at most one program per bucket):

  input_ids       int32   [B, L]  token ids, [PAD] after the real tokens
  attention_mask  int32   [B, L]  1 on tokens, 0 on padding
  token_type_ids  int32   [B, L]  0 for text a, 1 for text b
  label           int32   [B]     class id (-1 unlabeled); float32 for regression (stsb)
  weight          float32 [B]     1 for a real example, 0 for a padding row
  index           int32   [B]     position of the example in its (encoded) split; -1 for a
                                  padding row (used to look up cached teacher outputs)

Padding rows (weight 0) exist only to keep the batch size fixed: the last partial batch of an
epoch and of an eval pass. They hold the encoding of an empty text (``[CLS] [SEP]``), so every
row attends to at least one token and masked means never divide by zero; losses and metrics
must multiply by ``weight``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator

import numpy as np

from tkd_jax.data.tokenization import EncodedSplit
from tkd_jax.errors import ConfigError


def bucket_lengths(max_len: int, *, ratio: float = 1.12, min_len: int = 4) -> tuple[int, ...]:
    """Bucket lengths from ``min_len`` to ``max_len``, each about ``ratio`` times the last.

    A ratio of 1.12 wastes at most ~12% (~6% on average) of a batch on padding, which keeps
    the padding efficiency of length-sorted batches >= 0.9 on GLUE; for max_len 128 that is 30
    lengths, of which a task meets only those its examples need.
    """
    if max_len < 1 or ratio <= 1.0:
        raise ConfigError(f"bucket_lengths needs max_len >= 1 and ratio > 1, got {max_len} {ratio}")
    out, x = [], float(min(min_len, max_len))
    while x < max_len:
        length = math.ceil(round(x, 6))
        if not out or length > out[-1]:
            out.append(length)
        x *= ratio
    if not out or out[-1] != max_len:
        out.append(max_len)
    return tuple(out)


DEFAULT_BUCKETS = bucket_lengths(128)

# Measured on 2 Xeon cores (results/bench/): a cold train-step compile of minilm_l6 costs
# 10-25 s, a padded token ~0.25 ms of train compute (batch 32 x 128 in ~1 s in bf16).
COMPILE_SECONDS = 15.0
TOKEN_SECONDS = 2.5e-4


def balanced_bucket_lengths(
    lengths, max_len: int, *, batch_size: int, epochs: int = 1,
    compile_seconds: float = COMPILE_SECONDS, token_seconds: float = TOKEN_SECONDS,
    ratios=(1.12, 1.25, 1.5, 2.0),
) -> tuple[int, ...]:
    """The ``bucket_lengths(max_len, ratio=r)`` (r in ``ratios``) with the least estimated cost
    ``compiled shapes * compile_seconds + epochs * padded tokens * token_seconds``.

    ``lengths``: the token counts of the training examples. Batches are modelled as the sorted
    lengths cut into ``batch_size`` rows, each padded to the bucket of its longest row (the
    batcher sorts within chunks of 100 batches, so this is close). Small tasks (MRPC, RTE) get
    coarser buckets (fewer compiles), large ones (SST-2) finer (less padding); a warm
    persistent compilation cache makes compiles cheap, so pass a small ``compile_seconds``.
    """
    lengths = np.sort(np.asarray(lengths, np.int64))
    if lengths.size == 0:
        raise ConfigError("balanced_bucket_lengths needs at least one example length")
    batch_max = lengths[np.minimum(np.arange(batch_size - 1, len(lengths) + batch_size - 1,
                                             batch_size), len(lengths) - 1)]
    best, best_cost = None, math.inf
    for ratio in ratios:
        buckets = bucket_lengths(max_len, ratio=ratio)
        fit = np.asarray(buckets)[np.searchsorted(buckets, np.minimum(batch_max, max_len))]
        cost = (len(set(fit.tolist())) * compile_seconds
                + epochs * int(fit.sum()) * batch_size * token_seconds)
        if cost < best_cost:
            best, best_cost = buckets, cost
    return best


def run_bucket_lengths(lengths, max_len: int, *, ratio: float, batch_size: int,
                       epochs: float) -> tuple[int, ...]:
    """A run's bucket lengths: ``bucket_lengths(max_len, ratio=ratio)``, or for ``ratio == 0``
    :func:`balanced_bucket_lengths` over the training ``lengths``.

    The balance uses the fixed cost constants above, never the state of the compilation cache,
    so the same config and data always give the same buckets (and the same batches).
    """
    if ratio:
        return bucket_lengths(max_len, ratio=ratio)
    return balanced_bucket_lengths(lengths, max_len, batch_size=batch_size,
                                   epochs=max(epochs, 1.0))


def _check_buckets(encoded: EncodedSplit, buckets) -> tuple[int, ...]:
    buckets = tuple(int(b) for b in buckets)
    if not buckets or list(buckets) != sorted(set(buckets)) or buckets[0] < 1:
        raise ConfigError(f"buckets must be increasing positive lengths, got {buckets}")
    longest = int(encoded.lengths.max()) if len(encoded) else 0
    if longest > buckets[-1]:
        raise ConfigError(
            f"an example has {longest} tokens but the largest bucket is {buckets[-1]}; "
            "tokenize with max_len <= the largest bucket"
        )
    return buckets


def _fit(buckets: tuple[int, ...], length: int) -> int:
    return buckets[bisect.bisect_left(buckets, length)]


def make_batch(encoded: EncodedSplit, rows: np.ndarray, length: int) -> dict[str, np.ndarray]:
    """Pad ``rows`` (positions in ``encoded``; -1 = padding row) to ``[len(rows), length]``."""
    size = len(rows)
    input_ids = np.full((size, length), encoded.pad_id, np.int32)
    type_ids = np.zeros((size, length), np.int32)
    mask = np.zeros((size, length), np.int32)
    label = np.zeros(size, encoded.label.dtype)
    real = rows >= 0
    for r, i in enumerate(rows):
        ids, types = (
            (encoded.input_ids[i], encoded.token_type_ids[i])
            if i >= 0
            else (encoded.filler_ids, encoded.filler_type_ids)
        )
        input_ids[r, : len(ids)] = ids
        type_ids[r, : len(ids)] = types
        mask[r, : len(ids)] = 1
    label[real] = encoded.label[rows[real]]
    return {
        "input_ids": input_ids,
        "attention_mask": mask,
        "token_type_ids": type_ids,
        "label": label,
        "weight": real.astype(np.float32),
        "index": np.where(real, rows, -1).astype(np.int32),
    }


def _check_sharding(batch_size: int, process_index: int, process_count: int) -> int:
    if batch_size < 1 or process_count < 1 or batch_size % process_count:
        raise ConfigError(
            f"batch_size ({batch_size}) must be a positive multiple of the process count "
            f"({process_count})"
        )
    if not 0 <= process_index < process_count:
        raise ConfigError(f"process_index {process_index} not in [0, {process_count})")
    return batch_size // process_count


class TrainBatcher:
    """Length-bucketed, shuffled training batches; the order is a function of (seed, epoch).

    Each epoch: a permutation of the examples (seeded by ``(seed, epoch)``) is cut into chunks
    of ``sort_chunk_batches`` global batches; each chunk is sorted by length (ties stay in
    random order) and cut into batches, so a batch holds examples of similar length; then the
    batch order is shuffled. Every example appears exactly once per epoch; the one partial
    batch is filled with weight-0 rows. Each global batch is padded to the smallest bucket
    that holds its longest example, and process ``p`` gets rows ``[p*b, (p+1)*b)`` of it
    (``b = batch_size // process_count``): processes see disjoint examples, agree on
    ``steps_per_epoch`` and get equal shapes.

    Attributes:
      steps_per_epoch: ceil(N / batch_size).
      local_batch_size: rows per batch on this process.
    """

    def __init__(
        self,
        encoded: EncodedSplit,
        *,
        batch_size: int,
        seed: int,
        buckets=DEFAULT_BUCKETS,
        process_index: int = 0,
        process_count: int = 1,
        shuffle: bool = True,
        sort_chunk_batches: int = 100,
    ):
        if len(encoded) == 0:
            raise ConfigError("cannot batch an empty split")
        if seed < 0 or sort_chunk_batches < 1:
            raise ConfigError(f"seed must be >= 0 and sort_chunk_batches >= 1, got {seed}")
        self.local_batch_size = _check_sharding(batch_size, process_index, process_count)
        self.encoded = encoded
        self.batch_size = batch_size
        self.seed = seed
        self.buckets = _check_buckets(encoded, buckets)
        self.process_index = process_index
        self.shuffle = shuffle
        self.sort_chunk_batches = sort_chunk_batches
        self.steps_per_epoch = -(-len(encoded) // batch_size)

    def plan(self, epoch: int) -> np.ndarray:
        """int64 [steps_per_epoch, batch_size]: example positions of every global batch
        of ``epoch`` in step order (-1 = padding row)."""
        n, size = len(self.encoded), self.batch_size
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        chunk = size * self.sort_chunk_batches
        lengths = self.encoded.lengths
        chunks = np.split(order, range(chunk, n, chunk))
        parts = [c[np.argsort(lengths[c], kind="stable")] for c in chunks]
        rows = np.full(self.steps_per_epoch * size, -1, np.int64)
        rows[:n] = np.concatenate(parts)
        batches = rows.reshape(self.steps_per_epoch, size)
        if self.shuffle:
            batches = batches[rng.permutation(self.steps_per_epoch)]
        return batches

    def length_of(self, rows: np.ndarray) -> int:
        """Bucket length of a global batch."""
        real = rows[rows >= 0]
        longest = max(int(self.encoded.lengths[real].max()), len(self.encoded.filler_ids))
        return _fit(self.buckets, longest)

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[dict[str, np.ndarray]]:
        """This process's batches of ``epoch`` from step ``start_step`` on (for exact resume)."""
        if not 0 <= start_step <= self.steps_per_epoch:
            raise ConfigError(f"start_step {start_step} not in [0, {self.steps_per_epoch}]")
        return self._batches(self.plan(epoch)[start_step:])

    def _batches(self, plan: np.ndarray) -> Iterator[dict[str, np.ndarray]]:
        lo = self.process_index * self.local_batch_size
        for rows in plan:
            local = rows[lo : lo + self.local_batch_size]
            yield make_batch(self.encoded, local, self.length_of(rows))


def eval_batches(
    encoded: EncodedSplit,
    *,
    batch_size: int,
    buckets=DEFAULT_BUCKETS,
    process_index: int = 0,
    process_count: int = 1,
    sort_by_length: bool = False,
) -> Iterator[dict[str, np.ndarray]]:
    """Every example exactly once, in order; the last batch is filled with weight-0 rows.

    With several processes each global batch of ``batch_size`` is split as in TrainBatcher.
    ``sort_by_length=True`` visits the examples shortest first instead (less padding; metrics
    that sum over ``index`` / ``weight`` are unaffected).
    """
    local_size = _check_sharding(batch_size, process_index, process_count)
    buckets = _check_buckets(encoded, buckets)
    order = np.arange(len(encoded))
    if sort_by_length:
        order = np.argsort(encoded.lengths, kind="stable")
    # Validation above runs now; the batches are made lazily by the generator.
    lo = process_index * local_size
    return _eval_batches(encoded, order, batch_size, buckets, slice(lo, lo + local_size))


def _eval_batches(encoded, order, batch_size, buckets, local: slice):
    for start in range(0, len(encoded), batch_size):
        rows = np.full(batch_size, -1, np.int64)
        chunk = order[start : start + batch_size]
        rows[: len(chunk)] = chunk
        real = rows[rows >= 0]
        longest = max(int(encoded.lengths[real].max()), len(encoded.filler_ids))
        yield make_batch(encoded, rows[local], _fit(buckets, longest))


def padding_efficiency(batches) -> float:
    """Real tokens / padded token slots over ``batches`` (padding rows count as padding)."""
    real = slots = 0
    for batch in batches:
        real += int((batch["attention_mask"] * (batch["weight"][:, None] > 0)).sum())
        slots += batch["input_ids"].size
    return real / max(slots, 1)
