"""Reproduction tables (issue 12): rows and comparisons, trivial baselines, statistics per
cell, markdown/CSV tables, plots and results/REPRODUCTION.md.

    python -m experiments.tables [--runs_dir results/runs] [--out results]
"""
