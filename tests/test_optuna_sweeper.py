"""The app's Optuna sweeper (Optuna >= 4, ask/tell) from the command line: pruning, failures, joblib, DDP, and one
study shared by two worker processes through a journal file. Real ``train.py -m`` processes, real Optuna."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

optuna = pytest.importorskip("optuna")

QUICK = ["trainer.max_epochs=3", "trainer.limit_train_batches=6", "progress_bar=none", "logger=none"]
# a pruner that prunes every trial at its first validation (val/acc is never above 1.5)
ALWAYS_PRUNE = [
    "hydra.sweeper.pruner=threshold",
    "+hydra.sweeper.pruner_args.lower=1.5",
    "hydra.sweeper.pruner_warmup=1",
]


def sweep(*args: str, timeout: int = 420, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "train.py", "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check:
        assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-4000:])
    return done


def trials_of(storage: str, name: str = "onecycle") -> list:
    return optuna.load_study(study_name=name, storage=storage).get_trials()


def board(folder) -> dict[str, dict[str, str]]:
    return {row["job"]: row for row in csv.DictReader(open(folder / "leaderboard.csv"))}


def test_params_grammar_becomes_optuna_distributions():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from hydra_plugins.lightning_cyclic_plugins.optuna_sweeper import _as_override, grid_of, search_space

    space, fixed = search_space(
        [
            "a=interval(0.1, 0.5)",
            "b=tag(log, interval(1e-4, 1.0))",
            "c=int(interval(1, 8))",  # Hydra's interval is of floats; int(...) makes it of integers
            "d=choice(onecycle, cyclical)",
            "e=1,2,3",
            "f=range(1, 5)",
            "g=range(0.1, 0.35, 0.1)",
            "h=shuffle(range(3))",
            _as_override("i", [16, 32]),
            "trainer.max_epochs=2",
            "+x.y=z",
            "b=0.5",  # a later plain value of a searched key fixes it
        ]
    )
    assert space["a"] == FloatDistribution(0.1, 0.5)
    assert space["c"] == IntDistribution(1, 8)
    assert space["d"] == CategoricalDistribution(["onecycle", "cyclical"])
    assert space["e"] == CategoricalDistribution([1, 2, 3])
    assert space["f"] == IntDistribution(1, 4)  # range's stop is left out, as in Hydra's basic sweeper
    assert space["g"].step == pytest.approx(0.1) and space["g"].high == pytest.approx(0.3)
    assert sorted(space["h"].choices) == [0, 1, 2]
    assert space["i"] == CategoricalDistribution([16, 32])
    assert "b" not in space and fixed == ["trainer.max_epochs=2", "+x.y=z", "b=0.5"]
    log_space, _ = search_space(["b=tag(log, interval(1e-4, 1.0))"])
    assert log_space["b"] == FloatDistribution(1e-4, 1.0, log=True)
    assert grid_of({"f": space["f"], "d": space["d"]}) == {"f": [1, 2, 3, 4], "d": ["onecycle", "cyclical"]}
    with pytest.raises(ValueError, match="a is a continuous interval"):
        grid_of({"a": space["a"]})


def test_a_pruned_trial_is_recorded_pruned_with_its_step_and_listed_as_pruned(tmp_path):
    folder = tmp_path / "sweep"
    done = sweep(
        "hparams_search=optuna", "hydra.sweeper.n_trials=2", *ALWAYS_PRUNE, *QUICK, f"hydra.sweep.dir={folder}"
    )
    trials = trials_of(f"sqlite:///{folder}/optuna.db")
    assert [t.state.name for t in trials] == ["PRUNED", "PRUNED"]
    for t in trials:
        assert list(t.intermediate_values) == [1]  # reported at the first validation, then stopped
        assert t.user_attrs["pruned_at"]["validation"] == 1 and t.user_attrs["pruned_at"]["step"] == 6
        assert t.value == pytest.approx(t.intermediate_values[1])  # Optuna's: the last value reported
    rows = board(folder)
    assert {job: row["status"] for job, row in rows.items()} == {"0": "pruned", "1": "pruned"}
    assert "pruned (threshold) at validation 1 of 3 (step 6, epoch 0)" in rows["0"]["reason"]
    assert "6 optimizer steps, 1 epoch" in done.stdout  # the fit stopped after its first of 3 epochs
    assert "(pruned)" in done.stdout


def test_default_median_pruner_waits_past_the_one_cycle_peak_and_reports_every_validation(tmp_path):
    folder = tmp_path / "sweep"
    sweep("hparams_search=optuna", "hydra.sweeper.n_trials=2", *QUICK, f"hydra.sweep.dir={folder}")
    for t in trials_of(f"sqlite:///{folder}/optuna.db"):
        assert t.state.name == "COMPLETE" and list(t.intermediate_values) == [1, 2, 3]
        assert t.value == pytest.approx(max(t.intermediate_values.values()), abs=1e-6)  # BestSnapshot's best epoch
        # the share of the run before one-cycle's peak (pct_start), in validations, plus one
        assert 1 <= t.user_attrs["pruning_warmup"] <= math.ceil(t.params["schedule.pct_start"] * 3) + 1


def test_a_failed_trial_is_recorded_fail_and_the_sweep_goes_on_within_max_failure_rate(tmp_path):
    folder = tmp_path / "sweep"
    sweep(
        "hparams_search=optuna",
        "hydra/sweeper/sampler=grid",
        "schedule.max_lr=choice(-1.0, 0.1)",
        "schedule.pct_start=0.3",  # plain values: out of the search space (a grid has no intervals)
        "optimizer.weight_decay=5e-4",
        "hydra.sweeper.n_trials=5",  # capped at the grid's 2 points
        "hydra.sweeper.max_failure_rate=1.0",
        *QUICK,
        f"hydra.sweep.dir={folder}",
    )
    trials = trials_of(f"sqlite:///{folder}/optuna.db")
    states = {t.params["schedule.max_lr"]: t.state.name for t in trials}
    assert states == {-1.0: "FAIL", 0.1: "COMPLETE"}
    rows = board(folder)
    failed = next(row for row in rows.values() if row["status"] == "failed")
    assert "schedule.max_lr=-1.0" in failed["overrides"] and "max_lr" in failed["reason"]
    assert sum(row["status"] == "finished" for row in rows.values()) == 1


def test_a_failed_trial_ends_the_sweep_with_the_default_max_failure_rate(tmp_path):
    folder = tmp_path / "sweep"
    done = sweep(
        "hparams_search=optuna",
        "schedule.max_lr=choice(-1.0)",
        "hydra.sweeper.n_trials=3",
        *QUICK,
        f"hydra.sweep.dir={folder}",
        check=False,
    )
    assert done.returncode != 0
    assert [t.state.name for t in trials_of(f"sqlite:///{folder}/optuna.db")] == ["FAIL"]  # no second trial
    assert board(folder)["0"]["status"] == "failed"


@pytest.mark.slow  # (CI time: the submitit twin below checks the same pruning in the fast set)
@pytest.mark.parametrize(
    "launcher",
    [
        # two worker processes of joblib, asked by one sweeper for two trials at once
        ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2"],
        # the cluster path: each trial in a process of submitit's own (submitit_local, as SLURM would run it)
        ["hydra/launcher=local"],
    ],
    ids=["joblib", "submitit"],
)
def test_jobs_in_other_processes_report_to_their_trials_and_are_pruned(tmp_path, launcher):
    """Each job opens the study from storage by its trial's number, reports and is pruned."""
    folder = tmp_path / "sweep"
    sweep("hparams_search=optuna", *launcher, "hydra.sweeper.n_trials=2", *ALWAYS_PRUNE, *QUICK,
          f"hydra.sweep.dir={folder}")  # fmt: skip
    trials = trials_of(f"sqlite:///{folder}/optuna.db")
    assert [t.state.name for t in trials] == ["PRUNED", "PRUNED"]
    assert all(t.user_attrs.get("pruned_at") for t in trials)
    assert len({t.user_attrs["sweeper_pid"] for t in trials}) == 1  # one sweeper asked for both
    assert set(board(folder)) == {"0", "1"} and {r["status"] for r in board(folder).values()} == {"pruned"}
    if launcher == ["hydra/launcher=local"]:
        assert any((folder / ".submitit").iterdir())  # the jobs went through submitit


def test_a_ddp_trial_is_pruned_on_every_rank(tmp_path):
    folder = tmp_path / "sweep"
    done = sweep(
        "hparams_search=optuna",
        "trainer=ddp_cpu",
        "hydra.sweeper.n_trials=1",
        *ALWAYS_PRUNE,
        *QUICK,
        f"hydra.sweep.dir={folder}",
        timeout=240,  # a rank that did not stop would wait for the other at the next collective
    )
    [trial] = trials_of(f"sqlite:///{folder}/optuna.db")
    assert trial.state.name == "PRUNED" and list(trial.intermediate_values) == [1]
    assert (folder / "0" / "train_ddp_process_1.log").exists()  # it did run on two processes
    assert "1 epoch" in done.stdout


@pytest.mark.slow  # about 20 s; the fast set runs the DDP trial and the submitit jobs apart
def test_a_ddp_trial_under_submitit_is_pruned_on_every_rank(tmp_path):
    """The cluster path with DDP: submitit's two tasks are the trial's two ranks (as on SLURM); the trial is
    reported to and pruned, and both ranks stop (a rank that went on would wait for the other, past the timeout)."""
    folder = tmp_path / "sweep"
    sweep("hparams_search=optuna", "hydra/launcher=local", "trainer=ddp_cpu", "hydra.sweeper.n_trials=1",
          *ALWAYS_PRUNE, *QUICK, f"hydra.sweep.dir={folder}", timeout=240)  # fmt: skip
    [trial] = trials_of(f"sqlite:///{folder}/optuna.db")
    assert trial.state.name == "PRUNED" and list(trial.intermediate_values) == [1]  # pruned at its first validation
    logs = sorted((folder / ".submitit").glob("*/*_log.err"))
    assert len(logs) == 2 and all("MEMBER" in log.read_text() for log in logs)  # the two tasks were the ranks
    assert board(folder)["0"]["status"] == "pruned"


def test_two_worker_processes_share_one_study_through_a_journal_file(tmp_path):
    folder, journal = tmp_path / "sweep", tmp_path / "shared" / "study.log"
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "train.py", "-m", "hparams_search=optuna", "hydra.sweeper.n_trials=3", *QUICK]
    command += [f"hydra.sweeper.journal={journal}", f"hydra.sweep.dir={folder}"]
    workers = [  # (two workers with one sampler seed would propose the same first trials)
        subprocess.Popen(
            [*command, f"hydra.sweeper.sampler.seed={seed}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (0, 1)
    ]
    outputs = [w.communicate(timeout=600) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [o[1][-3000:] for o in outputs]
    assert not (folder / "optuna.db").exists()  # the journal replaced the default SQLite storage
    from lightning_cyclic.callbacks.pruning import open_storage

    trials = optuna.load_study(study_name="onecycle", storage=open_storage(f"journal:///{journal}")).get_trials()
    assert sorted(t.number for t in trials) == list(range(6))  # no trial lost
    assert {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}  # (the median rule is on, on the shared study)
    pids = [t.user_attrs["sweeper_pid"] for t in trials]
    assert sorted(pids.count(pid) for pid in set(pids)) == [3, 3]  # each worker ran its own 3
    rows = board(folder)
    assert set(rows) == {str(t.number) for t in trials}  # one folder per trial, none run twice
    for t in trials:  # each folder holds its trial's run
        result = json.loads((folder / str(t.number) / "result.json").read_text())
        assert f"schedule.max_lr={t.params['schedule.max_lr']}" in result["overrides"]
        assert result["status"] == {"COMPLETE": "finished", "PRUNED": "pruned"}[t.state.name]
        if t.state.name == "COMPLETE":
            assert result["value"] == pytest.approx(t.value)
    assert f"optuna-dashboard {journal}" in outputs[0][0] + outputs[1][0]


def test_a_trial_is_never_pruned_at_its_last_validation(tmp_path):
    """A run that has spent its whole budget keeps its result: at the last validation nothing is pruned."""
    folder = tmp_path / "sweep"
    quick = [a for a in QUICK if not a.startswith("trainer.max_epochs")]
    sweep("hparams_search=optuna", "hydra.sweeper.n_trials=1", "trainer.max_epochs=1", *ALWAYS_PRUNE, *quick,
          f"hydra.sweep.dir={folder}")  # fmt: skip
    trials = trials_of(f"sqlite:///{folder}/optuna.db")
    assert [t.state.name for t in trials] == ["COMPLETE"] and len(trials[0].intermediate_values) == 1


@pytest.mark.slow  # two trials at once under submitit, one killed: about 40 s
def test_a_trial_stopped_by_sigterm_under_submitit_is_failed_the_others_recorded_and_the_sweep_exits_143(tmp_path):
    """A preempted trial of a cluster sweep: the trial that ran on is recorded COMPLETE (it was left RUNNING, then
    failed at the next start, its value lost), the stopped one FAIL, the results written; the sweep exits with 143."""
    import signal
    import time

    from tests.test_faults import _tasks_of, wait_for

    folder = tmp_path / "sweep"
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "train.py", "-m", "hparams_search=optuna", "hydra/launcher=local",
         "hydra/sweeper/sampler=grid",
         "trainer.max_steps=choice(30, 20000)", "schedule.max_lr=0.1", "schedule.pct_start=0.3",
         "optimizer.weight_decay=5e-4", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2", "trainer.max_epochs=300",
         "progress_bar=none", "logger=none", f"hydra.sweep.dir={folder}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while not (len(_tasks_of(folder)) == 1 and len(list(folder.glob("*/checkpoints/last.ckpt"))) == 2):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)  # the 30-step trial has ended, the other is past an epoch
    wait_for(folder / "optuna.db", proc)
    os.kill(_tasks_of(folder)[0], signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-3000:]
    assert "was stopped: SIGTERM received at step" in stdout + stderr and "Traceback" not in stderr
    states = {t.params["trainer.max_steps"]: t.state.name for t in trials_of(f"sqlite:///{folder}/optuna.db")}
    assert states == {30: "COMPLETE", 20000: "FAIL"}, (stdout[-3000:], stderr[-3000:])
    assert (folder / "optimization_results.yaml").is_file()
    assert sorted(row["status"] for row in board(folder).values()) == ["finished", "terminated"]
