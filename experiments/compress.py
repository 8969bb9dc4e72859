"""Compress a finished run and measure every method: dev metric, size, latency, throughput.

    python -m experiments.compress --run runs/mrpc/teacher \
        [--method fp32,bf16,int8_weight,int8_dynamic,magnitude,wanda,structured,...] \
        [--finetune EPOCHS] [--sparsity 0.5] [--scope global|layer|output] [--head_fraction 0.5] \
        [--ffn_fraction 0.5] [--percentile 100] [--seed N] [--alpha 0.5] [--feature_weight W] \
        [--augment_copies N] \
        [--out results/compression/mrpc/teacher]

Argument checks, then the library's study (``tkd_jax.compress.study.compress_run``): for each
method (``tkd_jax.compress.methods.METHODS``) the compressed model is written as safetensors
under ``<run>/compressed/``, loaded back from that file and evaluated on the dev split; latency
at batch 1 x 128 and throughput at batch 32 x 128 are then measured for all methods
interleaved in this process, the fp32 model as baseline. ``tkd_jax.compress.report.write``
writes ``results.json``, ``table.md``, two PNG plots and ``manifest.json`` to ``--out``.
Re-running reuses the compressed models already written with the same settings.
"""

from __future__ import annotations

import sys

from experiments import cli
from tkd_jax.compress import magnitude, methods, report, study
from tkd_jax.errors import ConfigError
from tkd_jax.train import reporting

DEFAULT_METHODS = ",".join(study.DEFAULT_METHODS)


def parse(argv):
    p = cli.make_parser(__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="workdir of a finished Transformer run")
    p.add_argument("--method", default=DEFAULT_METHODS)
    p.add_argument("--finetune", type=int, default=2, help="recovery fine-tuning epochs")
    p.add_argument("--sparsity", type=float, default=0.5)
    p.add_argument("--scope", default="global", choices=magnitude.SCOPES)
    p.add_argument("--head_fraction", type=float, default=0.5, help="share of heads removed")
    p.add_argument("--ffn_fraction", type=float, default=0.5, help="share of FFN neurons removed")
    p.add_argument("--percentile", type=float, default=100.0, help="int8 clip percentile")
    p.add_argument("--learning_rate", type=float, default=0.0, help="0 = the run's")
    p.add_argument("--seed", type=int, default=None,
                   help="recovery fine-tuning / head-importance seed (default: the run's)")
    p.add_argument("--alpha", type=float, default=methods.DEFAULT_ALPHA,
                   help="recovery: weight of the uncompressed model's soft labels "
                        "(1 - alpha on the task labels)")
    p.add_argument("--feature_weight", type=float, default=0.0,
                   help="recovery: weight of hidden-state MSE to the uncompressed model")
    p.add_argument("--augment_copies", type=int, default=0,
                   help="recovery: add N word-replacement views of each train row "
                        "(labelled by the uncompressed model's soft labels; use --alpha 1)")
    p.add_argument("--repeats", type=int, default=40, help="timed rounds at batch 1")
    p.add_argument("--repeats_b32", type=int, default=10, help="timed rounds at batch 32")
    p.add_argument("--out", default="", help="default results/compression/<task>/<run name>")
    p.add_argument("--data_dir")
    args = p.parse_args(argv)
    args.methods = methods.check_methods([m for m in args.method.split(",") if m])
    magnitude.check_sparsity(args.sparsity, "--sparsity")
    for name in ("head_fraction", "ffn_fraction"):
        if not 0.0 <= getattr(args, name) < 1.0:
            raise ConfigError(f"--{name}={getattr(args, name)}: expected a fraction in [0, 1) "
                              "(cannot prune more heads than exist, or all FFN neurons)")
    if not 0.0 < args.percentile <= 100.0:
        raise ConfigError(f"--percentile={args.percentile}: expected in (0, 100]")
    if args.seed is not None and args.seed < 0:
        raise ConfigError(f"--seed={args.seed}: expected a non-negative integer")
    if not 0.0 <= args.alpha <= 1.0:  # also rejects nan
        raise ConfigError(f"--alpha={args.alpha}: expected a weight in [0, 1]")
    if not args.feature_weight >= 0.0:  # also rejects nan
        raise ConfigError(f"--feature_weight={args.feature_weight}: expected a number >= 0")
    if args.augment_copies < 0:
        raise ConfigError(f"--augment_copies={args.augment_copies}: expected an integer >= 0")
    if args.finetune < 0 or args.repeats < 1 or args.repeats_b32 < 1:
        raise ConfigError("--finetune must be >= 0 and --repeats / --repeats_b32 >= 1")
    return args


def main(argv: list[str]) -> int:
    args = parse(argv)
    commit = reporting.git_commit()  # before this command writes into a tracked results dir
    records = study.compress_run(
        args.run, methods=args.methods, finetune=args.finetune, sparsity=args.sparsity,
        scope=args.scope, head_fraction=args.head_fraction, ffn_fraction=args.ffn_fraction,
        percentile=args.percentile, learning_rate=args.learning_rate, repeats=args.repeats,
        repeats_b32=args.repeats_b32, data_dir=args.data_dir, seed=args.seed,
        alpha=args.alpha, feature_weight=args.feature_weight,
        augment_copies=args.augment_copies)
    out = report.write(records, args.run, args.out or None,
                       settings={k: v for k, v in vars(args).items() if k != "methods"},
                       command="python -m experiments.compress " + " ".join(argv),
                       git_commit=commit)
    print((out / "table.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
