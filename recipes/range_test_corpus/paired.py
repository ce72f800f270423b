"""Two of the corpus's arms on seeds nothing was looked at, paired: which one to ship, read off new seeds.

With a `Guard` in the fit, `auto` takes the trials' pick as it is (`auto-trials-guard`); dividing it by sqrt(2)
(`auto-trials-guard-sqrt2`) was chosen against on the earlier tasks (0.09 / 5.28 against 0.16 / 6.98 at 6 seeds)
and does better on the held-out ones (0.46 / 2.94 against 0.87 / 3.38 at 9 seeds), every number on seeds that were
looked at. Here both arms train every task of the corpus and the checks (``tasks.TASKS``, ``tasks.CHECKS``) at
seeds from ``--first`` on (20-31: ``cliff.py`` trained the first arm there at the 10 task-seed pairs where its
cliff fired, and published those scores; the second arm ran nowhere there), the same weights and data order for
both, as ``run.fit_peer`` trains the corpus's arms. The difference of their scores on one seed needs no
oracle: gain = the second arm's score minus the first's (accuracy points; RMSE tasks: % of the first's RMSE, lower
is better, so a positive gain is the second arm better there too).

The decision, written before any of these fits ran: the second arm replaces the first only if, over the accuracy
tasks, the mean of the tasks' mean gains is positive, more tasks gain than lose, and no task's mean gain is below
-1 point; else the first stays.

    python recipes/range_test_corpus/paired.py --jobs 2     # 12 new seeds a task: paired.jsonl, then paired.md
    python recipes/range_test_corpus/paired.py --jobs 2 --peers prodigy --tasks held-out  # Prodigy's regret there
    python recipes/range_test_corpus/paired.py --report-only

Each finished fit goes into ``paired.jsonl`` as it ends; a fit already there is not run again.
"""

from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import cliff  # noqa: E402
import run as study  # noqa: E402
import seeds as more  # noqa: E402
import tasks as corpus  # noqa: E402
from common import arguments  # noqa: E402

ARMS = ("auto-trials-guard", "auto-trials-guard-sqrt2")  # the first is shipped, the second the candidate


def decide(gains: dict[str, float]) -> tuple[bool, str]:
    """The rule written before the fits: whether the second arm replaces the first, and why, from the accuracy
    tasks' mean gains."""
    values = list(gains.values())
    if not values:
        return False, "no task done"
    mean, up, down, worst = statistics.mean(values), sum(v > 0 for v in values), sum(v < 0 for v in values), min(values)
    checks = [(mean > 0, f"mean of the tasks' gains {mean:+.2f}"), (up > down, f"{up} tasks gain, {down} lose"),
              (worst >= -1, f"the worst task's gain {worst:+.2f} (at least -1)")]  # fmt: skip
    return all(ok for ok, _ in checks), "; ".join(f"{text} ({'yes' if ok else 'no'})" for ok, text in checks)


def oracle(task: corpus.Task, journal: study.Journal) -> tuple[float, int] | None:
    """The task's one-cycle oracle (its best grid mean) over the most seeds the corpus trained its grid at (9, 6
    or 3), and that count; ``None`` where the grid is not done."""
    for count in (9, 6, 3):
        row = more.task_rows(task, journal, study.Plan(count, False, []), (), count)
        if row:
            return row["oracle"], count
    return None


def mean_regret(task: corpus.Task, best: float, runs: list[dict | None]) -> float | None:
    """The runs' mean regret against the oracle ``best``; ``None`` unless every run is done."""
    if any(r is None for r in runs):
        return None
    return statistics.mean(study.regret_of(task.metric, best, r["best"]) for r in runs if r is not None)


def report(tasks: list, by: dict, seeds: list[int], corpus_journal: study.Journal) -> str:
    lines = [
        f"# `{ARMS[1]}` against `{ARMS[0]}` on new seeds: paired",
        "",
        f"Written by `paired.py` (its docstring says how, and the decision rule written before the fits). Seeds "
        f"{seeds[0]}-{seeds[-1]}; gain = `{ARMS[1]}`'s score minus `{ARMS[0]}`'s on the same seed (accuracy points; "
        "RMSE tasks: % of the first's RMSE, positive = the second better); the mean over seeds ± its standard error.",
        "",
        "| task | group | seeds | oracle (its grid seeds) | regret: first / second | gain: mean ± se | "
        "seeds better / worse |",
        "|---|---|---|---|---|---|---|",
    ]
    accuracy: dict[str, float] = {}
    regrets: dict[str, tuple[float, float]] = {}
    oracles = {task.name: oracle(task, corpus_journal) for task in tasks}  # (each read off the journal once)
    for task in tasks:
        pairs = [(by.get((task.name, s, ARMS[0])), by.get((task.name, s, ARMS[1]))) for s in seeds]
        pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
        if not pairs:
            lines.append(f"| {task.name} | {cliff.kind(task)} | 0 | | | |")
            continue
        gains = [cliff.gain(task, b["best"], a["best"]) for a, b in pairs]
        se = statistics.stdev(gains) / math.sqrt(len(gains)) if len(gains) > 1 else 0.0
        up, down = sum(g > 0 for g in gains), sum(g < 0 for g in gains)
        mean, best = statistics.mean(gains), oracles[task.name]
        shown, regret = "not run", ""
        if best is not None:
            shown = f"{100 * best[0]:.1f}" if task.metric == "acc" else f"{best[0]:.2f}"
            shown += f" ({best[1]})"
            pair = [mean_regret(task, best[0], list(arm)) for arm in zip(*pairs)]
            regret = f"{pair[0]:.2f} / {pair[1]:.2f}"
            if len(gains) == len(seeds):
                regrets[task.name] = (pair[0], pair[1])
        lines.append(
            f"| {task.name} | {cliff.kind(task)} | {len(gains)} | {shown} | {regret} | {mean:+.2f} ± {se:.2f} | "
            f"{up} / {down} |"
        )
        if task.metric == "acc" and len(gains) == len(seeds):
            accuracy[task.name] = mean
    adopt, why = decide(accuracy)
    expected = sum(t.metric == "acc" for t in tasks)
    lines += ["", f"Accuracy tasks with every seed done: {len(accuracy)} of {expected}. The rule: {why}."]
    for group in ("earlier", "held out", "check"):
        values = [g for name, g in accuracy.items() if cliff.kind(corpus.find(name)) == group]
        if values:
            lines.append(
                f"- {group}: {len(values)} tasks, mean gain {statistics.mean(values):+.2f}, median "
                f"{statistics.median(values):+.2f}, from {min(values):+.2f} to {max(values):+.2f}"
            )
    lines += ["", "Regret against the corpus's one-cycle oracle (its grid mean over the corpus's seeds; these seeds "
              "trained no grid), median / worst / tasks within 1 point (RMSE: 1%), tasks with every seed done:",
              ""]  # fmt: skip
    others = sorted({m for (_, _, m) in by} - set(ARMS))  # (--peers: trained at the same seeds, regret only)
    for group in ("earlier", "held out", "check"):
        for metric in ("acc", "rmse"):
            names = [n for n in regrets if cliff.kind(corpus.find(n)) == group and corpus.find(n).metric == metric]
            if names:
                rows = [regrets[n] for n in names]
                cells = [f"{statistics.median(r):.2f} / {max(r):.2f} / {sum(x <= 1 for x in r)}" for r in zip(*rows)]
                label = "accuracy" if metric == "acc" else "RMSE"
                line = f"- {group}, {label} ({len(rows)}): `{ARMS[0]}` {cells[0]}; `{ARMS[1]}` {cells[1]}"
                for other in others:
                    values = [
                        mean_regret(corpus.find(n), oracles[n][0], [by.get((n, s, other)) for s in seeds])
                        for n in names
                    ]
                    if all(v is not None for v in values):
                        line += f"; `{other}` {statistics.median(values):.2f} / {max(values):.2f} / "
                        line += f"{sum(v <= 1 for v in values)}"
                lines.append(line)
    verdict = f"`{ARMS[1]}` replaces `{ARMS[0]}`" if adopt else f"`{ARMS[0]}` stays"
    if len(accuracy) < expected:  # (a task short of seeds, or whose data is not on this machine)
        left = expected - len(accuracy)
        lines += ["", f"Provisional, not a decision: {left} accuracy tasks are not done ({verdict})."]
    else:
        lines += ["", f"**Decision: {verdict}.**"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = arguments(__doc__, HERE, seeds=12, quick="not offered")
    parser.add_argument("--first", type=int, default=20, help="the first new seed (default 20)")
    parser.add_argument(
        "--tasks", default=None, help="comma-separated task names, or held-out (default: the corpus and checks)"
    )
    parser.add_argument(
        "--peers",
        default="",
        help="more arms of run.py's to train at the same seeds, for their regret only (no part in the decision): "
        "comma-separated, e.g. prodigy",
    )
    parser.add_argument("--report-only", action="store_true", help="write paired.md from the journal, run nothing")
    args = parser.parse_args()
    if args.quick:
        parser.error("--quick: not offered")
    tasks = corpus.available([*corpus.TASKS, *corpus.CHECKS])
    if args.tasks:
        known, names = (
            {t.name for t in tasks},
            list(corpus.HELD_OUT) if args.tasks == "held-out" else args.tasks.split(","),
        )
        if unknown := [n for n in names if n not in known]:
            parser.error(f"--tasks: unknown {unknown}; choose from: held-out, {', '.join(sorted(known))}")
        tasks = [t for t in tasks if t.name in names]
    seeds = list(range(args.first, args.first + args.seeds))
    journal = study.Journal(args.out / "paired.jsonl")
    plan = study.Plan(1, False, list(ARMS))
    if not args.report_only:
        peers = [m for m in args.peers.split(",") if m]
        if unknown := [m for m in peers if m not in study.METHODS]:
            parser.error(f"--peers: unknown {unknown}; choose from: {', '.join(study.METHODS)}")
        arms = [*ARMS, *peers] if not args.peers else peers  # (--peers: those alone, the pair being done)
        jobs = [{**plan.base(t, "peer", s), "method": arm} for s in seeds for t in tasks for arm in arms]
        cliff.run_jobs(journal, jobs, args.jobs)
    by = cliff.records_by(journal)
    text = report(corpus.available([*corpus.TASKS, *corpus.CHECKS]), by, seeds, study.Journal(HERE / "jobs.jsonl"))
    (args.out / "paired.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
