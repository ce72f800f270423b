"""WSD against cosine and one-cycle at an equal budget, and how much of a WSD run can be extended after the fact.

    python recipes/wsd/run.py            # MNIST-1D and Fashion-MNIST, 3 seeds (README table and plot)
    python recipes/wsd/run.py --quick    # a smoke run: digits, 1 seed, 2 epochs (CI runs it)

1. **Equal budget.** Each schedule trains the same model for the same epochs from the same initial weights and
   batch order, at each peak lr of a small grid (SGD, momentum 0.9, weight decay 5e-4); a schedule's score is
   its best grid point (mean over seeds of the best validation accuracy):
   ``WarmupStableDecay`` (5% warmup, 20% decay, ``1-sqrt``), ``WarmupDecay`` cosine (the same 5% warmup) and
   ``OneCycle``.
2. **Extension.** A WSD run planned for ``E`` epochs keeps a checkpoint from its stable phase (the end of epoch
   ``0.8 E - 1``, where its decay would begin) and is resumed from it with ``2 E`` epochs planned. Against it:
   the same WSD planned ``2 E`` from the start, and what a cosine run offers in its place (the ``E`` run is
   finished; longer means a new ``2 E`` run). Compute is counted in epochs trained.
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

from common import accuracies, arguments, build, fashion_available, mean_std, quiet, run_all, trainer  # noqa: E402

SCHEDULES = ("wsd", "cosine", "onecycle")
GRID = {"mnist1d": [0.05, 0.1, 0.2, 0.4], "fashion": [0.02, 0.05, 0.1, 0.2], "digits": [0.05, 0.1]}
WARMUP, DECAY = 0.05, 0.2  # shares of the run
LABELS = {"wsd": "WSD (1-sqrt, 20% decay)", "cosine": "warmup + cosine", "onecycle": "one-cycle"}


def schedule_of(kind: str, lr: float, warmup: float):
    """The schedule ``kind`` peaking at ``lr`` after ``warmup`` epochs (one-cycle: its own 30% rise)."""
    from lightning_cyclic import OneCycle, WarmupDecay, WarmupStableDecay

    if kind == "wsd":
        return WarmupStableDecay(max_lr=lr, warmup=warmup, decay_pct=DECAY, interval="epoch", log=False)
    if kind == "cosine":
        return WarmupDecay(max_lr=lr, warmup=warmup, decay="cosine", interval="epoch", log=False)
    return OneCycle(max_lr=lr, log=False)


def fit(dataset, seed, quick, kind, lr, epochs, root, warmup, extra=(), ckpt_path=None):
    """One run of ``epochs``; its validation accuracy after every epoch it trains."""
    import lightning.pytorch as pl

    datamodule, model, _ = build(dataset, quick)
    pl.seed_everything(seed, verbose=False)
    acc = accuracies()
    callbacks = [schedule_of(kind, lr, warmup), acc, *extra]
    run = trainer(root, callbacks, max_epochs=epochs, enable_checkpointing=bool(extra))
    run.fit(model(lr=lr), datamodule=datamodule, ckpt_path=ckpt_path)
    return acc.values


def one_task(task):
    dataset, seed, quick, part = task
    quiet()
    import torch

    torch.set_num_threads(1)
    root = tempfile.mkdtemp(prefix="wsd-")
    _, _, epochs = build(dataset, quick)
    epochs = 2 if quick else epochs
    warmup = WARMUP * epochs  # in epochs, the same for every run of this dataset (so an extension is exact)
    start = time.perf_counter()
    if part == "budget":
        lrs = GRID[dataset][: 1 if quick else None]
        out = {kind: {str(lr): fit(dataset, seed, quick, kind, lr, epochs, root, warmup) for lr in lrs}
               for kind in SCHEDULES}  # fmt: skip
        return {"part": part, "dataset": dataset, "seed": seed, "epochs": epochs, "runs": out,
                "seconds": time.perf_counter() - start}  # fmt: skip
    from lightning.pytorch.callbacks import ModelCheckpoint

    lr = GRID[dataset][1 if not quick else 0]
    keep = ModelCheckpoint(dirpath=f"{root}/ckpt", save_top_k=-1, every_n_epochs=1, filename="{epoch}")
    short = fit(dataset, seed, quick, "wsd", lr, epochs, root, warmup, extra=[keep])
    stable_end = max(math.floor((1 - DECAY) * epochs) - 1, 0)  # the last epoch end before the decay begins
    resume = f"{root}/ckpt/epoch={stable_end}.ckpt"
    extended = fit(dataset, seed, quick, "wsd", lr, 2 * epochs, root, warmup, ckpt_path=resume)
    scratch = fit(dataset, seed, quick, "wsd", lr, 2 * epochs, root, warmup)
    cosine_short = fit(dataset, seed, quick, "cosine", lr, epochs, root, warmup)
    cosine_long = fit(dataset, seed, quick, "cosine", lr, 2 * epochs, root, warmup)
    return {"part": part, "dataset": dataset, "seed": seed, "epochs": epochs, "lr": lr, "stable_end": stable_end,
            "short": short, "extended": extended, "scratch": scratch, "cosine_short": cosine_short,
            "cosine_long": cosine_long, "seconds": time.perf_counter() - start}  # fmt: skip


def budget_table(runs) -> str:
    lines = [
        "| dataset | epochs | " + " | ".join(LABELS[k] for k in SCHEDULES) + " |",
        "|---|---|" + "---|" * len(SCHEDULES),
    ]
    for dataset in dict.fromkeys(r["dataset"] for r in runs if r["part"] == "budget"):
        rows = [r for r in runs if r["part"] == "budget" and r["dataset"] == dataset]
        cells = []
        for kind in SCHEDULES:
            lrs = list(rows[0]["runs"][kind])
            mean_of = {lr: statistics.mean(max(r["runs"][kind][lr]) for r in rows) for lr in lrs}
            best = max(mean_of, key=mean_of.get)
            edge = ", grid edge!" if len(lrs) > 1 and best in (lrs[0], lrs[-1]) else ""
            cells.append(f"{mean_std([max(r['runs'][kind][best]) for r in rows])} (lr {best}{edge})")
        lines.append(f"| {dataset} | {rows[0]['epochs']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def extension_table(runs) -> str:
    lines = [
        "| dataset | E | WSD planned E (best %) | WSD extended to 2E from epoch s | WSD planned 2E from the start "
        "| cosine planned E | cosine planned 2E | epochs trained for 2E: WSD extended / new run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for dataset in dict.fromkeys(r["dataset"] for r in runs if r["part"] == "extension"):
        rows = [r for r in runs if r["part"] == "extension" and r["dataset"] == dataset]
        e, s = rows[0]["epochs"], rows[0]["stable_end"]

        def best(key, rows=rows):
            return mean_std([max(r[key]) for r in rows])

        lines.append(
            f"| {dataset} | {e} | {best('short')} | {best('extended')} (s = {s}) | {best('scratch')} | "
            f"{best('cosine_short')} | {best('cosine_long')} | {e + (2 * e - s - 1)} / {e + 2 * e} |"
        )
    return "\n".join(lines)


def plot(runs, path: Path):
    from lightning_cyclic.plot import pyplot

    plt = pyplot()
    ext = [r for r in runs if r["part"] == "extension"]
    datasets = list(dict.fromkeys(r["dataset"] for r in ext))
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 3.8), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        rows = [r for r in ext if r["dataset"] == dataset]
        e, s = rows[0]["epochs"], rows[0]["stable_end"]

        def mean_curve(key, rows=rows):
            return [statistics.mean(r[key][i] for r in rows) for i in range(len(rows[0][key]))]

        ax.plot(
            range(1, 2 * e + 1), mean_curve("scratch"), "-", color="tab:blue", label="WSD planned 2E from the start"
        )
        ax.plot(range(s + 2, 2 * e + 1), mean_curve("extended"), "--", color="tab:orange",
                label=f"WSD planned E, extended from epoch {s + 1}")  # fmt: skip
        ax.plot(range(1, e + 1), mean_curve("short"), ":", color="tab:orange", label="WSD planned E")
        ax.plot(range(1, 2 * e + 1), mean_curve("cosine_long"), "-", color="tab:green", label="cosine planned 2E")
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation accuracy")
        ax.set_title(f"{dataset}: extending a WSD run (mean of {len(rows)} seeds)")
        top = max(max(mean_curve(k)) for k in ("scratch", "extended", "cosine_long"))
        ax.set_ylim(top - 0.25, top + 0.01)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return fig


def main() -> None:
    parser = arguments(__doc__, HERE, seeds=3, quick="digits, 1 seed, 2 epochs", datasets="mnist1d,fashion")
    parser.add_argument("--report-only", action="store_true", help="the tables and plot again from results.json")
    args = parser.parse_args()
    path = args.out / "results.json"
    if args.report_only:
        saved = json.loads(path.read_text())
        runs, meta = saved["runs"], saved["meta"]
    else:
        wanted = args.datasets.split(",")
        datasets = ["digits"] if args.quick else [d for d in wanted if d != "fashion" or fashion_available()]
        seeds = 1 if args.quick else args.seeds
        tasks = [(d, s, args.quick, part) for part in ("budget", "extension") for d in datasets for s in range(seeds)]
        start = time.perf_counter()
        runs = run_all(one_task, tasks, args.jobs)
        meta = {"seconds": time.perf_counter() - start, "jobs": args.jobs, "cpus": os.cpu_count(), "quick": args.quick}
        args.out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))
    plot(runs, args.out / "wsd.png")
    text = (
        f"{len(runs)} tasks in {meta['seconds']:.0f} s, {meta['jobs']} processes of one thread on {meta['cpus']} CPUs."
        f"\n\n### Equal budget: best validation accuracy %, mean ± sd over seeds, at each schedule's best grid lr\n\n"
        f"{budget_table(runs)}\n\n### Extending a WSD run\n\n{extension_table(runs)}\n"
    )
    print(text)
    (args.out / "table.md").write_text(text)


if __name__ == "__main__":
    main()
