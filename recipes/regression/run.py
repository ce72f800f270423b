"""One-cycle vs constant lrs on a regression task: scikit-learn's diabetes data (RMSE).

    python recipes/regression/run.py            # 5 seeds (README table)
    python recipes/regression/run.py --quick    # a smoke run (CI runs it)

Stands in for the Boston Housing comparison people cite (that data set is no longer
distributed). An MLP (10 -> 64 -> 64 -> 1) on standardised features and targets, mean
squared error, RMSE reported in the target's own units on a fixed 20% validation split.
Strategies: Adam at 1e-3 (the common default), SGD with momentum 0.9 at the best of a small
constant-lr grid, and SGD under ``OneCycle(max_lr="auto")`` (the LR range test's suggestion,
no other tuning). All share the seed's initial weights and batch order.
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

from common import arguments, quiet, run_all  # noqa: E402
from common import trainer as quiet_trainer  # noqa: E402

GRID = [0.003, 0.01, 0.03, 0.1]


def make(quick: bool):
    import lightning.pytorch as pl
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_diabetes
    from torch.utils.data import DataLoader, TensorDataset

    from lightning_cyclic.models import MLP

    x, y = load_diabetes(return_X_y=True)
    x, y = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    val, tr = order[: len(x) // 5], order[len(x) // 5 :]
    xm, xs, ym, ys = x[tr].mean(0), x[tr].std(0), y[tr].mean(), y[tr].std()
    x, yn = (x - xm) / xs, (y - ym) / ys
    train = DataLoader(TensorDataset(x[tr], yn[tr]), batch_size=32, shuffle=True)
    valid = DataLoader(TensorDataset(x[val], yn[val]), batch_size=len(val))

    class Regressor(pl.LightningModule):
        def __init__(self, optimizer):
            super().__init__()
            self.net, self.optimizer_factory = MLP((10,), 1, hidden=(64, 64)), optimizer

        def training_step(self, batch, batch_idx):
            loss = F.mse_loss(self.net(batch[0]).squeeze(-1), batch[1])
            self.log("train/loss", loss)
            return loss

        def validation_step(self, batch, batch_idx):
            mse = F.mse_loss(self.net(batch[0]).squeeze(-1), batch[1])
            self.log("val/loss", mse)
            self.log("val/rmse", mse.sqrt() * ys)  # in the target's units

        def configure_optimizers(self):
            return self.optimizer_factory(params=self.parameters())

    epochs = 2 if quick else 60
    return Regressor, train, valid, epochs


def run(strategy: str, lr: float | None, seed: int, quick: bool) -> dict:
    import lightning.pytorch as pl
    import torch

    from lightning_cyclic import LRFinder, OneCycle

    Regressor, train, valid, epochs = make(quick)
    pl.seed_everything(seed, verbose=False)
    rmse = []

    class Record(pl.Callback):
        def on_validation_epoch_end(self, trainer, pl_module):
            if not trainer.sanity_checking:
                rmse.append(float(trainer.callback_metrics["val/rmse"]))

    callbacks: list = [Record()]
    if strategy == "adam":
        opt = partial(torch.optim.Adam, lr=1e-3)
    else:
        opt = partial(torch.optim.SGD, lr=lr or 0.01, momentum=0.9)
    if strategy == "onecycle":
        callbacks += [LRFinder(verbose=False), OneCycle(max_lr="auto", log=False)]
    trainer = quiet_trainer(f"/tmp/regression-{os.getpid()}", callbacks, max_epochs=epochs)
    trainer.fit(Regressor(opt), train, valid)
    found = callbacks[-1].resolved["max_lr"] if strategy == "onecycle" else lr
    return {"best": min(rmse), "final": rmse[-1], "lr": found, "curve": rmse}


def one_seed(task):
    seed, quick = task
    quiet()
    import torch

    torch.set_num_threads(1)
    out = {"seed": seed, "adam": run("adam", None, seed, quick), "onecycle": run("onecycle", None, seed, quick)}
    out["constant"] = {str(lr): run("constant", lr, seed, quick) for lr in (GRID[1:3] if quick else GRID)}
    return out


def ms(values):
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {sd:.1f}"


def best_grid_lr(runs) -> str:
    grid = {lr: statistics.mean(r["constant"][lr]["best"] for r in runs) for lr in runs[0]["constant"]}
    return min(grid, key=grid.get)


def plot(runs, path: Path):
    """Validation RMSE per epoch of the three strategies, mean over the seeds with their range."""
    from lightning_cyclic.plot import pyplot

    plt = pyplot()
    best_lr = best_grid_lr(runs)
    series = {
        "Adam, lr 1e-3": [r["adam"]["curve"] for r in runs],
        f"SGD, constant lr {best_lr}": [r["constant"][best_lr]["curve"] for r in runs],
        "SGD, OneCycle(max_lr='auto')": [r["onecycle"]["curve"] for r in runs],
    }
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for name, curves in series.items():
        epochs = range(1, len(curves[0]) + 1)
        mean = [statistics.mean(c[i] for c in curves) for i in range(len(curves[0]))]
        line = ax.plot(epochs, mean, marker="o", markersize=3, label=name)[0]
        low = [min(c[i] for c in curves) for i in range(len(curves[0]))]
        high = [max(c[i] for c in curves) for i in range(len(curves[0]))]
        ax.fill_between(epochs, low, high, color=line.get_color(), alpha=0.15)
    best = min(min(statistics.mean(c[i] for c in cs) for i in range(len(cs[0]))) for cs in series.values())
    ax.set_ylim(best - 5, best + 40)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation RMSE")
    ax.set_title(f"diabetes: mean of {len(runs)} seeds (band: min..max)")
    ax.grid(alpha=0.3)
    ax.fill_between([], [], [], color="0.5", alpha=0.15, label="min..max over seeds")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return fig


def report(runs) -> str:
    grid = {lr: statistics.mean(r["constant"][lr]["best"] for r in runs) for lr in runs[0]["constant"]}
    best_lr = best_grid_lr(runs)
    rows = [
        ("Adam, lr 1e-3 (constant)", [r["adam"] for r in runs], "1e-3"),
        (f"SGD, best constant lr of ({', '.join(grid)})", [r["constant"][best_lr] for r in runs], best_lr),
        (
            "SGD, OneCycle(max_lr='auto')",
            [r["onecycle"] for r in runs],
            ", ".join(f"{r['onecycle']['lr']:.3g}" for r in runs),
        ),
    ]
    lines = ["| strategy | lr | best val RMSE | final val RMSE |", "|---|---|---|---|"]
    for name, results, lr in rows:
        lines.append(f"| {name} | {lr} | {ms([x['best'] for x in results])} | {ms([x['final'] for x in results])} |")
    return "\n".join(lines)


def main() -> None:
    parser = arguments(__doc__, HERE, seeds=5, quick="1 seed, 2 epochs, 2 grid lrs")
    args = parser.parse_args()
    quiet()
    tasks = [(s, args.quick) for s in range(1 if args.quick else args.seeds)]
    start = time.perf_counter()
    runs = run_all(one_seed, tasks, args.jobs)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(runs, indent=1))
    plot(runs, args.out / "rmse.png")
    print(report(runs))
    assert all(math.isfinite(r["onecycle"]["best"]) for r in runs)
    print(f"\n{len(tasks)} seed runs in {time.perf_counter() - start:.0f}s with {args.jobs} processes")


if __name__ == "__main__":
    main()
