"""One-cycle vs a tuned constant lr on the full Fashion-MNIST: fewer epochs to the same accuracy?

    python recipes/onecycle_vs_constant/run.py --jobs 1   # 3 seeds (README table and plot)
    python recipes/onecycle_vs_constant/run.py --quick    # a smoke run (CI runs it)

An MLP (one hidden layer of 256, SGD, weight decay 5e-4, batch 128) on all 54,000 training
images (6,000 held out for validation). The baseline is a constant lr with momentum 0.9, the
best of ``common.GRID`` by best validation accuracy on seed 0, then run on every seed. Against
it, four one-cycle settings:

    (a) OneCycle(max_lr=0.08, div_factor=10, pct_start=0.1368, moms=(0.95, 0.85)), as many epochs
    (b) OneCycle(max_lr=0.8, div_factor=10, pct_start=0.5, moms=(0.95, 0.85)), half the epochs
    (c) as (a) with a constant momentum, moms=(0.9, 0.9)
    (d) as (a) in half the epochs: fewer epochs without the tenfold lr of (b)

For each: validation loss and accuracy after every epoch, and the first epoch at which the run
reaches the best accuracy the baseline reached with the same seed. Writes ``results.json`` and
``curves.png`` (mean over seeds).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from common import GRID, arguments, mean_std, quiet, run_all, trainer  # noqa: E402

EPOCHS = 10
QUICK = {"epochs": 2, "limit_train": 2000, "grid": [0.03]}
BASELINE = "constant"
ONE_CYCLE = {  # name: (label, OneCycle arguments, share of the baseline's epochs)
    "a": ("(a) one-cycle, max_lr 0.08", dict(max_lr=0.08, div_factor=10, pct_start=0.1368, moms=(0.95, 0.85)), 1.0),
    "b": ("(b) half the epochs, max_lr 0.8", dict(max_lr=0.8, div_factor=10, pct_start=0.5, moms=(0.95, 0.85)), 0.5),
    "c": ("(c) as (a), momentum 0.9", dict(max_lr=0.08, div_factor=10, pct_start=0.1368, moms=(0.9, 0.9)), 1.0),
    "d": ("(d) as (a) in half the epochs", dict(max_lr=0.08, div_factor=10, pct_start=0.1368, moms=(0.95, 0.85)), 0.5),
}
_DATA = {}  # one data module per process, read once


def datamodule(quick: bool, root: str | None):
    from lightning_cyclic.data import FashionMNISTDataModule

    key = (quick, root)
    if key not in _DATA:
        dm = FashionMNISTDataModule(root=root, batch_size=128, limit_train=QUICK["limit_train"] if quick else None)
        dm.setup("fit")
        _DATA[key] = dm
    return _DATA[key]


def curves():
    """A callback that records validation loss and accuracy after every epoch, and stops a run that diverged."""
    import lightning.pytorch as pl

    class Curves(pl.Callback):
        def __init__(self):
            self.loss, self.acc = [], []

        def on_validation_epoch_end(self, trainer, pl_module):
            if trainer.sanity_checking:
                return
            loss = float(trainer.callback_metrics["val/loss"])
            self.loss.append(loss if math.isfinite(loss) else None)
            self.acc.append(float(trainer.callback_metrics["val/acc"]))
            if not math.isfinite(loss):
                trainer.should_stop = True

    return Curves()


def fit_one(task) -> dict:
    """One training run: ``(config, seed, quick, data root, lr of the baseline or None)``."""
    config, seed, quick, root, lr = task
    quiet()
    import torch

    torch.set_num_threads(1)
    import lightning.pytorch as pl

    from lightning_cyclic import OneCycle, models

    dm = datamodule(quick, root)
    epochs = QUICK["epochs"] if quick else EPOCHS
    callbacks = [curves()]
    if config != BASELINE:
        _, kwargs, share = ONE_CYCLE[config]
        epochs = max(1, round(epochs * share))
        callbacks.append(OneCycle(**kwargs, log=False))
        lr = kwargs["max_lr"]
    pl.seed_everything(seed, verbose=False)
    net = partial(models.MLP, hidden=[256])
    opt = partial(torch.optim.SGD, lr=lr, momentum=0.9, weight_decay=5e-4)
    module = models.Classifier(net, opt, dm.input_shape, dm.num_classes)
    start = time.perf_counter()
    trainer(f"/tmp/onecycle-vs-constant-{os.getpid()}", callbacks, max_epochs=epochs).fit(module, datamodule=dm)
    rec = callbacks[0]
    return {
        "config": config,
        "seed": seed,
        "lr": lr,
        "epochs": epochs,
        "val_loss": rec.loss,
        "val_acc": rec.acc,
        "seconds": time.perf_counter() - start,
    }


def first_epoch(acc: list[float], target: float) -> int | None:
    """The first epoch (from 1) whose accuracy is at least ``target``."""
    return next((i + 1 for i, a in enumerate(acc) if a >= target - 1e-9), None)


def summarise(runs: list[dict], best_lr: float) -> list[dict]:
    base = {r["seed"]: r for r in runs if r["config"] == BASELINE and r["lr"] == best_lr}
    target = {s: max(r["val_acc"]) for s, r in base.items()}
    rows = []
    for config in [BASELINE, *ONE_CYCLE]:
        rs = list(base.values()) if config == BASELINE else [r for r in runs if r["config"] == config]
        reach = [first_epoch(r["val_acc"], target[r["seed"]]) for r in rs]
        finite = [[v for v in r["val_loss"] if v is not None] for r in rs]
        rows.append(
            {
                "config": config,
                "label": f"constant lr {best_lr} (tuned)" if config == BASELINE else ONE_CYCLE[config][0],
                "epochs": rs[0]["epochs"],
                "best": [max(r["val_acc"]) for r in rs],
                "final": [r["val_acc"][-1] for r in rs],
                "best_loss": [min(v) for v in finite if v],
                "diverged": sum(None in r["val_loss"] for r in rs),
                "reach": reach,
                "seconds": statistics.mean(r["seconds"] for r in rs),
            }
        )
    return rows


def report(rows: list[dict], grid: dict) -> str:
    base_epoch = statistics.mean(rows[0]["reach"])
    lines = [
        "| config | epochs | best val acc % | final val acc % | best val loss "
        "| epoch reaching the baseline's best | epochs saved | s per run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        hit = [e for e in row["reach"] if e is not None]
        if not hit:
            reach, versus = "never", "—"
        else:
            mean = statistics.mean(hit)
            some = "" if len(hit) == len(row["reach"]) else f" ({len(hit)} of {len(row['reach'])} seeds)"
            reach = f"{mean:.1f}{some}"
            versus = "—" if row["config"] == BASELINE else f"{100 * (1 - mean / base_epoch):.0f}%"
        loss = row["best_loss"]
        loss = f"{statistics.mean(loss):.3f}" if loss else "n/a"
        diverged = f" (diverged in {row['diverged']} of {len(row['reach'])} seeds)" if row["diverged"] else ""
        final = mean_std(row["final"]) + diverged
        lines.append(
            f"| {row['label']} | {row['epochs']} | {mean_std(row['best'])} | {final} | {loss} "
            f"| {reach} | {versus} | {row['seconds']:.0f} |"
        )
    grid_text = ", ".join(f"{lr}: {100 * acc:.1f}%" for lr, acc in grid.items())
    lines.append(f"\nbaseline lr grid (best val acc, seed 0): {grid_text}")
    return "\n".join(lines)


def mean_curve(runs: list[dict], key: str) -> list[float]:
    """Mean over seeds, epoch by epoch (missing or diverged values left out; NaN where none is left)."""
    length = max(len(r[key]) for r in runs)
    out = []
    for i in range(length):
        values = [r[key][i] for r in runs if i < len(r[key]) and r[key][i] is not None]
        out.append(statistics.mean(values) if values else float("nan"))
    return out


def _panel(ax, series: list, zoom: list[str], inset_at: list[float], ylabel: str) -> None:
    """Curves ``(config, values, style)`` on ``ax``, zoomed on the ``zoom`` configs; the rest in a full-range inset."""
    from matplotlib.ticker import MaxNLocator

    def draw(axes, **extra):
        for _, values, style in series:
            axes.plot(range(1, len(values) + 1), values, **{**style, **extra})
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)

    draw(ax)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    finite = lambda configs: [v for c, vs, _ in series if c in configs for v in vs if math.isfinite(v)]  # noqa: E731
    near, every = finite(zoom), finite([c for c, _, _ in series])
    if near and (min(every) < min(near) or max(every) > max(near)):
        low, high = min(near), max(near)
        span = high - low
        ax.set_ylim(low - 0.8 * span, high + 0.1 * span)  # room below for the inset
        inset = ax.inset_axes(inset_at)
        draw(inset, markersize=2, linewidth=1)
        inset.set_title("full range", fontsize=8)
        inset.tick_params(labelsize=7)


def plot(path: Path, runs: list[dict], rows: list[dict], best_lr: float):
    from lightning_cyclic.plot import pyplot

    plt = pyplot()
    losses, accs = [], []
    for row in rows:
        config = row["config"]
        rs = [r for r in runs if r["config"] == config and (config != BASELINE or r["lr"] == best_lr)]
        style = dict(marker="o", markersize=3, label=row["label"])
        if config == BASELINE:
            style.update(color="black", linestyle="--")
        losses.append((config, mean_curve(rs, "val_loss"), style))
        accs.append((config, [100 * a for a in mean_curve(rs, "val_acc")], style))
    target = 100 * statistics.mean(rows[0]["best"])
    # zoom on the configs that end within 5 points of the baseline's best; a run that fails goes to the inset
    zoom = [row["config"] for row in rows if 100 * statistics.mean(row["final"]) > target - 5]
    for config, _, style in losses:  # the same style dicts serve both panels
        if config not in zoom:
            style["label"] += " (off this scale: in the inset)"
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.8))
    _panel(ax_loss, losses, zoom, [0.55, 0.04, 0.4, 0.3], "validation loss")
    _panel(ax_acc, accs, zoom, [0.55, 0.06, 0.4, 0.4], "validation accuracy %")
    ax_acc.axhline(target, color="grey", linewidth=0.8, linestyle=":", label=f"baseline's best ({target:.1f}%)")
    n_seeds = len({r["seed"] for r in runs})
    seeds = f"{n_seeds} seeds" if n_seeds > 1 else "1 seed"
    ax_loss.set_title(f"Fashion-MNIST, MLP: validation loss (mean of {seeds})")
    ax_acc.set_title("validation accuracy")
    handles, labels = ax_acc.get_legend_handles_labels()
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.legend(handles, labels, fontsize=9, loc="lower center", ncol=3, frameon=False)
    fig.savefig(path, dpi=100)
    return fig


def main() -> None:
    parser = arguments(__doc__, HERE, seeds=3, quick="2,000 training images, 1 seed, 2 epochs, one lr")
    parser.add_argument("--data-root", default=None, help="folder with the four Fashion-MNIST IDX files")
    parser.add_argument("--plot-only", action="store_true", help="redraw curves.png from results.json")
    args = parser.parse_args()
    if args.plot_only:
        saved = json.loads((args.out / "results.json").read_text())
        plot(args.out / "curves.png", saved["runs"], saved["summary"], saved["settings"]["best_lr"])
        return
    from lightning_cyclic.data import FashionMNISTDataModule

    missing = FashionMNISTDataModule(root=args.data_root).missing_files()
    if missing:
        sys.exit(
            f"Fashion-MNIST is not installed; missing: {', '.join(missing)}. On Debian/Ubuntu: "
            "apt-get install dataset-fashion-mnist. Otherwise put the four .gz files of "
            "https://github.com/zalandoresearch/fashion-mnist (folder data/fashion) into a folder "
            "and pass --data-root FOLDER."
        )
    quiet()
    seeds = range(1 if args.quick else args.seeds)
    grid = QUICK["grid"] if args.quick else GRID
    q, root = args.quick, args.data_root
    start = time.perf_counter()
    # first the lr grid on seed 0 and every one-cycle run; then the baseline's other seeds at the best lr
    tasks = [(BASELINE, 0, q, root, lr) for lr in grid] + [(c, s, q, root, None) for c in ONE_CYCLE for s in seeds]
    runs = run_all(fit_one, tasks, args.jobs)
    scores = {r["lr"]: max(r["val_acc"]) for r in runs if r["config"] == BASELINE}
    best_lr = max(scores, key=scores.get)
    runs += run_all(fit_one, [(BASELINE, s, q, root, best_lr) for s in seeds if s != 0], args.jobs)
    rows = summarise(runs, best_lr)
    wall = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    settings = {
        "epochs": QUICK["epochs"] if q else EPOCHS,
        "training images": QUICK["limit_train"] if q else 54000,
        "seeds": len(seeds),
        "grid": grid,
        "best_lr": best_lr,
        "one_cycle": {c: {"label": lab, **kw, "share_of_epochs": share} for c, (lab, kw, share) in ONE_CYCLE.items()},
        "jobs": args.jobs,
        "wall_seconds": wall,
    }
    results = {"settings": settings, "summary": rows, "runs": runs}
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    plot(args.out / "curves.png", runs, rows, best_lr)
    print(report(rows, scores))
    print(f"\n{len(runs)} training runs in {wall:.0f}s with {args.jobs} processes")


if __name__ == "__main__":
    main()
