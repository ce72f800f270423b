"""Five ways to pick a learning rate, side by side: defaults, a grid, two range tests and ours.

    python recipes/benchmark/benchmark.py            # 3 datasets x 3 seeds (README table and plot)
    python recipes/benchmark/benchmark.py --quick    # a smoke run (CI runs it)

For every dataset and seed, from the same initial weights and batch order:

- A: Adam at lr 1e-3, constant (the common default);
- B: SGD momentum 0.9 at a constant lr, the best of a small grid (the tuned baseline; the grid's
  lr is chosen by its mean best accuracy over the seeds, and its search cost is the other grid runs);
- C: Lightning's ``Tuner.lr_find`` with its defaults, its ``suggestion()`` as ``max_lr`` of torch's
  ``OneCycleLR`` (its defaults) in ``configure_optimizers``;
- D: fastai's ``valley`` suggestion (read fastai's way), as ``max_lr`` of a one-cycle with
  fastai's ``fit_one_cycle`` defaults (``pct_start=0.25``, ``div=25``, ``div_final=1e5``);
- ours: ``LRFinder`` + ``OneCycle(max_lr="auto")`` in the same ``fit``, with nothing else tuned;
- ours, half the epochs: the same with half the epoch budget (one-cycle anneals at the end of
  its run, so the way to reach an accuracy sooner is a shorter cycle).

It prints a markdown table and a targets table, and writes ``results.json`` and ``accuracy.png``
next to this file (or ``--out``).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from common import (  # noqa: E402
    DATASETS,
    GRID,
    QUICK_GRID,
    accuracies,
    arguments,
    build,
    fashion_available,
    fastai_valley,
    lightning_suggestion,
    mean_std,
    quiet,
    run_all,
    trainer,
)

STRATEGIES = ["A: Adam 1e-3", "B: SGD, best grid lr", "C: Lightning Tuner + OneCycleLR", "D: fastai valley + one-cycle"]
OURS = "ours: OneCycle(max_lr='auto')"
OURS_HALF = "ours, half the epochs"


def _fit(root, module, datamodule, epochs, callbacks=(), search_seconds: float = 0.0, lr=None) -> dict:
    """Fit and record accuracy, loss and the time (search included) after every epoch."""
    acc = accuracies()
    start = time.perf_counter()
    trainer(root, [acc, *callbacks], max_epochs=epochs).fit(module, datamodule=datamodule)
    return {
        "lr": lr,
        "acc": acc.values,
        "loss": acc.losses,
        "times": [search_seconds + t - start for t in acc.times],
        "seconds": search_seconds + time.perf_counter() - start,
        "search_seconds": search_seconds,
    }


def one_seed(task):
    dataset, seed, quick = task
    quiet()
    import torch

    torch.set_num_threads(1)
    import lightning.pytorch as pl

    from lightning_cyclic import OneCycle
    from lightning_cyclic.models import Classifier

    class TorchOneCycle(Classifier):
        """torch's ``OneCycleLR`` with its defaults in ``configure_optimizers``, stepped every batch."""

        def __init__(self, *args, max_lr: float, **kwargs):
            super().__init__(*args, **kwargs)
            self.max_lr = max_lr

        def configure_optimizers(self):
            optimizer = super().configure_optimizers()
            total = int(self.trainer.estimated_stepping_batches)
            scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=self.max_lr, total_steps=total)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    root = tempfile.mkdtemp(prefix="bench-")
    runs = {}

    def fresh():
        datamodule, model, epochs = build(dataset, quick)
        pl.seed_everything(seed, verbose=False)
        return datamodule, model, epochs

    datamodule, model, epochs = fresh()
    adam = partial(torch.optim.Adam, lr=1e-3)
    runs[STRATEGIES[0]] = _fit(root, model(optimizer=adam), datamodule, epochs, lr=1e-3)

    grid = {}
    for lr in QUICK_GRID if quick else GRID:
        datamodule, model, epochs = fresh()
        grid[str(lr)] = _fit(root, model(lr=lr), datamodule, epochs, lr=lr)

    datamodule, model, epochs = fresh()
    found = lightning_suggestion(trainer(root, max_epochs=epochs), model(), datamodule)
    datamodule, model, epochs = fresh()  # the same initial weights again for the training run
    if found["lr"]:
        module = model(cls=partial(TorchOneCycle, max_lr=found["lr"]))
        runs[STRATEGIES[2]] = _fit(root, module, datamodule, epochs, search_seconds=found["seconds"], lr=found["lr"])
    else:
        runs[STRATEGIES[2]] = {"lr": None}

    datamodule, model, epochs = fresh()
    found = fastai_valley(root, model(), datamodule)
    datamodule, model, epochs = fresh()
    if found["lr"]:
        fastai = OneCycle(max_lr=found["lr"], pct_start=0.25, final_div_factor=1e5, log=False)
        runs[STRATEGIES[3]] = _fit(
            root, model(), datamodule, epochs, [fastai], search_seconds=found["seconds"], lr=found["lr"]
        )
    else:
        runs[STRATEGIES[3]] = {"lr": None}

    datamodule, model, epochs = fresh()
    ours = OneCycle(max_lr="auto", log=False)
    runs[OURS] = _fit(root, model(), datamodule, epochs, [ours])  # the range test runs inside this fit
    runs[OURS]["lr"] = ours.resolved["max_lr"]

    datamodule, model, epochs = fresh()
    ours = OneCycle(max_lr="auto", log=False)
    runs[OURS_HALF] = _fit(root, model(), datamodule, max(epochs // 2, 1), [ours])
    runs[OURS_HALF]["lr"] = ours.resolved["max_lr"]
    return {"dataset": dataset, "seed": seed, "epochs": epochs, "runs": runs, "grid": grid}


def pick_grid(rows) -> str:
    """The grid lr with the best mean best accuracy over the seeds; each seed's B run is that lr's run."""
    lrs = rows[0]["grid"]
    best = max(lrs, key=lambda lr: statistics.mean(max(r["grid"][lr]["acc"]) for r in rows))
    for r in rows:
        run = dict(r["grid"][best])
        others = sum(g["seconds"] for lr, g in r["grid"].items() if lr != best)  # the search: the rest of the grid
        run["times"] = [others + t for t in run["times"]]
        run["seconds"] += others
        run["search_seconds"] = others
        r["runs"][STRATEGIES[1]] = run
    return best


def reach(run: dict, target: float) -> tuple[int | None, float | None]:
    """First epoch (1-based) and seconds at which ``run`` reaches accuracy ``target``."""
    for i, acc in enumerate(run.get("acc", [])):
        if acc >= target:
            return i + 1, run["times"][i]
    return None, None


def summarise(runs, datasets) -> dict:
    table = {}
    for dataset in datasets:
        rows = [r for r in runs if r["dataset"] == dataset]
        grid_lr = pick_grid(rows)
        table[dataset] = {"grid_lr": grid_lr, "epochs": rows[0]["epochs"], "strategies": {}}
        for name in [*STRATEGIES, OURS, OURS_HALF]:
            per_seed = [r["runs"][name] for r in rows]
            lrs = [p["lr"] for p in per_seed]
            trained = [p for p in per_seed if "acc" in p]
            reached = [reach(p, max(r["runs"][STRATEGIES[0]]["acc"])) for p, r in zip(per_seed, rows) if "acc" in p]
            table[dataset]["strategies"][name] = {
                "lrs": lrs,
                "spread": max(lrs) / min(lrs) if all(lrs) else None,
                "best": [max(p["acc"]) for p in trained],
                "final": [p["acc"][-1] for p in trained],
                "epochs_to_A": [e for e, _ in reached],
                "seconds_to_A": [s for _, s in reached],
                "seconds": [p["seconds"] for p in trained],
                "untrained": len(per_seed) - len(trained),
            }
    return table


def _reached(values, digits=0) -> str:
    got = [v for v in values if v is not None]
    if not got:
        return "never"
    text = f"{statistics.mean(got):.{digits}f}"
    return text if len(got) == len(values) else f"{text} ({len(got)} of {len(values)} seeds)"


def report(table) -> str:
    lines = [
        "| dataset | strategy | lr per seed | spread | best val acc % | final val acc % "
        "| epochs to A's best | s to A's best | whole run, s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for dataset, t in table.items():
        for name, s in t["strategies"].items():
            lrs = ", ".join(f"{x:.3g}" if x else "none" for x in s["lrs"])
            spread = f"{s['spread']:.2f}x" if s["spread"] else "n/a"
            label = f"B: SGD, best grid lr ({t['grid_lr']})" if name == STRATEGIES[1] else name
            if name == STRATEGIES[1]:
                spread = "(grid)"
            lines.append(
                f"| {dataset} | {label} | {lrs} | {spread} | {mean_std(s['best'])} | {mean_std(s['final'])} "
                f"| {_reached(s['epochs_to_A'], 1)} | {_reached(s['seconds_to_A'])} "
                f"| {statistics.mean(s['seconds']):.0f} |"
            )
    return "\n".join(lines)


def targets(table) -> str:
    lines = [
        "| dataset | ours >= B - 0.3 points | A's best within half the epochs | spread <= 1.5x | above C and D |",
        "|---|---|---|---|---|",
    ]

    def mark(ok: bool) -> str:
        return "met" if ok else "**missed**"

    for dataset, t in table.items():
        s = t["strategies"]
        mean = {name: 100 * statistics.mean(v["best"]) if v["best"] else float("nan") for name, v in s.items()}
        ours, b = mean[OURS], mean[STRATEGIES[1]]
        epochs = s[OURS]["epochs_to_A"]
        half = all(e is not None and e <= t["epochs"] / 2 for e in epochs)
        short = s[OURS_HALF]["epochs_to_A"]
        half_run = all(e is not None for e in short)
        c, d = mean[STRATEGIES[2]], mean[STRATEGIES[3]]
        spread = s[OURS]["spread"]
        lines.append(
            f"| {dataset} | {mark(ours >= b - 0.3)}: {ours:.1f} vs {b:.1f} "
            f"| {mark(half or half_run)}: full run at epochs {', '.join(str(e) if e else 'never' for e in epochs)} "
            f"of {t['epochs']}; half-length run at {', '.join(str(e) if e else 'never' for e in short)} "
            f"| {mark(spread is not None and spread <= 1.5)}: {spread or float('nan'):.2f}x "
            f"| {mark(ours > c and ours > d)}: {ours:.1f} vs {c:.1f}, {d:.1f} |"
        )
    return "\n".join(lines)


def plot(runs, table, path: Path):
    from lightning_cyclic.plot import pyplot

    plt = pyplot()
    datasets = list(table)
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.2 * len(datasets), 3.6), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        rows = [r for r in runs if r["dataset"] == dataset]
        for name in [STRATEGIES[0], STRATEGIES[1], OURS, OURS_HALF]:
            curves = [r["runs"][name]["acc"] for r in rows]
            mean = [100 * statistics.mean(c[i] for c in curves) for i in range(len(curves[0]))]
            ax.plot(range(1, len(mean) + 1), mean, marker="o", markersize=3, label=name)
        ax.set_title(f"{dataset} (mean of {len(rows)} seeds)")
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation accuracy %")
        low = min(min(line.get_ydata()) for line in ax.get_lines())
        high = max(max(line.get_ydata()) for line in ax.get_lines())
        ax.set_ylim(max(0, low - 2), min(100, high + 1.5))  # every point of every curve in view
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return fig


def main() -> None:
    parser = arguments(__doc__, HERE, seeds=3, quick="1 epoch, 2 grid lrs: a smoke run", datasets=",".join(DATASETS))
    parser.add_argument("--plot-only", action="store_true", help="redraw accuracy.png from results.json")
    args = parser.parse_args()
    quiet()
    if args.plot_only:
        saved = json.loads((args.out / "results.json").read_text())
        plot(saved["runs"], saved["summary"], args.out / "accuracy.png")
        return
    datasets = args.datasets.split(",")
    if "fashion" in datasets and not fashion_available():
        datasets.remove("fashion")
    tasks = [(d, s, args.quick) for d in datasets for s in range(args.seeds)]
    start = time.perf_counter()
    runs = run_all(one_seed, tasks, args.jobs)
    table = summarise(runs, datasets)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"runs": runs, "summary": table}, indent=1))
    plot(runs, table, args.out / "accuracy.png")
    print(report(table))
    print()
    print(targets(table))
    print(f"\n{len(tasks)} seed runs in {time.perf_counter() - start:.0f}s with {args.jobs} processes")


if __name__ == "__main__":
    main()
