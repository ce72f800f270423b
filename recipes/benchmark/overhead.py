"""What does a schedule callback cost? Its share of the fit, measured two ways in one run.

    taskset -c 1 env OMP_NUM_THREADS=1 python recipes/benchmark/overhead.py [--repeats 7] [--epochs 15]

The training is the smallest there is, where per-step overhead weighs the most: the digits MLP
64-64-10 (one hidden layer of 64), batches of 32 (45 per epoch: 675 optimizer steps in 15
epochs), SGD, one thread. Variants: no schedule; torch's ``OneCycleLR`` stepped by Lightning from
``configure_optimizers``; our ``OneCycle`` callback; the callback holding lr and momentum flat (its
whole machinery, writing every step, on the numbers of the run without a schedule); and the
callback logging ``lr`` and ``momentum`` at every step (``log_every_n_steps=1``, a logger that keeps
the metrics in memory), next to a run without a schedule under the same logger; and a plain
``Callback`` with no hooks of its own, whose empty hooks Lightning calls all the same: what any
callback costs by each method, the floor under our numbers.

The time in the schedule's own code, as a share of the fit, two ways:

(a) Lightning's ``SimpleProfiler``: the durations it records for our callback's hooks (for torch,
    Lightning's ``lr_scheduler_step``), over the profiled fit's wall time;
(b) wall clock: every hook of the callback instance is wrapped here (not in the package) with a
    ``time.perf_counter_ns`` accumulator, in a fit without profiler (for torch, the scheduler's
    ``step()`` inside ``lr_scheduler_step``), over that fit's wall time. The last column adds the
    callback's ``state_key``, which Lightning builds at every call of every hook of every callback,
    to name the hook for the profiler (with or without one), outside the hook and so outside (a).

Variants run interleaved, ``repeats`` times each, in a rotating order; the table shows medians and,
in brackets, the smallest and largest of the repeats. Fit seconds against no schedule are printed
too, but on a shared 2-core machine that comparison is noisy (a few %): read the shares.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from common import quiet  # noqa: E402
from common import trainer as quiet_trainer  # noqa: E402

NONE, TORCH, OURS = "no schedule", "torch OneCycleLR", "OneCycle callback"
FLAT = "OneCycle callback, flat (lr and momentum held)"
NONE_LOG, OURS_LOG = "no schedule, logging every step", "OneCycle callback, logging every step"
EMPTY = "a Callback with no hooks of its own (the floor of both methods)"
VARIANTS = (NONE, TORCH, OURS, FLAT, NONE_LOG, OURS_LOG, EMPTY)
MEASURED = (TORCH, OURS, FLAT, OURS_LOG, EMPTY)  # the variants with code to time
BASELINE = {TORCH: NONE, OURS: NONE, FLAT: NONE, OURS_LOG: NONE_LOG, EMPTY: NONE}
BATCH_SIZE, HIDDEN = 32, [64]
STATE_KEY = "state_key (read by Lightning at every hook call)"


def hook_names() -> list[str]:
    """Every hook Lightning may call on a callback."""
    import lightning.pytorch as pl

    extra = ("setup", "teardown", "state_dict", "load_state_dict")
    return [n for n in dir(pl.Callback) if n.startswith("on_") or n in extra]


def time_hooks(callback, spent: dict[str, list[int]]) -> None:
    """Wrap each hook of ``callback`` (the instance, not its class) with a ``perf_counter_ns`` accumulator:
    ``spent[name] = [nanoseconds, calls]``. Its ``state_key`` too, which Lightning reads at every call of every
    hook (to name it for the profiler, before the profiler starts): through a subclass of the same name."""
    clock = time.perf_counter_ns
    cls, acc = type(callback), spent[STATE_KEY]

    def state_key(self):
        start = clock()
        try:
            return cls.state_key.fget(self)
        finally:
            acc[0] += clock() - start
            acc[1] += 1

    names = {"__qualname__": cls.__qualname__, "__module__": cls.__module__, "state_key": property(state_key)}
    callback.__class__ = type(cls.__name__, (cls,), names)  # the same state_key: it is built from __qualname__

    def wrap(name, fn):
        acc = spent[name]

        def timed(*args, **kwargs):
            start = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                acc[0] += clock() - start
                acc[1] += 1

        return timed

    for name in hook_names():
        setattr(callback, name, wrap(name, getattr(callback, name)))


def make_logger():
    from lightning.pytorch.loggers import Logger

    class MemoryLogger(Logger):
        """Keeps every logged metric in a list (no files), so the table times the logging, not a disk."""

        def __init__(self) -> None:
            super().__init__()
            self.metrics: list[tuple[int | None, dict]] = []

        @property
        def name(self) -> str:
            return "memory"

        @property
        def version(self) -> int:
            return 0

        def log_metrics(self, metrics, step=None) -> None:
            self.metrics.append((step, metrics))

        def log_hyperparams(self, params, *args, **kwargs) -> None:
            pass

    return MemoryLogger()


def fit(variant: str, epochs: int, profile: bool = False, timed: bool = False) -> dict:
    """One fit of ``variant``: its seconds and steps, and (profile) the profiler's or (timed) the wall clock's
    nanoseconds in the schedule's own code, by hook."""
    from functools import partial

    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.profilers import SimpleProfiler

    from lightning_cyclic import OneCycle
    from lightning_cyclic.data import DigitsDataModule
    from lightning_cyclic.models import MLP, Classifier

    spent: dict[str, list[int]] = defaultdict(lambda: [0, 0])

    class TorchOneCycle(Classifier):
        def configure_optimizers(self):
            opt = super().configure_optimizers()
            total = self.trainer.estimated_stepping_batches
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.2, total_steps=total)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

        def lr_scheduler_step(self, scheduler, metric):
            if not timed:
                return super().lr_scheduler_step(scheduler, metric)
            start = time.perf_counter_ns()
            scheduler.step()  # what Lightning's lr_scheduler_step does here
            spent["scheduler.step"][0] += time.perf_counter_ns() - start
            spent["scheduler.step"][1] += 1

    pl.seed_everything(0, verbose=False)
    dm = DigitsDataModule(batch_size=BATCH_SIZE)
    cls = TorchOneCycle if variant == TORCH else Classifier
    model = cls(partial(MLP, hidden=HIDDEN), partial(torch.optim.SGD, lr=0.2, momentum=0.9), (64,), 10)
    callbacks = {
        OURS: [OneCycle(max_lr=0.2)],
        OURS_LOG: [OneCycle(max_lr=0.2)],
        FLAT: [OneCycle(max_lr=0.2, div_factor=1, final_div_factor=1, moms=(0.9, 0.9))],
        EMPTY: [pl.Callback()],
    }.get(variant, [])
    names = [f"[Callback]{callback.state_key}." for callback in callbacks]  # the profiler's names of their hooks
    if timed:
        for callback in callbacks:
            time_hooks(callback, spent)
    root = tempfile.mkdtemp()
    kwargs = {}
    if variant in (NONE_LOG, OURS_LOG):
        kwargs = {"logger": make_logger(), "log_every_n_steps": 1}
    profiler = SimpleProfiler(dirpath=root, filename="profile") if profile else None
    trainer = quiet_trainer(root, callbacks, max_epochs=epochs, profiler=profiler, **kwargs)
    start = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    seconds = time.perf_counter() - start
    if variant == OURS_LOG:  # the callback did log every step
        logged = [m for _, m in trainer.logger.metrics if "lr" in m]
        assert len(logged) == trainer.global_step, (len(logged), trainer.global_step)
    if profile:
        for name, durations in trainer.profiler.recorded_durations.items():
            if name.startswith(tuple(names)) or "lr_scheduler_step" in name:
                hook = name.rsplit(".", 1)[-1]
                spent[hook][0] += int(sum(durations) * 1e9)
                spent[hook][1] += len(durations)
    return {"seconds": seconds, "steps": trainer.global_step, "spent": dict(spent)}


def share(runs: list[dict], state_key: bool = False) -> tuple[list[float], list[float]]:
    """Per run: microseconds per optimizer step in the schedule's code (its hooks; and its state_key reads with
    ``state_key``), and that as % of the fit's wall time."""
    spent = [sum(ns for name, (ns, _) in r["spent"].items() if state_key or name != STATE_KEY) for r in runs]
    per_step = [ns / 1e3 / r["steps"] for ns, r in zip(spent, runs)]
    pct = [100 * ns / 1e9 / r["seconds"] for ns, r in zip(spent, runs)]
    return per_step, pct


def spread(values: list[float], digits: int) -> str:
    med = statistics.median(values)
    return f"{med:.{digits}f} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    quiet()
    import torch

    torch.set_num_threads(1)
    fit(NONE, 1)  # warm-up: imports, first allocations
    timed = {v: [] for v in VARIANTS}
    profiled = {v: [] for v in MEASURED}
    for i in range(args.repeats):
        k = i % len(VARIANTS)
        for variant in VARIANTS[k:] + VARIANTS[:k]:  # rotate the order: no variant always runs first
            timed[variant].append(fit(variant, args.epochs, timed=variant in MEASURED))
            if variant in MEASURED:
                profiled[variant].append(fit(variant, args.epochs, profile=True))
    steps = timed[NONE][0]["steps"]
    print(
        f"| variant ({args.repeats} runs of {args.epochs} epochs, {steps} optimizer steps) | median fit s | vs none "
        "| (a) profiler: us/step | (a) share of fit % | (b) wall clock: us/step | (b) share of fit % "
        "| (b) with state_key reads: share of fit % |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for variant in VARIANTS:
        med = statistics.median(r["seconds"] for r in timed[variant])
        base = statistics.median(r["seconds"] for r in timed[BASELINE.get(variant, NONE)])
        cells = ["-"] * 5
        if variant in MEASURED:
            (a_us, a_pct), (b_us, b_pct) = share(profiled[variant]), share(timed[variant])
            with_key = spread(share(timed[variant], state_key=True)[1], 2) if variant != TORCH else "-"
            cells = [spread(a_us, 1), spread(a_pct, 2), spread(b_us, 1), spread(b_pct, 2), with_key]
        vs = "-" if variant in (NONE, NONE_LOG) else f"{100 * (med / base - 1):+.1f}%"
        print(f"| {variant} | {med:.3f} | {vs} | " + " | ".join(cells) + " |")
    print()
    print(f"By hook, {OURS_LOG}: medians over the runs")
    print()
    print("| hook | calls per fit | (a) profiler: us per step | (b) wall clock: us per call | (b) us per step |")
    print("|---|---|---|---|---|")
    import lightning.pytorch as pl

    from lightning_cyclic import OneCycle

    runs, profiled_runs = timed[OURS_LOG], profiled[OURS_LOG]
    called = [h for h in hook_names() if runs[0]["spent"].get(h, (0, 0))[1]]
    own = [h for h in called if getattr(OneCycle, h) is not getattr(pl.Callback, h)]  # the callback's own hooks
    rest = [h for h in called if h not in own]
    no_ops = f"the other {len(rest)} hooks (Callback's no-ops)"
    steps = runs[0]["steps"]
    for label, names in [*((h, [h]) for h in own), (no_ops, rest), (STATE_KEY, [STATE_KEY])]:
        ns = statistics.median(sum(r["spent"][h][0] for h in names) for r in runs)
        calls = sum(runs[0]["spent"][h][1] for h in names)
        in_a = "-"
        if label != STATE_KEY:
            a_ns = statistics.median(sum(r["spent"].get(h, (0, 0))[0] for h in names) for r in profiled_runs)
            in_a = f"{a_ns / 1e3 / steps:.2f}"
        print(f"| {label} | {calls} | {in_a} | {ns / 1e3 / calls:.2f} | {ns / 1e3 / steps:.2f} |")


if __name__ == "__main__":
    main()
