"""The PyTorch / Hugging Face contenders of ``experiments.bench`` (optional ``peer`` extra).

``load()`` returns None when torch or transformers is missing (``--peer auto``), so neither the
package nor the tests ever need torch. The model is ``BertForSequenceClassification`` built from
the installed all-MiniLM-L6-v2 files (the same architecture as our ``minilm_l6``; fresh
classifier), on the same random token ids as ours.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from tkd_jax.errors import ConfigError
from tkd_jax.models import teacher as teacher_lib


@dataclasses.dataclass
class Peer:
    torch: Any
    transformers: Any
    model_dir: str
    compile: bool

    @property
    def version(self) -> str:
        return (f"torch {self.torch.__version__} + transformers {self.transformers.__version__} "
                f"({self.torch.get_num_threads()} threads)")

    def _model(self, train: bool):
        self.torch.manual_seed(0)
        model = self.transformers.BertForSequenceClassification.from_pretrained(
            self.model_dir, num_labels=2)
        return model.train() if train else model.eval()

    def _inputs(self, batch: int, seq: int):
        from experiments.bench import fake_batch

        b = fake_batch(batch, seq, 30522)
        t = lambda k: self.torch.from_numpy(b[k].astype(np.int64))  # noqa: E731
        return {"input_ids": t("input_ids"), "attention_mask": t("attention_mask"),
                "token_type_ids": t("token_type_ids")}, t("label")

    def contenders(self, what: str, batch: int, seq: int) -> dict:
        torch = self.torch
        inputs, labels = self._inputs(batch, seq)
        bf16 = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
        if what == "train":
            out = {}
            for name, ctx in (("torch eager fp32", None), ("torch bf16 autocast", bf16)):
                out[name] = self._train_step(self._model(train=True), inputs, labels, ctx)
            return out
        model = self._model(train=False)

        def forward(m, ctx=None):
            def call():
                with torch.inference_mode():
                    if ctx is None:
                        return m(**inputs).logits
                    with ctx():
                        return m(**inputs).logits
            return call

        out = {"torch eager fp32": forward(model), "torch bf16 autocast": forward(model, bf16)}
        if self.compile:
            compiled = torch.compile(model)
            out["torch.compile fp32"] = forward(compiled)
        return out

    def _train_step(self, model, inputs, labels, ctx):
        torch = self.torch
        no_decay = [p for n, p in model.named_parameters() if "bias" in n or "LayerNorm" in n]
        decay = [p for n, p in model.named_parameters()
                 if not ("bias" in n or "LayerNorm" in n)]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=1e-4)

        def step():
            if ctx is None:
                loss = model(**inputs, labels=labels).loss
            else:
                with ctx():
                    loss = model(**inputs, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss.item()  # synchronous on CPU; .item() makes that explicit

        return step


def load(teacher: str | None, *, threads: int, compile: bool, required: bool) -> Peer | None:
    """The peer, or None when torch / transformers are not installed (unless ``required``)."""
    try:
        import torch
        import transformers
    except ImportError as e:
        if required:
            raise ConfigError(f"--peer on needs torch and transformers (pip install -e "
                              f"'.[peer]'): {e}") from None
        return None
    torch.set_num_threads(threads)
    model_dir = str(teacher_lib.resolve_teacher(teacher))
    return Peer(torch=torch, transformers=transformers, model_dir=model_dir, compile=compile)
