"""Cyclical learning rates (Smith, 2017): triangular vs triangular2 vs exp_range vs a fixed lr.

    python recipes/cyclical/run.py            # 3 datasets x 3 seeds (README table and plot)
    python recipes/cyclical/run.py --quick    # a smoke run (CI runs it)

As Smith prescribes, base_lr and max_lr come from the LR range test (``Cyclical(base_lr="auto",
max_lr="auto")``: where the loss starts to fall, and the suggestion) and a half cycle lasts
2 epochs. The fixed-lr baseline is the best constant lr of a small grid (SGD, momentum 0.9).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from common import GRID, QUICK_GRID, accuracies, arguments, build, mean_std, quiet, run_all, train, trainer  # noqa: E402

MODES = {"triangular": 1.0, "triangular2": 1.0, "exp_range": 0.995}  # mode: gamma (per optimizer step)


def one_seed(task):
    dataset, seed, quick = task
    quiet()
    import torch

    torch.set_num_threads(1)
    import lightning.pytorch as pl

    from lightning_cyclic import Cyclical, LRFinder

    root = f"/tmp/cyclical-{os.getpid()}"
    out = {"dataset": dataset, "seed": seed, "cyclical": {}, "fixed": {}}
    for mode, gamma in MODES.items():
        datamodule, model, epochs = build(dataset, quick)
        pl.seed_everything(seed, verbose=False)
        acc = accuracies()
        schedule = Cyclical(base_lr="auto", max_lr="auto", step_size_up=2, mode=mode, gamma=gamma, interval="epoch")
        trainer(root, [LRFinder(verbose=False), schedule, acc], max_epochs=epochs).fit(model(), datamodule=datamodule)
        out["cyclical"][mode] = {"best": max(acc.values), "final": acc.values[-1], **schedule.resolved}
    for lr in QUICK_GRID if quick else GRID:
        out["fixed"][str(lr)] = train(dataset, seed, quick, root, lr, "constant")
    return out


def report(runs, datasets) -> str:
    lines = [
        "| dataset | schedule | base_lr..max_lr (seed 0) | best val acc % | final val acc % |",
        "|---|---|---|---|---|",
    ]
    for dataset in datasets:
        rows = [r for r in runs if r["dataset"] == dataset]
        grid = {lr: statistics.mean(r["fixed"][lr]["best"] for r in rows) for lr in rows[0]["fixed"]}
        best_lr = max(grid, key=grid.get)
        lines.append(
            f"| {dataset} | fixed lr (best of {', '.join(grid)}) | {best_lr} "
            f"| {mean_std([r['fixed'][best_lr]['best'] for r in rows])} "
            f"| {mean_std([r['fixed'][best_lr]['final'] for r in rows])} |"
        )
        for mode in MODES:
            c = rows[0]["cyclical"][mode]
            lines.append(
                f"| {dataset} | {mode} | {c['base_lr']:.3g}..{c['max_lr']:.3g} "
                f"| {mean_std([r['cyclical'][mode]['best'] for r in rows])} "
                f"| {mean_std([r['cyclical'][mode]['final'] for r in rows])} |"
            )
    return "\n".join(lines)


def plot(path: Path, steps_per_epoch: int = 23, epochs: int = 10):
    from lightning_cyclic import Cyclical, plot_schedule
    from lightning_cyclic.plot import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
    for ax, (mode, gamma) in zip(axes, MODES.items()):
        cb = Cyclical(base_lr=0.01, max_lr=0.2, step_size_up=2, mode=mode, gamma=gamma, interval="epoch")
        plot_schedule(cb, steps_per_epoch * epochs, steps_per_epoch=steps_per_epoch, title=mode, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return fig


def main() -> None:
    parser = arguments(__doc__, HERE, seeds=3, quick="digits, 1 seed, 1 epoch", datasets="digits,mnist1d,fashion")
    args = parser.parse_args()
    quiet()
    datasets = ["digits"] if args.quick else args.datasets.split(",")
    tasks = [(d, s, args.quick) for d in datasets for s in range(1 if args.quick else args.seeds)]
    start = time.perf_counter()
    runs = run_all(one_seed, tasks, args.jobs)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(runs, indent=1))
    plot(args.out / "schedules.png")
    print(report(runs, datasets))
    print(f"\n{len(tasks)} seed runs in {time.perf_counter() - start:.0f}s with {args.jobs} processes")


if __name__ == "__main__":
    main()
