"""LR range test benchmark: how steady and how good are the suggestions?

    python recipes/lr_range_test/benchmark.py                 # the full study (README table)
    python recipes/lr_range_test/benchmark.py --quick         # a minute-long smoke run

For each dataset and seed it runs three range tests on the same freshly
initialised model and data -- ours (``LRFinder`` with its defaults: rule
``edge``, loss on 4 fixed validation batches), fastai's ``valley`` rule (read
fastai's way: training loss, beta=0.98 smoothing, first 10% and last 5 points
skipped, 1e-7..10 in 100 steps) and Lightning's ``Tuner.lr_find`` with its
defaults on the Trainer of the run -- then trains one-cycle (SGD, momentum
0.95-0.85) with ``max_lr`` at each suggestion, and a constant-lr SGD
(momentum 0.9) at every lr of a small grid. All runs of a seed share the seed
(init, data order). It prints a markdown table and writes ``results.json``
and ``curves.png`` next to this file (or ``--out``).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from common import (  # noqa: E402
    DATASETS,
    GRID,
    QUICK_GRID,
    arguments,
    build,
    fastai_valley,
    lightning_suggestion,
    mean_std,
    quiet,
    run_all,
    train,
    trainer,
)


def one_seed(task):
    dataset, seed, quick = task
    quiet()
    import torch

    torch.set_num_threads(1)
    import lightning.pytorch as pl

    from lightning_cyclic import lr_find

    root = tempfile.mkdtemp(prefix="lrbench-")
    out = {"dataset": dataset, "seed": seed, "finders": {}, "onecycle": {}, "constant": {}}

    datamodule, model, _ = build(dataset, quick)
    pl.seed_everything(seed, verbose=False)
    result = lr_find(trainer(root), model(), datamodule=datamodule, verbose=False)
    s = result.suggestion
    out["curve"] = {"lrs": result.lrs, "losses": result.losses}
    out["finders"]["ours (edge)"] = {"lr": s.lr, "steps": len(result.lrs), "seconds": result.seconds}
    datamodule, model, _ = build(dataset, quick)
    pl.seed_everything(seed, verbose=False)
    out["finders"]["fastai valley"] = fastai_valley(root, model(), datamodule)
    out["other_rules"] = {rule: result.suggest(rule).lr for rule in ("valley", "steepest", "minimum")}

    datamodule, model, epochs = build(dataset, quick)
    pl.seed_everything(seed, verbose=False)
    out["finders"]["Lightning Tuner"] = lightning_suggestion(trainer(root, max_epochs=epochs), model(), datamodule)

    for name, info in out["finders"].items():
        lr = info["lr"]
        ok = lr is not None and math.isfinite(lr)
        out["onecycle"][name] = train(dataset, seed, quick, root, lr, "onecycle") if ok else None
    for lr in QUICK_GRID if quick else GRID:
        out["constant"][str(lr)] = train(dataset, seed, quick, root, lr, "constant")
    return out


def report(runs, datasets) -> str:
    lines = [
        "| dataset | range test | suggested lr per seed | spread (max/min) | test cost: steps, s "
        "| one-cycle at the suggestion: best val acc % | final % |",
        "|---|---|---|---|---|---|---|",
    ]
    for dataset in datasets:
        rows = [r for r in runs if r["dataset"] == dataset]
        for name in rows[0]["finders"]:
            lrs = [r["finders"][name]["lr"] for r in rows]
            good = [x for x in lrs if x]
            spread = f"{max(good) / min(good):.2f}x" if len(good) == len(lrs) else "n/a (no suggestion)"
            steps = statistics.mean(r["finders"][name]["steps"] for r in rows)
            secs = statistics.mean(r["finders"][name]["seconds"] for r in rows)
            best = [r["onecycle"][name]["best"] if r["onecycle"][name] else None for r in rows]
            final = [r["onecycle"][name]["final"] if r["onecycle"][name] else None for r in rows]
            shown = ", ".join(f"{x:.3g}" if x else "none" for x in lrs)
            lines.append(
                f"| {dataset} | {name} | {shown} | {spread} | {steps:.0f}, {secs:.1f} | {mean_std(best)} "
                f"| {mean_std(final)} |"
            )
        grid = {lr: [r["constant"][lr]["best"] for r in rows] for lr in rows[0]["constant"]}
        best_lr = max(grid, key=lambda lr: statistics.mean(grid[lr]))
        finals = [r["constant"][best_lr]["final"] for r in rows]
        every = ", ".join(f"{lr}: {100 * statistics.mean(v):.1f}" for lr, v in grid.items())
        lines.append(
            f"| {dataset} | best constant lr of the grid ({every}) | {best_lr} | | | {mean_std(grid[best_lr])} "
            f"| {mean_std(finals)} |"
        )
    return "\n".join(lines)


def plot_curves(runs, datasets, path: Path):
    from lightning_cyclic.finder import RangeTestConfig, RangeTestResult
    from lightning_cyclic.plot import pyplot
    from lightning_cyclic.suggest import suggest

    plt = pyplot()
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.2 * len(datasets), 3.8), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        rows = [r for r in runs if r["dataset"] == dataset]
        r = rows[0]
        lrs, losses = r["curve"]["lrs"], [math.nan if x is None else x for x in r["curve"]["losses"]]
        result = RangeTestResult(lrs, losses, RangeTestConfig(), suggest(lrs, losses))
        result.plot(ax=ax, title=f"{dataset}, seed {r['seed']}")
        others = [o["finders"]["ours (edge)"]["lr"] for o in rows[1:]]
        for i, lr in enumerate(x for x in others if x):
            label = f"suggestion of the other {len(others)} seeds" if i == 0 else None
            ax.axvline(lr, color="tab:red", alpha=0.35, linewidth=0.8, label=label)
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return fig


def main() -> None:
    parser = arguments(
        __doc__, HERE, seeds=5, quick="2 seeds, 1 epoch, 2 grid lrs: a smoke run", datasets=",".join(DATASETS)
    )
    parser.add_argument("--plot-only", action="store_true", help="redraw curves.png from results.json")
    args = parser.parse_args()
    quiet()
    datasets = args.datasets.split(",")
    if args.plot_only:
        plot_curves(json.loads((args.out / "results.json").read_text()), datasets, args.out / "curves.png")
        return
    seeds = 2 if args.quick else args.seeds
    tasks = [(d, s, args.quick) for d in datasets for s in range(seeds)]
    start = time.perf_counter()
    runs = run_all(one_seed, tasks, args.jobs)
    table = report(runs, datasets)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(runs, indent=1))
    plot_curves(runs, datasets, args.out / "curves.png")
    print(table)
    elapsed = time.perf_counter() - start
    print(f"\n{len(tasks)} seed runs in {elapsed:.0f}s with {args.jobs} processes, {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
