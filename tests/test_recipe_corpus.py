"""The range-test corpus benchmark (recipes/range_test_corpus): its corpus, its smoke run, its reading of peers."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys

import pytest

from tests.conftest import ROOT

FOLDER = ROOT / "recipes" / "range_test_corpus"


def _module(name: str):
    """``tasks.py`` or ``run.py`` of the recipe, imported under a name no other recipe uses."""
    sys.path.insert(0, str(FOLDER))
    try:
        spec = importlib.util.spec_from_file_location(f"range_test_corpus_{name}", FOLDER / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while it executes
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(FOLDER))
    return module


def _probe_is_fit_start(bench, cliff, task, seed: int, settings, arm: str, root) -> dict:
    """A probe (the range test and the trials, with ``settings``) at ``seed`` and the ``arm``'s whole fit there, on
    this machine: the same trials, losses and pick (the fit trained at it). Returns the probe's record. (Against a
    journal made on another CPU a probe can differ: a deep net without normalisation carries the last digits of
    a CPU's vector unit far, so the tests compare with the journals only where a model does not.)"""
    epochs = bench.Plan(1, False, []).base(task, "probe", seed)["epochs"]
    again = cliff.probe(task, seed, epochs, settings)
    fitted = bench.fit_peer(task, seed, arm, epochs, str(root))
    assert again["trials"]["lrs"] == fitted["trials"]["lrs"] and again["trials"]["losses"] == fitted["trials"]["losses"]
    assert again["trials"].get("long") == fitted["trials"].get("long") and again["trials"]["lr"] == fitted["max_lr"]
    return again


@pytest.fixture(scope="module")
def corpus():
    return _module("tasks")


@pytest.fixture(scope="module")
def bench():
    return _module("run")


def test_corpus_covers_the_required_kinds_of_task(corpus):
    tasks = [t for t in corpus.TASKS if t.needs is None]  # the ones every machine can run
    assert len(tasks) >= 12
    assert len({t.name for t in corpus.TASKS}) == len(corpus.TASKS)
    assert {"mlp", "cnn", "cnn1d", "resnet", "transformer"} <= {t.model for t in tasks}
    assert {t.optimizer for t in tasks} == {"sgd", "adamw"}
    assert min(t.batch for t in tasks) == 32 and max(t.batch for t in tasks) >= 1024
    # the ones that stress stability: a deeper transformer, a recurrent net, a deep plain net, a large batch
    assert any(t.model == "transformer" and t.model_kwargs.get("layers", 1) >= 2 and t.val for t in tasks)
    assert any(t.model == "gru" and t.val for t in tasks)
    assert any(t.model == "plain-mlp" and t.model_kwargs["depth"] >= 8 for t in tasks)
    assert set(corpus.NEW_TASKS) <= {t.name for t in tasks}
    # and three held out from every choice: a language model, an LSTM with SGD, a deep plain CNN
    assert set(corpus.HELD_OUT) == set(corpus.NEW_TASKS) | {t.name for t in corpus.OUTSIDE} and len(corpus.OUTSIDE) == 3
    assert {t.data for t in corpus.OUTSIDE} >= {"text"} and "plain-cnn" in {t.model for t in corpus.OUTSIDE}
    assert any(t.model_kwargs.get("cell") == "lstm" and t.optimizer == "sgd" for t in corpus.OUTSIDE)
    assert {t.val for t in tasks} == {True, False}
    assert {t.metric for t in tasks} == {"acc", "rmse"}
    # the tie rule's checks: outside the study's tables, named apart, of the kinds where that rule can fire
    names = [t.name for t in (*corpus.TASKS, *corpus.CHECKS)]
    assert len(set(names)) == len(names) and not {t.name for t in corpus.CHECKS} & {t.name for t in corpus.TASKS}
    assert {t.model for t in corpus.CHECKS} == {"plain-cnn", "plain-mlp", "gru"} and all(t.val for t in corpus.CHECKS)
    assert all(corpus.find(name).name == name for name in names)
    assert {"digits", "mnist1d", "diabetes", "breast_cancer", "wine"} <= {t.data for t in tasks}
    assert any(t.data in ("clusters", "pointer") for t in tasks)  # generated here
    assert sum(corpus.total_steps(t) >= 2000 for t in tasks) >= 3
    for t in tasks:
        assert len(t.lrs) >= (8 if t in corpus.OUTSIDE else 9), t.name
        assert all(b / a == pytest.approx(10 ** (1 / 3)) for a, b in zip(t.lrs, t.lrs[1:]))
        assert t.optimizer in ("sgd", "adamw") and t.data in corpus.LOADERS and t.model in corpus.MODELS
        assert corpus.total_steps(t) >= 100, t.name  # Lightning's Tuner sweeps at most the run's steps


def test_every_task_builds_and_runs_a_batch(corpus):
    import torch

    torch.manual_seed(0)
    for t in corpus.available():
        data = corpus.load(t)
        net = corpus.build_net(t)
        out = net(data.x_train[:8])
        assert out.shape == (8, data.outputs), t.name
        loss = corpus.criterion(t)(out, data.y_train[:8])
        assert torch.isfinite(loss), t.name
        corpus.make_optimizer(t, net.parameters(), 1e-3)
    resnet = corpus.build_net(next(t for t in corpus.TASKS if t.model == "resnet"))
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in resnet.modules())
    plain = corpus.build_net(next(t for t in corpus.TASKS if t.model == "plain-mlp"))
    kinds = {type(m) for m in plain.modules()}
    assert kinds == {type(plain), torch.nn.Flatten, torch.nn.Linear, torch.nn.ReLU}  # no norm, no residual


def test_quick_run_writes_a_complete_report_that_rebuilds_and_resumes(tmp_path, bench):
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(ROOT)}
    script = str(FOLDER / "run.py")
    done = subprocess.run(
        [sys.executable, script, "--quick", "--jobs", "1", "--out", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    names = [t["name"] for t in results["tasks"]]
    assert names == list(bench.QUICK_TASKS)
    rows = results["derived"]["finders"]
    for name in names:
        assert set(rows[name]) == set(bench.FINDERS)
        for finder, row in rows[name].items():
            assert len(row["regrets"]) == 1 and math.isfinite(row["regret"]), (name, finder)
        oracle = results["derived"]["oracles"][name]
        assert len(oracle["lrs"]) == 3 and oracle["worst_regret"] >= 0
    assert set(results["loto"]["tasks"]) == set(names)
    table = (tmp_path / "table.md").read_text()
    headings = ("### Tasks and oracles", "### Regret of one-cycle", "### Summary per finder", "### Targets",
                "### Confidence against regret")  # fmt: skip
    for heading in headings:
        assert heading in table
    section = table.split("### Targets")[1].split("\n\n")[1].splitlines()[2:]  # the rows of the targets table
    assert len(section) == 9 and all(line.endswith(("| met |", "| **missed** |", "| n/a |")) for line in section)
    assert "| digits-mlp-sgd | " in done.stdout
    assert (tmp_path / "regret.png").read_bytes()[:4] == b"\x89PNG"
    rebuilt = subprocess.run(
        [sys.executable, script, "--report-only", "--out", str(tmp_path)], env=env, capture_output=True, text=True
    )
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    assert (tmp_path / "table.md").read_text() == table
    # the learning-rate-free optimizers: one run per task, seed and method, scored against the same oracle
    peers = {(r["task"], r["method"]) for r in results["peers"]}
    assert peers == {(name, method) for name in names for method in bench.METHODS}
    ran = [r for r in results["peers"] if "error" not in r]
    assert any(r["method"] == "adamw-cosine" for r in ran)  # torch alone: runs wherever the study runs
    for r in ran:
        assert r["steps"] == results["tasks"][names.index(r["task"])]["steps"], r  # the grid's run length
    rows = results["derived"]["peers"]["rows"]
    assert math.isfinite(rows[names[0]]["adamw-cosine"]["regret"])
    assert "### Summary: finders and learning-rate-free optimizers" in table
    # every finished job is one line of the journal; a second run finds them all there and trains nothing
    journal = (tmp_path / "jobs.jsonl").read_text().splitlines()
    import torch  # (and says which CPU it ran on: a deep net's numbers carry its vector unit's last digits)

    assert all(json.loads(line)["cpu"].endswith(f", {torch.backends.cpu.get_cpu_capability()}") for line in journal)
    assert len(journal) == len(results["range_tests"]) + len(results["grid"]) + len(results["trainings"]) + len(
        results["peers"]
    )
    again = subprocess.run(
        [sys.executable, script, "--quick", "--jobs", "1", "--out", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    failed = sum("error" in r for r in results["peers"])  # a package missing here: its jobs are tried again
    assert f"{len(results['range_tests']) + len(results['grid'])} done before" in again.stdout
    assert "one-cycle at the suggestions: 0 jobs to run" in again.stdout
    assert f"learning-rate-free optimizers: {failed} jobs to run" in again.stdout
    assert (tmp_path / "jobs.jsonl").read_text().splitlines()[: len(journal)] == journal
    assert (tmp_path / "table.md").read_text() == table


def test_journal_keys_jobs_by_identity_and_survives_a_cut_short_line(tmp_path, bench, corpus):
    from dataclasses import asdict

    task = next(t for t in corpus.TASKS if t.name == "digits-mlp-sgd")
    plan = bench.Plan(seeds=2, quick=False, methods=["prodigy"])
    grid = plan.grid_jobs(task)
    assert len(grid) == 2 * 2 * len(task.lrs) and len({bench.job_key(j) for j in grid}) == len(grid)
    path = tmp_path / "jobs.jsonl"
    journal = bench.Journal(path)
    journal.add(dict(grid[0], best=0.9), dict(grid[1], error="Traceback ...\nValueError: boom"))
    with path.open("a") as f:
        f.write('{"kind": "grid", "task": ')  # a line a killed run left unfinished
    again = bench.Journal(path)
    assert again.finished(grid[0]) and not again.finished(grid[1]) and again.get(grid[1]) is not None
    assert not again.finished(grid[2])
    again.add(dict(grid[2], best=0.5))
    assert bench.Journal(path).finished(grid[2])
    other = dict(asdict(task), batch=task.batch * 2)  # a changed task is a new job, not an old line
    assert bench.spec_of(other) != bench.spec_of(asdict(task))
    assert plan.peers(task)[0]["method"] == "prodigy" and len(plan.peers(task)) == 2


def test_spearman_agrees_with_scipy_ties_included(bench):
    from scipy.stats import spearmanr

    xs, ys = [0.9, 0.1, 0.5, 0.5, 0.3, 0.7], [1.0, 3.0, 2.0, 0.5, 2.0, 0.1]
    assert bench.spearman(xs, ys) == pytest.approx(spearmanr(xs, ys).statistic, abs=1e-12)
    assert bench.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_edge_with_the_default_constants_is_the_rule(bench):
    from lightning_cyclic.suggest import suggest

    lrs = [10 ** (-7 + 8 * i / 99) for i in range(100)]
    for fall in (0.05, 0.2, 1.0):  # divisors 1.5, between, 3
        losses = [
            2.0 - fall * (1 - math.exp(-max(0.0, math.log10(lr) + 4))) + (0.0 if lr < 0.3 else 5 * (lr - 0.3))
            for lr in lrs
        ]
        curve = {"lrs": lrs, "losses": losses}
        assert bench.edge_lr(curve, bench.default_constants()) == pytest.approx(suggest(lrs, losses, "edge").lr)
    rising = [2.0 + 0.01 * i for i in range(100)]  # never falls: no suggestion
    assert bench.edge_lr({"lrs": lrs, "losses": rising}, bench.default_constants()) is None


def test_torch_lr_finder_suggestion_is_its_plot_suggestion(bench, corpus):
    pytest.importorskip("torch_lr_finder")
    import contextlib
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    from torch_lr_finder import LRFinder

    task = next(t for t in corpus.TASKS if t.name == "digits-mlp-sgd")
    data = corpus.load(task)
    torch.manual_seed(0)
    net = corpus.build_net(task)
    finder = LRFinder(net, corpus.make_optimizer(task, net.parameters(), 1e-7), corpus.criterion(task))
    train = bench.loader(data.x_train, data.y_train, task.batch, shuffle=True)
    val = bench.loader(data.x_val, data.y_val, task.batch, shuffle=False)
    for num_iter, val_loader in ((100, val), (100, None), (16, None)):
        with contextlib.redirect_stdout(io.StringIO()):
            finder.reset()
            finder.range_test(train, val_loader=val_loader, end_lr=10, num_iter=num_iter)
            ours = bench.torch_lr_finder_suggestion(finder.history)
            fig, ax = plt.subplots()
            try:
                theirs = finder.plot(ax=ax, suggest_lr=True)[1]
            except RuntimeError:  # too few points: it cannot suggest
                theirs = None
            plt.close(fig)
        assert ours == theirs, (num_iter, val_loader is not None)
        assert (ours is None) == (len(finder.history["lr"]) < 17)


def test_the_fashion_task_loads_and_builds_from_idx_files(tmp_path, corpus):
    import numpy as np

    from tests.data.test_idx import write_idx

    rng = np.random.default_rng(0)
    for prefix, n in (("train", 300), ("t10k", 50)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", np.arange(n, dtype=np.uint8) % 10)
    task = next(t for t in corpus.TASKS if t.needs == "fashion")
    data = corpus.LOADERS[task.data](root=str(tmp_path), limit_train=200)
    assert data.x_train.shape == (200, 1, 28, 28) and len(data.x_val) == 30 and data.outputs == 10
    net = corpus.MODELS[task.model](data.input_shape, data.outputs, **task.model_kwargs)
    assert net(data.x_val).shape == (30, 10)


def test_cost_inside_the_fit_quick_run_times_the_range_test(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(FOLDER / "cost.py"), "--quick", "--out", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    fits = json.loads((tmp_path / "cost.json").read_text())["fits"]
    assert [f["variant"] for f in fits] == ["fixed", "auto"]
    fixed, auto = fits
    assert fixed["steps"] == auto["steps"] > 0  # the range test's steps are not counted as the fit's
    # the timer around on_fit_start holds the sweep itself, and the sweep is a part of the auto fit
    assert 0 < auto["finder_seconds"] <= auto["hook_seconds"] < auto["seconds"]
    assert auto["finder_steps"] > 10 and auto["lr"] > 0
    table = (tmp_path / "cost.md").read_text()
    assert "| digits-mlp-adamw-long | " in table and "not measured (--quick" in table


def test_spot_checks_quick_run_journals_each_job_and_resumes(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(FOLDER / "spot_checks.py"), "--quick", "--journal", str(tmp_path / "j.jsonl")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "j.jsonl").read_text().splitlines()]
    assert [(r["check"], r["method"]) for r in records] == [
        *[("mnist1d-cnn", m) for m in ("auto", "auto-curve", "constant-0.01", "constant-0.03", "constant-0.1")],
        ("digits-noval", "auto"),
        ("digits-val", "auto"),
    ]
    assert not any("error" in r for r in records)
    by = {(r["check"], r["method"]): r for r in records}
    auto, curve = by["mnist1d-cnn", "auto"], by["mnist1d-cnn", "auto-curve"]
    assert auto["trials"]["lr"] == auto["max_lr"] == auto["chosen_lr"] > 0 and curve["trials"] is None
    assert curve["max_lr"] == curve["curve_lr"] == auto["curve_lr"]  # the same seed: the same range test
    for check in ("digits-noval", "digits-val"):  # stopped once auto has its lr, in a fit planned for 1 epoch
        r = by[check, "auto"]
        assert r["steps"] == 0 and r["planned_steps"] == 45 and r["max_lr"] == r["chosen_lr"] > 0
    assert "| `auto` (range test + short trials, the default) |" in done.stdout
    assert "| digits-val | yes |" in done.stdout
    checks = _module("spot_checks")  # started again on that journal, it would run nothing
    jobs = checks.plan(quick=True)
    assert len(jobs) == 7 and checks.pending(jobs, checks.read_journal(tmp_path / "j.jsonl")) == []
    assert checks.pending(jobs, {}) == jobs


def test_the_trials_rule_the_study_chose_is_what_lr_finder_does():
    """``analyse_trials.py``'s leave-one-task-out choice, read off the journal, is LRFinder's trials as shipped: the
    candidates, their length, the short-horizon correction, the argmin of the loss on 4 validation batches."""
    from lightning_cyclic import LRFinder
    from lightning_cyclic.finder_control import TRIAL_BIAS, TRIAL_LADDER, TRIAL_SHARE

    code = "import json, analyse_trials; print(json.dumps(analyse_trials.analyse()[1]))"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-c", code], cwd=FOLDER, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    chosen = json.loads(done.stdout.strip().splitlines()[-1])
    budget, (low, high), correction, how, signal = chosen["first"]
    assert budget == TRIAL_SHARE and TRIAL_LADDER == tuple(range(low, high + 1))
    assert 2.0**correction == pytest.approx(TRIAL_BIAS) and how == "argmin"
    assert signal == "val4" and LRFinder().config.val_batches == 4
    # the search within the cost cap chose a rule that is not shipped (trials.md: it fails a held-out task)
    assert chosen["capped"] != chosen["first"]


def test_more_seeds_at_the_corpus_seeds_are_the_corpus_studys_numbers(bench, corpus, tmp_path):
    """``seeds.py`` (the corpus at more seeds), read at the corpus study's 3 seeds off the journal, gives ``run.py``'s
    oracles and regrets from its ``results.json``, task by task (accuracy and RMSE) and arm by arm; a grid run that
    failed is left out of its lr's mean, as ``run.py`` leaves it."""
    seeds = _module("seeds")
    results = json.loads((FOLDER / "results.json").read_text())
    oracles = bench.oracles_of(results)
    rows = bench.peer_rows(results, oracles)
    journal = bench.Journal(FOLDER / "jobs.jsonl")
    plan = bench.Plan(3, False, list(seeds.ARMS))
    tasks = corpus.available(corpus.TASKS)
    assert {t.metric for t in tasks} == {"acc", "rmse"} and set(seeds.ARMS) == set(bench.METHODS)
    for task in tasks:
        ours = seeds.task_rows(task, journal, plan, seeds.ARMS, 3)
        assert ours["oracle"] == pytest.approx(oracles[task.name]["oracle"], rel=1e-12), task.name
        assert ours["oracle_lr"] == oracles[task.name]["onecycle"]["best_lr"], task.name
        for arm in seeds.ARMS:
            assert ours["arms"][arm]["regret"] == pytest.approx(rows[task.name][arm]["regret"], abs=1e-9), (task, arm)
    held = [t for t in tasks if t.name in corpus.HELD_OUT]
    text = seeds.report(held, journal, plan, seeds.ARMS)
    assert all(f"| held out, accuracy (7) | {arm} | " in text for arm in seeds.ARMS)
    # the grid runs of seed 0 failed: each lr's mean is its other seeds' (not no oracle at all, nor a mean of three)
    task = next(t for t in tasks if t.name == "digits-mlp-sgd")
    crafted = bench.Journal(tmp_path / "jobs.jsonl")
    for lr in plan.grid(task):
        for seed in range(3):
            record = dict(journal.get(dict(plan.base(task, "grid", seed), lr=lr, schedule="onecycle")))
            crafted.add(dict(record, error="RuntimeError: crafted") if seed == 0 else record)
    row = seeds.task_rows(task, crafted, plan, (), 3)
    grid = [
        [journal.get(dict(plan.base(task, "grid", s), lr=lr, schedule="onecycle")) for s in (1, 2)]
        for lr in plan.grid(task)
    ]
    kept = [statistics.mean(r["best"] for r in runs) for runs in grid]
    assert row["oracle"] == pytest.approx(max(kept)) and row["oracle"] != pytest.approx(oracles[task.name]["oracle"])


@pytest.mark.slow
def test_the_tie_picture_is_the_range_test_of_the_corpus_fit(bench, corpus, tmp_path):
    """``tie.py`` runs the deep plain CNN's range test and trials at seed 3 as its corpus fit does: the same trials,
    losses and peak as that fit's, trained here (the journal's record came from another CPU, whose last digits a
    deep net without normalisation carries far: the picture is this machine's)."""
    done = subprocess.run(
        [sys.executable, str(FOLDER / "tie.py"), "--out", str(tmp_path)],
        capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    shown = json.loads(done.stdout.strip().splitlines()[-1])
    task = corpus.find("digits-plain-cnn8-adamw")
    fitted = bench.fit_peer(task, 3, "auto-trials-guard", task.epochs, str(tmp_path))
    assert shown["trials"]["lrs"] == fitted["trials"]["lrs"] and shown["trials"]["losses"] == fitted["trials"]["losses"]
    assert shown["peak"] == pytest.approx(fitted["max_lr"]) and (tmp_path / "tie.png").stat().st_size > 10_000


def test_the_cliff_study_reads_its_journals(bench, corpus):
    """``cliff.py``'s journal: the probes with the cliff on, both arms trained where it changed the pick (the shipped
    one at the lowest of the five), and the corpus's own seeds where it was made; a probe fired only where the cliff
    cut a lower loss off and its pick differs from the shipped reading's."""
    cliff = _module("cliff")
    journal = bench.Journal(FOLDER / "cliff.jsonl")
    by = {(r["task"], r["seed"], r["method"] or "probe"): r for r in journal.records.values() if "error" not in r}
    probes = [r for r in by.values() if r["kind"] == "probe"]
    # every task of the corpus and the checks at 12 seeds; a curve the edge rule could not read runs no trials
    assert len(probes) == 12 * (len(corpus.TASKS) + len(corpus.CHECKS)) and sum(not r["trials"] for r in probes) == 5
    fired = [r for r in probes if cliff.fired(r)]
    assert len(fired) == 10 and all("cliff" in r["trials"] for r in fired)
    for r in fired:  # both arms trained, the shipped one at the lowest of the five
        shipped = by[(r["task"], r["seed"], "auto-trials-guard")]
        with_cliff = by[(r["task"], r["seed"], "auto-trials-guard-cliff")]
        assert with_cliff["max_lr"] == pytest.approx(r["trials"]["lr"])
        assert shipped["max_lr"] == pytest.approx(cliff.shipped_pick(r["trials"])) != with_cliff["max_lr"]
    # a probe whose cliff came after the lowest cut nothing off: not fired
    calm = dict(fired[0], trials=dict(fired[0]["trials"], lr=cliff.shipped_pick(fired[0]["trials"])))
    assert not cliff.fired(calm) and not cliff.fired(dict(fired[0], trials=None))
    # the corpus's own seeds: every cliff fit beside the shipped fit of its seed, where the picks differ
    own = cliff.in_sample(bench.Journal(FOLDER / "jobs.jsonl"))
    assert len(own) == 8 and {"mnist1d-gru-adamw", "mnist1d-plain-mlp10-sgd"} <= {name for name, _, _ in own}
    gru = next(g for name, seed, g in own if (name, seed) == ("mnist1d-gru-adamw", 8))
    assert gru == pytest.approx(25.1, abs=0.05)  # 71.6 -> 96.7%
    task = corpus.find("diabetes-mlp-sgd")  # an RMSE task: the gain is the shipped fit's RMSE less the cliff's, in %
    assert cliff.gain(task, 50.0, 100.0) == pytest.approx(50.0) and cliff.gain(task, 110.0, 100.0) < 0


def test_the_cliff_report_is_its_journals(bench, corpus):
    """``cliff.md`` is what ``cliff.py`` writes from the journals (every task, Fashion-MNIST's included)."""
    cliff = _module("cliff")
    tasks = corpus.available([*corpus.TASKS, *corpus.CHECKS])
    if len(tasks) < len(corpus.TASKS) + len(corpus.CHECKS):
        pytest.skip("Fashion-MNIST is not on this machine (make data): its rows are in cliff.md")
    journal = bench.Journal(FOLDER / "cliff.jsonl")
    by = {(r["task"], r["seed"], r["method"] or "probe"): r for r in journal.records.values() if "error" not in r}
    text = cliff.report(tasks, by, list(range(20, 32)), bench.Journal(FOLDER / "jobs.jsonl"))
    assert text == (FOLDER / "cliff.md").read_text()
    assert "3 better, 5 worse" in text and "The cliff is off in the package" in text


@pytest.mark.slow
def test_a_cliff_probe_is_the_start_of_its_fit(bench, corpus, tmp_path):
    """A probe (``cliff.py``) runs the range test and the trials as the arm with the cliff runs them in its fit, on
    a seed where the cliff fired; a small MLP's numbers are the journal's on any CPU, to a last digit."""
    cliff = _module("cliff")
    journal = bench.Journal(FOLDER / "cliff.jsonl")
    task, seed = corpus.find("wine-mlp-adamw"), 29
    base = bench.Plan(1, False, []).base(task, "probe", seed)
    recorded = journal.get({**base, "method": None})
    again = _probe_is_fit_start(bench, cliff, task, seed, None, "auto-trials-guard-cliff", tmp_path)
    assert again["trials"]["losses"] == pytest.approx(recorded["trials"]["losses"], rel=1e-4)
    assert again["trials"]["lr"] == pytest.approx(recorded["trials"]["lr"], rel=1e-4)
    assert "cliff" in again["trials"]


def test_the_paired_decision_rule():
    """``paired.py``'s rule, written before its fits: the candidate replaces the shipped arm only where the tasks'
    mean gain is positive, more tasks gain than lose, and no task loses more than a point."""
    paired = _module("paired")
    assert paired.decide({"a": 0.5, "b": 0.2, "c": -0.3})[0]
    assert not paired.decide({"a": 0.5, "b": 0.2, "c": -1.2})[0]  # one task loses more than a point
    assert not paired.decide({"a": 2.0, "b": -0.1, "c": -0.1})[0]  # more tasks lose than gain
    assert not paired.decide({"a": 0.1, "b": 0.1, "c": -0.9})[0]  # the mean is below 0
    assert not paired.decide({})[0] and "(no)" in paired.decide({"a": -2.0})[1]


def test_the_trials_above_study_reads_its_journal(bench, corpus):
    """``above.py``: its probes (the rule on) at the new seeds, both arms trained wherever it took a trial above,
    the shipped arm at the pick of the first seven; and the rule written before the probes: a positive mean gain
    and more seeds better than worse on the new seeds."""
    above = _module("above")
    cliff = _module("cliff")
    journal = bench.Journal(FOLDER / "above.jsonl")
    by = {(r["task"], r["seed"], r["method"] or "probe"): r for r in journal.records.values() if "error" not in r}
    probes = [r for r in by.values() if r["kind"] == "probe"]
    tasks = [*corpus.TASKS, *corpus.CHECKS]
    assert sum(r["seed"] in above.NEW for r in probes) == 12 * len(tasks)
    taken = [r for r in probes if above.above_taken(r)]
    assert {r["task"] for r in taken} == {"mnist1d-gru-adamw"} and len(taken) == 7
    for r in taken:  # the shipped arm at the first seven's pick, the rule's at the trial above
        trials = r["trials"]
        shipped = cliff.shipped_pick({**trials, "lrs": trials["lrs"][:7], "losses": trials["losses"][:7]})
        assert by[(r["task"], r["seed"], "auto-trials-guard")]["max_lr"] == pytest.approx(shipped)
        assert by[(r["task"], r["seed"], "auto-trials-guard-above")]["max_lr"] == pytest.approx(trials["lr"])
        assert trials["lr"] >= 2 * shipped * (1 - 1e-9) and trials["told"] is True  # (above x 2^2: x 2^3 at least)
    assert not above.decide([49.7, 0.5, -2.2, -0.3])[0] and above.decide([1.0, 0.5, -1.0])[0]
    assert not above.decide([])[0] and not above.decide([3.0, -1.0, -1.0])[0]
    tasks = corpus.available(tasks)
    if len(tasks) == len(corpus.TASKS) + len(corpus.CHECKS):  # (its report has Fashion-MNIST's rows)
        seen = sorted({r["seed"] for r in probes if r["seed"] in above.SEEN})
        assert above.report(tasks, by, seen) == (FOLDER / "above.md").read_text()


def test_the_second_look_reads_magnitudes():
    """``above_again.py``'s rule, written before its probes: the mean gain less its standard error above 0 and no
    seed below -5 points (``above.py``'s counted seeds, and kept a +49.7 and a -2.2 level)."""
    again = _module("above_again")
    assert again.decide([49.7, 0.5, -2.2, -0.3])[0] is False  # mean 11.9, se 12.6: not clear of 0
    assert again.decide([30.0, 40.0, -2.0, 35.0])[0] and not again.decide([30.0, 40.0, -6.0, 35.0])[0]
    assert not again.decide([10.0])[0] and "too few" in again.decide([])[1]


def test_the_second_look_is_its_journal(bench, corpus):
    """``above-again.md`` is what ``above_again.py`` writes from its journal; the trials above fired on the GRU's
    seeds alone, and both arms trained there."""
    again = _module("above_again")
    above = _module("above")
    journal = bench.Journal(FOLDER / "above-again.jsonl")
    by = {(r["task"], r["seed"], r["method"] or "probe"): r for r in journal.records.values() if "error" not in r}
    taken = [r for r in by.values() if r["kind"] == "probe" and above.above_taken(r)]
    assert {r["task"] for r in taken} == {"mnist1d-gru-adamw"} and len(taken) == 4
    assert all((r["task"], r["seed"], arm) in by for r in taken for arm in above.ARMS)
    tasks = corpus.available([*corpus.TASKS, *corpus.CHECKS])
    if len(tasks) == len(corpus.TASKS) + len(corpus.CHECKS):  # (its report has Fashion-MNIST's rows)
        assert again.report(tasks, by) == (FOLDER / "above-again.md").read_text()


def test_the_sweeps_lowest_rule_reads_magnitudes():
    """``lowest.py``'s rule, written before its probes: at least two changed picks on the new seeds, the mean gain
    less its standard error above 0, and no seed below -5."""
    lowest = _module("lowest")
    assert lowest.decide([80.0, 75.0])[0] and lowest.decide([3.0, 4.0, -1.0])[0]
    assert not lowest.decide([80.0, 75.0, -6.0])[0]  # one seed loses more than 5
    assert not lowest.decide([10.0, -4.0])[0]  # mean 3, standard error 7: not clear of 0
    assert not lowest.decide([80.0])[0] and "too few" in lowest.decide([])[1]


@pytest.mark.slow
def test_a_probe_at_the_sweeps_lowest_is_the_start_of_its_fit(bench, corpus, tmp_path):
    """A probe (``lowest.py``: the range test and the trials, the rule on) runs them as the arm with the rule runs
    them in its fit, on the plain 8-layer CNN's seed 29 (where, on the CPU the journal was made on, the ladder
    learnt no more than the sweep and a trial at the sweep's lowest was taken)."""
    lowest, cliff = _module("lowest"), _module("cliff")
    task = corpus.find("digits-plain-cnn8-adamw")
    again = _probe_is_fit_start(bench, cliff, task, 29, lowest.SETTINGS, lowest.ARMS[0], tmp_path)
    assert len(again["trials"]["lrs"]) in (5, 7)


def test_the_sweeps_lowest_study_reads_its_journal(bench, corpus):
    """``lowest.py``: its probes (the rule on) at every new seed of both rounds and at the corpus's seeds, both arms
    trained wherever it took a trial (the arm as shipped before at the five's pick, the rule's at its trial), and
    ``lowest.md`` is what it writes from the journal."""
    lowest = _module("lowest")
    journal = bench.Journal(FOLDER / "lowest.jsonl")
    by = {(r["task"], r["seed"], r["method"] or "probe"): r for r in journal.records.values() if "error" not in r}
    probes = [r for r in by.values() if r["kind"] == "probe"]
    tasks = [*corpus.TASKS, *corpus.CHECKS]
    for seeds in (lowest.NEW, lowest.MORE, lowest.SEEN, lowest.CORPUS):
        assert sum(r["seed"] in seeds for r in probes) == len(seeds) * len(tasks)
    ran = [r for r in probes if lowest.ran(r)]
    assert {r["task"] for r in ran} == {"digits-plain-cnn8-adamw", "digits-plain-cnn12-sgd"}
    for r in [r for r in ran if lowest.taken(r) and r["seed"] not in lowest.CORPUS]:
        trials = r["trials"]
        assert len(trials["lrs"]) == 7 and trials["lr"] <= min(trials["lrs"][2:]) / 2  # (below the ladder)
        assert by[(r["task"], r["seed"], lowest.ARMS[1])]["max_lr"] == pytest.approx(lowest.shipped(trials))
        assert by[(r["task"], r["seed"], lowest.ARMS[0])]["max_lr"] == pytest.approx(trials["lr"])
    assert sum(lowest.taken(r) for r in probes if r["seed"] in lowest.NEW + lowest.MORE) == 3
    tasks = corpus.available(tasks)
    if len(tasks) == len(corpus.TASKS) + len(corpus.CHECKS):  # (its report has Fashion-MNIST's rows)
        text = lowest.report(tasks, by)
        assert text == (FOLDER / "lowest.md").read_text() and "(yes)): worth switching on.**" in text


def test_the_longer_trials_study_reads_its_journal(bench, corpus):
    """``longer.py``: its probes (the rule on) at every new seed, at ``paired.py``'s and at the corpus's, both arms
    trained wherever it changed the pick (the arm without it at the seven's pick, the rule's at its longer trial),
    the changed picks counted apart from the trials taken at the lr the seven had drawn, and ``longer.md`` is what
    it writes from the journal."""
    longer, cliff = _module("longer"), _module("cliff")
    journal = bench.Journal(FOLDER / "longer.jsonl")
    by = cliff.records_by(journal)
    probes = [r for r in by.values() if r["kind"] == "probe"]
    tasks = [*corpus.TASKS, *corpus.CHECKS]
    for seeds in (longer.NEW, longer.PAIRED, cliff.CORPUS):
        assert sum(r["seed"] in seeds for r in probes) == len(seeds) * len(tasks)
    ran = [r for r in probes if longer.ran(r)]
    assert {r["task"] for r in ran} <= {"mnist1d-gru-adamw", "digits-plain-cnn12-sgd", "digits-plain-cnn8-adamw"}
    for r in ran:
        trials = r["trials"]
        edge = trials["lrs"][4]  # (the seven: x 2^-6, 2^-4, then the five)
        assert len(trials["lrs"]) == 7 and trials["told"] is False
        assert trials["long"]["lrs"] == pytest.approx([edge / 64, edge * 4])
        assert trials["long"]["steps"] == 4 * trials["steps"]
        if longer.changed(r) and r["seed"] not in cliff.CORPUS:
            assert by[(r["task"], r["seed"], longer.ARMS[1])]["max_lr"] == pytest.approx(cliff.shipped_pick(trials))
            assert by[(r["task"], r["seed"], longer.ARMS[0])]["max_lr"] == pytest.approx(trials["lr"])
    taken = [r for r in probes if longer.taken(r) and r["seed"] in longer.NEW]
    assert len(taken) == 8 and sum(longer.changed(r) for r in taken) == 6
    tasks = corpus.available(tasks)
    if len(tasks) == len(corpus.TASKS) + len(corpus.CHECKS):  # (its report has Fashion-MNIST's rows)
        text = longer.report(tasks, by)
        assert text == (FOLDER / "longer.md").read_text() and "(yes)): worth switching on.**" in text
        # the package as it is now and Prodigy, every corpus task at every new seed: a table for each group
        assert "`--held-out`" in text and "`--earlier`" in text
    for task in [t for t in corpus.TASKS if t.needs is None]:
        for arm in longer.HELD_OUT_ARMS:
            assert all((task.name, s, arm) in by for s in longer.NEW), (task.name, arm)


def test_the_package_runs_the_bold_longer_trial_only_where_the_cautious_one_stayed_and_picks_the_same():
    """The package runs the longer trials the most cautious first and stops at one that leaves the plateau; as
    measured, both ran and the lower was taken. On every probe of ``longer.py``'s journal where they ran, the
    package's way picks what the journal's did (at most one of the two left the plateau)."""
    from lightning_cyclic.finder_control import choose_long, left_plateau

    longer, cliff, bench = _module("longer"), _module("cliff"), _module("run")
    probes = [r for r in cliff.records_by(bench.Journal(FOLDER / "longer.jsonl")).values() if longer.ran(r)]
    assert len(probes) >= 20
    for r in probes:
        trials, long = r["trials"], r["trials"]["long"]
        seven = {**{k: v for k, v in trials.items() if k != "long"}, "lr": cliff.shipped_pick(trials)}
        losses = [math.inf if x is None else x for x in long["losses"]]
        assert sum(left_plateau(seven, x) for x in losses) <= 1
        run = 1 if left_plateau(seven, losses[0]) else 2  # (the package's: the bold one only where needed)
        chosen = choose_long(seven, long["lrs"][:run], losses[:run], long["steps"], math.nan, (-6, 2)[:run])
        assert chosen["lr"] == pytest.approx(trials["lr"]) and chosen["long"]["taken"] == long["taken"]


@pytest.mark.slow
def test_a_probe_with_longer_trials_is_the_start_of_its_fit(bench, corpus, tmp_path):
    """A probe (``longer.py``: the range test and the trials, the rule on) runs them as the arm with the rule runs
    them in its fit: on the GRU's seed 94 the seven sat at chance, the cautious end's longer trial stayed there,
    the bold end's left it, and the fit trains at it (the journal's numbers, to a last digit)."""
    longer, cliff = _module("longer"), _module("cliff")
    journal = bench.Journal(FOLDER / "longer.jsonl")
    task, seed = corpus.find("mnist1d-gru-adamw"), 94
    recorded = journal.get({**bench.Plan(1, False, []).base(task, "probe", seed), "method": None})
    again = _probe_is_fit_start(bench, cliff, task, seed, longer.SETTINGS, longer.ARMS[0], tmp_path)
    assert again["trials"]["long"]["losses"] == pytest.approx(recorded["trials"]["long"]["losses"], rel=1e-3)
    assert again["trials"]["lr"] == pytest.approx(recorded["trials"]["lr"], rel=1e-3)
    assert longer.changed(again) and again["trials"]["lr"] == pytest.approx(again["trials"]["lrs"][4] * 4)
