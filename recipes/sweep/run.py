"""Grid vs random search vs Optuna's TPE over one-cycle's max_lr and the weight decay, same budget.

    python recipes/sweep/run.py            # 16 trials each; random and TPE with 3 sampler seeds
    python recipes/sweep/run.py --quick    # 2 trials each, 1 epoch, 1 sampler seed (CI runs it)

Every search is one ``python train.py -m ...`` on the digits data with ``schedule=onecycle`` and
training seed 0 throughout, so only the two hyperparameters differ between trials:

    grid    hparams_search=grid, a log grid over the box (4 x 4 for 16 trials)
    random  hparams_search=coarse (Optuna's RandomSampler), log-uniform over the same box
    TPE     hparams_search=coarse hydra/sweeper/sampler=tpe, the same box

Each multirun goes to ``<out>/multirun/<search>/`` with the ``leaderboard.csv`` the app writes; the
recipe reads every job's ``result.json`` back in job order (one job at a time, so job = trial) for
the best-so-far curves, and writes ``results.json`` and ``sweep.png`` into ``<out>``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BOX = {"schedule.max_lr": (1e-3, 1.0), "optimizer.weight_decay": (1e-5, 1e-2)}
KEYS = tuple(BOX)
# Fixed for every trial: one thread per job is set in the environment; no logger, no checkpoints.
FIXED = [
    "seed=0",
    "logger=none",
    "progress_bar=none",
    "callbacks.model_checkpoint=null",
    "callbacks.last_checkpoint=null",
    "+trainer.enable_checkpointing=false",
]


def log_points(lo: float, hi: float, k: int) -> list[float]:
    """``k`` values evenly spaced in log between ``lo`` and ``hi`` (both included), or their log mean."""
    if k == 1:
        return [float(f"{math.sqrt(lo * hi):.3g}")]
    return [float(f"{lo * (hi / lo) ** (i / (k - 1)):.3g}") for i in range(k)]


def grid_shape(trials: int) -> tuple[int, int]:
    """``(lrs, weight decays)``: the factorisation of ``trials`` closest to a square, more lrs."""
    wds = max(d for d in range(1, math.isqrt(trials) + 1) if trials % d == 0)
    return trials // wds, wds


def searches(args) -> list[dict]:
    box = [f"{key}=tag(log, interval({lo}, {hi}))" for key, (lo, hi) in BOX.items()]
    n_lr, n_wd = grid_shape(args.trials)
    grid = [f"{key}={','.join(str(v) for v in log_points(*BOX[key], n))}" for key, n in zip(KEYS, (n_lr, n_wd))]
    out = [{"name": "grid", "label": f"grid {n_lr}x{n_wd}", "seed": None, "args": ["hparams_search=grid", *grid]}]
    # every trial to its end, as measured (the Optuna searches prune by default now)
    budget = ["hparams_search=coarse", f"hydra.sweeper.n_trials={args.trials}", "hydra.sweeper.pruner=none", *box]
    for seed in args.sampler_seeds:
        out.append(
            {
                "name": f"random-s{seed}",
                "label": f"random (seed {seed})",
                "seed": seed,
                "args": [*budget, "hydra.sweeper.study_name=random", f"hydra.sweeper.sampler.seed={seed}"],
            }
        )
    for seed in args.sampler_seeds:
        tpe = ["hydra/sweeper/sampler=tpe", f"hydra.sweeper.sampler.n_startup_trials={args.startup}"]
        out.append(
            {
                "name": f"tpe-s{seed}",
                "label": f"TPE (seed {seed})",
                "seed": seed,
                "args": [*budget, *tpe, "hydra.sweeper.study_name=tpe", f"hydra.sweeper.sampler.seed={seed}"],
            }
        )
    return out


def sweep_process(command: list[str], sweep_dir: Path) -> tuple[int, float, Path]:
    """Run ``command`` (a ``train.py -m`` sweep into ``sweep_dir``, started afresh) from the repository root, one
    thread, its output into ``<sweep_dir>.log``: its return code, seconds and log."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    shutil.rmtree(sweep_dir, ignore_errors=True)  # a fresh study: an earlier run's optuna.db there would be resumed
    sweep_dir.parent.mkdir(parents=True, exist_ok=True)
    log = sweep_dir.parent / f"{sweep_dir.name}.log"
    start = time.perf_counter()
    with open(log, "w") as f:
        done = subprocess.run(command, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
    return done.returncode, time.perf_counter() - start, log


def run_search(search: dict, sweep_dir: Path, epochs: int) -> float:
    """``python train.py -m ...`` for one search; its output goes to ``<sweep_dir>.log``. Returns seconds."""
    command = [sys.executable, "train.py", "-m", *search["args"], f"trainer.max_epochs={epochs}", *FIXED]
    command.append(f"hydra.sweep.dir={sweep_dir}")
    code, seconds, log = sweep_process(command, sweep_dir)
    if code != 0:
        raise SystemExit(f"{search['label']} failed ({' '.join(command)}):\n{log.read_text()[-3000:]}")
    return seconds


def parse(overrides: list[str] | str) -> dict[str, float]:
    """The searched values among a job's overrides."""
    items = overrides.split() if isinstance(overrides, str) else overrides
    values = dict(o.split("=", 1) for o in items if "=" in o)
    return {key: float(values[key]) for key in KEYS}


def read_sweep(sweep_dir: Path) -> tuple[list[dict], list[dict]]:
    """``(trials in job order, leaderboard rows best first)`` of a finished multirun."""
    trials = []
    for path in sorted(sweep_dir.glob("*/result.json"), key=lambda p: int(p.parent.name)):
        record = json.loads(path.read_text())
        trials.append({"job": int(path.parent.name), **parse(record["overrides"]), "val_acc": record["value"]})
    with open(sweep_dir / "leaderboard.csv", newline="") as f:
        board = [
            {"rank": int(r["rank"]), "job": int(r["job"]), "val_acc": float(r["val/acc"]), **parse(r["overrides"])}
            for r in csv.DictReader(f)
        ]
    return trials, board


def best_so_far(trials: list[dict]) -> list[float]:
    out, best = [], -math.inf
    for t in trials:
        value = t["val_acc"] if t["val_acc"] is not None and math.isfinite(t["val_acc"]) else -math.inf
        best = max(best, value)
        out.append(best)
    return out


def checkpoints(trials: int) -> list[int]:
    """After N/3, 2N/3 and N trials."""
    return sorted({max(1, round(trials / 3)), max(1, round(2 * trials / 3)), trials})


def report(runs: list[dict], trials: int) -> str:
    ks = checkpoints(trials)
    head = " | ".join(f"best after {k}" for k in ks)
    lines = [
        f"| search | trials | best val acc | max_lr | weight_decay | {head} | wall time |",
        "|---|---|---|---|---|" + "---|" * len(ks) + "---|",
    ]

    def row(label, n, best, lr, wd, curve, wall):
        points = " | ".join(f"{curve[k - 1]:.4f}" for k in ks)
        return f"| {label} | {n} | {best:.4f} | {lr} | {wd} | {points} | {wall:.0f} s |"

    for kind in ("grid", "random", "tpe"):
        group = [r for r in runs if r["name"].split("-")[0] == kind]
        for r in group:
            top = r["leaderboard"][0]
            lr, wd = (f"{top[key]:.3g}" for key in KEYS)
            lines.append(row(r["label"], len(r["trials"]), top["val_acc"], lr, wd, r["best_so_far"], r["wall_s"]))
        if len(group) > 1:
            curve = [statistics.mean(c) for c in zip(*(r["best_so_far"] for r in group))]
            label = f"{group[0]['label'].split(' (')[0]} (mean of {len(group)} seeds)"
            wall = statistics.mean(r["wall_s"] for r in group)
            lines.append(row(f"**{label}**", len(group[0]["trials"]), curve[-1], "", "", curve, wall))
    return "\n".join(lines)


def leaderboards(runs: list[dict], top: int) -> str:
    lines = ["| search | rank | job | val/acc | max_lr | weight_decay |", "|---|---|---|---|---|---|"]
    for r in runs:
        for b in r["leaderboard"][:top]:
            lr, wd = (f"{b[key]:.3g}" for key in KEYS)
            lines.append(f"| {r['label']} | {b['rank']} | {b['job']} | {b['val_acc']:.4f} | {lr} | {wd} |")
    return "\n".join(lines)


def plot(runs: list[dict], path: Path, startup: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"grid": "black", "random": "tab:blue", "tpe": "tab:orange"}
    markers = {"grid": "s", "random": "o", "tpe": "^"}
    names = {"grid": "grid", "random": "random", "tpe": "TPE"}
    fig, (ax, space) = plt.subplots(1, 2, figsize=(12, 4.6))
    for kind in ("grid", "random", "tpe"):
        group = [r for r in runs if r["name"].split("-")[0] == kind]
        style = "--" if kind == "tpe" else "-"  # TPE's first trials are random search's (same seed)
        for r in group:
            steps = range(1, len(r["best_so_far"]) + 1)
            thin = len(group) > 1
            ax.step(steps, r["best_so_far"], style, where="post", color=colours[kind], alpha=0.35 if thin else 1, lw=1)
            xs = [t["schedule.max_lr"] for t in r["trials"]]
            ys = [t["optimizer.weight_decay"] for t in r["trials"]]
            accs = [t["val_acc"] if t["val_acc"] is not None else 0.0 for t in r["trials"]]
            points = space.scatter(
                xs, ys, c=accs, cmap="viridis", vmin=0.9, vmax=1.0, marker=markers[kind], s=36, edgecolors="k"
            )
        label = names[kind] if len(group) == 1 else f"{names[kind]} (mean of {len(group)} seeds; thin: each)"
        curve = [statistics.mean(c) for c in zip(*(r["best_so_far"] for r in group))]
        ax.step(range(1, len(curve) + 1), curve, style, where="post", color=colours[kind], lw=2.2, label=label)
        space.scatter([], [], marker=markers[kind], color="white", edgecolors="k", label=names[kind])
    if any(r["name"].startswith("tpe") for r in runs):
        ax.axvline(startup + 0.5, color=colours["tpe"], ls=":", lw=1, label=f"TPE: random until trial {startup}")
    finite = [v for r in runs for v in r["best_so_far"] if math.isfinite(v)]
    top = max(finite)
    ax.set_ylim(max(min(finite), top - 0.1) - 0.005, top + 0.005)  # a curve below top - 0.1 starts off the axis
    ax.set_xlabel("trial")
    ax.set_ylabel("best val/acc so far")
    ax.set_title("best so far (same budget, same box)")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    for key, setter in zip(KEYS, (space.set_xlim, space.set_ylim)):
        lo, hi = BOX[key]
        setter(lo / 1.5, hi * 1.5)
    space.set_xscale("log")
    space.set_yscale("log")
    space.set_xlabel("schedule.max_lr")
    space.set_ylabel("optimizer.weight_decay")
    space.set_title("every trial (colour: val/acc, clipped at 0.9)")
    space.legend(fontsize=8, loc="upper left")
    fig.colorbar(points, ax=space, extend="min", label="val/acc")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=16, help="the budget of every search")
    parser.add_argument("--epochs", type=int, default=6, help="of every trial")
    parser.add_argument("--sampler-seeds", default="0,1,2", help="of the random and TPE searches")
    parser.add_argument("--startup", type=int, default=5, help="TPE's random trials before it models")
    parser.add_argument("--top", type=int, default=3, help="leaderboard rows printed per search")
    parser.add_argument("--quick", action="store_true", help="2 trials each, 1 epoch, 1 sampler seed")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    if args.quick:
        args.trials, args.epochs, args.sampler_seeds, args.startup, args.top = 2, 1, "0", 1, 2
    args.sampler_seeds = [int(s) for s in str(args.sampler_seeds).split(",") if s]
    args.out = args.out.resolve()
    start = time.perf_counter()
    runs = []
    for search in searches(args):
        sweep_dir = args.out / "multirun" / search["name"]
        seconds = run_search(search, sweep_dir, args.epochs)
        trials, board = read_sweep(sweep_dir)
        runs.append(
            {
                "name": search["name"],
                "label": search["label"],
                "sampler_seed": search["seed"],
                "command": " ".join(["python train.py -m", *search["args"], f"trainer.max_epochs={args.epochs}"]),
                "sweep_dir": str(sweep_dir.relative_to(args.out)),
                "wall_s": round(seconds, 1),
                "trials": trials,
                "best_so_far": best_so_far(trials),
                "leaderboard": board,
            }
        )
        print(f"{search['label']}: {len(trials)} trials in {seconds:.0f}s -> {sweep_dir}/leaderboard.csv", flush=True)
    plot(runs, args.out / "sweep.png", args.startup)
    total = time.perf_counter() - start
    settings = {k: getattr(args, k) for k in ("trials", "epochs", "sampler_seeds", "startup", "quick")}
    (args.out / "results.json").write_text(
        json.dumps({"settings": {**settings, "box": BOX, "fixed": FIXED}, "runs": runs, "wall_s": total}, indent=1)
    )
    print()
    print(report(runs, args.trials))
    print(f"\nleaderboards, top {args.top} of each (the searched values of each row's overrides):\n")
    print(leaderboards(runs, args.top))
    print(f"\n{len(runs)} searches, {sum(len(r['trials']) for r in runs)} trials in {total:.0f}s, one at a time")


if __name__ == "__main__":
    main()
