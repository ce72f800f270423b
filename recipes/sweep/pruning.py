"""What pruning saves: TPE with and without the median pruner, at equal trials and at equal epochs.

    python recipes/sweep/pruning.py            # digits and MNIST-1D, sampler seeds 0-2, about 17 minutes on one core
    python recipes/sweep/pruning.py --quick    # digits, 2 trials (4 pruned), 1 epoch, 1 sampler seed (CI runs it)

Every search is one ``python train.py -m hparams_search=optuna ...`` (TPE over one-cycle's ``max_lr``,
``pct_start`` and the weight decay, the app's defaults; training seed 0, so only the hyperparameters differ
between trials), with ``hydra.sweeper.sampler.seed`` the sampler seed, on ``data=digits`` and
``data=mnist1d`` with the app's default model (the MLP), in three forms:

    none      hydra.sweeper.pruner=none: every trial to its end, --trials trials
    auto      hydra.sweeper.pruner=median (the default, pruner_warmup=auto): --pruned-trials trials
    warmup-1  the same with hydra.sweeper.pruner_warmup=1: a trial may be pruned at its first validation

The pruned searches get more trials (twice as many by default), so that they can spend the epochs the
unpruned search spent: best-so-far against the cumulative epochs answers both questions at once, equal trials
(the first ``--trials`` trials) and equal compute (the trials that fit in the unpruned search's epochs, or half
of them). Each trial's state, value and epochs are read from the study (``optuna.db``) and from the run folders
(the CSV logger's validations); one JSON line per finished search goes to ``<out>/pruning.jsonl`` as it ends,
and a rerun skips the searches that line already holds. ``pruning.md`` (the tables) and ``pruning.png`` (best
so far against epochs) are written from all of them (every sampler seed with all its searches done, whichever
seeds this run asked for); ``--report`` writes them again without running anything.

The replay table answers what the warmup should be with more trials than the runs alone: it prunes the
unpruned searches' own trials after the fact (the median rule against the trials it let finish, at each warmup),
and says what that would have saved and whether each search's best trial would have survived.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

from run import sweep_process  # noqa: E402  (run.py, beside this file)

TASKS = {"digits": ["data=digits"], "mnist1d": ["data=mnist1d"]}
LABELS = {"digits": "digits", "mnist1d": "MNIST-1D"}
VAL_SIZE = {"digits": 359, "mnist1d": 1000}  # validation examples: one of them is 1/VAL_SIZE of val/acc
VARIANTS = {
    "none": {"label": "TPE, no pruning", "args": ["hydra.sweeper.pruner=none"]},
    "auto": {"label": "TPE + median, warmup auto", "args": ["hydra.sweeper.pruner=median"]},
    "warmup-1": {
        "label": "TPE + median, warmup 1",
        "args": ["hydra.sweeper.pruner=median", "hydra.sweeper.pruner_warmup=1"],
    },
}
STUDY = "onecycle"  # hparams_search=optuna's study name
# Fixed for every trial: one thread per job (set in the environment); the CSV logger for each trial's
# validations (the unpruned trials report nothing to the study); no checkpoints.
FIXED = [
    "seed=0",
    "logger=csv",
    "progress_bar=none",
    "callbacks.model_checkpoint=null",
    "callbacks.last_checkpoint=null",
    "+trainer.enable_checkpointing=false",
    "hydra.sweeper.max_failure_rate=1",  # a trial that fails is a FAIL trial, and the search goes on
]


# --- running the searches -----------------------------------------------------------------------------------


def key_of(task: str, variant: str, seed: int, trials: int, epochs: int) -> str:
    return f"{task}/{variant}/s{seed}/{trials}x{epochs}"


def command(task: str, variant: str, seed: int, trials: int, epochs: int, out: Path) -> list[str]:
    args = ["hparams_search=optuna", *TASKS[task], *VARIANTS[variant]["args"]]
    args += [f"hydra.sweeper.n_trials={trials}", f"hydra.sweeper.sampler.seed={seed}", f"trainer.max_epochs={epochs}"]
    if task == "mnist1d":  # generated once, read back by every trial
        args.append(f"data.cache_dir={out / 'multirun' / 'pruning' / 'mnist1d_cache'}")
    return args


def run_search(args: list[str], sweep_dir: Path) -> float | None:
    """``python train.py -m ...``; its output goes to ``<sweep_dir>.log``. Returns seconds (None: it failed)."""
    full = [sys.executable, "train.py", "-m", *args, *FIXED, f"hydra.sweep.dir={sweep_dir}"]
    code, seconds, log = sweep_process(full, sweep_dir)
    if code != 0:  # said, and the other searches go on; a rerun tries it again
        print(f"{' '.join(full)} failed:\n{log.read_text()[-3000:]}", file=sys.stderr, flush=True)
        return None
    return seconds


def validations(metrics_csv: Path) -> list[float]:
    """val/acc at each validation of the fit (not the validation of the restored best weights after it, the
    one row whose epoch has no training row)."""
    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    trained = {r["epoch"] for r in rows if r.get("train/acc")}
    return [float(r["val/acc"]) for r in rows if r.get("val/acc") and r["epoch"] in trained]


def read_trials(sweep_dir: Path) -> list[dict]:
    """Every trial of the study in order: state, value (COMPLETE only), params, epochs, each validation's val/acc."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{sweep_dir / 'optuna.db'}")
    out = []
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        found = sorted((sweep_dir / str(t.number)).glob("csv/version_*/metrics.csv"))
        curve = validations(found[-1]) if found else []
        reported = [t.intermediate_values[k] for k in sorted(t.intermediate_values)]
        if reported and [round(v, 6) for v in reported] != [round(v, 6) for v in curve]:
            print(f"warning: {sweep_dir.name} trial {t.number}: the study and the CSV log disagree", flush=True)
        out.append(
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value if t.state.name == "COMPLETE" else None,
                "params": t.params,
                "epochs": len(curve),
                "curve": curve,
                "warmup": t.user_attrs.get("pruning_warmup"),
                "pruned_at": (t.user_attrs.get("pruned_at") or {}).get("validation"),
            }
        )
    return out


def finished(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {r["key"]: r for r in records}


# --- what the searches found ----------------------------------------------------------------------------------


def cumulative(trials: list[dict]) -> list[tuple[int, float]]:
    """``(epochs spent so far, best COMPLETE value so far)`` after each trial (-inf before the first)."""
    out, spent, best = [], 0, -math.inf
    for t in trials:
        spent += t["epochs"]
        if t["value"] is not None and math.isfinite(t["value"]):
            best = max(best, t["value"])
        out.append((spent, best))
    return out


def best_within(trials: list[dict], budget: float) -> tuple[float, int]:
    """(best COMPLETE value, trials run) among the trials that end within ``budget`` epochs."""
    best, n = -math.inf, 0
    for spent, value in cumulative(trials):
        if spent > budget:
            break
        best, n = value, n + 1
    return best, n


def summarize(record: dict, unpruned: dict | None, trials: int) -> dict:
    """A search's numbers: at equal trials (its first ``trials``), within half and all of the unpruned search's
    epochs (same task and seed), and over all its trials."""
    ts = record["trials"]
    head = ts[:trials]
    spent = sum(t["epochs"] for t in ts)
    budget = sum(t["epochs"] for t in unpruned["trials"]) if unpruned else spent
    half, n_half = best_within(ts, budget / 2)
    full, n_full = best_within(ts, budget)
    return {
        "best_equal_trials": cumulative(head)[-1][1],
        "epochs_equal_trials": sum(t["epochs"] for t in head),
        "best_half": half,
        "trials_half": n_half,
        "best_equal_compute": full,
        "trials_equal_compute": n_full,
        "best_all": cumulative(ts)[-1][1],
        "trials_all": len(ts),
        "epochs_all": spent,
        "pruned_all": sum(t["state"] == "PRUNED" for t in ts),
        # pruned at the last validation: the whole training spent, and its result dropped
        "pruned_last": sum(t["state"] == "PRUNED" and t["epochs"] >= record["epochs_per_trial"] for t in ts),
        "reached_budget": spent >= budget,
        "budget": budget,
    }


def replay(trials: list[dict], warmup: int | str, epochs: int, startup: int = 5) -> tuple[int, list[dict]]:
    """The median rule replayed on trials that ran to their end: (epochs it would have spent, survivors).

    As Optuna's MedianPruner with the sweeper's settings: no pruning before ``startup`` trials have finished;
    from validation ``warmup`` on, a trial whose best validation so far is below the median of the finished
    trials' validations at that step stops there. ``auto``: one-cycle's rise (``pct_start``) in validations, + 1.
    """
    done: list[dict] = []
    spent = 0
    for t in trials:
        curve = t["curve"]
        w = math.ceil(t["params"]["schedule.pct_start"] * epochs) + 1 if warmup == "auto" else int(warmup)
        stop = len(curve)
        if len(done) >= startup:
            for step in range(max(1, w), len(curve) + 1):
                peers = [d["curve"][step - 1] for d in done if len(d["curve"]) >= step]
                if peers and max(curve[:step]) < statistics.median(peers):
                    stop = step
                    break
        spent += stop
        if stop == len(curve):
            done.append(t)
    return spent, done


# --- the report -----------------------------------------------------------------------------------------------


def fmt(value: float) -> str:
    return f"{value:.4f}" if math.isfinite(value) else "-"


def mean(values) -> float:
    values = [v for v in values if math.isfinite(v)]
    return statistics.mean(values) if values else -math.inf


def spread(values) -> float:
    values = [v for v in values if math.isfinite(v)]
    return statistics.stdev(values) if len(values) > 1 else 0.0


def report(records: dict[str, dict], args) -> tuple[str, dict]:
    """The tables (markdown) and the numbers behind them."""
    seeds = sorted({r["seed"] for r in records.values()})
    out, numbers = [], {}
    out.append(
        f"Means over sampler seeds {', '.join(map(str, seeds))} (each seed's numbers in `pruning.jsonl`); "
        f"{args.epochs} epochs a trial; E = the epochs the unpruned search of the same task and seed spent on its "
        f"{args.trials} trials. Best val/acc is the best finished (COMPLETE) trial's, as the study reports it.\n"
    )
    out.append(
        f"| task | search | best after {args.trials} trials | epochs for {args.trials} trials | best within E/2 "
        "epochs (trials) | best within E epochs (trials) | all trials: best / epochs / pruned |"
    )
    out.append("|---|---|---|---|---|---|---|")
    for task in args.tasks:
        for variant in args.variants:
            rows = []
            for seed in seeds:
                r = records.get((task, variant, seed))
                base = records.get((task, "none", seed))
                if r is not None and base is not None:
                    rows.append(summarize(r, base, args.trials))
            if not rows:
                continue
            numbers[(task, variant)] = rows
            col = {k: [row[k] for row in rows] for k in rows[0]}
            short = "" if all(col["reached_budget"]) else " (not all seeds reached E)"
            out.append(
                f"| {LABELS[task]} | {VARIANTS[variant]['label']} | {fmt(mean(col['best_equal_trials']))} | "
                f"{statistics.mean(col['epochs_equal_trials']):.0f} | {fmt(mean(col['best_half']))} "
                f"({statistics.mean(col['trials_half']):.1f}) | {fmt(mean(col['best_equal_compute']))} "
                f"({statistics.mean(col['trials_equal_compute']):.1f}){short} | {fmt(mean(col['best_all']))} / "
                f"{statistics.mean(col['epochs_all']):.0f} / {statistics.mean(col['pruned_all']):.1f} of "
                f"{statistics.mean(col['trials_all']):.0f} |"
            )
    out.append(
        "\nThe target, per task: a pruned search's best within E/2 epochs against the unpruned search's best "
        "within E (its whole search); within noise means no lower than the unpruned mean less the larger of "
        "one validation example and the unpruned best's spread (sd) over sampler seeds. The last column is the "
        "control: the unpruned search's own best within E/2 (its first half of the trials).\n"
    )
    out.append(
        "| task | search | unpruned best (sd over seeds) | pruned best within E/2 | difference (validation "
        "examples) | tolerance | target | unpruned within E/2 |"
    )
    out.append("|---|---|---|---|---|---|---|---|")
    verdicts = {}
    for task in args.tasks:
        base = numbers.get((task, "none"))
        if not base:
            continue
        ref = [row["best_equal_compute"] for row in base]
        tol = max(1 / VAL_SIZE[task], spread(ref))
        for variant in args.variants:
            if variant == "none" or (task, variant) not in numbers:
                continue
            half = [row["best_half"] for row in numbers[(task, variant)]]
            diff = mean(half) - mean(ref)
            met = diff >= -tol - 1e-6  # (one example below is within: float32 values)
            verdicts[(task, variant)] = met
            out.append(
                f"| {LABELS[task]} | {VARIANTS[variant]['label']} | {fmt(mean(ref))} ({spread(ref):.4f}) | "
                f"{fmt(mean(half))} | {diff:+.4f} ({diff * VAL_SIZE[task]:+.1f}) | {tol:.4f} | "
                f"{'met' if met else '**missed**'} | {fmt(mean(row['best_half'] for row in base))} |"
            )
    # the warmup, replayed on the unpruned searches' trials
    last = {
        v: sum(sum(row["pruned_last"] for row in numbers[(t, v)]) for t in args.tasks if (t, v) in numbers)
        for v in args.variants
        if v != "none"
    }
    pruned = {
        v: sum(sum(row["pruned_all"] for row in numbers[(t, v)]) for t in args.tasks if (t, v) in numbers)
        for v in args.variants
        if v != "none"
    }
    out.append(
        "\nPruned at their last validation (the whole trial run, and its result dropped): "
        + "; ".join(f"{VARIANTS[v]['label']}: {last[v]} of {pruned[v]} pruned trials" for v in last)
        + "."
    )
    warmups = ["auto", 1, 2, 3, 4, 6]
    out.append(
        f"\nThe warmup, replayed on the unpruned searches' own trials (the median rule after 5 finished trials; "
        f"auto = ceil(pct_start x {args.epochs}) + 1): the share of E it would have spent, and in how many searches "
        "the best trial survived; 'best kept' is the best surviving trial's val/acc (mean over seeds).\n"
    )
    out.append("| task | warmup | epochs (share of E) | best trial survived | best kept | unpruned best |")
    out.append("|---|---|---|---|---|---|")
    replays = {}
    for task in args.tasks:
        bases = [records[(task, "none", s)] for s in seeds if (task, "none", s) in records]
        if not bases:
            continue
        for w in warmups:
            shares, kept, survived, full = [], [], 0, []
            for b in bases:
                ts = b["trials"]
                spent, done = replay(ts, w, args.epochs)
                total = sum(t["epochs"] for t in ts)
                shares.append(spent / total)
                best = max((t["value"] for t in ts if t["value"] is not None), default=-math.inf)
                kept_best = max((t["value"] for t in done if t["value"] is not None), default=-math.inf)
                kept.append(kept_best)
                full.append(best)
                survived += kept_best >= best
            replays[(task, w)] = {"share": shares, "kept": kept, "survived": survived, "of": len(bases)}
            out.append(
                f"| {LABELS[task]} | {w} | {statistics.mean(shares):.0%} | {survived} of {len(bases)} | "
                f"{fmt(mean(kept))} | {fmt(mean(full))} |"
            )
    return "\n".join(out), {"verdicts": verdicts, "replays": replays}


def plot(records: dict[str, dict], args, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"none": "black", "auto": "tab:orange", "warmup-1": "tab:blue"}
    styles = {"none": ("-", 3.0), "auto": ("--", 2.0), "warmup-1": (":", 2.2)}
    seeds = sorted({r["seed"] for r in records.values()})
    fig, axes = plt.subplots(1, len(args.tasks), figsize=(6.2 * len(args.tasks), 4.6), squeeze=False)
    for ax, task in zip(axes[0], args.tasks):
        budgets, lows, tops = [], [], []
        for variant in args.variants:
            curves = []
            for seed in seeds:
                r = records.get((task, variant, seed))
                if r is None:
                    continue
                points = cumulative(r["trials"])
                xs = [0] + [x for x, _ in points]
                ys = [-math.inf] + [y for _, y in points]
                curves.append((xs, ys))
                if variant == "none":
                    budgets.append(xs[-1])
                shown = [(x, y) for x, y in zip(xs, ys) if math.isfinite(y)]
                if shown:
                    ax.step(*zip(*shown), where="post", color=colours[variant], alpha=0.25, lw=0.8)
                    lows.append(shown[0][1])
                    tops.append(max(y for _, y in shown))
            if not curves:
                continue
            end = max(xs[-1] for xs, _ in curves)
            grid = list(range(0, end + 1))
            avg = []
            for x in grid:  # each seed's best within x epochs; the mean where every seed has one
                vals = [ys[max(i for i, cx in enumerate(xs) if cx <= x)] for xs, ys in curves if xs[-1] >= x]
                ok = len(vals) == len(curves) and all(math.isfinite(v) for v in vals)
                avg.append(statistics.mean(vals) if ok else math.nan)
            n = len(curves)
            label = (
                f"{VARIANTS[variant]['label']} (mean of {n} seeds; thin: each)" if n > 1 else VARIANTS[variant]["label"]
            )
            ls, lw = styles[variant]
            ax.plot(grid, avg, ls, color=colours[variant], lw=lw, label=label, drawstyle="steps-post")
        if budgets:
            e = statistics.mean(budgets)
            ax.axvline(e, color="black", ls=":", lw=1)
            ax.axvline(e / 2, color="grey", ls=":", lw=1)
            ax.text(e, 0.97, " E", transform=ax.get_xaxis_transform(), fontsize=8, va="top")
            ax.text(e / 2, 0.97, " E/2", transform=ax.get_xaxis_transform(), fontsize=8, color="grey", va="top")
        if tops:
            top = max(tops)
            ax.set_ylim(max(min(lows), top - 0.15) - 0.005, top + 0.005)
        ax.set_title(f"{LABELS[task]}: best val/acc so far against the epochs spent")
        ax.set_xlabel("epochs spent by the search (all its trials so far)")
        ax.set_ylabel("best val/acc of a finished trial")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="of the unpruned search (the app's default)")
    parser.add_argument("--pruned-trials", type=int, default=None, help="of the pruned searches (default 2x)")
    parser.add_argument("--epochs", type=int, default=8, help="of every trial")
    parser.add_argument("--sampler-seeds", default="0,1,2")
    parser.add_argument("--tasks", default=None, help="digits,mnist1d (--quick: digits)")
    parser.add_argument("--variants", default="none,auto,warmup-1")
    parser.add_argument("--max-minutes", type=float, default=None, help="start no seed that would end past it")
    parser.add_argument("--report", action="store_true", help="write the tables and the picture, run nothing")
    parser.add_argument("--quick", action="store_true", help="digits, 2 trials (4 pruned), 1 epoch, seed 0")
    parser.add_argument("--out", type=Path, default=None, help="default: this folder (--quick: multirun/ in it)")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.epochs, args.sampler_seeds, args.variants = 2, 1, "0", "none,auto"
        args.tasks = args.tasks or "digits"
    args.pruned_trials = args.pruned_trials or 2 * args.trials
    args.sampler_seeds = [int(s) for s in str(args.sampler_seeds).split(",") if s]
    args.tasks = [t for t in (args.tasks or "digits,mnist1d").split(",") if t]
    args.variants = [v for v in args.variants.split(",") if v]
    if "none" not in args.variants:
        args.variants.insert(0, "none")  # the reference of every comparison
    out = (args.out or (HERE / "multirun" / "pruning-quick" if args.quick else HERE)).resolve()
    out.mkdir(parents=True, exist_ok=True)
    results = out / "pruning.jsonl"
    start = time.perf_counter()
    done = finished(results)
    group_seconds: list[float] = []
    failed: list[str] = []
    for seed in [] if args.report else args.sampler_seeds:
        if args.max_minutes is not None and group_seconds:
            if time.perf_counter() - start + max(group_seconds) > 60 * args.max_minutes:
                print(f"--max-minutes {args.max_minutes}: seeds from {seed} on not run", flush=True)
                break
        group_start = time.perf_counter()
        for task in args.tasks:
            for variant in args.variants:
                trials = args.trials if variant == "none" else args.pruned_trials
                key = key_of(task, variant, seed, trials, args.epochs)
                if key in done:
                    continue
                search = command(task, variant, seed, trials, args.epochs, out)
                sweep_dir = out / "multirun" / "pruning" / f"{task}-{variant}-s{seed}"
                seconds = run_search(search, sweep_dir)
                if seconds is None:
                    failed.append(key)
                    continue
                ts = read_trials(sweep_dir)
                record = {
                    "key": key,
                    "task": task,
                    "variant": variant,
                    "seed": seed,
                    "n_trials": trials,
                    "epochs_per_trial": args.epochs,
                    "command": " ".join(["python train.py -m", *search]),
                    "sweep_dir": str(sweep_dir.relative_to(out)),
                    "wall_s": round(seconds, 1),
                    "trials": ts,
                }
                with open(results, "a") as f:
                    f.write(json.dumps(record) + "\n")
                done[key] = record
                best = cumulative(ts)[-1][1]
                pruned = sum(t["state"] == "PRUNED" for t in ts)
                fails = sum(t["state"] == "FAIL" for t in ts)
                print(
                    f"{task} {variant} seed {seed}: {len(ts)} trials ({pruned} pruned, {fails} failed), "
                    f"{sum(t['epochs'] for t in ts)} epochs, best {fmt(best)}, {seconds:.0f}s",
                    flush=True,
                )
        group_seconds.append(time.perf_counter() - group_start)
    # the searches of these settings, of every sampler seed that has all of them (not only the seeds asked for)
    found = {}
    for r in done.values():
        trials = args.trials if r["variant"] == "none" else args.pruned_trials
        if r["key"] == key_of(r["task"], r["variant"], r["seed"], trials, args.epochs):
            found[(r["task"], r["variant"], r["seed"])] = r
    complete = {s for (_, _, s) in found if all((t, v, s) in found for t in args.tasks for v in args.variants)}
    records = {(t, v, s): found[(t, v, s)] for t in args.tasks for v in args.variants for s in sorted(complete)}
    text, _ = report(records, args)
    (out / "pruning.md").write_text(text + "\n")
    plot(records, args, out / "pruning.png")
    wall = sum(r["wall_s"] for r in records.values())
    print()
    print(text)
    print(f"\n{len(records)} searches, {wall:.0f}s of sweeps in all; this run {time.perf_counter() - start:.0f}s")
    if failed:
        raise SystemExit(f"{len(failed)} searches failed (their logs say why): {', '.join(failed)}")


if __name__ == "__main__":
    main()
