"""WordPiece tokenization with HF ``tokenizers`` (BERT uncased), and encoding whole splits.

``load_wordpiece`` rebuilds BERT's tokenizer from a checkpoint's ``vocab.txt`` (the pipeline of
``BertTokenizerFast``: BERT normaliser, BERT pre-tokeniser, WordPiece with ``##`` and
``[UNK]``, ``[CLS] a [SEP] b [SEP]`` post-processor), so ids equal HF's. ``train_wordpiece``
learns a vocabulary from task text for students without a pretrained one; save it with
``tokenizer.save(path)`` and reload it with ``tokenizers.Tokenizer.from_file(path)``.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers.trainers import WordPieceTrainer

from tkd_jax.data.examples import Split
from tkd_jax.errors import CheckpointError, ConfigError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def _assemble(model: models.Model, *, lowercase: bool) -> Tokenizer:
    """BERT's normaliser / pre-tokeniser / post-processor around a WordPiece model."""
    tok = Tokenizer(model)
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    # As in HF's BERT tokenizer.json: these strings in the text map to their ids unsplit.
    tok.add_special_tokens([t for t in SPECIAL_TOKENS if tok.token_to_id(t) is not None])
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    if cls is None or sep is None:  # an untrained model: train_wordpiece assembles again
        return tok
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return tok


def load_wordpiece(vocab_path, *, lowercase: bool = True) -> Tokenizer:
    """BERT WordPiece tokenizer from ``vocab.txt`` (a file, or a checkpoint dir holding it).

    Raises:
      CheckpointError: no vocab.txt, or it lacks one of [PAD] [UNK] [CLS] [SEP].
    """
    path = pathlib.Path(vocab_path).expanduser()
    if path.is_dir():
        path = path / "vocab.txt"
    if not path.is_file():
        raise CheckpointError(f"{path}: vocab file not found; expected a BERT vocab.txt")
    vocab = models.WordPiece.read_file(str(path))
    missing = [t for t in SPECIAL_TOKENS[:4] if t not in vocab]
    if missing:
        raise CheckpointError(f"{path}: vocab lacks {', '.join(missing)}; expected a BERT vocab")
    model = models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100)
    return _assemble(model, lowercase=lowercase)


def _continuation_chars(tok: Tokenizer, texts: list[str]) -> list[str]:
    """Sorted "##c" for every char c that occurs after the first char of a word in texts."""
    chars = set()
    for text in texts:
        for word, _ in tok.pre_tokenizer.pre_tokenize_str(tok.normalizer.normalize_str(text)):
            chars.update(word[1:])
    return [f"##{c}" for c in sorted(chars)]


def train_wordpiece(
    texts,
    *,
    vocab_size: int,
    min_frequency: int = 2,
    lowercase: bool = True,
) -> Tokenizer:
    """Learn a WordPiece vocabulary from ``texts`` (an iterable of str), deterministically.

    The result has the same pipeline as :func:`load_wordpiece`; ids 0..4 are
    [PAD] [UNK] [CLS] [SEP] [MASK]. The same texts give the same vocabulary.
    """
    if vocab_size <= len(SPECIAL_TOKENS):
        raise ConfigError(f"vocab_size must exceed {len(SPECIAL_TOKENS)}, got {vocab_size}")
    texts = list(texts)
    tok = _assemble(models.WordPiece(unk_token="[UNK]"), lowercase=lowercase)
    # The Rust trainer numbers continuation pieces ("##e") in hash-map order, which changes
    # from process to process and, through tie-breaking between equally frequent merges,
    # changes the learned vocabulary. Registering every "##<char>" up front, sorted, as an
    # initial token fixes all ids, so merges (ties broken by id) are reproducible. No
    # limit_alphabet: a limit would drop equally rare chars in hash-map order.
    trainer = WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[*SPECIAL_TOKENS, *_continuation_chars(tok, texts)],
        continuing_subword_prefix="##",
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    # The post-processor was built before [CLS]/[SEP] existed; rebuild it with their ids.
    return _assemble(tok.model, lowercase=lowercase)


@dataclasses.dataclass
class EncodedSplit:
    """A tokenized split (ragged: no padding yet).

    Attributes:
      input_ids: N arrays of int32 [len_i] (with [CLS] / [SEP]).
      token_type_ids: N arrays of int32 [len_i] (0 for text a, 1 for text b).
      label: [N] int32 class ids or float32 scores (as in the Split).
      lengths: [N] int32 token counts after truncation.
      pad_id: id of [PAD] (used by the batcher).
      num_truncated: examples cut to max_len.
      filler_ids, filler_type_ids: int32 encoding of an empty text ([CLS] [SEP]); the batcher
        puts it in weight-0 padding rows so that no row is fully masked.
    """

    input_ids: list[np.ndarray]
    token_type_ids: list[np.ndarray]
    label: np.ndarray
    lengths: np.ndarray
    pad_id: int = 0
    num_truncated: int = 0
    filler_ids: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int32))
    filler_type_ids: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros(0, np.int32)
    )

    def __len__(self) -> int:
        return len(self.input_ids)


def encode_split(tokenizer: Tokenizer, split: Split, *, max_len: int) -> EncodedSplit:
    """Tokenize a split: ``[CLS] a [SEP]`` or ``[CLS] a [SEP] b [SEP]``, at most max_len ids.

    Pairs are truncated longest-first by ``tokenizers`` itself (as HF's
    ``truncation=True``). The tokenizer's own truncation / padding settings are restored after.
    """
    if max_len < 3:
        raise ConfigError(f"max_len must be at least 3 ([CLS] x [SEP]), got {max_len}")
    saved_trunc, saved_pad = tokenizer.truncation, tokenizer.padding
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_len, strategy="longest_first")
    try:
        inputs = (
            split.text_a
            if split.text_b is None
            else list(zip(split.text_a, split.text_b, strict=True))
        )
        encodings = tokenizer.encode_batch(inputs) if inputs else []
        filler = tokenizer.encode("")
    finally:
        _restore(tokenizer, saved_trunc, saved_pad)
    ids = [np.asarray(e.ids, dtype=np.int32) for e in encodings]
    types = [np.asarray(e.type_ids, dtype=np.int32) for e in encodings]
    pad_id = tokenizer.token_to_id("[PAD]")
    return EncodedSplit(
        input_ids=ids,
        token_type_ids=types,
        label=split.label.copy(),
        lengths=np.fromiter((len(x) for x in ids), dtype=np.int32, count=len(ids)),
        pad_id=0 if pad_id is None else pad_id,
        # The cut-off tail of a truncated example lands in its `overflowing` encodings.
        num_truncated=sum(1 for e in encodings if e.overflowing),
        filler_ids=np.asarray(filler.ids, dtype=np.int32),
        filler_type_ids=np.asarray(filler.type_ids, dtype=np.int32),
    )


def _restore(tokenizer: Tokenizer, trunc, pad) -> None:
    tokenizer.no_truncation()
    if trunc:
        tokenizer.enable_truncation(
            trunc["max_length"], stride=trunc["stride"], strategy=trunc["strategy"]
        )
    tokenizer.no_padding()
    if pad:
        pad = dict(pad)
        pad.pop("strategy", None)
        tokenizer.enable_padding(**pad)
