"""Reproducible sweeps: a grid of config overrides (or of named configs) × seeds, one run directory each, mean ± std tables.

* :mod:`jsnn.sweep.grid` — :func:`parse_grid`, :func:`parse_seeds`, :func:`parse_shard`,
  :func:`expand`, :func:`shard_runs`, :func:`run_config`.
* :mod:`jsnn.sweep.runner` — :func:`run_sweep` (trains and optionally evaluates this shard's
  unfinished runs; every config validated before the first run starts), :func:`is_finished`.
* :mod:`jsnn.sweep.summary` — :func:`write_summary` (``summary.csv``, ``summary.md``, plots).

The commands that rerun one run alone are built in ``launch/commands.py``.

Example:
    >>> import ml_collections
    >>> from jsnn import sweep
    >>> config = ml_collections.ConfigDict({"seed": 0, "model": {"T": 4}})
    >>> [r.name for r in sweep.expand(sweep.parse_grid("model.T=2,4", config), (0,))]
    ['model.T=2/seed=0', 'model.T=4/seed=0']
"""

from jsnn.sweep.grid import (CONFIG_AXIS, SPEC_KEYS, Grid, Point, Run, config_names, expand, format_value, grid_points, load_sweep_spec, parse_grid,
                             parse_overrides, parse_seeds, parse_shard, parse_value, point_name, run_config, run_name,
                             shard_runs)
from jsnn.sweep.runner import (ERROR, SWEEP_JSON, SweepReport, check_same_config, is_finished, make_evaluate, run_sweep,
                               write_sweep_record)
from jsnn.sweep.summary import (CLEAN_METRIC, PLOTS, RESULTS, ROBUSTNESS, SUMMARY_CSV, SUMMARY_MD, Row, collect,
                                evaluation_complete, mean_std, plot_robustness, plot_summary, record_eps, robust_metrics,
                                run_flags, run_metrics, summarize, write_summary)

__all__ = ["CLEAN_METRIC", "CONFIG_AXIS", "ERROR", "SPEC_KEYS", "config_names", "plot_robustness", "record_eps", "run_flags", "Grid", "PLOTS", "Point", "RESULTS", "ROBUSTNESS", "Row", "Run", "SUMMARY_CSV",
           "SUMMARY_MD", "SWEEP_JSON", "SweepReport", "check_same_config", "collect", "evaluation_complete", "expand",
           "format_value", "grid_points", "is_finished", "load_sweep_spec", "make_evaluate", "mean_std",
           "parse_grid", "parse_overrides", "parse_seeds", "parse_shard", "parse_value", "plot_summary",
           "point_name", "robust_metrics", "run_config", "run_metrics", "run_name", "run_sweep", "shard_runs",
           "summarize", "write_summary", "write_sweep_record"]
