"""Word neighbours in a teacher's input-embedding space, for replacement augmentation.

TinyBERT (Jiao et al., 2020) augments a small task's training set by replacing words with
near neighbours: a masked-LM's predictions for single-piece words, GloVe neighbours otherwise.
Our teachers are sentence encoders without an MLM head, so the table here is the contextless
variant: for every whole-word WordPiece token that occurs in the texts, its ``k`` nearest
whole-word tokens by cosine similarity of the teacher's word-embedding rows. The distilling
teacher labels each augmented view, so a replacement that changes the meaning is still
supervised correctly (as long as the teacher is consulted on the augmented text).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np


def _is_word(token: str) -> bool:
    return token.isalpha() and not token.startswith("##")


def embedding_neighbors(
    vocab: Sequence[str],
    embeddings: np.ndarray,
    words: Iterable[str],
    *,
    k: int = 10,
    min_similarity: float = 0.0,
    chunk: int = 2048,
) -> Mapping[str, tuple[str, ...]]:
    """{word: its k nearest whole-word vocabulary tokens, most similar first}.

    Args:
      vocab: token strings, ``vocab[i]`` is row ``i`` of ``embeddings``.
      embeddings: [len(vocab), d] word-embedding matrix.
      words: the words to look up (matched lower-cased; those that are not a whole-word
        alphabetic token of ``vocab`` are skipped).
      k: neighbours kept per word.
      min_similarity: neighbours with a lower cosine similarity are dropped (a word whose
        every neighbour is dropped is absent from the table).
      chunk: query rows per similarity block (bounds memory at chunk x len(vocab)).
    """
    if embeddings.shape[0] != len(vocab):
        raise ValueError(f"embeddings has {embeddings.shape[0]} rows, vocab {len(vocab)} tokens")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    cand = np.array([i for i, t in enumerate(vocab) if _is_word(t)], dtype=np.int64)
    index = {vocab[i]: i for i in cand}
    query = sorted({w.lower() for w in words} & index.keys())
    if not query or len(cand) < 2:
        return {}
    emb = np.asarray(embeddings, dtype=np.float32)
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    cand_emb = emb[cand]
    take = min(k + 1, len(cand))
    table: dict[str, tuple[str, ...]] = {}
    for start in range(0, len(query), chunk):
        block = query[start:start + chunk]
        rows = np.array([index[w] for w in block])
        sims = emb[rows] @ cand_emb.T
        sims[cand[None, :] == rows[:, None]] = -np.inf  # never a word's own neighbour
        top = np.argpartition(-sims, take - 1, axis=1)[:, :take]
        for word, cols, sim in zip(block, top, sims, strict=True):
            # most similar first; ties broken by vocabulary order, so the table is stable
            order = sorted(cols, key=lambda c: (-sim[c], cand[c]))
            kept = [vocab[cand[c]] for c in order if sim[c] >= min_similarity][:k]
            if kept:
                table[word] = tuple(kept)
    return table


def split_neighbors(split, tokenizer, word_embeddings, *, k: int = 10):
    """:func:`embedding_neighbors` of every word of ``split`` (both texts), in the space of
    ``word_embeddings`` ([vocab, d], row i the token of ``tokenizer`` id i)."""
    vocab_ids = tokenizer.get_vocab()
    vocab = sorted(vocab_ids, key=vocab_ids.get)  # token of id i at position i
    words = {w for texts in (split.text_a, split.text_b or ()) for t in texts for w in t.split()}
    return embedding_neighbors(vocab, np.asarray(word_embeddings), words, k=k)
