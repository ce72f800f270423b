"""The trials' cliff on seeds nothing was looked at: each task's range test and short trials at new seeds, and where
the cliff changes the pick, the fit trained both ways, paired. Why the cliff is off in the package.

The cliff (``finder_control.TRIAL_CLIFF`` at 1%, ``run.CLIFF``: from the most cautious candidate up, a trial more
than 1% above the lowest loss so far ends the reading, a lower loss past it taken for a short run's luck) came
from two held-out misses (the GRU's seed 8 and the plain 10-layer MLP's seed 7), so on the corpus's own seeds it
is in-sample. Here every task of the corpus and the checks (``tasks.TASKS``, ``tasks.CHECKS``) runs, at seeds from
``--first`` on (20: no study here used them), what ``OneCycle(max_lr="auto")`` + ``LRFinder()`` + ``Guard()`` run
at the start of a fit with the cliff on (the corpus arm ``auto-trials-guard-cliff``), and stops there (a probe).
Where its pick differs from the shipped reading's (the lowest of the five: ``auto-trials-guard``), both arms train
the whole fit from the same seed, and the difference of their scores is the cliff's effect on that seed: no oracle
is needed for a paired difference.

    python recipes/range_test_corpus/cliff.py --jobs 2      # 12 new seeds a task: cliff.jsonl, then cliff.md
    python recipes/range_test_corpus/cliff.py --report-only # cliff.md again from the journal

Each finished job goes into ``cliff.jsonl`` as it ends; a job already there is not run again.
"""

from __future__ import annotations

import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import run as study  # noqa: E402
import tasks as corpus  # noqa: E402
from common import arguments, machine, trainer  # noqa: E402

ARMS = ("auto-trials-guard-cliff", "auto-trials-guard")  # with the cliff, and as shipped (the lowest of the five)


class _Stop(Exception):
    """Raised at ``on_train_start``: the range test and the trials have run; the fit itself is not needed."""


def start_of_fit(task: corpus.Task, seed: int, epochs: int, settings: dict | None = None):
    """The ``LRFinder`` result of the seed's ``OneCycle(max_lr="auto")`` + ``LRFinder()`` + ``Guard()`` fit (the corpus
    arm ``auto-trials-guard``), stopped once the range test and the trials have run, with ``settings``
    (``finder_control``'s constants, lists as tuples) for the run and restored after it; ``None`` where none ran."""
    import lightning.pytorch as pl

    from lightning_cyclic import Guard, LRFinder, OneCycle, finder_control

    pl.seed_everything(seed, verbose=False)  # the seed's initial weights and data order, as the corpus's fit
    module = study.task_module(task, None)
    finder = LRFinder(verbose=False)

    class Stop(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            raise _Stop

    settings = settings or {}
    shipped = {name: getattr(finder_control, name) for name in settings}
    for name, value in settings.items():
        setattr(finder_control, name, tuple(value) if isinstance(value, list) else value)
    with tempfile.TemporaryDirectory() as root:
        callbacks = [OneCycle(max_lr="auto", log=False), finder, Guard(verbose=False), Stop()]
        try:
            trainer(root, callbacks, max_epochs=epochs).fit(module, datamodule=study.task_datamodule(task))
        except _Stop:
            pass
        finally:
            for name, value in shipped.items():
                setattr(finder_control, name, value)
    return finder.result


def probe(task: corpus.Task, seed: int, epochs: int, settings: dict | None = None) -> dict:
    """What ``auto`` chose at the start of the seed's fit (:func:`start_of_fit`): the curve's reading and the trials'
    record, with ``settings`` (default: the cliff on, as the arm with the cliff)."""
    result = start_of_fit(task, seed, epochs, {"TRIAL_CLIFF": study.CLIFF} if settings is None else settings)
    trials = result.extra.get("trials") if result is not None else None
    return {"edge": None if result is None else result.suggestion.lr, "trials": trials}


def shipped_pick(trials: dict) -> float:
    """The pick of the same trials as shipped (no cliff: the lowest of the five, the arm ``auto-trials-guard``)."""
    from lightning_cyclic import finder_control as control

    if "at_lowest" in trials:  # (a record with the trials at the sweep's lowest: the five's pick, as before them)
        trials = {**trials, "lrs": trials["lrs"][-5:], "losses": trials["losses"][-5:]}
    ladder = (*control.TRIAL_BELOW, *control.TRIAL_LADDER) if len(trials["lrs"]) > 5 else control.TRIAL_LADDER
    losses = [math.inf if x is None else x for x in trials["losses"]]
    return control.choose_trial(trials["lrs"], losses, trials["steps"], trials["evaluated"], True, ladder)["lr"]


def key(job: dict) -> dict:
    return {"kind": job["kind"], "task": job["task"], "spec": job["spec"], "seed": job["seed"],
            "epochs": job["epochs"], "method": job.get("method")}  # fmt: skip


def work(job: dict) -> dict:
    """One job: a probe, or a fit of one arm (``run.fit_peer``, as the corpus trains it)."""
    import traceback

    import torch

    study.silence()
    torch.set_num_threads(1)
    task = corpus.find(job["task"])
    start = time.perf_counter()
    try:
        if job["kind"] == "probe":
            out = probe(task, job["seed"], job["epochs"], job.get("settings"))
        else:
            with tempfile.TemporaryDirectory() as root:
                out = study.fit_peer(task, job["seed"], job["method"], job["epochs"], root)
    except Exception:
        out = {"error": traceback.format_exc(limit=8)}
    return {**key(job), **out, "wall": time.perf_counter() - start, "cpu": machine()}


def run_jobs(journal: study.Journal, jobs: list[dict], processes: int) -> None:
    """The ``jobs`` not finished in ``journal`` (:func:`work`: probes and fits), in ``processes`` spawned processes,
    each added to the journal as it ends (the side studies' runner: this one, ``above.py``, ``above_again.py``,
    ``paired.py``)."""
    todo = [j for j in jobs if not journal.finished(j)]
    print(f"{len(jobs)} jobs, {len(todo)} to run", flush=True)
    if not todo:
        return
    import multiprocessing as mp

    start = time.perf_counter()
    with mp.get_context("spawn").Pool(max(1, min(processes, len(todo)))) as pool:
        for i, out in enumerate(pool.imap_unordered(work, todo), 1):
            journal.add(out)
            print(f"{i}/{len(todo)}: {out['kind']} {out['task']} {out['seed']} {out.get('method') or ''}: "
                  f"{out['wall']:.0f}s{' (error)' if 'error' in out else ''}", flush=True)  # fmt: skip
    print(f"{len(todo)} jobs in {time.perf_counter() - start:.0f}s", flush=True)


def probe_then_fit(journal: study.Journal, probes: list[dict], processes: int, arms, changed, settings=None) -> None:
    """The side studies' runner: the ``probes`` (with ``settings``, ``finder_control``'s constants, where given; else
    :func:`probe`'s default), then the fits of each of ``arms`` wherever a probe's record says (``changed``) that its
    rule changed the pick."""
    run_jobs(journal, probes if settings is None else [{**job, "settings": settings} for job in probes], processes)
    plan, fits = study.Plan(1, False, list(arms)), []
    for job in probes:
        record = journal.get(job)
        if record is not None and "error" not in record and changed(record):
            task = corpus.find(job["task"])
            fits += [{**plan.base(task, "peer", job["seed"]), "method": arm} for arm in arms]
    run_jobs(journal, fits, processes)


CORPUS = list(range(9))  # the corpus's own seeds
# the corpus arms that follow the package's default trials (the others keep their definitions: run.py)
CORPUS_ARMS = ("auto-trials", "auto-trials-guard", "auto-trials-guard-sqrt2")


def corpus_fits(probes, changed) -> list[dict]:
    """The corpus journal's jobs of ``CORPUS_ARMS`` at the corpus seeds where a side study's rule, now the package's
    default, changed the pick (``probes``: its journal's records; ``changed``: whether a probe's rule did)."""
    plan = study.Plan(len(CORPUS), False, list(CORPUS_ARMS))
    return [
        {**plan.base(corpus.find(r["task"]), "peer", r["seed"]), "method": arm}
        for r in probes
        if r["kind"] == "probe" and r["seed"] in CORPUS and "error" not in r and changed(r)
        for arm in CORPUS_ARMS
    ]


def corpus_refits(probes, changed, trained_with) -> tuple[int, int]:
    """Of :func:`corpus_fits`: how many the corpus journal holds, and how many of them :func:`refit_corpus` trained
    again (``trained_with``: whether a fit's trials record shows the rule)."""
    journal = study.Journal(HERE / "jobs.jsonl")
    fits = [fit for job in corpus_fits(probes, changed) if (fit := journal.get(job)) is not None]
    return len(fits), sum(trained_with(fit.get("trials") or {}) for fit in fits)


def refit_corpus(probes, changed, trained_with, why: str, processes: int) -> None:
    """The corpus journal's fits of :func:`corpus_fits` trained again where they were trained without the rule
    (``trained_with`` their trials record: False), a record with ``error`` (``why``) first, so that the journal's
    later line is the new fit."""
    corpus_journal, jobs = study.Journal(HERE / "jobs.jsonl"), []
    for job in corpus_fits(probes, changed):
        old = corpus_journal.get(job)
        if old is not None and "error" not in old and not trained_with(old.get("trials") or {}):
            corpus_journal.add({**key(job), "error": f"trained again: {why}"})
        if old is not None:
            jobs.append(job)
    run_jobs(corpus_journal, jobs, processes)


def magnitude_rule(gains: list[float]) -> tuple[bool, str]:
    """The rule on magnitudes (``above_again.py``'s and ``lowest.py``'s, written before their probes): at least two
    changed picks, the mean gain less its standard error above 0, no seed below -5 (points, or % of the RMSE)."""
    if len(gains) < 2:
        return False, f"it changed {len(gains)} pick(s): too few to read a standard error"
    mean, se = statistics.mean(gains), statistics.stdev(gains) / math.sqrt(len(gains))
    ok = mean - se > 0 and min(gains) >= -5
    return ok, f"mean {mean:+.2f} ± {se:.2f}, worst seed {min(gains):+.2f} ({'yes' if ok else 'no'})"


def records_by(journal: study.Journal) -> dict:
    """The journal's finished records by ``(task, seed, method)``, a probe's method ``"probe"``."""
    return {(r["task"], r["seed"], r["method"] or "probe"): r for r in journal.records.values() if "error" not in r}


def fired(record: dict) -> bool:
    """Whether the cliff changed this probe's pick."""
    trials = record.get("trials")
    return bool(trials) and "cliff" in trials and not math.isclose(trials["lr"], shipped_pick(trials), rel_tol=1e-9)


def gain(task: corpus.Task, cliff: float, shipped: float) -> float:
    """The cliff's gain on one seed: accuracy points, or % of the shipped fit's RMSE (positive: the cliff better)."""
    return 100 * (cliff - shipped) if task.metric == "acc" else 100 * (shipped - cliff) / shipped


def in_sample(journal: study.Journal) -> list[tuple[str, int, float]]:
    """The corpus's own seeds where the cliff changed the default arm's pick: (task, seed, gain)."""
    rows, records = [], list(journal.records.values())
    peers = {(r["task"], r["seed"], r["method"]): r for r in records if r.get("kind") == "peer" and "error" not in r}
    for (name, seed, method), r in sorted(peers.items()):
        other = peers.get((name, seed, ARMS[1]))
        if method != ARMS[0] or other is None or "cliff" not in (r.get("trials") or {}):
            continue
        if not math.isclose(r["max_lr"], other["max_lr"], rel_tol=1e-9):  # (the cliff changed the pick)
            rows.append((name, seed, gain(corpus.find(name), r["best"], other["best"])))
    return rows


def summary(gains: list[float]) -> str:
    if not gains:
        return "none"
    better, worse = sum(g > 0 for g in gains), sum(g < 0 for g in gains)
    return (f"{len(gains)} seeds: {better} better, {worse} worse; mean {statistics.mean(gains):+.2f}, median "
            f"{statistics.median(gains):+.2f}, from {min(gains):+.2f} to {max(gains):+.2f}")  # fmt: skip


def report(tasks: list, journal: dict, seeds: list[int], corpus_journal: study.Journal) -> str:
    lines = [
        "# The trials' cliff on new seeds: paired",
        "",
        f"Written by `cliff.py` (its docstring says how). Seeds {seeds[0]}-{seeds[-1]} of every task (none used by "
        "another study here): the range test and the trials as `auto` runs them in the fit; where the cliff changed "
        "the pick, the fit trained with it (`auto-trials-guard-cliff`) and as shipped (`auto-trials-guard`, the "
        "lowest of the five). Gain: the first's score minus the second's, accuracy points (RMSE tasks: % of the "
        "second's RMSE, lower is better, so a positive gain is better there too). The cliff is off in the package: "
        "this is why.",
        "",
        "| task | group | probed (with trials) | cliff fired | seed: pick as shipped -> with the cliff, score, gain |",
        "|---|---|---|---|---|",
    ]
    groups: dict[str, list[float]] = {}
    for task in tasks:
        probes = [journal.get((task.name, s, "probe")) for s in seeds]
        done = [p for p in probes if p is not None and "error" not in p]
        cells = []
        for p in done:
            if not fired(p):
                continue
            a, b = journal.get((task.name, p["seed"], ARMS[1])), journal.get((task.name, p["seed"], ARMS[0]))
            head = f"{p['seed']}: {shipped_pick(p['trials']):.3g} -> {p['trials']['lr']:.3g}"
            if a is None or b is None or "error" in a or "error" in b:
                cells.append(f"{head}, not trained yet")
                continue
            g = gain(task, b["best"], a["best"])
            groups.setdefault(kind(task), []).append(g)
            cells.append(f"{head}, {shown(task, a['best'])} -> {shown(task, b['best'])}, {g:+.2f}")
        fires, with_trials = sum(fired(p) for p in done), sum(bool(p.get("trials")) for p in done)
        lines.append(f"| {task.name} | {kind(task)} | {len(done)} ({with_trials}) | {fires} | {'; '.join(cells)} |")
    lines += ["", "Summary (new seeds, by the task's group; then the corpus's own seeds, where the rule was made):", ""]
    for group in ("earlier", "held out", "check"):
        lines.append(f"- {group}: {summary(groups.get(group, []))}")
    lines.append(f"- all new seeds: {summary([g for v in groups.values() for g in v])}")
    own = in_sample(corpus_journal)
    lines.append(f"- the corpus's seeds (in-sample): {summary([g for _, _, g in own])}")
    return "\n".join(lines) + "\n"


def shown(task: corpus.Task, value: float) -> str:
    """A fit's score as the side studies' reports write it: accuracy in %, one decimal; an RMSE, two."""
    return f"{100 * value:.1f}" if task.metric == "acc" else f"{value:.2f}"


def kind(task: corpus.Task) -> str:
    if task.name in {t.name for t in corpus.CHECKS}:
        return "check"
    return "held out" if task.name in corpus.HELD_OUT else "earlier"


def main() -> None:
    parser = arguments(__doc__, HERE, seeds=12, quick="not offered")
    parser.add_argument("--first", type=int, default=20, help="the first new seed (default 20)")
    parser.add_argument("--report-only", action="store_true", help="write cliff.md from the journal, run nothing")
    args = parser.parse_args()
    if args.quick:
        parser.error("--quick: not offered")
    tasks = corpus.available([*corpus.TASKS, *corpus.CHECKS])
    seeds = list(range(args.first, args.first + args.seeds))
    path = args.out / "cliff.jsonl"
    journal = study.Journal(path)  # (its records keyed by run.py's KEY: the method tells a probe from a fit)
    plan = study.Plan(1, False, list(ARMS))

    if not args.report_only:
        probes = [{**plan.base(t, "probe", s), "method": None} for t in tasks for s in seeds]
        probe_then_fit(journal, probes, args.jobs, ARMS, fired)
    text = report(tasks, records_by(journal), seeds, study.Journal(HERE / "jobs.jsonl"))
    (args.out / "cliff.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
