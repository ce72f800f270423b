"""Faults, on real ``python train.py`` processes: a SIGTERM from a cluster scheduler, a resume from
``last.ckpt`` (always the latest state), a sweep with a failing job (in ``test_sweeps.py``)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import ROOT

FAST = ["logger=none", "progress_bar=none", "callbacks.initial_loss_check=null"]
# the environment of every train.py process these tests start: warnings off, one thread
ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


def _default_sigint() -> None:
    # As from a terminal: a run started in the background of a non-interactive shell (`make test &`, nohup, some CI
    # runners) inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler at all
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(out, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "train.py", f"hydra.run.dir={out}", *FAST, *args],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )


def run(out, *args: str) -> subprocess.CompletedProcess:
    """``train.py`` with ``args`` to the end, in ``out``."""
    return subprocess.run(
        [sys.executable, "train.py", f"hydra.run.dir={out}", *FAST, *args],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def wait_for(path, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_sigterm_saves_the_latest_state_reports_and_exits_143_then_resumes(tmp_path):
    out = tmp_path / "run"
    last = out / "checkpoints" / "last.ckpt"
    proc = start(out, "trainer.max_epochs=300")
    wait_for(last, proc)  # at least one epoch done
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, (stdout[-2000:], stderr[-2000:])
    assert "[lightning_cyclic] TERMINATED" in stdout and "SIGTERM received at step" in stdout
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "terminated" and "resume with ckpt_path=" in result["reason"]
    state = torch.load(last, map_location="cpu", weights_only=True)
    stopped_at = int(result["reason"].split("step ")[1].split()[0])
    assert state["global_step"] == stopped_at  # the state at the signal, not an epoch-end or best one

    resumed = subprocess.run(
        [sys.executable, "train.py", f"hydra.run.dir={tmp_path / 'resumed'}", *FAST, "trainer.max_epochs=300",
         f"ckpt_path={last}", "trainer.max_steps=" + str(stopped_at + 5)],
        cwd=ROOT, env={**os.environ, "PYTHONWARNINGS": "ignore"}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"{stopped_at + 5} optimizer steps" in resumed.stdout  # continued from the signal's step


def test_last_ckpt_is_the_latest_epoch_even_when_the_metric_stopped_improving(tmp_path):
    # lr ~0 after the first epoch's peak: val/acc cannot improve past epoch 0, so the best stays there
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "train.py", f"hydra.run.dir={out}", *FAST, "trainer.max_epochs=4",
         "schedule=warmup_decay", "schedule.warmup=0", "schedule.decay=step", "schedule.step_size=1",
         "schedule.gamma=1e-9", "schedule.interval=epoch"],
        cwd=ROOT, env={**os.environ, "PYTHONWARNINGS": "ignore"}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    last = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    best = [p for p in (out / "checkpoints").glob("epoch*.ckpt")]
    assert len(best) == 1 and best[0].name == "epoch000.ckpt"  # the best is from the first epoch
    assert last["epoch"] == 3 and last["global_step"] == 4 * 23  # last.ckpt: the end of the run


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 1)])
def test_ctrl_c_also_writes_the_latest_state(tmp_path, signum, code):
    out = tmp_path / "run"
    last = out / "checkpoints" / "last.ckpt"
    proc = start(out, "trainer.max_epochs=300")
    wait_for(last, proc)
    before = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    time.sleep(0.5)
    proc.send_signal(signum)
    proc.communicate(timeout=120)
    assert proc.returncode == code
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] > before


@pytest.mark.slow  # (CI time: four train.py processes at once, 26 s; `make test-all` runs it)
def test_runs_and_sweeps_started_together_get_their_own_folders(tmp_path):
    """Four processes at once, from a folder of their own (the default outputs/ and multirun/ paths)."""
    quick = [*FAST, "trainer.max_epochs=1", "trainer.limit_train_batches=3", "callbacks.last_checkpoint=null"]
    commands = [[], [], ["-m", "seed=0,1"], ["-m", "seed=0,1"]]
    procs = [
        subprocess.Popen(
            [sys.executable, str(ROOT / "train.py"), *extra, *quick],
            cwd=tmp_path,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for extra in commands
    ]
    for proc in procs:
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-3000:]
    runs = sorted(p.parent for p in (tmp_path / "outputs").rglob("result.json"))
    sweeps = sorted(p.parent for p in (tmp_path / "multirun").rglob("leaderboard.csv"))
    assert len(runs) == 2 and len(set(runs)) == 2
    assert len(sweeps) == 2 and all(len(list(s.glob("*/result.json"))) == 2 for s in sweeps)


def test_ckpt_path_last_resumes_the_latest_run_of_the_same_config(tmp_path):
    def app(*args):
        return subprocess.run(
            [sys.executable, str(ROOT / "train.py"), *FAST, *args],
            cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    first = app("trainer.max_epochs=1")
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = app("trainer.max_epochs=2", "ckpt_path=last")  # a longer run of the same config
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "46 optimizer steps, 2 epochs" in resumed.stdout  # 23 of them from the first run's last.ckpt
    other = app("seed=5", "ckpt_path=last")  # another config: nothing to resume, and it says where it looked
    assert other.returncode == 2
    assert "ckpt_path=last: no earlier run with these overrides (" in other.stderr and "seed=5" in other.stderr
    assert "Traceback" not in other.stderr


def test_sigkill_leaves_a_whole_last_ckpt_that_resumes(tmp_path):
    # with max_lr=auto: the range test and its short trials run at the start, and the resumed run goes on at the lr
    # the checkpoint holds, with no range test of its own
    from lightning_cyclic.checkpoint import SafeCheckpointIO

    out = tmp_path / "run"
    last = out / "checkpoints" / "last.ckpt"
    proc = start(out, "trainer.max_epochs=40", "schedule.max_lr=auto")
    wait_for(last, proc)
    time.sleep(1.5)  # a few more epoch-end saves: the kill may land in one
    proc.kill()
    _, stderr = proc.communicate(timeout=60)
    assert "LRFinder: short trials:" in stderr, stderr[-3000:]  # the first run ran the test and its trials
    state = SafeCheckpointIO().load_checkpoint(last, weights_only=True)  # whole, and its checksum agrees
    assert state["global_step"] > 0 and state["global_step"] % 23 == 0  # an epoch end: 23 steps an epoch
    SafeCheckpointIO().save_checkpoint(state, last)  # a temp file the kill left (if any) goes at the next save
    assert not [p for p in last.parent.iterdir() if p.name.endswith(".tmp")]
    found = next(v["resolved"] for k, v in state["callbacks"].items() if k.startswith("OneCycle"))["max_lr"]
    resumed = run(tmp_path / "resumed", "trainer.max_epochs=40", "schedule.max_lr=auto", f"ckpt_path={last}",
                  f"trainer.max_steps={state['global_step'] + 5}")  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"{state['global_step'] + 5} optimizer steps" in resumed.stdout
    assert "LRFinder:" not in resumed.stderr + resumed.stdout  # no new range test
    assert f"schedule: OneCycle, max_lr={found:.4g} (found by the LR range test and its short trials)" in resumed.stdout


def test_a_nan_at_a_fixed_step_is_rolled_back_by_the_guard_and_the_run_goes_on(tmp_path):
    out = tmp_path / "run"
    done = run(out, "trainer.max_epochs=5", "+callbacks.poison._target_=tests.helpers.PoisonAt",
               "+callbacks.poison.step=50")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "guard: 1 rollback(s) (at step 50), lr scaled by 0.5 since" in done.stdout
    assert "stopped early" not in done.stdout and "5 epochs" in done.stdout
    assert json.loads((out / "result.json").read_text())["value"] > 0.8


def test_without_the_guard_a_nan_at_a_fixed_step_stops_cleanly_with_the_best_weights(tmp_path):
    out = tmp_path / "run"
    done = run(out, "trainer.max_epochs=5", "+callbacks.poison._target_=tests.helpers.PoisonAt",
               "+callbacks.poison.step=50", "~callbacks.guard")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "stopped early: the training loss is nan after 51 optimizer steps" in done.stdout
    assert "best weights restored: epoch 1" in done.stdout  # the last evaluated epoch before the fault (step 50)
    result = json.loads((out / "result.json").read_text())
    assert result["value"] > 0.5  # the restored weights, not the poisoned ones


def test_nan_weights_never_become_last_ckpt_and_the_summary_names_the_one_that_resumes(tmp_path):
    from lightning_cyclic.checkpoint import SafeCheckpointIO

    out = tmp_path / "run"
    # nothing stops the run: no guard, no NaN check; the weights are NaN from step 50 (epoch 2) on
    unguarded = ("~callbacks.guard", "callbacks.best_snapshot.check_finite=false")
    done = run(out, "trainer.max_epochs=4", "+callbacks.poison._target_=tests.helpers.PoisonAt",
               "+callbacks.poison.step=50", *unguarded)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    last = out / "checkpoints" / "last.ckpt"
    state = SafeCheckpointIO().load_checkpoint(last, weights_only=True)
    assert state["epoch"] == 1 and all(bool(torch.isfinite(v).all()) for v in state["state_dict"].values())
    assert "last.ckpt (resume with ckpt_path=...; later saves were not written: the weights hold NaN/inf" in done.stdout


def test_a_crash_inside_a_checkpoint_save_keeps_the_previous_one_whole(tmp_path):
    from lightning_cyclic.checkpoint import SafeCheckpointIO

    out = tmp_path / "run"
    done = run(out, "trainer.max_epochs=6", "+callbacks.crash._target_=tests.helpers.FailSaveAt",
               "+callbacks.crash.epoch=3")  # fmt: skip
    assert done.returncode != 0 and "No space left on device" in done.stderr, done.stderr[-3000:]
    last = out / "checkpoints" / "last.ckpt"
    state = SafeCheckpointIO().load_checkpoint(last, weights_only=True)  # whole, and its digest agrees
    assert state["epoch"] == 2  # the last save that finished (epochs 0, 1, 2)
    assert not [p.name for p in last.parent.iterdir() if p.name.endswith(".tmp")]
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "failed" and "No space left on device" in result["reason"]


def test_a_nan_on_one_ddp_rank_stops_every_rank_naming_that_rank(tmp_path):
    out = tmp_path / "run"
    # without the Guard (with it, every rank rolls back at step 25 and the run goes on: tests/callbacks/test_ddp.py)
    done = run(out, "trainer=ddp_cpu", "trainer.max_epochs=5", "+callbacks.poison._target_=tests.helpers.PoisonAt",
               "+callbacks.poison.step=25", "+callbacks.poison.rank=1", "~callbacks.guard")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    # rank 0's loss stayed finite: the reason is rank 1's, with its value, as every rank stopped
    assert "stopped early: the training loss is nan on rank 1 after 26 optimizer steps" in done.stdout, done.stdout
    assert "best weights restored: epoch 1" in done.stdout  # 12 steps an epoch on each of 2 ranks
    result = json.loads((out / "result.json").read_text())
    assert result["value"] > 0.5 and result["status"] == "finished"


def test_sigterm_under_ddp_stops_every_rank_together_saves_and_resumes(tmp_path):
    out = tmp_path / "run"
    proc = start(out, "trainer=ddp_cpu", "trainer.max_epochs=300")
    wait_for(out / "checkpoints" / "last.ckpt", proc)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)  # to rank 0 only, as `kill` would; rank 1 learns it at the batch end
    stdout, stderr = proc.communicate(timeout=120)  # before the fix: both ranks waited for each other for ever
    assert proc.returncode == 143, stderr[-3000:]
    assert "TERMINATED" in stdout and "SIGTERM received at step" in stdout
    assert json.loads((out / "result.json").read_text())["status"] == "terminated"
    state = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    step = state["global_step"]
    assert step > 0
    resumed = run(tmp_path / "resumed", "trainer=ddp_cpu", "trainer.max_epochs=300",
                  f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}", f"trainer.max_steps={step + 3}")  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"{step + 3} optimizer steps" in resumed.stdout


def test_sigterm_in_a_sweep_records_the_job_writes_the_leaderboard_and_exits_143(tmp_path):
    sweep = tmp_path / "sweep"
    proc = subprocess.Popen(
        [sys.executable, "train.py", "-m", "seed=0,1,2", f"hydra.sweep.dir={sweep}", *FAST, "trainer.max_epochs=300",
         "trainer.max_steps=200"],
        cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for(sweep / "1" / "checkpoints" / "last.ckpt", proc)  # job 0 done, job 1 running
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-3000:]
    board = {r["job"]: r for r in csv.DictReader(open(sweep / "leaderboard.csv"))}
    assert board["0"]["status"] == "finished" and board["1"]["status"] == "terminated"
    assert "2" not in board  # the sweep stopped there, as documented


def _tasks_of(sweep) -> list[int]:
    """The processes of the tasks submitit's local executor runs for the sweep in ``sweep``."""
    found = subprocess.run(["pgrep", "-f", f"submitit.core._submit {sweep}"], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


@pytest.mark.slow  # two submitit jobs, one killed, then resumed: about 40 s
def test_a_submitit_job_stopped_by_sigterm_ends_the_sweep_with_143_after_the_others_then_resumes(tmp_path):
    """The cluster path preempted (``scancel``, a preemption: SIGTERM to the job's task): the job saves and records
    itself, the sweep waits for its other job, says where the stopped one resumes from, and exits with 143 (it
    ended in submitit's ``UncompletedJobError`` traceback, the other job left behind)."""
    sweep = tmp_path / "sweep"
    proc = subprocess.Popen(
        [sys.executable, "train.py", "-m", "hydra/launcher=local", f"hydra.sweep.dir={sweep}", *FAST,
         "trainer.max_epochs=300", "trainer.max_steps=30,20000"],
        cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for(sweep / "0" / "result.json", proc)  # job 0 done (30 steps) ...
    wait_for(sweep / "1" / "checkpoints" / "last.ckpt", proc)  # ... job 1 past an epoch
    deadline = time.monotonic() + 60
    while len(pids := _tasks_of(sweep)) != 1:  # job 0's task ends (its result is written before), job 1's runs
        assert time.monotonic() < deadline, pids
        time.sleep(0.1)
    os.kill(pids[0], signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-3000:]
    assert "Job #1 was stopped: SIGTERM received at step" in stdout + stderr and "Traceback" not in stderr
    board = {r["job"]: r for r in csv.DictReader(open(sweep / "leaderboard.csv"))}
    assert board["0"]["status"] == "finished" and board["1"]["status"] == "terminated"
    last = sweep / "1" / "checkpoints" / "last.ckpt"
    step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    resumed = subprocess.run(
        [sys.executable, "train.py", "-m", "hydra/launcher=local", f"hydra.sweep.dir={tmp_path / 'resumed'}", *FAST,
         "trainer.max_epochs=300", f"trainer.max_steps={step + 3}", f"ckpt_path={last}"],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    result = json.loads((tmp_path / "resumed" / "0" / "result.json").read_text())
    ended = torch.load(tmp_path / "resumed" / "0" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert result["status"] == "finished" and ended["global_step"] == step + 3


def test_submitit_local_tasks_are_the_ranks_and_a_count_that_differs_from_the_trainers_is_refused(
    make_cfg, monkeypatch
):
    from lightning_cyclic.faults import SubmititLocalRanks
    from lightning_cyclic.run import _cluster
    from lightning_cyclic.validate import ConfigError

    cfg = make_cfg("trainer=ddp_cpu")
    assert _cluster(cfg) == []  # not a submitit job: Lightning's own launcher
    for name, value in (("JOB_ID", "4242"), ("NTASKS", "1"), ("GLOBALID", "0"), ("LOCALID", "0")):
        monkeypatch.setenv(f"SUBMITIT_LOCAL_{name}", value)
    with pytest.raises(ConfigError, match=r"submitit started 1 task\(s\) .* runs 2 processes .*tasks_per_node"):
        _cluster(cfg)
    assert _cluster(make_cfg()) == []  # one task, one device: nothing to set up
    monkeypatch.setenv("SUBMITIT_LOCAL_NTASKS", "2")
    (first,) = _cluster(cfg)
    monkeypatch.setenv("SUBMITIT_LOCAL_GLOBALID", "1")
    monkeypatch.setenv("SUBMITIT_LOCAL_LOCALID", "1")
    (second,) = _cluster(cfg)
    assert [(e.global_rank(), e.local_rank(), e.world_size()) for e in (first, second)] == [(0, 0, 2), (1, 1, 2)]
    assert first.creates_processes_externally and first.main_port == second.main_port  # one job, one port
    monkeypatch.setenv("SUBMITIT_LOCAL_JOB_ID", "4243")
    monkeypatch.setenv("MASTER_PORT", "29555")  # a shell's: every job of a sweep would take it, at once
    assert SubmititLocalRanks().main_port not in (first.main_port, 29555)  # another job, another port
    assert all(15000 <= e.main_port < 30000 for e in (first, second))  # below Linux's ephemeral ports
    with pytest.raises(ValueError, match=r"runs 3 processes .* submitit started 2 task"):
        first.set_world_size(3)
    first.set_world_size(2)


@pytest.mark.slow  # a job sent submitit's signal, requeued, resumed: about 30 s
def test_a_job_that_submitit_requeues_goes_on_from_its_own_last_checkpoint(tmp_path):
    """Submitit's signal (USR2: before the time limit, or a preemption where the cluster sends it) requeues the job,
    as its launcher resubmits it: it started again from epoch 0 (and, at a time limit, again and again until out of
    requeues). The app's launchers hand the new attempt the job's own ``last.ckpt``; the job's record (its
    overrides, ``result.json``, the leaderboard) stays as it was."""
    sweep = tmp_path / "sweep"
    proc = subprocess.Popen(
        [sys.executable, "train.py", "-m", "hydra/launcher=local", f"hydra.sweep.dir={sweep}", *FAST,
         "trainer.max_epochs=150"],
        cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    last = sweep / "0" / "checkpoints" / "last.ckpt"
    wait_for(last, proc)
    time.sleep(1.0)  # a few epochs in
    (task,) = _tasks_of(sweep)
    os.kill(task, signal.SIGUSR2)  # what submitit's controller sends before the time limit
    _, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr[-3000:]
    logs = "".join(path.read_text() for path in (sweep / ".submitit").glob("*/*_0_log.*"))
    requeued = [line for line in logs.splitlines() if line.startswith("submitit INFO") and "Requeued job" in line]
    assert len(requeued) == 1 and f"Requeued: the job goes on from {last}" in logs, logs[-3000:]
    assert f"Restored all states from the checkpoint at {last}" in logs  # (not from epoch 0)
    result = json.loads((sweep / "0" / "result.json").read_text())
    ended = torch.load(last, map_location="cpu", weights_only=True)
    assert result["status"] == "finished" and ended["epoch"] == 149
    assert not any("ckpt_path" in o for o in result["overrides"])  # the job's own record
    assert "ckpt_path" not in open(sweep / "leaderboard.csv").read()
