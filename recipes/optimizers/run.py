"""Six optimizers at their usual defaults vs the same optimizers under one-cycle.

    python recipes/optimizers/run.py --jobs 1   # digits and Fashion-MNIST x 3 seeds (README table and plot)
    python recipes/optimizers/run.py --quick    # a smoke run (CI runs it)

SGD, SGD with momentum, Nesterov, Adagrad, RMSprop and Adam, each once at a constant lr
(torch's default or common practice, see ``OPTIMIZERS``) and once under
``OneCycle(max_lr="auto")``: the LR range test of the same fit picks the peak lr for that
optimizer, and momentum (SGD's ``momentum``, Adam's ``betas[0]``) is cycled 0.95-0.85 where
the optimizer has any. Weight decay 0 everywhere (torch's default). Both arms of a seed share
the initial weights and the batch order; the datasets and budgets are those of
``recipes/common.py``.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from common import DATASETS, accuracies, arguments, build, fashion_available, mean_std, quiet, run_all, trainer  # noqa: E402

# name: (torch.optim class, constant-arm arguments); weight_decay 0 for all
OPTIMIZERS = {
    "SGD": ("SGD", {"lr": 0.01}),
    "SGD+momentum": ("SGD", {"lr": 0.01, "momentum": 0.9}),
    "Nesterov": ("SGD", {"lr": 0.01, "momentum": 0.9, "nesterov": True}),
    "Adagrad": ("Adagrad", {"lr": 0.01}),
    "RMSprop": ("RMSprop", {"lr": 0.01}),  # torch's defaults: alpha 0.99, momentum 0
    "Adam": ("Adam", {"lr": 1e-3}),  # betas (0.9, 0.999)
}
QUICK_OPTIMIZERS = ["SGD", "Adam"]
MOMS = (0.95, 0.85)  # one-cycle's momentum range, where the optimizer has momentum


def has_momentum(name: str) -> bool:
    cls, kwargs = OPTIMIZERS[name]
    return cls == "Adam" or kwargs.get("momentum", 0) > 0


def fit(dataset: str, seed: int, quick: bool, name: str, onecycle: bool, root: str) -> dict:
    import lightning.pytorch as pl
    import torch

    from lightning_cyclic import LRFinder, OneCycle, models

    datamodule, _, epochs = build(dataset, quick)
    _, _, net_name, net_kwargs, _ = DATASETS[dataset]
    cls, kwargs = OPTIMIZERS[name]
    pl.seed_everything(seed, verbose=False)
    module = models.Classifier(
        partial(getattr(models, net_name), **net_kwargs),
        partial(getattr(torch.optim, cls), weight_decay=0.0, **kwargs),
        datamodule.input_shape,
        datamodule.num_classes,
    )
    acc = accuracies()
    callbacks: list = [acc]
    if onecycle:
        # SGD without momentum, Adagrad and RMSprop (momentum 0) have no momentum: moms=None
        schedule = OneCycle(max_lr="auto", moms=MOMS if has_momentum(name) else None, log=False)
        callbacks += [LRFinder(verbose=False), schedule]
    start = time.perf_counter()
    trainer(root, callbacks, max_epochs=epochs).fit(module, datamodule=datamodule)
    return {
        "best": max(acc.values),
        "final": acc.values[-1],
        "curve": acc.values,
        "lr": schedule.resolved["max_lr"] if onecycle else kwargs["lr"],
        "seconds": time.perf_counter() - start,
    }


def one_seed(task):
    dataset, seed, quick, names = task
    import lightning.pytorch  # noqa: F401  (importing it resets its loggers' level: quiet them after)
    import torch

    quiet()
    torch.set_num_threads(1)
    root = f"/tmp/optimizers-{os.getpid()}"
    out = {"dataset": dataset, "seed": seed, "constant": {}, "onecycle": {}}
    for name in names:
        out["constant"][name] = fit(dataset, seed, quick, name, False, root)
        out["onecycle"][name] = fit(dataset, seed, quick, name, True, root)
    return out


def report(runs, datasets, names) -> str:
    lines = [
        "| dataset | optimizer | constant lr | constant: best val acc % | one-cycle: best val acc % "
        "| one-cycle max_lr found (per seed) | final val acc %: constant / one-cycle |",
        "|---|---|---|---|---|---|---|",
    ]
    for dataset in datasets:
        rows = [r for r in runs if r["dataset"] == dataset]
        for name in names:
            c = [r["constant"][name] for r in rows]
            o = [r["onecycle"][name] for r in rows]
            best_c, best_o = mean_std([x["best"] for x in c]), mean_std([x["best"] for x in o])
            if statistics.mean(x["best"] for x in o) > statistics.mean(x["best"] for x in c):
                best_o = f"**{best_o}**"
            else:
                best_c = f"**{best_c}**"
            found = ", ".join(f"{x['lr']:.3g}" for x in o)
            final = f"{mean_std([x['final'] for x in c])} / {mean_std([x['final'] for x in o])}"
            lines.append(f"| {dataset} | {name} | {c[0]['lr']:g} | {best_c} | {best_o} | {found} | {final} |")
    return "\n".join(lines)


def plot(runs, datasets, names, path: Path):
    """Per dataset: best accuracy per optimizer and arm (mean and sd of the seeds as a point with error bars:
    the axis does not start at zero, so no bars), then each optimizer's curves."""
    from lightning_cyclic.plot import pyplot

    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    arms = {"constant": ("tab:gray", "--", "constant lr (default)"), "onecycle": ("tab:orange", "-", "one-cycle")}
    fig = plt.figure(figsize=(8.5 * len(datasets), 11), layout="constrained")
    subfigures = fig.subfigures(1, len(datasets), wspace=0.04, squeeze=False)[0]
    for sub, dataset in zip(subfigures, datasets):
        rows = [r for r in runs if r["dataset"] == dataset]
        grid = sub.add_gridspec(3, 3, height_ratios=[1.4, 1, 1])
        ax = sub.add_subplot(grid[0, :])
        tops, finals = [], []
        for j, (arm, (color, _, label)) in enumerate(arms.items()):
            for i, name in enumerate(names):
                best = [100 * r[arm][name]["best"] for r in rows]
                mean, sd = statistics.mean(best), statistics.stdev(best) if len(best) > 1 else 0.0
                tops.append(mean + sd)
                finals.append(100 * statistics.mean(r[arm][name]["final"] for r in rows))
                x = i + (j - 0.5) * 0.3
                ax.errorbar(
                    x, mean, yerr=sd, fmt="o", color=color, capsize=4, markersize=7, label=label if i == 0 else None
                )
                if arm == "onecycle":
                    lr = statistics.median(r[arm][name]["lr"] for r in rows)
                    ax.annotate(
                        f"{lr:.2g}", (x, mean + sd), xytext=(0, 4), textcoords="offset points", ha="center", fontsize=9
                    )
        low = min(finals) - 3
        ax.set_ylim(low, max(tops) + 0.1 * (max(tops) - low))  # room for the lr labels
        ax.set_xticks(range(len(names)), names, fontsize=10)
        ax.set_xlim(-0.6, len(names) - 0.4)
        ax.set_ylabel("best val accuracy %", fontsize=10)
        ax.set_title(
            f"{dataset}: best val accuracy (mean ± sd of {len(rows)} seeds)\n"
            f"number above one-cycle: the max_lr the range test found (median of seeds)",
            fontsize=11,
        )
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=9, loc="lower right")
        for i, name in enumerate(names):
            ax = sub.add_subplot(grid[1 + i // 3, i % 3])
            for arm, (color, style, label) in arms.items():
                curves = [[100 * v for v in r[arm][name]["curve"]] for r in rows]
                epochs = range(1, len(curves[0]) + 1)
                ax.plot(epochs, [statistics.mean(v) for v in zip(*curves)], style, color=color, marker=".", label=label)
                ax.fill_between(
                    epochs, [min(v) for v in zip(*curves)], [max(v) for v in zip(*curves)], color=color, alpha=0.2
                )
            ax.set_ylim(low, min(100.0, max(tops) + 0.5))
            ax.set_title(f"{name}", fontsize=10)
            ax.tick_params(labelsize=9)
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if i // 3 == 1:
                ax.set_xlabel("epoch", fontsize=10)
            if i % 3 == 0:
                ax.set_ylabel("val acc %", fontsize=10)
            if i == 0:
                ax.legend(fontsize=8, loc="lower right")
    fig.savefig(path, dpi=90)
    return fig


def main() -> None:
    parser = arguments(__doc__, HERE, seeds=3, quick="digits, 1 seed, 1 epoch, SGD and Adam", datasets="digits,fashion")
    parser.add_argument("--plot-only", action="store_true", help="redraw optimizers.png from results.json")
    args = parser.parse_args()
    quiet()
    datasets = ["digits"] if args.quick else args.datasets.split(",")
    if "fashion" in datasets and not fashion_available():
        datasets.remove("fashion")
    names = QUICK_OPTIMIZERS if args.quick else list(OPTIMIZERS)
    if args.plot_only:
        runs = json.loads((args.out / "results.json").read_text())
        plot(runs, [d for d in datasets if any(r["dataset"] == d for r in runs)], names, args.out / "optimizers.png")
        return
    tasks = [(d, s, args.quick, names) for d in datasets for s in range(1 if args.quick else args.seeds)]
    start = time.perf_counter()
    runs = run_all(one_seed, tasks, args.jobs)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(runs, indent=1))
    plot(runs, datasets, names, args.out / "optimizers.png")
    print(report(runs, datasets, names))
    fits = len(tasks) * len(names) * 2
    print(f"\n{len(tasks)} seed runs ({fits} fits) in {time.perf_counter() - start:.0f}s with {args.jobs} processes")


if __name__ == "__main__":
    main()
