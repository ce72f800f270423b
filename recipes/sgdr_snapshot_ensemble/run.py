"""SGDR with snapshot ensembles (Huang et al., 2017): M models for the price of one.

    python recipes/sgdr_snapshot_ensemble/run.py            # the study (README table and plot)
    python recipes/sgdr_snapshot_ensemble/run.py --quick    # a smoke run (CI runs it)

For each dataset and seed: one SGDR run (``WarmRestarts(max_lr="auto")``, 5
equal cycles, SGD) with ``BestSnapshot`` and ``SnapshotEnsemble`` (a snapshot
at each cycle's end), and, for reference, one-cycle (``OneCycle(max_lr="auto")``)
over the same number of epochs. It reports the single best model (by
validation accuracy, restored by ``BestSnapshot``), the last model, and the
ensemble of the 5 snapshots, and saves ``results.json`` and a plot of the lr
with the snapshot points marked.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from common import arguments, build, mean_std, quiet, run_all, trainer  # noqa: E402

CYCLE_EPOCHS = {"digits": 4, "mnist1d": 6, "fashion": 4}  # x 5 cycles
CYCLES = 5


def lr_recorder():
    import lightning.pytorch as pl

    class Lrs(pl.Callback):
        def __init__(self):
            self.lrs, self.acc = [], []

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            self.lrs.append(optimizer.param_groups[0]["lr"])

        def on_validation_epoch_end(self, trainer, pl_module):
            if not trainer.sanity_checking:
                self.acc.append(float(trainer.callback_metrics["val/acc"]))

    return Lrs()


def one_seed(task):
    dataset, seed, quick = task
    quiet()
    import torch

    torch.set_num_threads(1)
    import lightning.pytorch as pl

    from lightning_cyclic import BestSnapshot, LRFinder, OneCycle, SnapshotEnsemble, WarmRestarts

    cycle, cycles = (1, 2) if quick else (CYCLE_EPOCHS[dataset], CYCLES)
    epochs = cycle * cycles
    root = f"/tmp/sgdr-{os.getpid()}"
    out = {"dataset": dataset, "seed": seed, "epochs": epochs}

    datamodule, model, _ = build(dataset, quick)
    pl.seed_everything(seed, verbose=False)
    best = BestSnapshot("val/acc", "max", verbose=False)
    ensemble = SnapshotEnsemble(max_snapshots=cycles)
    restarts = WarmRestarts(max_lr="auto", cycle_len=cycle, interval="epoch", log=False)
    record = lr_recorder()
    callbacks = [LRFinder(verbose=False), restarts, best, ensemble, record]
    start = time.perf_counter()
    trainer(root, callbacks, max_epochs=epochs).fit(model(), datamodule=datamodule)
    out["sgdr"] = {
        "max_lr": restarts.resolved["max_lr"],
        "best": best.best_score,
        "best_epoch": best.best_epoch,
        "last": record.acc[-1],
        "ensemble": ensemble.metrics["val_acc"],
        "members": ensemble.metrics["member_acc"],
        "last_k": ensemble.metrics["last_k_acc"],
        "snapshot_steps": [s["step"] for s in ensemble.snapshots],
        "lrs": record.lrs,
        "acc": record.acc,
        "seconds": time.perf_counter() - start,
    }

    datamodule, model, _ = build(dataset, quick)
    pl.seed_everything(seed, verbose=False)
    onecycle, best1, record1 = (
        OneCycle(max_lr="auto", log=False),
        BestSnapshot("val/acc", "max", verbose=False),
        lr_recorder(),
    )
    trainer(root, [LRFinder(verbose=False), onecycle, best1, record1], max_epochs=epochs).fit(
        model(), datamodule=datamodule
    )
    out["onecycle"] = {"max_lr": onecycle.resolved["max_lr"], "best": best1.best_score, "last": record1.acc[-1]}
    return out


def report(runs, datasets) -> str:
    lines = [
        "| dataset | epochs | SGDR: best single model | SGDR: last model | SGDR: ensemble of all snapshots "
        "| SGDR: ensemble of the last 2 / 3 | one-cycle: best single model |",
        "|---|---|---|---|---|---|---|",
    ]
    for dataset in datasets:
        rows = [r for r in runs if r["dataset"] == dataset]
        s = [r["sgdr"] for r in rows]
        last = " / ".join(mean_std([x["last_k"][k - 1] for x in s], 2) for k in (2, 3) if len(s[0]["last_k"]) >= k)
        best, final, ens = (mean_std([x[key] for x in s], 2) for key in ("best", "last", "ensemble"))
        reference = mean_std([r["onecycle"]["best"] for r in rows], 2)
        lines.append(f"| {dataset} | {rows[0]['epochs']} | {best} | {final} | {ens} | {last} | {reference} |")
    return "\n".join(lines)


def plot(run, path: Path):
    from lightning_cyclic.plot import pyplot

    plt = pyplot()
    s = run["sgdr"]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.plot(range(len(s["lrs"])), s["lrs"], color="tab:blue", label="lr (SGDR)")
    marks = [step - 1 for step in s["snapshot_steps"]]
    ax.scatter(marks, [s["lrs"][m] for m in marks], color="tab:red", zorder=3, label="snapshot")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("lr", color="tab:blue")
    twin = ax.twinx()
    steps_per_epoch = len(s["lrs"]) / run["epochs"]
    twin.plot([(e + 1) * steps_per_epoch for e in range(len(s["acc"]))], s["acc"], color="tab:green", label="val acc")
    twin.axhline(s["ensemble"], color="tab:red", linestyle=":", label=f"ensemble {100 * s['ensemble']:.1f}%")
    twin.set_ylabel("validation accuracy", color="tab:green")
    lo = min([*s["acc"][len(s["acc"]) // 5 :], s["ensemble"]])
    twin.set_ylim(lo - 0.02, max(s["acc"] + [s["ensemble"]]) + 0.01)
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="lower left", fontsize=8)
    ax.set_title(f"SGDR on {run['dataset']}: snapshots at each cycle's end (seed {run['seed']})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return fig


def main() -> None:
    parser = arguments(
        __doc__, HERE, seeds=3, quick="digits, 1 seed, 2 cycles of 1 epoch", datasets="digits,mnist1d,fashion"
    )
    args = parser.parse_args()
    quiet()
    datasets = ["digits"] if args.quick else args.datasets.split(",")
    tasks = [(d, s, args.quick) for d in datasets for s in range(1 if args.quick else args.seeds)]
    start = time.perf_counter()
    runs = run_all(one_seed, tasks, args.jobs)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(runs, indent=1))
    shown = next((r for r in runs if r["dataset"] == "mnist1d"), runs[0])
    plot(shown, args.out / "sgdr_snapshots.png")
    print(report(runs, datasets))
    print(f"\n{len(tasks)} seed runs in {time.perf_counter() - start:.0f}s with {args.jobs} processes")


if __name__ == "__main__":
    main()
