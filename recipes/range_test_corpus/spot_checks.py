"""Three spot checks of ``OneCycle(max_lr="auto")`` as a new user runs it, on the package's own data and models.

    python recipes/range_test_corpus/spot_checks.py           # the three checks, full length (journaled, resumes)
    python recipes/range_test_corpus/spot_checks.py --quick   # 1 seed, tiny data and epochs (CI)

Each run is a real Lightning ``Trainer`` with ``OneCycle(max_lr="auto")`` in its callbacks and nothing else
tuned (the ``LRFinder`` it creates has every default: the range test, then the short trials), beside its peers in
the same script, on the same seeds (a seed fixes the initial weights and the data order):

1. **mnist1d-cnn**: ``CNN1D()`` on ``MNIST1DDataModule()`` (its defaults: batch 100, the validation loader on
   mnist1d's test split), 20 epochs, SGD momentum 0.9, seeds 0-2. Peers: the curve alone
   (``LRFinder(trials=False)`` beside ``OneCycle(max_lr="auto")``, as the release before the trials) and a
   constant lr of 0.01, 0.03 and 0.1 (no schedule). Scored by the best and the final validation accuracy.
2. **digits-noval**: ``MLP()`` on ``DigitsDataModule(batch_size=32)``, SGD momentum 0.9, seeds 0-4, the training
   loader alone: the lr that ``auto`` takes per seed (``result.chosen.lr``; the curve's own reading
   ``result.suggestion.lr`` is what the curve alone takes), and their spread (max / min over seeds).
3. **digits-val**: the same with the validation loader.

Checks 2 and 3 need only the chosen lr: their fits plan 20 epochs (the trials' length is 3% of the planned fit's
optimizer steps) and stop at ``on_train_start``, once the range test and the trials have run.

Every finished job is appended to ``spot_checks.jsonl`` next to this file (one JSON line); run again, the script
skips the jobs already there and prints the tables from the journal.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from functools import partial
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from common import accuracies, quiet, trainer  # noqa: E402


def silence() -> None:
    """``quiet()``, and the same for the namespaces the package imports Lightning under."""
    import logging

    quiet()
    import lightning_cyclic.models  # noqa: F401  (imports pytorch_lightning where it is installed)

    for name in ("pytorch_lightning", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


CONSTANTS = (0.01, 0.03, 0.1)  # the constant lrs the 1-D CNN's auto is measured against
USER_LR = 0.01  # the optimizer's own lr in the auto runs: the range test never reads it (only a fallback would)
SPREADS = ("digits-noval", "digits-val")  # checks 2 and 3: without and with the validation loader
KEY = ("check", "method", "seed", "epochs", "quick")


def plan(quick: bool) -> list[dict]:
    """Every job of the three checks, in the order they run."""
    cnn_seeds, mlp_seeds = ([0], [0]) if quick else ([0, 1, 2], [0, 1, 2, 3, 4])
    epochs = 1 if quick else 20
    methods = ["auto", "auto-curve"] + [f"constant-{lr:g}" for lr in CONSTANTS]
    jobs = [dict(check="mnist1d-cnn", method=m, seed=s, epochs=epochs) for s in cnn_seeds for m in methods]
    jobs += [dict(check=c, method="auto", seed=s, epochs=epochs) for c in SPREADS for s in mlp_seeds]
    return [dict(job, quick=quick) for job in jobs]


def mnist1d(quick: bool):
    from lightning_cyclic.data import MNIST1DDataModule

    cache = str(Path(tempfile.gettempdir()) / "lightning_cyclic_spot_checks")  # the generated arrays, reused
    if quick:
        return MNIST1DDataModule(num_samples=1000, limit_train=300, cache_dir=cache)
    return MNIST1DDataModule(cache_dir=cache)


def digits():
    from lightning_cyclic.data import DigitsDataModule

    return DigitsDataModule(batch_size=32)


def classifier(datamodule, net_cls, lr: float):
    import torch

    from lightning_cyclic.models import Classifier

    optimizer = partial(torch.optim.SGD, lr=lr, momentum=0.9)
    return Classifier(net_cls, optimizer, datamodule.input_shape, datamodule.num_classes)


def found(onecycle, finder) -> dict:
    """What the range test read and what ``auto`` took, from a fit's ``OneCycle`` and its ``LRFinder``."""
    result = finder.result
    s, chosen = result.suggestion, result.chosen
    trials = result.extra.get("trials")
    return {
        "max_lr": (onecycle.resolved or {}).get("max_lr"),
        "chosen_lr": chosen.lr,
        "chosen_rule": chosen.rule,
        "curve_lr": s.lr,
        "curve_reason": "" if s else s.reason,
        "confidence": s.confidence.level if s.confidence is not None else None,
        "trials": None if trials is None else {k: trials.get(k) for k in ("lrs", "losses", "lr", "reason")},
        "finder_seconds": result.seconds,
    }


def run_cnn(job: dict, root: str) -> dict:
    """Check 1: one full fit of the 1-D CNN, ``auto`` (with or without the trials) or a constant lr."""
    import lightning.pytorch as pl

    from lightning_cyclic import LRFinder, OneCycle
    from lightning_cyclic.models import CNN1D

    pl.seed_everything(job["seed"], verbose=False)
    datamodule = mnist1d(job["quick"])
    auto = job["method"].startswith("auto")
    lr = USER_LR if auto else float(job["method"].split("-", 1)[1])
    model = classifier(datamodule, CNN1D, lr)
    acc = accuracies()
    callbacks: list = [acc]
    if auto:
        onecycle = OneCycle(max_lr="auto")
        callbacks.append(onecycle)
        if job["method"] == "auto-curve":
            callbacks.append(LRFinder(trials=False))
    fitted = trainer(root, callbacks, max_epochs=job["epochs"])
    fitted.fit(model, datamodule=datamodule)
    out = {"best": max(acc.values), "final": acc.values[-1], "curve": acc.values, "steps": fitted.global_step}
    if auto:
        out.update(found(onecycle, onecycle.finder or callbacks[-1]))
    return out


def run_digits(job: dict, root: str) -> dict:
    """Checks 2 and 3: the lr ``auto`` takes on the digits MLP, in a fit planned for ``epochs`` and stopped at
    ``on_train_start`` (the range test and the trials run at ``on_fit_start``)."""
    import lightning.pytorch as pl

    from lightning_cyclic import OneCycle
    from lightning_cyclic.models import MLP

    class StopAtTrainStart(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            trainer.should_stop = True

    pl.seed_everything(job["seed"], verbose=False)
    datamodule = digits()
    model = classifier(datamodule, MLP, USER_LR)
    onecycle = OneCycle(max_lr="auto")
    fitted = trainer(root, [onecycle, StopAtTrainStart()], max_epochs=job["epochs"])
    if job["check"] == "digits-val":
        fitted.fit(model, datamodule=datamodule)
    else:
        datamodule.setup("fit")
        fitted.fit(model, train_dataloaders=datamodule.train_dataloader())
    planned = fitted.estimated_stepping_batches
    return {**found(onecycle, onecycle.finder), "planned_steps": planned, "steps": fitted.global_step}


def work(job: dict, root: str) -> dict:
    """One job; a failure is recorded with its traceback (and runs again next time)."""
    start = time.perf_counter()
    try:
        out = run_cnn(job, root) if job["check"] == "mnist1d-cnn" else run_digits(job, root)
    except Exception:
        out = {"error": traceback.format_exc(limit=8)}
    return {**job, **out, "wall": time.perf_counter() - start}


# --- the journal: one JSON line per finished job ----------------------------------------------------------------


def key_of(job: dict) -> str:
    return json.dumps([job.get(k) for k in KEY])


def read_journal(path: Path) -> dict[str, dict]:
    """The finished jobs of ``path``, by key; a line cut short by a killed run is skipped (its job runs again)."""
    records: dict[str, dict] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            records[key_of(record)] = record
    return records


def pending(jobs: list[dict], records: dict[str, dict]) -> list[dict]:
    """The jobs still to run: not in the journal, or failed there."""
    return [j for j in jobs if key_of(j) not in records or "error" in records[key_of(j)]]


def append(path: Path, record: dict) -> None:
    text = path.read_text() if path.exists() else ""
    with path.open("a") as f:
        if text and not text.endswith("\n"):
            f.write("\n")
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


# --- the tables -------------------------------------------------------------------------------------------------


def mean(xs: list[float]) -> float:
    return statistics.fmean(xs)


def lrs(xs: list) -> str:
    return ", ".join("none" if x is None else f"{x:.3g}" for x in xs)


def spread(xs: list) -> str:
    xs = [x for x in xs if x is not None]
    return f"{max(xs) / min(xs):.2f}x" if len(xs) > 1 else "n/a (1 seed)"


def cnn_table(records: list[dict]) -> list[str]:
    """Check 1: each method's mean best and final accuracy, and how far below the best constant lr it lands."""
    by: dict[str, list[dict]] = {}
    for r in records:
        by.setdefault(r["method"], []).append(r)
    constants = [m for m in by if m.startswith("constant")]
    if not constants:
        return []
    best = max(constants, key=lambda m: mean([100 * r["best"] for r in by[m]]))
    ref_best, ref_final = mean([100 * r["best"] for r in by[best]]), mean([100 * r["final"] for r in by[best]])
    seeds = sorted({r["seed"] for r in records})
    names = {"auto": "`auto` (range test + short trials, the default)", "auto-curve": "`auto`, the curve alone "
             "(`LRFinder(trials=False)`)"}  # fmt: skip
    lines = [
        f"Check 1: `CNN1D()` on `MNIST1DDataModule()`, batch 100, {records[0]['epochs']} epochs, SGD momentum 0.9, "
        f"validation loader given, seeds {', '.join(map(str, seeds))}. Best constant lr: {best.split('-')[1]}. "
        "Accuracy in % (mean over seeds); below = the best constant lr's mean minus the method's (positive: worse).",
        "",
        "| method | best-epoch acc | final acc | below best constant (best epoch) | below (final) | best-epoch acc per "
        "seed | lr per seed |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in ["auto", "auto-curve", *constants]:
        if m not in by:
            continue
        rs = sorted(by[m], key=lambda r: r["seed"])
        b, f = mean([100 * r["best"] for r in rs]), mean([100 * r["final"] for r in rs])
        lr = lrs([r.get("max_lr") for r in rs]) if m.startswith("auto") else m.split("-")[1]
        name = names[m] if m in names else f"constant lr {m.split('-')[1]}"
        per_seed = ", ".join(f"{100 * r['best']:.1f}" for r in rs)
        lines.append(f"| {name} | {b:.2f} | {f:.2f} | "
                     f"{ref_best - b:+.2f} | {ref_final - f:+.2f} | {per_seed} | {lr} |")  # fmt: skip
    if "auto" in by and "auto-curve" in by:
        curve = sorted(by["auto"], key=lambda r: r["seed"])
        reason = curve[0]["trials"]["reason"] if curve[0].get("trials") else "none"
        lines += ["", f"The curve's reading per seed in the `auto` runs: {lrs([r['curve_lr'] for r in curve])} "
                  f"(confidence {', '.join(str(r['confidence']) for r in curve)}); the trials, seed "
                  f"{curve[0]['seed']}: {reason}."]  # fmt: skip
    return lines


def spread_table(records: dict[str, list[dict]]) -> list[str]:
    """Checks 2 and 3: the lr per seed, with the trials and by the curve alone, and its spread over seeds."""
    rows = [(check, sorted(rs, key=lambda r: r["seed"])) for check, rs in records.items() if rs]
    if not rows:
        return []
    lines = [
        "Checks 2 and 3: `MLP()` on `DigitsDataModule(batch_size=32)`, SGD momentum 0.9, a fit planned for "
        f"{rows[0][1][0]['epochs']} epochs ({rows[0][1][0]['planned_steps']} optimizer steps), stopped once `auto` "
        "has its lr. With the trials: `result.chosen.lr` (what `OneCycle` took); the curve alone: "
        "`result.suggestion.lr`, the same range test's reading. Spread = max / min over seeds.",
        "",
        "| check | validation loader | lr per seed, with the trials | spread | lr per seed, the curve alone | spread "
        "| curve's confidence per seed |",
        "|---|---|---|---|---|---|---|",
    ]
    for check, rs in rows:
        chosen, curve = [r["max_lr"] for r in rs], [r["curve_lr"] for r in rs]
        val = "yes" if check == "digits-val" else "no"
        lines.append(f"| {check} | {val} | {lrs(chosen)} | {spread(chosen)} | {lrs(curve)} | {spread(curve)} | "
                     f"{', '.join(str(r['confidence']) for r in rs)} |")  # fmt: skip
    return lines


def report(jobs: list[dict], records: dict[str, dict]) -> str:
    done = [r for j in jobs if (r := records.get(key_of(j))) and "error" not in r]
    cnn = [r for r in done if r["check"] == "mnist1d-cnn"]
    spreads = {c: [r for r in done if r["check"] == c] for c in SPREADS}
    wall = sum(r["wall"] for r in done)
    lines = [*cnn_table(cnn), "", *spread_table(spreads)]
    lines += ["", f"{len(done)} of {len(jobs)} jobs in the journal; {wall / 60:.1f} min of job wall time in all."]
    return "\n".join(lines)


def versions() -> str:
    from importlib.metadata import version

    return (f"{platform.machine()}, {os.cpu_count()} CPUs, torch {version('torch')}, Lightning "
            f"{version('lightning')}, python {platform.python_version()}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 1 epoch, a 300-sample MNIST-1D (CI)")
    where = "default spot_checks.jsonl next to this file (--quick: in a new temporary folder)"
    parser.add_argument("--journal", type=Path, default=None, help=f"the journal; {where}")
    args = parser.parse_args()
    silence()
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    journal = args.journal
    if journal is None:
        journal = Path(tempfile.mkdtemp()) / "spot_checks.jsonl" if args.quick else HERE / "spot_checks.jsonl"
    jobs = plan(args.quick)
    records = read_journal(journal)
    todo = pending(jobs, records)
    print(f"{versions()}; {len(jobs) - len(todo)} of {len(jobs)} jobs already in {journal}", flush=True)
    root = tempfile.mkdtemp(prefix="spot-checks-")
    start = time.perf_counter()
    for i, job in enumerate(todo, 1):
        record = work(job, root)
        append(journal, record)
        records[key_of(record)] = record
        what = f"{job['check']} {job['method']} seed {job['seed']}"
        lr = f", lr {record['max_lr']:.3g}" if record.get("max_lr") else ""
        failed = f" FAILED\n{record['error']}" if "error" in record else ""
        print(f"{i}/{len(todo)}: {what}: {record['wall']:.0f}s{lr}{failed}; "
              f"{(time.perf_counter() - start) / 60:.1f} min so far", flush=True)  # fmt: skip
    print()
    print(report(jobs, records))


if __name__ == "__main__":
    main()
