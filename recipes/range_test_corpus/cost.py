"""What ``max_lr="auto"`` (range test and short trials) costs inside the fit it precedes, on the long tasks.

    python recipes/range_test_corpus/cost.py                 # the long tasks (>= 2000 optimizer steps), 9 seeds
    python recipes/range_test_corpus/cost.py --quick         # one short task, 1 seed, 1 epoch (CI)

``run.py`` times each finder's whole call, a throw-away Trainer's set-up included, with the other core busy.
This script measures what a user pays: the same fit twice, one process, one thread, interleaved per seed,

* ``fixed``: ``OneCycle(max_lr=<the task's oracle lr>)``;
* ``auto``: ``LRFinder()`` and ``OneCycle(max_lr="auto")``, every default (``evaluate="auto"``: the validation
  loss where the task has a validation loader; ``trials=True``: five short trials after the sweep, seven where the
  five tie),

both with the task's data module (its validation loader where it has one, so validation runs every epoch, as in
a user's fit). The range test's cost is measured two ways in the same fits: **(a)** the wall time of
``LRFinder.on_fit_start`` (the whole test as the fit runs it: snapshot, sweep, restore; a timer wrapped around
the hook) as a share of the ``fixed`` fit's median time, and **(b)** the extra wall time of ``auto`` over
``fixed``, median of the per-seed differences (the lr does not change the time of a step, so the two fits
differ by the range test alone; on fits of a few seconds this difference carries the machine's noise).
One fit of each variant warms the process up first and is not counted.

It writes ``cost.json`` and ``cost.md`` (also printed) next to this file (or into ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import tasks as corpus  # noqa: E402
from common import trainer  # noqa: E402
from run import LONG, silence, task_datamodule, task_module, versions  # noqa: E402

QUICK_TASK = "digits-mlp-adamw-long"
TARGET = 0.15  # all of "auto", range test and trials, as a share of the fit (issue target)


def one_fit(task: corpus.Task, seed: int, variant: str, epochs: int, lr: float, root: str) -> dict:
    """One fit of ``variant`` (``"fixed"`` or ``"auto"``): its wall time, steps and the range test's own seconds."""
    import lightning.pytorch as pl

    from lightning_cyclic import LRFinder, OneCycle

    pl.seed_everything(seed, verbose=False)
    module = task_module(task)
    finder = LRFinder(verbose=False)
    hook = finder.on_fit_start
    spent = []

    def timed(*args):  # the whole range test as the fit runs it: snapshot, sweep, restore
        start = time.perf_counter()
        hook(*args)
        spent.append(time.perf_counter() - start)

    finder.on_fit_start = timed  # type: ignore[method-assign]
    callbacks = [OneCycle(max_lr=lr, log=False)] if variant == "fixed" else [finder, OneCycle(max_lr="auto", log=False)]
    fitted = trainer(root, callbacks, max_epochs=epochs)
    start = time.perf_counter()
    fitted.fit(module, datamodule=task_datamodule(task))
    seconds = time.perf_counter() - start
    out = {"task": task.name, "seed": seed, "variant": variant, "seconds": seconds, "steps": fitted.global_step}
    if variant == "auto":
        result = finder.result
        trials = result.extra.get("trials") or {}
        out.update(
            hook_seconds=sum(spent),
            finder_seconds=result.seconds,
            finder_steps=result.optimizer_steps + trials.get("steps", 0) * len(trials.get("lrs", [])),
            lr=result.chosen.lr,
        )
    return out


def oracle_lr(name: str) -> float:
    """The task's one-cycle oracle lr from ``results.json`` (0.01 where the task has not been run)."""
    path = HERE / "results.json"
    if path.exists():
        oracle = json.loads(path.read_text())["derived"]["oracles"].get(name)
        if oracle:
            return oracle["onecycle"]["best_lr"]
    return 0.01


def report(rows: list[dict], meta: dict) -> str:
    """The table: per task, the median fit seconds of each variant, the extra share, the sweep's own share."""
    lines = [
        f"Range-test cost inside the fit: {meta['seeds']} seeds, variants interleaved, one process, one thread; "
        f"{meta['cpus']} CPUs; torch {meta['versions'].get('torch')}, Lightning {meta['versions'].get('lightning')}.",
        "",
        "| task | steps | val loader | fixed: fit s (median) | (a) LRFinder.on_fit_start: s, % of fixed | "
        "(b) auto - fixed: s, % of fixed | of which the test itself: s | test steps (sweep + trials), % of the fit's |",
        "|---|---|---|---|---|---|---|---|",
    ]
    worst = 0.0
    for name in dict.fromkeys(r["task"] for r in rows):
        task = next(t for t in corpus.TASKS if t.name == name)
        fixed = [r for r in rows if r["task"] == name and r["variant"] == "fixed"]
        auto = [r for r in rows if r["task"] == name and r["variant"] == "auto"]
        f = statistics.median(r["seconds"] for r in fixed)
        hook = statistics.median(r["hook_seconds"] for r in auto)
        diff = statistics.median(a["seconds"] - b["seconds"] for a, b in zip(auto, fixed))
        sweep = statistics.median(r["finder_seconds"] for r in auto)
        sweep_steps = statistics.median(r["finder_steps"] for r in auto)
        steps = fixed[0]["steps"]
        worst = max(worst, hook / f)
        lines.append(
            f"| {name} | {steps} | {'yes' if task.val else 'no'} | {f:.2f} | {hook:.3f} s, {100 * hook / f:.1f}% | "
            f"{diff:.3f} s, {100 * diff / f:.1f}% | {sweep:.3f} | {sweep_steps:.0f}, {100 * sweep_steps / steps:.1f}% |"
        )
    verdict = "met" if worst <= TARGET else "**missed**"
    if meta["quick"]:
        verdict = "not measured (--quick: 1 epoch)"
    lines += [
        "",
        f"Target: all of `auto` (range test and trials) costs at most {TARGET:.0%} of the training on tasks of "
        f">= {LONG} optimizer steps: at most {100 * worst:.1f}% here by (a): {verdict}.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one task, 1 seed, 1 epoch (CI)")
    parser.add_argument("--seeds", type=int, default=9)
    parser.add_argument("--out", type=Path, default=HERE, help="folder for cost.json and cost.md")
    args = parser.parse_args()
    silence()
    import torch

    torch.set_num_threads(1)
    if args.quick:
        chosen, seeds = [t for t in corpus.TASKS if t.name == QUICK_TASK], 1
    else:
        chosen, seeds = [t for t in corpus.available() if corpus.total_steps(t) >= LONG], args.seeds
    root = tempfile.mkdtemp(prefix="range-test-cost-")
    rows = []
    start = time.perf_counter()
    for task in chosen:
        epochs = 1 if args.quick else task.epochs
        lr = oracle_lr(task.name)
        one_fit(task, 0, "fixed", 1, lr, root)  # warm-up: first-call costs (imports, allocator) fall here
        one_fit(task, 0, "auto", 1, lr, root)
        for seed in range(seeds):
            for variant in ("fixed", "auto") if seed % 2 == 0 else ("auto", "fixed"):
                rows.append(one_fit(task, seed, variant, epochs, lr, root))
    meta = {
        "quick": args.quick,
        "seeds": seeds,
        "cpus": os.cpu_count(),
        "versions": versions(),
        "seconds": time.perf_counter() - start,
    }
    table = report(rows, meta)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cost.json").write_text(json.dumps({"meta": meta, "fits": rows}, indent=1))
    (args.out / "cost.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
