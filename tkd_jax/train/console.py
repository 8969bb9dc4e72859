"""What a run tells its user: a start summary, progress, one line per evaluation, the result.

On a terminal the progress is a tqdm bar naming the epoch, with the loss and examples/s;
without one (a log file, CI, a notebook's captured output) it is a plain line every
``every_seconds`` (and at each epoch's end). ``quiet`` prints nothing (errors still reach
stderr through the CLI).
"""

from __future__ import annotations

import sys
import time
from typing import Any

# Metrics worth a place on the one-line eval summary, in this order.
_SHOWN = ("accuracy", "f1", "mcc", "pearson", "spearman", "glue_score", "loss", "mlm_accuracy",
          "mlm_loss", "perplexity")


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


class Console:
    def __init__(self, *, quiet: bool = False, progress_bar: bool = True, stream=None,
                 every_seconds: float = 30.0):
        self.quiet = quiet
        self.stream = stream or sys.stdout
        self.tty = bool(progress_bar) and getattr(self.stream, "isatty", lambda: False)()
        self.every = every_seconds
        self._bar = None
        self._last_line = 0.0
        self._postfix: dict[str, str] = {}

    def print(self, text: str = "") -> None:
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def start(self, rows: list[tuple[str, Any]]) -> None:
        """The start summary: one ``key: value`` line each."""
        width = max(len(k) for k, _ in rows)
        for key, value in rows:
            self.print(f"{key:<{width}}  {value}")

    # -- progress ------------------------------------------------------------------------
    def begin(self, *, total: int, initial: int, steps_per_epoch: int) -> None:
        self.total, self.steps_per_epoch = total, steps_per_epoch
        self.epochs = -(-total // steps_per_epoch)
        self._last_line = time.monotonic()
        if self.tty and not self.quiet:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, dynamic_ncols=True, unit="step",
                             file=self.stream)

    def _epoch(self, step: int) -> int:
        return min((max(step, 1) - 1) // self.steps_per_epoch + 1, self.epochs)

    def step(self, step: int) -> None:
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.set_description(f"epoch {self._epoch(step)}/{self.epochs}", refresh=False)
            self._bar.update(1)
            return
        now = time.monotonic()
        if now - self._last_line >= self.every or step % self.steps_per_epoch == 0:
            self._last_line = now
            extra = "".join(f" {k} {v}" for k, v in self._postfix.items())
            self.print(f"step {step}/{self.total} (epoch {self._epoch(step)}/{self.epochs})"
                       f"{extra}")

    def train_metrics(self, summary: dict) -> None:
        self._postfix = {"loss": f"{summary['loss']:.4f}",
                         "ex/s": f"{summary['examples_per_second']:.0f}"}
        if self._bar is not None:
            self._bar.set_postfix(self._postfix, refresh=False)

    def evaluation(self, step: int, flat: dict) -> None:
        """One line from the flattened eval record ({"<split>/<metric>": value})."""
        shown = [f"{key} {_fmt(flat[key])}" for name in _SHOWN for key in sorted(flat)
                 if key.endswith(f"/{name}")]
        self.print(f"eval at step {step} (epoch {self._epoch(step)}): {'  '.join(shown)}")

    def end(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
