"""More seeds: the one-cycle oracle and every arm of the corpus study's peer table, measured again.

The corpus study scores every task on 3 seeds. On the held-out tasks one seed's accuracy at the oracle's lr
varies by up to 2.3 points (sd at 9 seeds), so a regret that is the mean of 3 seeds carries a standard error of
about a point, and the oracle is a maximum over noisy grid means: a 1.5-point target cannot be read off 3 seeds.
This script trains, for the tasks asked (by default the held-out ones, ``tasks.HELD_OUT``), the one-cycle grid
and the arms at more seeds (the same jobs as ``run.py``'s: the same weights and data order for seeds 0-2, new
seeds after them), and reports every task at 3 seeds, every 3 more, and all of them, side by side, with each
regret's standard error, grouped held out / earlier and accuracy / RMSE.

    python recipes/range_test_corpus/seeds.py --seeds 9 --jobs 2    # the held-out tasks: seeds.md
    python recipes/range_test_corpus/seeds.py --seeds 6 --jobs 2 --tasks earlier   # the others: seeds-earlier.md
    python recipes/range_test_corpus/seeds.py --seeds 6 --jobs 2 --tasks checks    # the tie rule's: seeds-checks.md
    python recipes/range_test_corpus/seeds.py --seeds 9 --report-only   # seeds.md again from the journal

The jobs go into ``run.py``'s journal (``jobs.jsonl``; ``run.py`` reads only the seeds it is asked for, so the
extra seeds change none of its tables), and a job already there is not run again.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import run as study  # noqa: E402
import tasks as corpus  # noqa: E402
from common import arguments  # noqa: E402

# every arm of run.py's peer table: ours with the Guard (the default), with the trials read below a cliff (not
# adopted), without the trials below the ladder where it cannot tell, the pick divided by sqrt(2), without the
# Guard, the curve alone (with and without the Guard), then the learning-rate-free optimizers and AdamW + cosine
ARMS = (
    "auto-trials-guard",
    "auto-trials-guard-cliff",
    "auto-trials-guard-one-ladder",
    "auto-trials-guard-sqrt2",
    "auto-trials",
    "auto",
    "auto-guard",
    "prodigy",
    "schedulefree",
    "prodigy-cosine",
    "ldog-avg",
    "adamw-cosine",
    "dadapt-cosine",
)
FIRST = 3  # the seeds of the corpus study


def jobs(plan: study.Plan, tasks: list) -> list[dict]:
    """The one-cycle grid (the oracle) and the arms, for every seed of ``plan``."""
    grid = [j for t in tasks for j in plan.grid_jobs(t) if j["schedule"] == "onecycle"]
    return grid + [j for t in tasks for j in plan.peers(t)]


def task_rows(task: corpus.Task, journal: study.Journal, plan: study.Plan, arms: tuple, count: int) -> dict:
    """For the first ``count`` seeds: the oracle (best one-cycle grid mean), and per arm its regret (mean over the
    seeds), the standard error of that mean and the seeds' regrets; ``{}`` while a grid job has not run, and an arm
    ``None`` while one of its jobs has not. Scored by ``run.py``'s own ``oracles_of`` and ``peer_rows`` (a failed
    grid run left out of its lr's mean, a failed arm's run counted as the task's worst grid point)."""
    seeds = range(count)
    grid = [
        journal.get(dict(plan.base(task, "grid", s), lr=lr, schedule="onecycle"))
        for lr in plan.grid(task)
        for s in seeds
    ]
    if any(r is None for r in grid):
        return {}
    peers = [journal.get(dict(plan.base(task, "peer", s), method=arm)) for arm in arms for s in seeds]
    results = {
        "tasks": [{"name": task.name, "metric": task.metric}],
        "grid": grid,
        "peers": [r for r in peers if r is not None],
        "meta": {"seeds": count, "methods": list(arms)},
    }
    oracle = study.oracles_of(results)[task.name]
    scored = study.peer_rows(results, {task.name: oracle})[task.name]
    row = {"oracle": oracle["oracle"], "oracle_lr": oracle["onecycle"]["best_lr"], "noise": oracle["noise"], "arms": {}}
    for arm in arms:
        regrets = scored[arm]["regrets"]
        if scored[arm]["regret"] is None:  # (a seed not run yet)
            row["arms"][arm] = None
            continue
        sd = statistics.stdev(regrets) if len(regrets) > 1 else 0.0
        row["arms"][arm] = {"regret": scored[arm]["regret"], "se": sd / math.sqrt(len(regrets)), "seeds": regrets}
    return row


def kind(task: corpus.Task) -> str:
    """Held out (nothing was tuned on it), check (``tasks.CHECKS``: kept aside to check the trials' tie rule) or
    earlier (the rule was developed on it)."""
    return "held out" if task.name in corpus.HELD_OUT else "check" if task in corpus.CHECKS else "earlier"


def groups(tasks: list) -> dict[str, list]:
    """The tasks by kind (:func:`kind`) and by kind of regret, accuracy (points) or RMSE (% of the oracle's): each
    group's median and worst are read apart."""
    out: dict[str, list] = {}
    for t in tasks:
        name = {"check": "checks"}.get(kind(t), kind(t))
        out.setdefault(f"{name}, {'accuracy' if t.metric == 'acc' else 'RMSE'}", []).append(t)
    return out


def report(tasks: list, journal: study.Journal, plan: study.Plan, arms: tuple) -> str:
    n = len(plan.seeds)
    # the corpus study's seeds, then every further FIRST seeds (how the numbers move as seeds come), and all of them
    counts = {f"{k} seeds": k for k in [*range(FIRST, n, FIRST), n]}
    tables = {label: {t.name: task_rows(t, journal, plan, arms, k) for t in tasks} for label, k in counts.items()}
    lines = [
        f"# The one-cycle oracle and the corpus's arms at {', '.join(counts)}: {', '.join(groups(tasks))}",
        "",
        "Written by `seeds.py` (its docstring says how). Regret against the one-cycle oracle of the same seeds "
        "(positive = worse; accuracy points, or % of the oracle's RMSE), the mean over seeds ± its standard error; "
        "the oracle is the best one-cycle grid mean of those seeds. Held out: nothing was tuned on those tasks.",
        "",
        "| task | seeds | oracle (max_lr) | one seed's sd at the oracle | " + " | ".join(arms) + " |",
        "|---|---|---|---|" + "---|" * len(arms),
    ]
    for t in tasks:
        name = t.name if kind(t) == "earlier" else f"{t.name} ({kind(t)})"
        for label, table in tables.items():
            row = table[t.name]
            if not row:
                lines.append(f"| {name} | {label} | not run yet | |" + " |" * len(arms))
                continue
            cells = ["n/a" if (a := row["arms"][arm]) is None else f"{a['regret']:.2f} ± {a['se']:.2f}" for arm in arms]
            oracle = f"{100 * row['oracle']:.1f}" if t.metric == "acc" else f"{row['oracle']:.2f}"
            lines.append(
                f"| {name} | {label} | {oracle} ({row['oracle_lr']:.3g}) | {row['noise']:.2f} | "
                + " | ".join(cells)
                + " |"
            )
    lines += [
        "",
        "Per group: median and worst of the tasks' mean regrets, and the tasks within 1 point (1% on RMSE tasks); "
        "targets: median 0.3 and worst 1.5 points, 2% and 8% on RMSE tasks.",
        "",
        "| group | method | " + " | ".join(f"{label}: median / worst / within 1" for label in tables) + " |",
        "|---|---|" + "---|" * len(tables),
    ]
    for group, members in groups(tasks).items():
        for arm in arms:
            cells = []
            for table in tables.values():
                rows = [table[t.name] for t in members]
                values = [r["arms"][arm]["regret"] for r in rows if r and r["arms"][arm] is not None]
                if len(values) < len(members):
                    cells.append(f"{len(values)} of {len(members)} tasks")
                    continue
                cells.append(f"{statistics.median(values):.2f} / {max(values):.2f} / {sum(v <= 1 for v in values)}")
            lines.append(f"| {group} ({len(members)}) | {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = arguments(__doc__, HERE, seeds=6, quick="not offered (run.py --quick is the smoke run)")
    parser.add_argument(
        "--tasks",
        default="held-out",
        help="comma-separated task names, or held-out (default), earlier, or checks (tasks.CHECKS: the tie rule's)",
    )
    parser.add_argument("--methods", default=",".join(ARMS), help="the arms (methods of run.py's peers)")
    parser.add_argument("--report-only", action="store_true", help="write the report from the journal, run nothing")
    parser.add_argument(
        "--report", default=None, help="the report's file name, in --out (default: seeds.md, seeds-earlier.md)"
    )
    args = parser.parse_args()
    if args.quick:
        parser.error("--quick: not offered (use run.py --quick)")
    known = {t.name: t for t in (*corpus.TASKS, *corpus.CHECKS)}
    named = {
        "held-out": list(corpus.HELD_OUT),
        "earlier": [t.name for t in corpus.TASKS if t.name not in corpus.HELD_OUT],
        "checks": [t.name for t in corpus.CHECKS],
    }
    written = args.report or {"earlier": "seeds-earlier.md", "checks": "seeds-checks.md"}.get(args.tasks, "seeds.md")
    if Path(written).name != written or not written.endswith(".md"):
        parser.error(f"--report: {written!r}; a file name ending in .md (it is written in --out, {args.out})")
    names = list(dict.fromkeys(named.get(args.tasks) or args.tasks.split(",")))  # (each task once)
    arms = tuple(dict.fromkeys(args.methods.split(",")))
    if unknown := [n for n in names if n not in known]:
        parser.error(f"--tasks: unknown {unknown}; choose from: {', '.join(known)}")
    if unknown := [m for m in arms if m not in study.METHODS]:
        parser.error(f"--methods: unknown {unknown}; choose from: {', '.join(study.METHODS)}")
    if args.seeds < FIRST:
        parser.error(f"--seeds: {args.seeds}; at least {FIRST} (the corpus study's)")
    tasks = corpus.available([known[n] for n in names])
    plan = study.Plan(args.seeds, False, list(arms))
    args.out.mkdir(parents=True, exist_ok=True)
    journal = study.Journal(args.out / "jobs.jsonl")
    if not args.report_only:
        study.silence()
        start = time.perf_counter()
        every = jobs(plan, tasks)
        todo = [j for j in every if not journal.finished(j)]
        todo.sort(key=lambda j: -study.estimated_cost(known[j["task"]], plan.epochs(known[j["task"]])))
        print(f"{len(tasks)} tasks x {args.seeds} seeds: {len(every)} jobs, {len(every) - len(todo)} done before")
        study.run_jobs(todo, args.jobs, journal, "more seeds")
        print(f"{len(todo)} jobs in {time.perf_counter() - start:.0f}s")
    text = report(tasks, journal, plan, arms)
    (args.out / written).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
