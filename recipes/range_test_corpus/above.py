"""Two more trials above the ladder where nothing told the candidates apart, on seeds nothing was looked at, paired.

At the new seeds of ``cliff.py`` (20-31) the held-out GRU's curve read too timid on 5 of 12 seeds (0.001-0.009,
where its one-cycle oracle is 0.0215): every trial of the five and the two below stayed on its plateau (2.30, within
1% of each other), nothing told the candidates apart, and the fit at the ladder's lowest noise stalled near 51%.
The rule tried here: where neither the five nor the two below told them apart, two more trials above the ladder,
at the edge x 2^3 and 2^4 (``finder_control.TRIAL_ABOVE``, off in the package; the arm
``auto-trials-guard-above``, ``run.ABOVE``), the lower of them taken where it beats the pick so far by more than 1%
of the five's median loss, as the two below are. It was made on those GRU seeds, so seeds 20-31 are in-sample for it.

This script probes every task of the corpus and the checks (as ``cliff.py`` does: the range test and the trials at
the start of a fit, the rule on) at seeds 32-43 (new: out of sample) and re-probes the seeds 20-31 whose trials
could not tell (in-sample); where the rule changed the pick, both arms train the whole fit from the same seed, and
the difference of their scores is its effect there (``cliff.gain``: accuracy points; RMSE tasks % of the shipped
fit's RMSE, positive = the rule better).

The decision, written before any of these probes ran: ``TRIAL_ABOVE`` is switched on only if, on seeds 32-43 where
it changed the pick, its mean gain is positive and more seeds gain than lose; else it stays off.

    python recipes/range_test_corpus/above.py --jobs 2      # above.jsonl, then above.md
    python recipes/range_test_corpus/above.py --report-only

Each finished job goes into ``above.jsonl`` as it ends; a job already there is not run again.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import cliff  # noqa: E402
import run as study  # noqa: E402
import tasks as corpus  # noqa: E402
from common import arguments  # noqa: E402

ARMS = ("auto-trials-guard-above", "auto-trials-guard")  # with the trials above, and as shipped
NEW, SEEN = list(range(32, 44)), list(range(20, 32))  # out of sample; the seeds the rule was made on
SETTINGS = {"TRIAL_ABOVE": list(study.ABOVE), "TRIAL_CLIFF": float("inf")}  # the probes' (the cliff off: as shipped)


def above_taken(record: dict) -> bool:
    """Whether the rule changed this probe's pick: the trials above ran and one of them was taken."""
    trials = record.get("trials") or {}
    lrs = trials.get("lrs") or []
    return len(lrs) == 9 and bool(trials.get("told")) and trials["lr"] >= min(lrs[-2:]) * (1 - 1e-9)


def tied(record: dict) -> bool:
    """Whether a probe's trials (``cliff.py``'s, the cliff on) could not tell: the five and the two below ran and
    told nothing (where the rule would run its two above)."""
    trials = record.get("trials") or {}
    return len(trials.get("lrs") or []) == 7 and trials.get("told") is False


def decide(gains: list[float]) -> tuple[bool, str]:
    """The rule written before the probes: on the new seeds where it changed the pick, a positive mean gain and more
    seeds better than worse."""
    if not gains:
        return False, "it changed no pick on the new seeds"
    up, down, mean = sum(g > 0 for g in gains), sum(g < 0 for g in gains), statistics.mean(gains)
    ok = mean > 0 and up > down
    return ok, f"{len(gains)} seeds: {up} better, {down} worse, mean {mean:+.2f} ({'yes' if ok else 'no'})"


def task_row(task: corpus.Task, by: dict, seeds: list[int], new: set[int]) -> tuple[str, dict[str, list[float]]]:
    """One task's row of a report over ``seeds`` (``by``: the journal's records by task, seed and method or
    ``"probe"``), counted on those in ``new`` (the others marked as seen), and its gains on the new and the seen."""
    cells, probed, untold, taken = [], 0, 0, 0
    gains: dict[str, list[float]] = {"new": [], "seen": []}
    for seed in seeds:
        p = by.get((task.name, seed, "probe"))
        if p is None:
            continue
        probed += seed in new
        trials = p.get("trials") or {}
        untold += seed in new and len(trials.get("lrs") or []) == 9
        if not above_taken(p):
            continue
        taken += seed in new
        a, b = by.get((task.name, seed, ARMS[1])), by.get((task.name, seed, ARMS[0]))
        shipped = cliff.shipped_pick({**trials, "lrs": trials["lrs"][:7], "losses": trials["losses"][:7]})
        head = f"{seed}{'' if seed in new else ' (seen)'}: {shipped:.3g} -> {trials['lr']:.3g}"
        if a is None or b is None:
            cells.append(f"{head}, not trained yet")
            continue
        g = cliff.gain(task, b["best"], a["best"])
        gains["new" if seed in new else "seen"].append(g)
        cells.append(f"{head}, {cliff.shown(task, a['best'])} -> {cliff.shown(task, b['best'])}, {g:+.2f}")
    return f"| {task.name} | {cliff.kind(task)} | {probed} | {untold} | {taken} | {'; '.join(cells)} |", gains


def run_study(journal: study.Journal, probes: list[dict], processes: int) -> None:
    """The ``probes`` with the trials above on (``SETTINGS``), then both arms' fits wherever they took one above."""
    cliff.probe_then_fit(journal, probes, processes, ARMS, above_taken, SETTINGS)


def report(tasks: list, by: dict, seen: list[int]) -> str:
    lines = [
        "# Two more trials above the ladder where nothing told: paired",
        "",
        "Written by `above.py` (its docstring says how, and the decision rule written before its probes). Where the "
        "rule took a trial above, the fit trained with it (`auto-trials-guard-above`) and as shipped "
        "(`auto-trials-guard`); gain = the first's score minus the second's (accuracy points; RMSE tasks: % of the "
        "second's RMSE, positive = the first better).",
        "",
        "| task | group | seeds probed (32-43) | where nothing told | rule took one above | seed: pick as shipped -> "
        "with the rule, score, gain |",
        "|---|---|---|---|---|---|",
    ]
    gains: dict[str, list[float]] = {"new": [], "seen": []}
    for task in tasks:
        line, found = task_row(task, by, [*NEW, *seen], set(NEW))
        lines.append(line)
        for key in gains:
            gains[key] += found[key]
    adopt, why = decide(gains["new"])
    lines += [
        "",
        f"- new seeds (32-43): {cliff.summary(gains['new'])}",
        f"- the seeds it was made on (20-31, in-sample): {cliff.summary(gains['seen'])}",
        "",
        f"**Decision (the rule: on the new seeds a positive mean gain and more better than worse; {why}): "
        f"{'TRIAL_ABOVE on' if adopt else 'TRIAL_ABOVE stays off'}.**",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = arguments(__doc__, HERE, seeds=12, quick="not offered")
    parser.add_argument("--report-only", action="store_true", help="write above.md from the journal, run nothing")
    args = parser.parse_args()
    if args.quick:
        parser.error("--quick: not offered")
    tasks = corpus.available([*corpus.TASKS, *corpus.CHECKS])
    journal = study.Journal(args.out / "above.jsonl")
    seen_probes = study.Journal(HERE / "cliff.jsonl")
    plan = study.Plan(1, False, list(ARMS))

    def probe(task, seed):
        return {**plan.base(task, "probe", seed), "method": None}

    # the seeds it was made on: only those whose trials told nothing can change (cliff.py's probes say which)
    seen = [(t, s) for t in tasks for s in SEEN if (r := seen_probes.get(probe(t, s))) and tied(r)]
    if not args.report_only:
        run_study(journal, [probe(t, s) for s in NEW for t in tasks] + [probe(t, s) for t, s in seen], args.jobs)
    by = cliff.records_by(journal)
    text = report(tasks, by, sorted({s for _, s in seen}))
    (args.out / "above.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
