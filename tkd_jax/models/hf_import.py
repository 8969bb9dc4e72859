"""Import a Hugging Face BERT checkpoint directory into our Transformer's parameter tree.

A BERT-format directory holds ``config.json``, ``model.safetensors`` (or sharded
``model-0000k-of-0000n.safetensors`` + ``model.safetensors.index.json``) and ``tokenizer.json``
and/or ``vocab.txt``. Only safetensors are read (with ``framework="np"``); a pickle-based
``pytorch_model.bin`` is refused with the one-line command that converts it, because loading a
pickle can run arbitrary code.

The mapping is an explicit key-by-key table (``EMBEDDING_KEYS``, ``LAYER_KEYS``,
``POOLER_KEYS``). Transposed tensors: every torch ``nn.Linear.weight`` ([out, in]) becomes a
Flax ``Dense`` kernel ([in, out]) — query/key/value, attention output, intermediate, output
and pooler dense. Embedding tables and LayerNorm ``weight``/``bias`` (older TF-converted
checkpoints: ``gamma``/``beta``) are copied as they are, LayerNorm ``weight`` becoming
``scale``. Every shape is checked against the tree ``Transformer(config).init`` would build
(obtained with ``jax.eval_shape``, so nothing is computed), and a missing or an unused tensor
is an error, except the names matched by ``DEFAULT_IGNORE``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util
from safetensors import SafetensorError, safe_open

from tkd_jax.errors import CheckpointError, ConfigError
from tkd_jax.models.transformer import Transformer, TransformerConfig

# Tensors a BERT checkpoint may carry that our encoder has no use for. Regexes, matched
# (re.fullmatch) against names after the optional "bert." prefix is stripped.
DEFAULT_IGNORE: tuple[str, ...] = (
    r"embeddings\.position_ids",  # a constant arange buffer saved by older transformers
    r"cls\..*",  # BertForPreTraining MLM / NSP heads: our encoder has no such heads
)

_Transform = Callable[[np.ndarray], np.ndarray]


def _copy(x: np.ndarray) -> np.ndarray:
    return x


def _transpose(x: np.ndarray) -> np.ndarray:
    """torch Linear.weight [out, in] -> Flax Dense kernel [in, out]."""
    return np.ascontiguousarray(x.T)


# HF name -> (our param path, transform). Paths are "/"-joined keys of the params tree.
EMBEDDING_KEYS: dict[str, tuple[str, _Transform]] = {
    "embeddings.word_embeddings.weight": ("embeddings/word_embeddings/embedding", _copy),
    "embeddings.position_embeddings.weight": ("embeddings/position_embeddings/embedding", _copy),
    "embeddings.token_type_embeddings.weight": (
        "embeddings/token_type_embeddings/embedding",
        _copy,
    ),
    "embeddings.LayerNorm.weight": ("embeddings/LayerNorm/scale", _copy),
    "embeddings.LayerNorm.bias": ("embeddings/LayerNorm/bias", _copy),
}

# Per encoder layer, relative to "encoder.layer.{i}." (HF) and "encoder/layer/{i}/" (ours).
LAYER_KEYS: dict[str, tuple[str, _Transform]] = {
    "attention.self.query.weight": ("attention/self/query/kernel", _transpose),
    "attention.self.query.bias": ("attention/self/query/bias", _copy),
    "attention.self.key.weight": ("attention/self/key/kernel", _transpose),
    "attention.self.key.bias": ("attention/self/key/bias", _copy),
    "attention.self.value.weight": ("attention/self/value/kernel", _transpose),
    "attention.self.value.bias": ("attention/self/value/bias", _copy),
    "attention.output.dense.weight": ("attention/output/dense/kernel", _transpose),
    "attention.output.dense.bias": ("attention/output/dense/bias", _copy),
    "attention.output.LayerNorm.weight": ("attention/output/LayerNorm/scale", _copy),
    "attention.output.LayerNorm.bias": ("attention/output/LayerNorm/bias", _copy),
    "intermediate.dense.weight": ("intermediate/dense/kernel", _transpose),
    "intermediate.dense.bias": ("intermediate/dense/bias", _copy),
    "output.dense.weight": ("output/dense/kernel", _transpose),
    "output.dense.bias": ("output/dense/bias", _copy),
    "output.LayerNorm.weight": ("output/LayerNorm/scale", _copy),
    "output.LayerNorm.bias": ("output/LayerNorm/bias", _copy),
}

POOLER_KEYS: dict[str, tuple[str, _Transform]] = {
    "pooler.dense.weight": ("pooler/dense/kernel", _transpose),
    "pooler.dense.bias": ("pooler/dense/bias", _copy),
}

# Our params that never come from the checkpoint: the task head is initialised fresh.
FRESH_PARAMS: tuple[str, ...] = ("classifier/kernel", "classifier/bias")

# config.json key -> TransformerConfig field. Required keys have no default here; the rest
# default to transformers' BertConfig defaults, as transformers itself would.
_REQUIRED_CONFIG = {
    "vocab_size": "vocab_size",
    "hidden_size": "hidden_size",
    "num_hidden_layers": "num_layers",
    "num_attention_heads": "num_heads",
    "intermediate_size": "intermediate_size",
}
_OPTIONAL_CONFIG = {  # hf key: (our field, BertConfig default)
    "max_position_embeddings": ("max_len", 512),
    "type_vocab_size": ("type_vocab_size", 2),
    "layer_norm_eps": ("layer_norm_eps", 1e-12),
    "hidden_dropout_prob": ("dropout_rate", 0.1),
    "attention_probs_dropout_prob": ("attention_dropout_rate", 0.1),
    "initializer_range": ("initializer_range", 0.02),
}
# HF "gelu" is the exact erf GELU, as ours; the tanh approximations are not implemented.
_ACTIVATIONS = {"gelu": "gelu", "relu": "relu"}

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
CONFIG = "config.json"
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")  # in order of preference

_PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")


def key_table(num_layers: int, *, use_pooler: bool) -> dict[str, tuple[str, _Transform]]:
    """The full HF-name -> (param path, transform) table for a ``num_layers`` encoder."""
    table = dict(EMBEDDING_KEYS)
    for i in range(num_layers):
        for hf, (ours, fn) in LAYER_KEYS.items():
            table[f"encoder.layer.{i}.{hf}"] = (f"encoder/layer/{i}/{ours}", fn)
    if use_pooler:
        table.update(POOLER_KEYS)
    return table


def weight_files(path: str | Path) -> list[Path]:
    """The safetensors file(s) of checkpoint directory ``path`` (one, or the index's shards).

    Raises CheckpointError when there are none; when only a pickle ``pytorch_model.bin`` is
    there, the message says how to convert it.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: teacher checkpoint directory does not exist")
    if (path / SAFETENSORS).is_file():
        return [path / SAFETENSORS]
    index = path / SAFETENSORS_INDEX
    if index.is_file():
        weight_map = _read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{index}: expected a non-empty 'weight_map' object")
        return [path / name for name in sorted(set(weight_map.values()))]
    if any((path / name).is_file() for name in _PICKLE_FILES):
        raise CheckpointError(
            f"{path}: only pytorch_model.bin (a pickle) found; tkd_jax reads safetensors only "
            "and never unpickles. Convert it once with: python -c \"from transformers import "
            f"AutoModel; AutoModel.from_pretrained('{path}').save_pretrained('{path}', "
            'safe_serialization=True)"'
        )
    raise CheckpointError(f"{path}: no {SAFETENSORS} (or {SAFETENSORS_INDEX}) found")


def tokenizer_file(path: str | Path) -> Path:
    """``tokenizer.json`` if present, else ``vocab.txt``; CheckpointError if neither."""
    path = Path(path)
    for name in TOKENIZER_FILES:
        if (path / name).is_file():
            return path / name
    raise CheckpointError(f"{path}: no tokenizer found (expected tokenizer.json or vocab.txt)")


def config_from_hf(
    hf_config: dict[str, Any],
    *,
    use_pooler: bool,
    num_labels: int = 0,
    dtype: Any = jnp.float32,
    source: str = CONFIG,
) -> TransformerConfig:
    """Map a BERT ``config.json`` dict onto a TransformerConfig (learned positions, CLS pooling).

    ``source`` only names the file in error messages.
    """
    model_type = hf_config.get("model_type", "bert")
    if model_type != "bert":
        raise CheckpointError(f"{source}: model_type {model_type!r} is not supported (need 'bert')")
    position_type = hf_config.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise CheckpointError(
            f"{source}: position_embedding_type {position_type!r} is not supported "
            "(need 'absolute')"
        )
    act = hf_config.get("hidden_act", "gelu")
    if act not in _ACTIVATIONS:
        raise CheckpointError(
            f"{source}: hidden_act {act!r} is not supported "
            f"(expected one of {sorted(_ACTIVATIONS)})"
        )
    missing = [k for k in _REQUIRED_CONFIG if k not in hf_config]
    if missing:
        raise CheckpointError(f"{source}: missing required key(s) {', '.join(missing)}")
    fields: dict[str, Any] = {ours: hf_config[hf] for hf, ours in _REQUIRED_CONFIG.items()}
    for hf, (ours, default) in _OPTIONAL_CONFIG.items():
        fields[ours] = hf_config.get(hf, default)
    if fields["hidden_size"] % fields["num_heads"]:
        raise CheckpointError(
            f"{source}: hidden_size {fields['hidden_size']} is not divisible by "
            f"num_attention_heads {fields['num_heads']}"
        )
    return TransformerConfig(
        **fields,
        activation=_ACTIVATIONS[act],
        position="learned",
        pooling="cls",
        use_pooler=use_pooler,
        num_labels=num_labels,
        dtype=dtype,
    )


def read_safetensors(files: Iterable[Path], ignore: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """All tensors of ``files`` as NumPy arrays, names as stored; ``ignore`` regexes are skipped.

    A file that cannot be parsed raises CheckpointError naming it.
    """
    tensors: dict[str, np.ndarray] = {}
    for file in files:
        try:
            with safe_open(str(file), framework="np") as f:
                for name in f.keys():
                    if not _ignored(_strip_prefix(name), ignore):
                        tensors[name] = f.get_tensor(name)
        except (SafetensorError, OSError, ValueError, TypeError) as e:
            raise CheckpointError(f"{file}: not a readable safetensors file ({e})") from None
    return tensors


def load_hf_bert(
    path: str | Path,
    *,
    num_labels: int = 0,
    dtype: Any = jnp.float32,
    rng: jax.Array | None = None,
    ignore: tuple[str, ...] = DEFAULT_IGNORE,
) -> tuple[TransformerConfig, dict[str, Any], Path]:
    """Load a BERT checkpoint directory as ``(config, params, tokenizer_path)``.

    Args:
      path: directory with config.json, model.safetensors and tokenizer.json / vocab.txt.
      num_labels: 0 for a bare encoder (no classifier, ``logits`` is None). When > 0 a new
        ``classifier`` head is initialised as BERT does: kernel [hidden, num_labels] ~
        Normal(0, initializer_range), bias zeros; this needs ``rng``.
      dtype: compute dtype put in the config (e.g. jnp.bfloat16). Params are stored in the
        config's ``param_dtype`` (float32).
      rng: a jax.random key, required when ``num_labels > 0``.
      ignore: regexes (full match, after stripping "bert.") of checkpoint tensors to skip.
        Any other tensor without a place in our tree is an error.

    Returns:
      The TransformerConfig (``use_pooler`` is True iff the checkpoint has pooler weights), the
      params pytree (``model.apply({"params": params}, ...)``), and the tokenizer file path.
    """
    path = Path(path)
    if num_labels > 0 and rng is None:
        raise ConfigError("load_hf_bert: num_labels > 0 needs rng= to initialise the classifier")
    files = weight_files(path)
    tokenizer_path = tokenizer_file(path)
    raw = read_safetensors(files, ignore)
    tensors = _normalise_names(raw, files[0])
    config = config_from_hf(
        _read_json(path / CONFIG),
        use_pooler="pooler.dense.weight" in tensors,
        num_labels=num_labels,
        dtype=dtype,
        source=str(path / CONFIG),
    )
    expected = expected_param_shapes(config)
    table = key_table(config.num_layers, use_pooler=config.use_pooler)
    flat = map_tensors(tensors, table, expected, source=str(path))
    if num_labels > 0:
        flat.update(_init_classifier(rng, config, expected))
    params = traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()})
    return config, params, tokenizer_path


def add_classifier(config: TransformerConfig, params: dict[str, Any], *, num_labels: int,
                   rng: jax.Array, dtype: Any = None) -> tuple[TransformerConfig, dict[str, Any]]:
    """A bare imported encoder (``num_labels=0``) with a new task head, initialised exactly as
    ``load_hf_bert(..., num_labels=num_labels, rng=rng)`` would (without reading the files
    again). ``dtype`` (optional) replaces the compute dtype."""
    config = config.replace(num_labels=num_labels, **({"dtype": dtype} if dtype else {}))
    head = _init_classifier(rng, config, expected_param_shapes(config))
    classifier = {path.split("/")[1]: value for path, value in head.items()}
    return config, {**params, "classifier": classifier}


def expected_param_shapes(config: TransformerConfig) -> dict[str, jax.ShapeDtypeStruct]:
    """``{"a/b/c": ShapeDtypeStruct}`` of ``Transformer(config).init`` without computing it."""
    ids = jnp.zeros((1, 2), jnp.int32)
    variables = jax.eval_shape(Transformer(config).init, jax.random.key(0), ids, jnp.ones_like(ids))
    flat = traverse_util.flatten_dict(variables["params"])
    return {"/".join(k): v for k, v in flat.items()}


def map_tensors(
    tensors: dict[str, np.ndarray],
    table: dict[str, tuple[str, _Transform]],
    expected: dict[str, jax.ShapeDtypeStruct],
    *,
    source: str,
) -> dict[str, jax.Array]:
    """Apply ``table`` to ``tensors``; return ``{param path: array}`` for every expected path.

    Errors (CheckpointError, naming ``source``): an expected param with no tensor (missing),
    a tensor with no expected param (unused), or a shape that differs after the transform.
    """
    out: dict[str, jax.Array] = {}
    unused = []
    for name, value in tensors.items():
        target = table.get(name)
        if target is None or target[0] not in expected:
            unused.append(name)
            continue
        ours, fn = target
        value = fn(value)
        want = expected[ours]
        if tuple(value.shape) != tuple(want.shape):
            raise CheckpointError(
                f"{source}: tensor {name} has shape {list(value.shape)} after mapping to {ours}, "
                f"expected {list(want.shape)}"
            )
        out[ours] = jnp.asarray(value, dtype=want.dtype)
    if unused:
        names = ", ".join(sorted(unused))
        raise CheckpointError(f"{source}: unused tensor(s) in checkpoint: {names}")
    reverse = {ours: hf for hf, (ours, _) in table.items()}
    missing = [p for p in expected if p not in out and p not in FRESH_PARAMS]
    if missing:
        names = [reverse.get(p, f"<no HF name for {p}>") for p in missing]
        raise CheckpointError(f"{source}: missing tensor(s) in checkpoint: {', '.join(names)}")
    return out


def _init_classifier(
    rng: jax.Array, config: TransformerConfig, expected: dict[str, jax.ShapeDtypeStruct]
) -> dict[str, jax.Array]:
    """BERT's head init: kernel ~ Normal(0, initializer_range), bias zeros."""
    kernel = expected["classifier/kernel"]
    bias = expected["classifier/bias"]
    init = jax.nn.initializers.normal(stddev=config.initializer_range)
    return {
        "classifier/kernel": init(rng, kernel.shape, kernel.dtype),
        "classifier/bias": jnp.zeros(bias.shape, bias.dtype),
    }


def _strip_prefix(name: str) -> str:
    # BertForPreTraining / BertForSequenceClassification save the encoder under "bert.".
    return name.removeprefix("bert.")


def _ignored(name: str, ignore: tuple[str, ...]) -> bool:
    return any(re.fullmatch(pattern, name) for pattern in ignore)


_LAYER_NORM_ALIASES = {"gamma": "weight", "beta": "bias"}  # TF-converted checkpoints


def _normalise_names(tensors: dict[str, np.ndarray], source: Path) -> dict[str, np.ndarray]:
    """Strip "bert.", rename LayerNorm gamma/beta; two tensors landing on one name is an error."""
    out: dict[str, np.ndarray] = {}
    for name, value in tensors.items():
        new = _strip_prefix(name)
        head, _, last = new.rpartition(".")
        if head.endswith("LayerNorm") and last in _LAYER_NORM_ALIASES:
            new = f"{head}.{_LAYER_NORM_ALIASES[last]}"
        if new in out:
            raise CheckpointError(f"{source}: tensor {name} duplicates {new}")
        out[new] = value
    return out


def _read_json(file: Path) -> dict[str, Any]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{file}: not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{file}: not readable JSON ({e})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{file}: expected a JSON object")
    return data
