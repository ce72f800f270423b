"""Sweeps and scale from the command line: leaderboards, Optuna, coarse-then-fine, DDP, submitit."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
import yaml

from lightning_cyclic.run import version_base
from lightning_cyclic.sweeps import around, best_of, leaderboard, write_leaderboard, write_result
from tests.conftest import ROOT

QUICK = ["trainer.max_epochs=1", "trainer.limit_train_batches=6", "progress_bar=none"]


def cli(*args: str, timeout: int = 420) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [sys.executable, "train.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-4000:])
    return done


def rows(path):
    return list(csv.DictReader(open(path)))


def test_leaderboard_ranks_jobs_best_first_and_failed_last(tmp_path):
    for job, value in (("0", 0.5), ("1", 0.9), ("2", None), ("3", 0.7)):
        write_result(tmp_path / job, "val/acc", {"val/acc": value} if value else {}, [f"seed={job}"])
    assert [r["job"] for r in leaderboard(tmp_path, "max")] == ["1", "3", "0", "2"]
    assert [r["job"] for r in leaderboard(tmp_path, "min")] == ["0", "3", "1", "2"]


def test_printed_leaderboard_shows_what_differs_with_short_numbers(tmp_path):
    shared = ["trainer.max_epochs=1", "logger=none"]
    for job, (lr, value) in enumerate([(0.0123456789, 0.9), (0.3, 0.8)]):
        overrides = [*shared, f"schedule.max_lr={lr}", "seed=7"]
        write_result(tmp_path / str(job), "val/acc", {"val/acc": value}, overrides)
    path, table = write_leaderboard(tmp_path, "val/acc")
    lines = table.splitlines()
    assert lines[0] == "shared by every job: logger=none seed=7 trainer.max_epochs=1"
    assert lines[3] == "| 1 | 0 | 0.9000 | schedule.max_lr=0.01235 |"
    assert lines[4] == "| 2 | 1 | 0.8000 | schedule.max_lr=0.3 |"
    first = rows(path)[0]  # the CSV keeps every override, exactly
    assert first["overrides"] == "trainer.max_epochs=1 logger=none schedule.max_lr=0.0123456789 seed=7"


def test_joblib_multirun_writes_its_leaderboard(tmp_path):
    sweep = tmp_path / "sweep"
    done = cli(
        "-m",
        "schedule=onecycle,constant",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        *QUICK,
        f"hydra.sweep.dir={sweep}",
    )
    board = rows(sweep / "leaderboard.csv")
    assert sorted(r["job"] for r in board) == ["0", "1"]
    assert float(board[0]["val/acc"]) >= float(board[1]["val/acc"])
    assert {r["overrides"].split()[0] for r in board} == {"schedule=onecycle", "schedule=constant"}
    assert "[lightning_cyclic] leaderboard (val/acc, max first)" in done.stdout


def test_optuna_study_is_stored_in_the_sweep_folder_and_the_same_command_resumes_it(tmp_path):
    import optuna

    sweep = tmp_path / "optuna"
    command = ("-m", "hparams_search=optuna", "hydra.sweeper.n_trials=2", *QUICK, f"hydra.sweep.dir={sweep}")
    first = cli(*command)
    storage = f"sqlite:///{sweep}/optuna.db"
    assert f"Optuna study 'onecycle' in {storage}" in first.stdout
    assert [t.state.name for t in optuna.load_study(study_name="onecycle", storage=storage).trials] == ["COMPLETE"] * 2
    second = cli(*command)  # the same command again: two more trials in the same study
    assert f"optuna-dashboard {storage}" in second.stdout
    trials = optuna.load_study(study_name="onecycle", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    assert len({t.params["schedule.max_lr"] for t in trials}) == 4  # the seeded sampler did not start over
    board = rows(sweep / "leaderboard.csv")  # jobs 2 and 3 got folders of their own
    assert sorted(r["job"] for r in board) == ["0", "1", "2", "3"]
    assert sorted(float(r["val/acc"]) for r in board) == pytest.approx(sorted(t.value for t in trials))
    result = yaml.safe_load(open(sweep / "optimization_results.yaml"))
    assert result["best_value"] == pytest.approx(max(t.value for t in trials))
    assert set(result["best_params"]) == {"schedule.max_lr", "schedule.pct_start", "optimizer.weight_decay"}


def test_a_trial_left_running_by_a_dead_sweeper_of_this_machine_is_recorded_as_failed_when_resumed(tmp_path):
    import socket

    import optuna

    from hydra_plugins.lightning_cyclic_plugins.optuna_sweeper import HOST, PID, resume

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    storage = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="s", storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))
    study.tell(study.ask(), 0.5)
    owners = {"dead": int(dead.stdout), "alive": os.getppid()}  # a finished process; this test's parent
    for pid in owners.values():
        trial = study.ask()  # its sweeper asked, then (for "dead") was killed before it could tell
        trial.set_user_attr(HOST, socket.gethostname())
        trial.set_user_attr(PID, pid)
    elsewhere = study.ask()
    elsewhere.set_user_attr(HOST, "another-node")  # a worker of a shared study on another machine
    elsewhere.set_user_attr(PID, int(dead.stdout))
    study.ask()  # asked by someone else's code: not ours to end
    assert resume(optuna.load_study(study_name="s", storage=storage)) == 5
    states = [t.state.name for t in optuna.load_study(study_name="s", storage=storage).trials]
    assert states == ["COMPLETE", "FAIL", "RUNNING", "RUNNING", "RUNNING"]
    fresh = optuna.create_study(study_name="new", storage=storage)
    assert resume(fresh) == 0


def test_coarse_then_fine_centres_on_the_coarse_best(tmp_path):
    coarse = tmp_path / "coarse"
    cli("-m", "hparams_search=coarse", "hydra.sweeper.n_trials=2", *QUICK, f"hydra.sweep.dir={coarse}")
    best_lr = best_of(coarse / "leaderboard.csv", "schedule.max_lr")
    assert around(str(coarse / "leaderboard.csv"), "schedule.max_lr", 3) == (
        f"tag(log, interval({best_lr / 3:.6g}, {best_lr * 3:.6g}))"
    )
    fine = tmp_path / "fine"
    cli(
        "-m",
        "hparams_search=fine",
        f"fine_from={coarse / 'leaderboard.csv'}",
        "hydra.sweeper.n_trials=2",
        *QUICK,
        f"hydra.sweep.dir={fine}",
    )
    for row in rows(fine / "leaderboard.csv"):
        lr = float(next(o for o in row["overrides"].split() if o.startswith("schedule.max_lr=")).split("=")[1])
        assert best_lr / 3 <= lr <= best_lr * 3


def test_ddp_cpu_auto_lr_and_scaling_give_every_rank_the_same_trajectory(tmp_path):
    out = tmp_path / "run"
    done = cli(
        "trainer=ddp_cpu",
        "schedule.max_lr=auto",
        "lr_scaling.rule=linear",
        "lr_scaling.base_batch_size=64",
        *QUICK,
        "+callbacks.lrs._target_=tests.helpers.LrRecorder",
        f"+callbacks.lrs.out={out}",
        f"hydra.run.dir={out}",
    )
    ranks = [json.loads((out / f"lrs_rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1] and len(ranks[0]) == 6  # limit_train_batches=6 on each rank
    found = json.loads((out / "lr_find.json").read_text())["suggestion"]["lr"]
    assert max(lr for _, lr, _ in ranks[0]) <= found * 2 * (1 + 1e-9)  # found once, scaled x2 for 2 devices
    assert "lr scaling: linear, lrs x 2" in done.stdout
    assert "effective batch 128 = 64 per device x 1 accumulation x 2 devices" in done.stdout + done.stderr


def test_multirun_of_two_ddp_runs_keeps_to_its_own_folders(tmp_path):
    sweep, stray = tmp_path / "sweep", tmp_path / "stray"
    args = ("-m", "trainer=ddp_cpu", "seed=0,1", *QUICK, f"hydra.sweep.dir={sweep}", f"hydra.run.dir={stray}")
    try:
        done = cli(*args, timeout=180)  # about 30 s; a rare hang was seen once in a full run, so say where it stopped
    except subprocess.TimeoutExpired as err:
        logs = {str(p.relative_to(tmp_path)): p.read_text()[-1500:] for p in tmp_path.rglob("*.log")}
        raise AssertionError(f"timed out; stderr: {(err.stderr or b'')[-3000:]!r}; logs: {logs}") from err
    assert done.stdout.count("[lightning_cyclic] leaderboard") == 1  # the children did not sweep again
    for job in ("0", "1"):
        assert (sweep / job / "result.json").exists() and (sweep / job / "train_ddp_process_1.log").exists()
    assert not stray.exists()
    assert len(rows(sweep / "leaderboard.csv")) == 2


def test_submitit_local_job_finishes(tmp_path):
    sweep = tmp_path / "submitit"
    cli("-m", "hydra/launcher=local", "seed=0", *QUICK, f"hydra.sweep.dir={sweep}")
    assert (sweep / "0" / "result.json").exists() and len(rows(sweep / "leaderboard.csv")) == 1
    assert any((sweep / ".submitit").iterdir())


def submitit_ddp_job(sweep) -> dict:
    """``trainer=ddp_cpu`` as one job of submitit's local executor: its two tasks must be the two ranks of one run
    (Lightning used to start rank 1 itself by running the submitit worker's command line again, which failed)."""
    cli("-m", "hydra/launcher=local", "trainer=ddp_cpu", "seed=0", *QUICK, f"hydra.sweep.dir={sweep}")
    logs = sorted((sweep / ".submitit").glob("*/*_log.err"))
    assert [next(x for x in log.read_text().splitlines() if "MEMBER" in x)[-3:] for log in logs] == ["1/2", "2/2"]
    assert [r["job"] for r in rows(sweep / "leaderboard.csv")] == ["0"]
    result = json.loads((sweep / "0" / "result.json").read_text())
    assert result["status"] == "finished"
    return result


def test_submitit_local_ddp_job_runs_its_two_tasks_as_the_ranks_of_one_run(tmp_path):
    """The cluster path with DDP: as on SLURM, submitit starts one task per rank (tasks_per_node follows
    trainer.devices)."""
    submitit_ddp_job(tmp_path / "submitit")


@pytest.mark.slow  # two DDP runs, about 30 s
def test_submitit_local_ddp_job_is_the_run_lightnings_own_launcher_makes(tmp_path):
    got = submitit_ddp_job(tmp_path / "submitit")
    alone = tmp_path / "alone"
    cli("trainer=ddp_cpu", "seed=0", *QUICK, f"hydra.run.dir={alone}")  # Lightning starts rank 1
    assert got["metrics"] == json.loads((alone / "result.json").read_text())["metrics"]  # every metric, exactly


def test_damaged_and_failed_results_are_rows_with_their_reason_not_errors(tmp_path):
    write_result(tmp_path / "0", "val/acc", {"val/acc": 0.8}, ["seed=0"])
    write_result(tmp_path / "1", "val/acc", {}, ["seed=1"], status="failed", reason="ValueError: max_lr must be > 0")
    write_result(tmp_path / "2", "val/acc", {"val/acc": 0.6}, ["seed=2"], status="terminated", reason="SIGTERM")
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "result.json").write_text('{"overrides": ["seed=3"], "val')  # a job killed mid-write
    path, table = write_leaderboard(tmp_path, "val/acc")
    got = {r["job"]: r for r in rows(path)}
    assert [r["job"] for r in rows(path)] == ["0", "2", "1", "3"]
    assert got["1"]["status"] == "failed" and "max_lr must be > 0" in got["1"]["reason"]
    assert got["2"]["status"] == "terminated" and got["2"]["val/acc"] == "0.6"
    assert got["3"]["status"] == "damaged" and "result.json" in got["3"]["reason"]
    assert "| 2 | 2 | 0.6000 (terminated) | seed=2 — SIGTERM |" in table
    assert best_of(path, "seed") == 0.0  # hparams_search=fine reads past the bad rows


def test_a_failing_job_is_recorded_and_the_leaderboard_still_written(tmp_path):
    sweep = tmp_path / "sweep"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [sys.executable, "train.py", "-m", "schedule.max_lr=0.1,-1,0.2", f"hydra.sweep.dir={sweep}", *QUICK],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0  # the multirun reports that a job failed
    board = {r["job"]: r for r in rows(sweep / "leaderboard.csv")}
    assert set(board) == {"0", "1", "2"}
    assert board["1"]["status"] == "failed" and "max_lr" in board["1"]["reason"]
    assert board["0"]["status"] == board["2"]["status"] == "finished" and board["0"]["val/acc"]


def test_ddp_ranks_of_a_multirun_job_keep_the_flags_that_say_where_the_configs_are():
    from lightning_cyclic.run import _config_flags

    argv = ["-m", "--config-dir", "my_conf", "model=my_net", "-cn=exp", "hydra/launcher=joblib", "-cp", "conf"]
    assert _config_flags(argv) == ["--config-dir", "my_conf", "-cn=exp", "-cp", "conf"]
    assert _config_flags(["seed=0,1", "--config-dir"]) == ["--config-dir"] and _config_flags([]) == []


def test_ddp_cpu_metrics_are_of_the_whole_validation_set_not_rank_0s_half(tmp_path):
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    from tests.conftest import CONF

    out = tmp_path / "run"
    cli("trainer=ddp_cpu", "trainer.max_epochs=1", "progress_bar=none", f"hydra.run.dir={out}")
    result = json.loads((out / "result.json").read_text())["metrics"]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), **version_base()):
        cfg = compose("train", overrides=[f"paths.output_dir={tmp_path}"])
    GlobalHydra.instance().clear()
    dm = instantiate(cfg.data)
    dm.setup("fit")
    model = instantiate(cfg.model, optimizer=instantiate(cfg.optimizer), input_shape=list(dm.input_shape),
                        num_classes=dm.num_classes)  # fmt: skip
    state = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    model.load_state_dict(state)  # one epoch: the last weights are the best
    model.eval()
    with torch.no_grad():
        x, y = map(torch.cat, zip(*dm.val_dataloader()))
        logits = model(x)
    # Lightning's DistributedSampler (no shuffling) pads 359 samples to 360 with the first, and deals them out
    order = [*range(len(y)), 0]
    halves = [order[rank::2] for rank in (0, 1)]
    losses = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    loss_of = [losses[h].mean().item() for h in halves]
    correct = (logits.argmax(1) == y).float()
    assert result["val/acc"] == pytest.approx(correct[order].mean().item(), abs=1e-6)  # all 360, not 180
    assert result["val/loss"] == pytest.approx(sum(loss_of) / 2, rel=1e-4)  # both ranks' mean, not rank 0's
    assert abs(loss_of[0] - loss_of[1]) > 1e-3  # so the test tells the two apart


@pytest.mark.parametrize("given", [[], ["fine_from=/nonexistent/leaderboard.csv"]])
def test_fine_without_a_coarse_leaderboard_fails_in_a_few_lines_naming_fine_from(tmp_path, given):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("HYDRA_FULL_ERROR", None)
    done = subprocess.run(
        [sys.executable, "train.py", "-m", "hparams_search=fine", *given, f"hydra.sweep.dir={tmp_path}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    assert "hparams_search=fine needs fine_from=<the coarse sweep's leaderboard.csv>" in done.stderr
    assert ("not given" if not given else "'/nonexistent/leaderboard.csv' is not a file") in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 6 and "Traceback" not in done.stderr  # was 62 lines


@pytest.mark.parametrize("launcher", ["local", "slurm"])
def test_cluster_launchers_start_one_task_per_device_and_refuse_a_count_they_cannot_know(make_cfg, launcher):
    from omegaconf.errors import InterpolationResolutionError

    def launcher_of(*overrides: str):
        return make_cfg(f"hydra/launcher={launcher}", *overrides, hydra=True).hydra.launcher

    assert launcher_of("trainer=ddp_cpu").tasks_per_node == 2  # each task one DDP rank
    with pytest.raises(InterpolationResolutionError, match=r"trainer.devices=-1 names no count: give"):
        _ = launcher_of("trainer=ddp").tasks_per_node  # every GPU of the node: not known where it launches
    if launcher == "slurm":
        nodes = launcher_of("trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2")
        assert (nodes.nodes, nodes.gpus_per_node, nodes.tasks_per_node) == (2, 4, 4)


def test_only_rank_0_of_a_job_writes_its_row(tmp_path):
    """Where the cluster starts each DDP rank as the job (SLURM, submitit's tasks), every rank ends the job: rank 1
    raising TrialPruned (or anything) must not race rank 0's row with a "failed" one."""
    from hydra.core.utils import JobReturn, JobStatus
    from lightning.pytorch.utilities.rank_zero import rank_zero_only
    from omegaconf import OmegaConf

    from lightning_cyclic.sweeps import Leaderboard

    config = OmegaConf.create(
        {"hydra": {"runtime": {"output_dir": str(tmp_path / "0")}, "sweep": {"dir": str(tmp_path)},
                   "overrides": {"task": ["seed=0"]}}}
    )  # fmt: skip
    failed = JobReturn(status=JobStatus.FAILED, _return_value=RuntimeError("rank 1 stopped"))
    saved = rank_zero_only.rank
    try:
        rank_zero_only.rank = 1
        Leaderboard().on_job_end(config, failed)
        assert not (tmp_path / "0" / "result.json").exists() and not (tmp_path / "leaderboard.csv").exists()
        rank_zero_only.rank = 0
        Leaderboard().on_job_end(config, failed)
        assert rows(tmp_path / "leaderboard.csv")[0]["status"] == "failed"
    finally:
        rank_zero_only.rank = saved


def test_the_cluster_launchers_hand_a_stopped_jobs_reason_to_the_sweep_and_end_it_with_143(caplog):
    """``hydra/launcher=slurm|local``'s ending, on a stand-in for submitit's launcher that runs each job here (the
    real one runs them in other processes: tests/test_faults.py, slow): a job's SIGTERM exit (143) becomes its
    result, and the sweep, once every job has ended, names the stopped one and the failed one and exits with 143."""
    from hydra.core.utils import JobReturn, JobStatus

    from hydra_plugins.lightning_cyclic_plugins.submitit_launchers import StoppedJob, SweepStopped, _EndsAsTheApp
    from lightning_cyclic.faults import Terminated

    class Submitit:  # stands for submitit's launcher: launch() runs each job through the launcher's __call__
        def __init__(self, outcomes):
            self.outcomes = outcomes

        def __call__(self, i):
            if isinstance(self.outcomes[i], BaseException):
                raise self.outcomes[i]
            return self.outcomes[i]

        def launch(self, job_overrides, initial_job_idx):
            return [self(i) for i in range(len(job_overrides))]

    class Launcher(_EndsAsTheApp, Submitit):
        pass

    done = JobReturn(status=JobStatus.COMPLETED, _return_value=0.9)
    failed = JobReturn(status=JobStatus.FAILED, _return_value=ValueError("max_lr must be > 0"))
    reason = "SIGTERM received at step 7 (epoch 0); ... resume with ckpt_path=/x/last.ckpt"
    assert Launcher([done, failed]).launch([["a"], ["b"]], 0) == [done, failed]  # nothing stopped: as it was
    with pytest.raises(SweepStopped) as stop:
        Launcher([done, Terminated(reason), failed]).launch([["a"], ["b"], ["c"]], 5)
    assert stop.value.code == 143 and stop.value.results[0] is done and stop.value.results[2] is failed
    assert stop.value.results[1]._return_value == StoppedJob(reason)
    said = [r.getMessage() for r in caplog.records]
    assert f"Job #6 was stopped: {reason}" in said and "Job #7 failed: ValueError: max_lr must be > 0" in said
    with pytest.raises(SystemExit) as other:  # another exit of a job is not a SIGTERM's: it goes on as it was
        Launcher([SystemExit(2)]).launch([["a"]], 0)
    assert other.value.code == 2 and not isinstance(other.value, SweepStopped)
