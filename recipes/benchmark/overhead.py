"""What does a schedule callback cost? Fit time with OneCycle (callback), torch's OneCycleLR in
configure_optimizers, and no schedule, on the same training.

    python recipes/benchmark/overhead.py [--repeats 7] [--epochs 10]

The model is the small digits MLP, where per-step overhead weighs the most. The three variants
run interleaved, ``repeats`` times each; the table shows median fit seconds against no schedule
(on a busy 2-core machine that comparison is noisy, a few %), and, from Lightning's
SimpleProfiler, the time spent in the schedule's own code per step and as a share of the fit:
our callback's hooks, or Lightning stepping torch's scheduler.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from common import quiet  # noqa: E402
from common import trainer as quiet_trainer  # noqa: E402


def fit_seconds(variant: str, epochs: int, profile: bool = False) -> float | tuple[float, float]:
    from functools import partial

    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.profilers import SimpleProfiler

    from lightning_cyclic import OneCycle
    from lightning_cyclic.data import DigitsDataModule
    from lightning_cyclic.models import MLP, Classifier

    class TorchOneCycle(Classifier):
        def configure_optimizers(self):
            opt = super().configure_optimizers()
            total = self.trainer.estimated_stepping_batches
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.2, total_steps=total)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    pl.seed_everything(0, verbose=False)
    dm = DigitsDataModule()
    cls = TorchOneCycle if variant == "torch OneCycleLR" else Classifier
    model = cls(partial(MLP, hidden=[128, 128]), partial(torch.optim.SGD, lr=0.2, momentum=0.9), (64,), 10)
    callbacks = {
        "OneCycle callback": [OneCycle(max_lr=0.2)],
        # the callback's whole machinery, writing lr 0.2 and momentum 0.9 every step: the numbers of "no schedule"
        FLAT: [OneCycle(max_lr=0.2, div_factor=1, final_div_factor=1, moms=(0.9, 0.9))],
    }.get(variant, [])
    root = tempfile.mkdtemp()
    profiler = SimpleProfiler(dirpath=root, filename="profile") if profile else None
    trainer = quiet_trainer(root, callbacks, max_epochs=epochs, profiler=profiler)
    start = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    seconds = time.perf_counter() - start
    if not profile:
        return seconds
    # seconds spent inside the schedule's own work: our callback's hooks, or Lightning stepping torch's scheduler
    spent = sum(
        sum(durations)
        for name, durations in trainer.profiler.recorded_durations.items()
        if name.startswith("[Callback]OneCycle") or "lr_scheduler_step" in name
    )
    return seconds, spent


FLAT = "OneCycle callback, flat (lr and momentum held)"
VARIANTS = ("no schedule", "torch OneCycleLR", "OneCycle callback", FLAT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    quiet()
    import torch

    torch.set_num_threads(1)
    fit_seconds("no schedule", 1)  # warm-up: imports, first allocations
    times = {v: [] for v in VARIANTS}
    for i in range(args.repeats):
        k = i % len(VARIANTS)
        for variant in VARIANTS[k:] + VARIANTS[:k]:  # rotate the order: no variant always runs first
            times[variant].append(fit_seconds(variant, args.epochs))
    base = statistics.median(times["no schedule"])
    steps = 23 * args.epochs
    print(
        f"| variant ({args.repeats} runs of {args.epochs} epochs, {steps} optimizer steps) | median fit s | vs none "
        "| time in the schedule's own code | share of fit |"
    )
    print("|---|---|---|---|---|")
    for variant in VARIANTS:
        med = statistics.median(times[variant])
        if variant == "no schedule":
            inside = "-"
        else:
            total, spent = fit_seconds(variant, args.epochs, profile=True)
            inside = f"{1e6 * spent / steps:.0f} us/step | {100 * spent / total:.2f}%"
        print(f"| {variant} | {med:.3f} | {100 * (med / base - 1):+.1f}% | {inside} |")


if __name__ == "__main__":
    main()
