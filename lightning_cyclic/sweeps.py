"""Sweeps: every job records its result, every multirun ends with a leaderboard.

Each job of ``python train.py -m ...`` writes ``result.json`` (its overrides,
the optimized metric and the other final metrics) into its own folder;
:class:`Leaderboard`, a Hydra callback, reads them all when the multirun ends
(whatever the launcher: in-process, joblib, submitit) and writes
``leaderboard.csv`` into the sweep folder, best first, and prints it as a table.
:func:`best_of` reads a leaderboard back, for the coarse-then-fine search.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback as HydraCallback
from omegaconf import DictConfig

from lightning_cyclic.shapes._checks import check_choice

RESULT = "result.json"
LEADERBOARD = "leaderboard.csv"


def job_overrides() -> list[str]:
    """The overrides that make this job differ (empty outside a Hydra run)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except ValueError:  # HydraConfig not set: train(cfg) called directly
        return []


def write_result(folder: str | Path, metric: str, metrics: dict[str, float], overrides: list[str]) -> Path:
    """Record a finished job for the leaderboard."""
    path = Path(folder) / RESULT
    path.parent.mkdir(parents=True, exist_ok=True)
    value = metrics.get(metric)
    record = {"overrides": overrides, "metric": metric, "value": value, "metrics": metrics}
    path.write_text(json.dumps(record, indent=1))
    return path


def leaderboard(sweep_dir: str | Path, mode: str = "max") -> list[dict[str, Any]]:
    """Every job's record under ``sweep_dir``, best first; failed jobs (no value) last."""
    check_choice("mode", mode, ("min", "max"))
    rows = []
    for path in sorted(Path(sweep_dir).glob(f"*/{RESULT}")):
        record = json.loads(path.read_text())
        record["job"] = path.parent.name
        rows.append(record)

    def key(row: dict[str, Any]) -> tuple[int, float]:
        value = row.get("value")
        if value is None or not math.isfinite(value):
            return (1, 0.0)
        return (0, -value if mode == "max" else value)

    return sorted(rows, key=key)


def _short(override: str) -> str:
    """``key=value`` with a float value at 4 significant digits (``0.123456789`` -> ``0.1235``)."""
    key, sep, value = override.partition("=")
    try:
        number = float(value)
    except ValueError:
        return override
    if not sep or value.lstrip("+-").isdigit() or not math.isfinite(number):
        return override
    return f"{key}={number:.4g}"


def format_table(rows: list[dict[str, Any]], metric: str) -> str:
    """The leaderboard as a markdown table: the overrides that differ between jobs, floats shortened;
    the ones every job shares on a line above it."""
    everyone = set.intersection(*(set(r["overrides"]) for r in rows)) if len(rows) > 1 else set()
    lines = [f"shared by every job: {' '.join(sorted(everyone))}"] if everyone else []
    lines += [f"| rank | job | {metric} | overrides |", "|---|---|---|---|"]
    for i, row in enumerate(rows, 1):
        value = row.get("value")
        shown = f"{value:.4f}" if isinstance(value, (int, float)) else "failed"
        own = " ".join(_short(o) for o in row["overrides"] if o not in everyone)
        lines.append(f"| {i} | {row['job']} | {shown} | {own or '(defaults)'} |")
    return "\n".join(lines)


def write_leaderboard(sweep_dir: str | Path, metric: str, mode: str = "max") -> tuple[Path, str]:
    rows = leaderboard(sweep_dir, mode)
    path = Path(sweep_dir) / LEADERBOARD
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["rank", "job", metric, "overrides"])
        for i, row in enumerate(rows, 1):
            writer.writerow([i, row["job"], row.get("value"), " ".join(row["overrides"])])
    return path, format_table(rows, metric)


def best_of(path: str | Path, key: str) -> float:
    """The value of override ``key`` in the best row of a leaderboard CSV (for ``hparams_search=fine``)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"the leaderboard {path} has no rows")
    for row in rows:  # best first; skip failed jobs
        if row[next(iter(k for k in row if k not in ("rank", "job", "overrides")))] in ("", "None"):
            continue
        for override in row["overrides"].split():
            name, _, value = override.partition("=")
            if name.lstrip("+~") == key:
                return float(value)
        raise ValueError(f"the best job of {path} has no override {key!r}: {row['overrides']!r}")
    raise ValueError(f"every job of {path} failed")


class Leaderboard(HydraCallback):
    """Hydra callback: at the end of a multirun, ``leaderboard.csv`` in the sweep folder and a printed table."""

    def __init__(self, metric: str = "val/acc", mode: str = "max") -> None:
        check_choice("mode", mode, ("min", "max"))
        self.metric, self.mode = metric, mode

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.exists():
            return
        path, table = write_leaderboard(sweep_dir, self.metric, self.mode)
        print(f"\n[lightning_cyclic] leaderboard ({self.metric}, {self.mode} first): {path}\n{table}")


def around(leaderboard_csv: str, key: str, factor: str | float) -> str:
    """An Optuna sweeper range, log-uniform from best/factor to best*factor, centred on ``key``'s best value."""
    best = best_of(leaderboard_csv, key)
    factor = float(factor)
    return f"tag(log, interval({best / factor:.6g}, {best * factor:.6g}))"


def register_resolvers() -> None:
    """``${lc.around:<leaderboard.csv>,<key>,<factor>}`` for ``hparams_search=fine``."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("lc.around"):
        OmegaConf.register_new_resolver("lc.around", around)
