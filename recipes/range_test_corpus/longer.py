"""Two longer trials where the seven sat on the sweep's plateau, on seeds nothing was looked at.

Where neither the five trials nor the two below tell the candidates apart, the shipped pick is the lowest of seven
losses within 1% of each other: a draw. That happens most on the GRU on MNIST-1D and the 12-layer plain CNN with
SGD (34 of 98 and 36 of 90 range tests at the side studies' seeds 0-91), and there it costs most: read off each
task's one-cycle grid, the draw's pick averages 72.4% on the GRU's ties (the edge x 2^2: 94.3%) and 44.4% on the
CNN's (the edge x 2^-6: 77.1%). The two want opposite ends, and neither the curve nor the 30-step trials tell which:
on both, every trial ends at the chance level, where the sweep's own smoothed loss was lowest. A trial four times
as long does tell (looked at on the GRU's seeds 0, 22, 23, 26, 29, 34 and the CNN's 4 and 30, in-sample): at the
edge x 2^2 the GRU's validation loss falls from 2.30 to 1.0-1.85 in 120 steps (90 steps were not enough on seed
34), while the CNN's stays at 2.31 and its trial at x 2^-6 (or 2^-4) falls below it.

The rule (``finder_control.TRIAL_LONG``, off in the package; the arm ``auto-trials-guard-longer``,
``run.LONGER``): where the seven told nothing and none ended lower than the sweep's lowest smoothed loss by more
than 1% of it, two trials of 4x a trial's steps at the edge x 2^-6 and 2^2 (the ends of what was tried); the lower
is taken where it ends lower than the seven's lowest by more than 1% of their median, else the pick stands.

This script probes every task of the corpus and the checks (the range test and the trials at the start of a fit,
the rule on, as ``cliff.py`` does) at seeds 92-103 (new: no study here used them); where the rule changed the pick,
both arms train the whole fit from the same seed (``auto-trials-guard-no-longer``: the package without the rule),
and the difference of their scores is its effect there (``cliff.gain``: accuracy points; RMSE tasks % of the
baseline's RMSE, positive = the rule better).

The decision, written before any of these probes ran (``cliff.magnitude_rule``, as ``lowest.py``'s): the rule is
worth switching on only if, where it changed the pick, there are at least two such seeds, the mean gain less its
standard error is above 0, and no seed loses more than 5 points (5% of the RMSE). The rounds, fixed before the
first ran: if seeds 92-103 change fewer than 4 picks, a second round probes seeds 104-127 (``--more``) and the rule
is read over both; else it is read on the first alone. Switching it on then also has to show its cost (two trials
of 4x: eight trials' worth more where it fires) and the corpus's seeds where it fires.

    python recipes/range_test_corpus/longer.py --jobs 2          # longer.jsonl, then longer.md
    python recipes/range_test_corpus/longer.py --jobs 2 --more   # the second round, seeds 104-127
    python recipes/range_test_corpus/longer.py --jobs 2 --seen   # the seeds it was made on (in-sample)
    python recipes/range_test_corpus/longer.py --jobs 2 --held-out  # the package now and Prodigy, held out, 92-103
    python recipes/range_test_corpus/longer.py --jobs 2 --earlier   # the same on the corpus's earlier tasks
    python recipes/range_test_corpus/longer.py --report-only

Each finished job goes into ``longer.jsonl`` as it ends; a job already there is not run again.
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
import tasks as corpus  # noqa: E402
from common import arguments  # noqa: E402

ARMS = ("auto-trials-guard-longer", "auto-trials-guard-no-longer")  # with the longer trials, and without
NEW, MORE = list(range(92, 104)), list(range(104, 128))  # out of sample: the first round, the planned second
# the seeds it was made on (the looks at single seeds; the ties of seeds 0-91 were read in bulk off the grid)
SEEN = {"mnist1d-gru-adamw": [0, 22, 23, 26, 29, 34], "digits-plain-cnn12-sgd": [4, 27, 30]}
SETTINGS = {"TRIAL_LONG": list(study.LONGER), "TRIAL_CLIFF": math.inf}  # the probes' (else as shipped)
ENOUGH = 4  # changed picks in the first round below which the second runs
# --held-out: the package as it is now (the rule on) and Prodigy, every held-out task at the new seeds (92-103)
HELD_OUT_ARMS = ("auto-trials-guard", "prodigy")
PAIRED = list(range(20, 32))  # paired.py's seeds: the held-out tasks' numbers there, with the rule in the fit


def ran(record: dict) -> bool:
    """Whether the rule ran its longer trials on this probe (the seven told nothing, on the sweep's plateau)."""
    return trained_with((record or {}).get("trials") or {})


def taken(record: dict) -> bool:
    """Whether one of the rule's longer trials was taken on this probe."""
    return bool((((record or {}).get("trials") or {}).get("long") or {}).get("taken"))


def changed(record: dict) -> bool:
    """Whether the rule changed this probe's pick: a longer trial was taken at another lr than the seven's pick."""
    return taken(record) and not math.isclose(record["trials"]["lr"], cliff.shipped_pick(record["trials"]))


def trained_with(trials: dict) -> bool:
    """Whether a fit's trials record shows the rule: its longer trials ran there."""
    return "long" in trials


decide = cliff.magnitude_rule  # written before the probes


def changes(task: corpus.Task, by: dict, seeds: list[int]) -> tuple[list[str], list[float], int, int, int]:
    """The rule at ``seeds`` of one task: each taken trial's seed, picks, scores and gain (the seeds it was made on
    marked), the gains of the changed picks, and how many probes there, where it ran and where it took one."""
    cells, gains, probed, runs, took = [], [], 0, 0, 0
    for seed in seeds:
        p = by.get((task.name, seed, "probe"))
        probed, runs, took = probed + (p is not None), runs + ran(p), took + taken(p)
        if p is None or not taken(p):
            continue
        trials = p["trials"]
        seen = " (seen)" if seed in SEEN.get(task.name, []) else ""
        head = f"{seed}{seen}: {cliff.shipped_pick(trials):.3g} -> {trials['lr']:.3g}"
        a, b = by.get((task.name, seed, ARMS[1])), by.get((task.name, seed, ARMS[0]))
        if not changed(p):
            cells.append(f"{head}, the seven's pick already")
        elif seed in cliff.CORPUS and (fits := corpus_before_after(task, seed)):
            cells.append(f"{head}, the corpus's {ARM_IN_CORPUS}: {fits}")
        elif a is None or b is None:
            cells.append(f"{head}, not trained yet")
        else:
            gains.append(cliff.gain(task, b["best"], a["best"]))
            cells.append(f"{head}, {cliff.shown(task, a['best'])} -> {cliff.shown(task, b['best'])}, {gains[-1]:+.2f}")
    return cells, gains, probed, runs, took


ARM_IN_CORPUS = "auto-trials-guard"  # the corpus's arm whose fit the report shows where a corpus seed's pick changed


def corpus_before_after(task: corpus.Task, seed: int) -> str:
    """The corpus journal's fit of ``ARM_IN_CORPUS`` at a corpus seed, before and after it was trained again with
    the rule (its first and last lines), as ``"99.2 -> 99.7%"``; empty where it has none."""
    import json

    lines = (HERE / "jobs.jsonl").read_text().splitlines()
    fits = [
        r
        for r in map(json.loads, lines)
        if r.get("kind") == "peer" and r.get("task") == task.name and r.get("seed") == seed
        and r.get("method") == ARM_IN_CORPUS and "error" not in r
    ]  # fmt: skip
    if len(fits) < 2:
        return ""
    return f"{cliff.shown(task, fits[0]['best'])} -> {cliff.shown(task, fits[-1]['best'])}"


def held_out_now(tasks: list, by: dict) -> str | None:
    """The held-out tasks' regret at ``PAIRED`` seeds with the package as it is now: ``paired.py``'s shipped arm,
    with ``lowest.py``'s fits where the trials at the sweep's lowest changed its pick, and this rule's where it
    changed it; ``None`` until every one is there."""
    import paired

    old = cliff.records_by(study.Journal(HERE / "paired.jsonl"))
    lowest = cliff.records_by(study.Journal(HERE / "lowest.jsonl"))
    corpus_journal, rows = study.Journal(HERE / "jobs.jsonl"), []
    for task in [t for t in tasks if t.name in corpus.HELD_OUT and t.metric == "acc"]:
        best = paired.oracle(task, corpus_journal)
        runs = []
        for seed in PAIRED:
            p, q = by.get((task.name, seed, "probe")), lowest.get((task.name, seed, "probe"))
            if p is None:
                return None
            if changed(p):
                runs.append(by.get((task.name, seed, ARMS[0])))
            elif q is not None and q["trials"].get("at_lowest"):
                runs.append(lowest.get((task.name, seed, "auto-trials-guard-lowest")))
            else:
                runs.append(old.get((task.name, seed, paired.ARMS[0])))
        regret = None if best is None else paired.mean_regret(task, best[0], runs)
        if regret is None:
            return None
        rows.append(regret)
    return (
        f"median {statistics.median(rows):.2f}, worst {max(rows):.2f}, {sum(r <= 1 for r in rows)} of {len(rows)} "
        "within a point"
    )


def group(tasks: list, held_out: bool) -> list:
    """Of ``tasks``, the corpus's held-out ones (``held_out``) or its earlier ones; never the checks."""
    in_corpus = {t.name for t in corpus.TASKS}
    return [t for t in tasks if t.name in in_corpus and (t.name in corpus.HELD_OUT) == held_out]


def at_new_seeds(tasks: list, by: dict, held_out: bool) -> list[str]:
    """The corpus's held-out tasks (``held_out``) or its earlier ones at the new seeds (``NEW``), each of
    ``HELD_OUT_ARMS``: its regret per task against the corpus's oracle (accuracy points; RMSE tasks % of the
    oracle's RMSE), then the accuracy tasks' median / worst / within a point; empty until every fit is there."""
    import paired

    corpus_journal = study.Journal(HERE / "jobs.jsonl")
    names = group(tasks, held_out)
    if not names:
        return []
    regrets: dict[str, list[float]] = {arm: [] for arm in HELD_OUT_ARMS}
    for task in names:
        best = paired.oracle(task, corpus_journal)
        for arm in HELD_OUT_ARMS:
            runs = [by.get((task.name, s, arm)) for s in NEW]
            regret = None if best is None else paired.mean_regret(task, best[0], runs)
            if regret is None:
                return []
            regrets[arm].append(regret)
    lines = [
        "| task | " + " | ".join(f"`{arm}`" for arm in HELD_OUT_ARMS) + " |",
        "|---|" + "---|" * len(HELD_OUT_ARMS),
    ]
    lines += [
        f"| {t.name}{'' if t.metric == 'acc' else ' (RMSE, %)'} | "
        + " | ".join(f"{regrets[arm][i]:.2f}" for arm in HELD_OUT_ARMS)
        + " |"
        for i, t in enumerate(names)
    ]
    acc = [i for i, t in enumerate(names) if t.metric == "acc"]
    cells = []
    for arm in HELD_OUT_ARMS:
        r = [regrets[arm][i] for i in acc]
        cells.append(f"{statistics.median(r):.2f} / {max(r):.2f} / {sum(x <= 1 for x in r)} of {len(r)}")
    lines.append(f"| accuracy tasks ({len(acc)}): median / worst / within 1 point | " + " | ".join(cells) + " |")
    return lines


def report(tasks: list, by: dict) -> str:
    lines = [
        "# Two longer trials where the seven sat on the sweep's plateau: paired",
        "",
        "Written by `longer.py` (its docstring says how, and the decision rule and rounds written before the "
        "probes). Where the rule changed the pick, the fit trained with it (`auto-trials-guard-longer`) and without "
        "(`auto-trials-guard-no-longer`); gain = the first's score minus the second's (accuracy points; RMSE tasks: "
        "% of the second's RMSE, positive = the first better). A longer trial taken at the lr the seven had already "
        'drawn changes nothing ("the seven\'s pick already").',
        "",
        "| task | group | new seeds probed (92-127) | where the rule ran | where it took one | seed: pick without "
        "-> with the rule, score, gain |",
        "|---|---|---|---|---|---|",
    ]
    gains: dict[str, list[float]] = {"new": [], "more": [], "paired": []}
    extra: list[str] = []
    for task in tasks:
        cells, found, probed, runs, took = changes(task, by, NEW)
        gains["new"] += found
        more_cells, more_found, more_probed, more_runs, more_took = changes(task, by, MORE)
        gains["more"] += more_found
        lines.append(
            f"| {task.name} | {cliff.kind(task)} | {probed + more_probed} | {runs + more_runs} | {took + more_took} "
            f"| {'; '.join(cells + more_cells)} |"
        )
        for label, seeds in (("paired", PAIRED), ("corpus", cliff.CORPUS)):
            cells, found, _, _, _ = changes(task, by, seeds)
            if label == "paired":
                gains["paired"] += found
            if cells:
                extra.append(f"- {label} seeds, {task.name}: {'; '.join(cells)}")
    more = any(by.get((t.name, s, "probe")) for t in tasks for s in MORE)
    first = len(gains["new"]) >= ENOUGH or not more
    ok, why = decide(gains["new"] if first else gains["new"] + gains["more"])
    lines += [
        "",
        f"- first round, new seeds 92-103: {cliff.summary(gains['new'])}",
        f"- second round, new seeds 104-127: {cliff.summary(gains['more']) if more else 'not run'}",
        "",
        "The rule, written before the probes: at least two changed picks, mean gain less its standard error above 0, "
        f"no seed below -5; read on the first round where it changed at least {ENOUGH} picks, else over both.",
        "",
        f"- **{'The first round' if first else 'Both rounds'} ({why}): "
        f"{'worth switching on' if ok else 'TRIAL_LONG stays off'}.**",
    ]
    if any(by.get((t.name, s, "probe")) for t in tasks for s in PAIRED):
        where = "At `paired.py`'s seeds (20-31; the seeds marked seen are in-sample)"
        lines += ["", f"{where}: {cliff.summary(gains['paired'])}."]
        now = held_out_now(tasks, by)
        lines += [f"The held-out accuracy tasks there with the package as it is now: {now or 'not every fit done'}."]
    if any(by.get((t.name, s, "probe")) for t in tasks for s in cliff.CORPUS):
        held, refit = cliff.corpus_refits(by.values(), changed, trained_with)
        arms = ", ".join(cliff.CORPUS_ARMS)
        lines += ["", f"At the corpus's own seeds (0-8) the corpus journal holds {held} fits of {arms} where the rule "
                  f"changed the pick; {refit} were trained again with it."]  # fmt: skip
    for held, flag in ((True, "--held-out"), (False, "--earlier")):
        if table := at_new_seeds(tasks, by, held):
            group = (
                "held-out tasks" if held else "earlier tasks (the rules' constants were chosen on them, at other seeds)"
            )
            lines += ["", f"The corpus's {group} at the new seeds (92-103: no rule here was made or checked on "
                      f"them before this round), `{flag}`: the package as it is now (`auto-trials-guard`, every rule "
                      "on) and Prodigy, regret against the corpus's one-cycle oracle (its grid mean over the corpus's "
                      "seeds):", "", *table]  # fmt: skip
    if extra:
        lines += ["", "Where it took one at those seeds:", "", *extra]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = arguments(__doc__, HERE, seeds=12, quick="not offered")
    parser.add_argument("--report-only", action="store_true", help="write longer.md from the journal, run nothing")
    parser.add_argument("--more", action="store_true", help="the second round: seeds 104-127")
    parser.add_argument("--paired", action="store_true", help="paired.py's seeds (20-31), in part in-sample")
    parser.add_argument("--corpus", action="store_true", help="the corpus's seeds (0-8), and its fits again there")
    parser.add_argument(
        "--held-out", action="store_true", help="the package now and Prodigy on the held-out tasks at seeds 92-103"
    )
    parser.add_argument(
        "--earlier", action="store_true", help="the package now and Prodigy on the earlier tasks at seeds 92-103"
    )
    args = parser.parse_args()
    if args.quick:
        parser.error("--quick: not offered")
    tasks = corpus.available([*corpus.TASKS, *corpus.CHECKS])
    journal = study.Journal(args.out / "longer.jsonl")
    plan = study.Plan(1, False, list(ARMS))
    if (args.held_out or args.earlier) and not args.report_only:
        fits = [
            {**plan.base(t, "peer", s), "method": arm}
            for s in NEW
            for t in group(tasks, args.held_out)
            for arm in HELD_OUT_ARMS
        ]
        cliff.run_jobs(journal, fits, args.jobs)
    elif not args.report_only:
        seeds = cliff.CORPUS if args.corpus else PAIRED if args.paired else MORE if args.more else NEW
        jobs = [{**plan.base(t, "probe", s), "method": None} for s in seeds for t in tasks]
        if args.corpus:  # (the corpus's fits follow the package: trained again, not paired here)
            cliff.run_jobs(journal, [{**job, "settings": SETTINGS} for job in jobs], args.jobs)
            why = "the longer trials"
            cliff.refit_corpus(journal.records.values(), changed, trained_with, why, args.jobs)
        else:
            cliff.probe_then_fit(journal, jobs, args.jobs, ARMS, changed, SETTINGS)
    text = report(tasks, cliff.records_by(journal))
    (args.out / "longer.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
