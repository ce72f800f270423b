"""Two more trials at the sweep's lowest where the ladder learnt no more than the sweep, on seeds nothing was looked at.

At the new seeds of ``cliff.py`` (20-31) the plain 8-layer CNN (AdamW) missed by 88 points on seeds 29 and 30: the
curve read 1.5 and 0.73 where its one-cycle oracle is 0.0046, and all five trials ended at the chance level, the
most cautious lowest. Its sweep had told more: the smoothed loss was lowest at lr 0.0085 and 0.0040, and the
ladder's lowest trial (30 steps) ended no lower than that smoothed lowest (2.337 against 2.303, 2.318 against
2.311), where on every healthy probe looked at (the same CNN's seeds 21 and 23, the text and pointer
transformers, wine, the 16-layer plain MLP, diabetes) the ladder's lowest is well below it. The rule tried here
(``finder_control.TRIAL_AT_LOWEST``, off in the package then; the arm ``auto-trials-guard-lowest``, ``run.LOWEST``):
where the ladder tells the candidates apart but its lowest trial ended no lower than the sweep's lowest smoothed
loss, and the lr of that lowest is below the ladder, two more trials at that lr x 2^-1 and 2^0; the lower taken
where it beats the ladder's lowest by more than 1% of the ladder's median. On those two seeds it picks 0.0042 and
0.0020 (trials 2.009 and 1.909); on the 12-layer plain CNN's seed 29 it ran and took nothing (the sweep's lowest
sits just below the ladder). Seeds 20-31 are in-sample for it.

This script probes every task of the corpus and the checks (the range test and the trials at the start of a fit,
the rule on, as ``cliff.py`` does) at seeds 56-67 (new: no study here used them), then at the seeds it was made on
(20-31, in-sample); where the rule changed the pick, both arms train the whole fit from the same seed, and the
difference of their scores is its effect there (``cliff.gain``: accuracy points; RMSE tasks % of the shipped
fit's RMSE, positive = the rule better).

The decision, written before any of these probes ran: ``TRIAL_AT_LOWEST`` is worth switching on only if, on seeds
56-67 where it changed the pick, there are at least two such seeds, the mean gain less its standard error is above
0, and no seed loses more than 5 points (5% of the RMSE); else it stays off. Switching it on then also has to show
the corpus's tables again (the corpus seeds where it fires).

A second round, written after the first had run (seeds 56-67: of 288 probes it ran on 3, all plain CNNs, and took
a trial on 1, the 8-layer CNN's seed 57, 14.2 -> 99.2%; one changed pick is too few for the rule) and before any
of its probes ran: the same probes and fits at 24 more new seeds, 68-91 (``--more``), and the same rule read over
every changed pick at seeds 56-91. The first round's decision stands as it was written; the second's is the one
the package follows.

By that rule the trials at the sweep's lowest became the package's default (``TRIAL_AT_LOWEST = (-1, 0)``): the
baseline arm is ``auto-trials-guard-no-lowest``, the package as it was before (its records here were trained as
``auto-trials-guard`` while that was the package without them, and renamed). ``--corpus`` then probes
the corpus's own seeds (0-8) with the rule on, and where it takes a trial, trains the corpus journal's fits of the
arms that follow the package's default (``CORPUS_ARMS``) again, so that the corpus's tables show it.

    python recipes/range_test_corpus/lowest.py --jobs 2      # lowest.jsonl, then lowest.md
    python recipes/range_test_corpus/lowest.py --jobs 2 --more   # the second round, seeds 68-91
    python recipes/range_test_corpus/lowest.py --jobs 2 --corpus # the corpus's seeds, and its fits again there
    python recipes/range_test_corpus/lowest.py --report-only

Each finished job goes into ``lowest.jsonl`` as it ends; a job already there is not run again.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import cliff  # noqa: E402
import run as study  # noqa: E402
import tasks as corpus  # noqa: E402
from common import arguments  # noqa: E402

# with the trials at the sweep's lowest, and without them (as shipped before; its records were made as the arm
# auto-trials-guard then, when that was the package without them)
ARMS = ("auto-trials-guard-lowest", "auto-trials-guard-no-lowest")
NEW, SEEN = list(range(56, 68)), list(range(20, 32))  # out of sample; the seeds the rule was made on
MORE = list(range(68, 92))  # the second round's new seeds
CORPUS, CORPUS_ARMS = cliff.CORPUS, cliff.CORPUS_ARMS  # the corpus's own seeds, and its arms that follow the package
SETTINGS = {"TRIAL_AT_LOWEST": list(study.LOWEST), "TRIAL_CLIFF": math.inf}  # the probes' (else as shipped)


def ran(record: dict) -> bool:
    """Whether the rule ran its two trials on this probe (the ladder learnt no more than the sweep)."""
    return "at_lowest" in ((record or {}).get("trials") or {})


def taken(record: dict) -> bool:
    """Whether the rule changed this probe's pick: one of its two trials was taken."""
    return bool(((record or {}).get("trials") or {}).get("at_lowest"))


def shipped(trials: dict) -> float:
    """The pick as shipped before the rule: the ladder's five (the last five of the record) read alone."""
    return cliff.shipped_pick({**trials, "lrs": trials["lrs"][-5:], "losses": trials["losses"][-5:]})


decide = cliff.magnitude_rule  # the rule written before each round's probes (above_again.py's)


def task_row(task: corpus.Task, by: dict) -> tuple[str, dict[str, list[float]]]:
    """One task's row: probes on the new seeds (both rounds), where the rule ran and where it took one, and each
    changed pick's seed, picks, scores and gain (the seen seeds marked); its gains by round and on the seen seeds."""
    cells, probed, runs, took = [], 0, 0, 0
    gains: dict[str, list[float]] = {"new": [], "more": [], "seen": []}
    for seed in [*NEW, *MORE, *SEEN]:
        p = by.get((task.name, seed, "probe"))
        where = "new" if seed in NEW else "more" if seed in MORE else "seen"
        probed += where != "seen" and p is not None
        runs += where != "seen" and ran(p)
        if p is None or not taken(p):
            continue
        took += where != "seen"
        trials = p["trials"]
        head = f"{seed}{' (seen)' if where == 'seen' else ''}: {shipped(trials):.3g} -> {trials['lr']:.3g}"
        a, b = by.get((task.name, seed, ARMS[1])), by.get((task.name, seed, ARMS[0]))
        if a is None or b is None:
            cells.append(f"{head}, not trained yet")
            continue
        g = cliff.gain(task, b["best"], a["best"])
        gains[where].append(g)
        cells.append(f"{head}, {cliff.shown(task, a['best'])} -> {cliff.shown(task, b['best'])}, {g:+.2f}")
    return f"| {task.name} | {cliff.kind(task)} | {probed} | {runs} | {took} | {'; '.join(cells)} |", gains


def at_lowest(trials: dict) -> bool:
    """Whether a fit's trials record shows the rule: the trials at the sweep's lowest ran there."""
    return "at_lowest" in trials


def corpus_refits(by: dict) -> tuple[int, int]:
    """Of the corpus fits where the rule takes a trial: how many the corpus journal holds, and how many of them
    ``refit_corpus`` trained again."""
    return cliff.corpus_refits(by.values(), taken, at_lowest)


def report(tasks: list, by: dict) -> str:
    lines = [
        "# Two more trials at the sweep's lowest where the ladder learnt no more than the sweep: paired",
        "",
        "Written by `lowest.py` (its docstring says how, and the decision rules written before their probes). Where "
        "the rule took one of its trials, the fit trained with it (`auto-trials-guard-lowest`) and as shipped "
        "before it (`auto-trials-guard-no-lowest`); gain = the first's score minus the second's (accuracy "
        "points; RMSE tasks: % of the second's RMSE, positive = the first better).",
        "",
        "| task | group | new seeds probed (56-91) | where the rule ran | where it took one | seed: pick as shipped "
        "-> with the rule, score, gain |",
        "|---|---|---|---|---|---|",
    ]
    gains: dict[str, list[float]] = {"new": [], "more": [], "seen": []}
    for task in tasks:
        line, found = task_row(task, by)
        lines.append(line)
        for key in gains:
            gains[key] += found[key]
    first, why_first = decide(gains["new"])
    second, why = decide(gains["new"] + gains["more"])
    lines += [
        "",
        f"- first round, new seeds 56-67: {cliff.summary(gains['new'])}",
        f"- second round, new seeds 68-91: {cliff.summary(gains['more'])}",
        f"- the seeds it was made on (20-31, in-sample): {cliff.summary(gains['seen'])}",
        "",
        "The rule, written before each round's probes: at least two changed picks on the new seeds, mean gain less "
        "its standard error above 0, no seed below -5.",
        "",
        f"- First round (seeds 56-67; {why_first}): {'worth switching on' if first else 'not switched on'}.",
        f"- **Second round (every changed pick at seeds 56-91; {why}): "
        f"{'worth switching on' if second else 'TRIAL_AT_LOWEST stays off'}.**",
    ]
    corpus_seeds = [
        f"{task.name} {seed} ({shipped(p['trials']):.3g} -> {p['trials']['lr']:.3g})"
        for task in tasks
        for seed in CORPUS
        if (p := by.get((task.name, seed, "probe"))) is not None and taken(p)
    ]
    if any(by.get((task.name, seed, "probe")) for task in tasks for seed in CORPUS):
        held, refit = corpus_refits(by)
        lines += [
            "",
            f"On the corpus's own seeds (0-8, `--corpus`) it takes a trial on {len(corpus_seeds)} of "
            f"{sum(by.get((t.name, s, 'probe')) is not None for t in tasks for s in CORPUS)} range tests"
            + (f": {'; '.join(corpus_seeds)}" if corpus_seeds else "")
            + (
                f"; of the corpus's {held} fits of {', '.join(CORPUS_ARMS)} there, {refit} were trained again with it."
                if held
                else f"; the corpus's journal holds no fit of {', '.join(CORPUS_ARMS)} at those seeds: its tables are "
                "as they were."
            ),
        ]
    return "\n".join(lines) + "\n"


def run_study(journal: study.Journal, probes: list[dict], processes: int) -> None:
    """The ``probes`` with the rule on (``SETTINGS``), then both arms' fits wherever it took one of its trials."""
    cliff.probe_then_fit(journal, probes, processes, ARMS, taken, SETTINGS)


def refit_corpus(journal: study.Journal, processes: int) -> None:
    """The corpus journal's fits of ``CORPUS_ARMS`` where the rule (now the default) takes a trial on a corpus seed,
    trained again."""
    cliff.refit_corpus(journal.records.values(), taken, at_lowest, "the trials at the sweep's lowest", processes)


def main() -> None:
    parser = arguments(__doc__, HERE, seeds=12, quick="not offered")
    parser.add_argument("--report-only", action="store_true", help="write lowest.md from the journal, run nothing")
    parser.add_argument("--new-only", action="store_true", help="only the new seeds (56-67), not the seen ones")
    parser.add_argument("--more", action="store_true", help="the second round: seeds 68-91")
    parser.add_argument("--corpus", action="store_true", help="the corpus's seeds (0-8), and its fits again there")
    args = parser.parse_args()
    if args.quick:
        parser.error("--quick: not offered")
    tasks = corpus.available([*corpus.TASKS, *corpus.CHECKS])
    journal = study.Journal(args.out / "lowest.jsonl")
    plan = study.Plan(1, False, list(ARMS))
    if not args.report_only:
        if args.corpus:
            probes = [{**plan.base(t, "probe", s), "method": None} for s in CORPUS for t in tasks]
            cliff.run_jobs(journal, [{**job, "settings": SETTINGS} for job in probes], args.jobs)
            refit_corpus(journal, args.jobs)
        rounds = () if args.corpus else (MORE,) if args.more else (NEW,) if args.new_only else (NEW, SEEN)
        for seeds in rounds:  # (the new seeds first, whole)
            run_study(journal, [{**plan.base(t, "probe", s), "method": None} for s in seeds for t in tasks], args.jobs)
    text = report(tasks, cliff.records_by(journal))
    (args.out / "lowest.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
