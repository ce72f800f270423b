"""Each optimizer config's lr: chosen on digits, scored on MNIST-1D, under every shipped schedule.

    python recipes/optimizers/defaults.py             # the choice and the check (about 20 minutes on 2 cores)
    python recipes/optimizers/defaults.py --quick     # a smoke run: digits, 1 epoch, 2 optimizers (CI)
    python recipes/optimizers/defaults.py --report-only

Every shipped schedule config peaks at (or holds) ``${optimizer.lr}``, so an optimizer config's ``lr`` is the one
number that decides whether ``python train.py optimizer=<name> schedule=<name>`` trains. This study runs the app
itself (``lightning_cyclic.run.train`` on the shipped configs, every other value at its default):

1. **choice** (in-sample, digits: the default data): each optimizer at three lrs a half-decade apart, under
   ``schedule=onecycle`` and ``schedule=constant``, 2 seeds; the chosen lr has the best mean validation accuracy
   over both schedules and seeds;
2. **check** (held out): the same grid on MNIST-1D with its 1-D CNN (``data=mnist1d model=cnn1d``), which
   the choice never saw, and every shipped schedule at each optimizer's chosen lr, on both datasets.

It writes ``defaults.json`` and ``defaults.md`` (also printed) next to this file (or into ``--out``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))

from common import quiet, run_all  # noqa: E402

GRID = {  # lrs tried per optimizer config, a half-decade apart around what its range test finds
    "sgd": (0.03, 0.1, 0.3),
    "nesterov": (0.03, 0.1, 0.3),
    "adam": (1e-3, 3e-3, 1e-2),
    "adamw": (1e-3, 3e-3, 1e-2),
    "rmsprop": (1e-4, 3e-4, 1e-3),
    "adagrad": (0.01, 0.03, 0.1),
}
DATASETS = {"digits": [], "mnist1d": ["data=mnist1d", "model=cnn1d"]}
CHOSEN_ON = "digits"
SCHEDULES = ("onecycle", "constant", "cyclical", "warm_restarts", "warmup_decay")
CHOICE_SCHEDULES = ("onecycle", "constant")
SEEDS = (0, 1)


def one_run(job: dict) -> dict:
    """``train(cfg)`` of the app on the shipped configs with the job's overrides; its best validation accuracy."""
    quiet()
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from lightning_cyclic.run import train, version_base

    torch.set_num_threads(1)
    out = tempfile.mkdtemp(prefix="optimizer-defaults-")
    overrides = [
        *DATASETS[job["data"]],
        f"optimizer={job['optimizer']}",
        f"schedule={job['schedule']}",
        f"seed={job['seed']}",
        f"paths.output_dir={out}",
        "progress_bar=none",
        "logger=none",
        "callbacks.model_checkpoint=null",
        *([f"optimizer.lr={job['lr']}"] if job.get("lr") is not None else []),
        *job.get("extra", []),
    ]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "lightning_cyclic" / "conf"), **version_base()):
        cfg = compose("train", overrides=overrides)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the run's summary
        metrics, _ = train(cfg)
    return {**job, "acc": metrics.get("val/acc"), "lr": cfg.optimizer.lr, "seconds": time.perf_counter() - start}


def jobs_of(quick: bool) -> tuple[list[dict], list[dict]]:
    """The grid jobs (choice and held-out check), and the per-schedule jobs that wait for the choice."""
    grid = {k: v for k, v in GRID.items() if not quick or k in ("sgd", "adam")}
    datasets = ["digits"] if quick else list(DATASETS)
    seeds = SEEDS[:1] if quick else SEEDS
    extra = ["trainer.max_epochs=1"] if quick else []
    first = [
        {"part": "grid", "data": d, "optimizer": o, "lr": lr, "schedule": s, "seed": seed, "extra": extra}
        for d in datasets
        for o, lrs in grid.items()
        for lr in lrs
        for s in CHOICE_SCHEDULES
        for seed in seeds
    ]
    later = [
        {"part": "schedules", "data": d, "optimizer": o, "lr": None, "schedule": s, "seed": seed, "extra": extra}
        for d in datasets
        for o in grid
        for s in SCHEDULES
        if s not in CHOICE_SCHEDULES
        for seed in seeds
    ]
    return first, later


def mean(rows: list[dict]) -> float:
    return statistics.mean(r["acc"] for r in rows) if rows else float("nan")


def choose(rows: list[dict]) -> dict[str, float]:
    """Per optimizer, the grid lr with the best mean accuracy over the choice schedules and seeds, on digits."""
    out = {}
    for opt in dict.fromkeys(r["optimizer"] for r in rows):
        mine = [r for r in rows if r["optimizer"] == opt and r["data"] == CHOSEN_ON and r["part"] == "grid"]
        lrs = sorted({r["lr"] for r in mine})
        out[opt] = max(lrs, key=lambda lr: mean([r for r in mine if r["lr"] == lr]))
    return out


def shipped_lrs() -> dict[str, float]:
    """The ``lr`` of each optimizer config the study covers, as shipped (a schedule-free optimizer's lr is no
    schedule's peak: it takes no schedule, and is not in ``GRID``)."""
    import yaml

    conf = ROOT / "lightning_cyclic" / "conf" / "optimizer"
    return {p.stem: yaml.safe_load(p.read_text())["lr"] for p in sorted(conf.glob("*.yaml")) if p.stem in GRID}


def report(rows: list[dict], meta: dict) -> str:
    chosen = choose(rows)
    shipped = shipped_lrs()
    datasets = list(dict.fromkeys(r["data"] for r in rows))
    lines = [
        f"{meta['runs']} runs of `train.py`'s defaults in {meta['seconds']:.0f} s, {meta['jobs']} processes of one "
        f"thread; {len(SEEDS) if not meta['quick'] else 1} seeds; best validation accuracy %, mean over seeds.",
        "",
        f"### The choice: each lr under one-cycle / constant (chosen on {CHOSEN_ON}, in-sample; "
        + ", ".join(d for d in datasets if d != CHOSEN_ON)
        + " held out)",
        "",
        "| optimizer | lr | " + " | ".join(f"{d}: one-cycle / constant" for d in datasets) + " | |",
        "|---|---|" + "---|" * len(datasets) + "---|",
    ]
    grid = [r for r in rows if r["part"] == "grid"]
    for opt in dict.fromkeys(r["optimizer"] for r in grid):
        for lr in sorted({r["lr"] for r in grid if r["optimizer"] == opt}):
            cells = []
            for d in datasets:
                key = (opt, lr, d)
                pair = [mean([r for r in grid if (r["optimizer"], r["lr"], r["data"]) == key and r["schedule"] == s])
                        for s in CHOICE_SCHEDULES]  # fmt: skip
                cells.append(" / ".join(f"{100 * v:.1f}" for v in pair))
            mark = "**chosen**" if lr == chosen[opt] else ""
            if lr == chosen[opt] and shipped.get(opt) != lr:
                mark += f" (shipped: {shipped.get(opt)})"
            lines.append(f"| {opt} | {lr:g} | " + " | ".join(cells) + f" | {mark} |")
    lines += [
        "",
        "### Every shipped schedule at each optimizer's chosen lr (`python train.py optimizer=... schedule=...`)",
        "",
        "| data | optimizer (lr) | " + " | ".join(SCHEDULES) + " |",
        "|---|---|" + "---|" * len(SCHEDULES),
    ]
    worst = (101.0, "")
    for d in datasets:
        for opt in dict.fromkeys(r["optimizer"] for r in rows):
            lr = chosen[opt]
            cells = []
            for s in SCHEDULES:
                mine = [r for r in rows if (r["data"], r["optimizer"], r["schedule"], r["lr"]) == (d, opt, s, lr)]
                value = 100 * mean(mine)
                cells.append(f"{value:.1f}" if mine else "n/a")
                if mine and value < worst[0]:
                    worst = (value, f"{d}, {opt}, {s}")
            lines.append(f"| {d} | {opt} ({lr:g}) | " + " | ".join(cells) + " |")
    lines += ["", f"Lowest: {worst[0]:.1f}% ({worst[1]}); chance is 10%."]
    differ = {opt: (shipped.get(opt), lr) for opt, lr in chosen.items() if shipped.get(opt) != lr}
    lines.append(
        "The optimizer configs ship the chosen lrs."
        if not differ
        else "**The optimizer configs differ from the choice**: "
        + ", ".join(f"{opt} ships {a}, chosen {b:g}" for opt, (a, b) in differ.items())
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    path = args.out / "defaults.json"
    if args.report_only:
        saved = json.loads(path.read_text())
        rows, meta = saved["runs"], saved["meta"]
    else:
        start = time.perf_counter()
        first, later = jobs_of(args.quick)
        rows = run_all(one_run, first, args.jobs)
        chosen = choose(rows)
        for job in later:  # the other schedules, at the lr chosen for each optimizer
            job["lr"] = chosen[job["optimizer"]]
        rows += run_all(one_run, later, args.jobs)
        meta = {"quick": args.quick, "jobs": args.jobs, "runs": len(rows), "seconds": time.perf_counter() - start}
    table = report(rows, meta)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        path.write_text(json.dumps({"meta": meta, "runs": rows}, indent=1))
    (args.out / "defaults.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
