"""Compress a finished run and measure every method: dev metric, size, latency, throughput.

    python -m experiments.compress --run runs/mrpc/teacher \
        [--method fp32,bf16,int8_weight,int8_dynamic,magnitude,structured,...] \
        [--finetune EPOCHS] [--sparsity 0.5] [--scope global|layer] [--head_fraction 0.5] \
        [--ffn_fraction 0.5] [--percentile 100] [--out results/compression/mrpc/teacher]

For each method (``tkd_jax.compress.methods.METHODS``) the compressed model is written as
safetensors under ``<run>/compressed/``, loaded back from that file and evaluated on the dev
split. Latency at batch 1 x 128 and throughput at batch 32 x 128 are then measured for all
methods interleaved in this process, the fp32 model as baseline. Writes ``results.json``,
``manifest.json``, ``README.md`` (the table) and two PNG plots to ``--out``. Re-running
reuses the compressed models already written with the same settings.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import time

import jax
import numpy as np

from experiments import cli
from tkd_jax.compress import magnitude, measure, methods, report, run_io, runtime, storage
from tkd_jax.errors import ConfigError
from tkd_jax.models.transformer import Transformer
from tkd_jax.train import reporting

DEFAULT_METHODS = ("fp32,bf16,int8_weight,int8_dynamic,magnitude_oneshot,magnitude,"
                   "structured_oneshot,structured,structured_int8_dynamic,qat_int8")


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
    if args.finetune < 0 or args.repeats < 1 or args.repeats_b32 < 1:
        raise ConfigError("--finetune must be >= 0 and --repeats / --repeats_b32 >= 1")
    return args


def settings_of(args, method: str) -> dict:
    s = {"method": method, "percentile": args.percentile}
    if method.startswith("magnitude"):
        s.update(sparsity=args.sparsity, scope=args.scope)
    if method.startswith("structured"):
        s.update(head_fraction=args.head_fraction, ffn_fraction=args.ffn_fraction)
    if method in methods.FINETUNED:
        s.update(finetune=args.finetune, learning_rate=args.learning_rate)
    return s


def produce(ctx, args, method: str, workdir: pathlib.Path) -> dict:
    """Write <workdir>/<method>.safetensors (or reuse it) and return its record."""
    path, record_path = workdir / f"{method}.safetensors", workdir / f"{method}.json"
    settings = settings_of(args, method)
    if path.exists() and record_path.exists():
        record = json.loads(record_path.read_text())
        if record.get("settings") == settings:
            print(f"{method}: reusing {path}")
            return record
    print(f"{method}: producing")
    t = time.perf_counter()
    product = methods.METHODS[method](ctx)
    cost = time.perf_counter() - t
    if method == "structured_int8_dynamic":  # its pruning and fine-tuning are structured's
        cost = 0.0
    file_bytes = storage.save(path, product.config, product.params, encoding=product.encoding,
                              meta={"method": method, "runtime": product.runtime},
                              percentile=args.percentile)
    record = {"method": method, "settings": settings, "runtime": product.runtime,
              "file_bytes": file_bytes, "cost_seconds": cost,
              "num_params": methods.count_params(product.params), "info": product.info,
              "dense_f32_bytes": storage.dense_bytes(product.params)}
    if method.startswith("magnitude"):
        nz = sum(int(np.count_nonzero(v)) for v in jax.tree.leaves(product.params))
        record["num_nonzero_params"] = nz
    reporting.write_json(record_path, record)
    return record


def main(argv: list[str]) -> int:
    args = parse(argv)
    commit = reporting.git_commit()  # before this command writes into a tracked results dir
    run_dir = pathlib.Path(args.run)
    module, params, desc = run_io.load_run(run_dir)
    manifest = run_io.run_manifest(run_dir)
    spec, encoded, run_config = run_io.load_run_data(run_dir, data_dir=args.data_dir)
    dev_split = spec.eval_splits[0]
    lr = args.learning_rate or float(run_config.learning_rate)
    ctx = methods.Context(module=module, params=params, spec=spec,
                          encoded_train=encoded["train"], finetune_epochs=args.finetune,
                          learning_rate=lr, batch_size=int(run_config.batch_size),
                          sparsity=args.sparsity, scope=args.scope,
                          head_fraction=args.head_fraction, ffn_fraction=args.ffn_fraction,
                          percentile=args.percentile, seed=int(run_config.seed))
    workdir = run_dir / "compressed"
    workdir.mkdir(parents=True, exist_ok=True)
    records = [produce(ctx, args, m, workdir) for m in args.methods]
    del ctx

    models, fp32_kernel = {}, None
    for rec in records:  # everything below runs from the saved files
        cfg, loaded, _ = storage.load(workdir / f"{rec['method']}.safetensors")
        apply, rparams = runtime.make_runtime(rec["runtime"], Transformer(cfg), loaded)
        apply = jax.jit(apply)
        rec["dev"] = run_io.evaluate(apply, rparams, spec, encoded[dev_split])
        stored = storage.stored_bytes(workdir / f"{rec['method']}.safetensors")
        rec["kernel_bytes"] = sum(v for k, v in stored.items() if k.endswith("/kernel"))
        if rec["method"] == "fp32":
            fp32_kernel = rec["kernel_bytes"]
        models[rec["method"]] = (apply, rparams)
        print(f"{rec['method']}: dev {spec.main_metric} {rec['dev'][spec.main_metric]:.4f}, "
              f"file {rec['file_bytes']:,} B")
    if "fp32" not in models:
        models["fp32"] = runtime.make_runtime("fp32", module, params)
    base = next((r for r in records if r["method"] == "fp32"), None)
    base_bytes = base["file_bytes"] if base else storage.dense_bytes(params)
    base_kernel = fp32_kernel or sum(np.asarray(v).nbytes for k, v in
                                     _flat(params).items() if k.endswith("/kernel"))
    timing = {}
    for key, batch, reps in (("latency_b1", 1, args.repeats), ("latency_b32", 32,
                                                                args.repeats_b32)):
        print(f"timing batch {batch} x 128, {reps} interleaved rounds")
        timing[key] = measure.time_interleaved(models, batch=batch, seq=128, repeats=reps,
                                               baseline="fp32")
    for rec in records:
        rec["latency_b1"] = timing["latency_b1"][rec["method"]]
        rec["latency_b32"] = timing["latency_b32"][rec["method"]]
        rec["size_ratio"] = base_bytes / rec["file_bytes"]
        rec["kernel_ratio"] = base_kernel / max(rec["kernel_bytes"], 1)
        if "num_nonzero_params" in rec:
            rec["stored_nonzero_note"] = (f"values + bitmask; dense fp32 "
                                          f"{rec['dense_f32_bytes'] / 2**20:.1f} MiB")

    out = pathlib.Path(args.out or f"results/compression/{spec.name}/{run_dir.name}")
    out.mkdir(parents=True, exist_ok=True)
    title = f"{spec.name} {manifest.get('recipe')} run `{run_dir.name}` ({desc.get('name')})"
    reporting.write_json(out / "results.json", records)
    pngs = report.plots(records, out, metric=spec.main_metric, title=title)
    table = report.markdown_table(records, metric=spec.main_metric, title=title)
    (out / "table.md").write_text(table)
    reporting.write_json(out / "manifest.json", {
        "command": "python -m experiments.compress " + " ".join(argv),
        "git_commit": commit, "created_unix": time.time(),
        "run": {"dir": str(run_dir), "task": spec.name, "recipe": manifest.get("recipe"),
                "git_commit": manifest.get("git_commit"), "model": desc},
        "settings": {k: v for k, v in vars(args).items() if k not in ("methods",)},
        "machine": measure.cpu_info(), "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "packages": reporting.package_versions(), "plots": pngs})
    print(table)
    return 0


def _flat(params):
    from flax import traverse_util

    return {"/".join(k): v for k, v in traverse_util.flatten_dict(params).items()}


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
