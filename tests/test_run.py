"""The application: train(cfg) in-process, and train.py as users run it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lightning_cyclic.run import train, version_base
from lightning_cyclic.shapes import OneCycleSchedule
from tests.conftest import ROOT, options
from tests.helpers import WritesAMarker


@pytest.mark.parametrize("schedule", options("schedule"))
def test_every_schedule_trains_and_reports_accuracy(make_cfg, schedule):
    cfg = make_cfg(f"schedule={schedule}", "trainer.max_epochs=2", "trainer.enable_progress_bar=false")
    metrics, objects = train(cfg)
    assert objects["trainer"].global_step == 46  # 1,437 training digits / 64 per batch = 23 steps per epoch
    assert metrics["val/acc"] > 0.5  # learns: chance is 0.1
    assert trained_lrs(objects)[0] is not None


def trained_lrs(objects) -> list[float | None]:
    """The lr the schedule gives at each step of the run (PlateauDecay: the lr it holds now, decided from the
    metrics)."""
    from lightning_cyclic import PlateauDecay

    schedule, steps = objects["schedule"], objects["trainer"].global_step
    if isinstance(schedule, PlateauDecay):
        return [schedule.lead_lr()] * steps
    return [schedule.schedule(k)[0] for k in range(steps)] if schedule.schedule is not None else [None]


@pytest.mark.parametrize("length", ["trainer.max_epochs=1", "trainer.max_steps=5"])
@pytest.mark.parametrize("schedule", options("schedule"))
def test_every_shipped_schedule_runs_at_its_defaults_on_a_short_run(make_cfg, schedule, length):
    cfg = make_cfg(f"schedule={schedule}", length, "trainer.enable_progress_bar=false")
    _, objects = train(cfg)
    trainer = objects["trainer"]
    assert trainer.global_step == (5 if "max_steps" in length else 23)
    lrs = trained_lrs(objects)
    assert all(lr > 0 for lr in lrs[1:])  # it trains at every step but a warmup's first
    schedule = objects["schedule"]
    now = schedule.lead_lr() if not hasattr(schedule, "schedule") else schedule.schedule(trainer.global_step)[0]
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(now)


@pytest.mark.parametrize("optimizer", [o for o in options("optimizer") if "schedule_free" not in o])
def test_every_optimizer_config_trains_under_the_default_schedule_at_its_own_lr(make_cfg, optimizer):
    metrics, objects = train(make_cfg(f"optimizer={optimizer}", "trainer.max_epochs=3", "progress_bar=none"))
    schedule = objects["schedule"]
    assert schedule.params["max_lr"] == objects["model"].optimizer_factory.keywords["lr"]  # the peak follows it
    assert metrics["val/acc"] > 0.9  # chance is 0.1; SGD's peak under Adam ended at 0.10 (no warning)


def test_the_schedule_free_optimizer_takes_no_schedule_and_its_experiment_trains(make_cfg):
    with pytest.raises(ValueError, match=r"AdamWScheduleFree is schedule-free: .* set schedule=null"):
        train(make_cfg("optimizer=adamw_schedule_free", "trainer.max_epochs=1", "progress_bar=none"))
    metrics, objects = train(make_cfg("experiment=schedule_free", "trainer.max_epochs=3", "progress_bar=none"))
    optimizer = objects["trainer"].optimizers[0]
    assert objects["schedule"] is None and optimizer.param_groups[0]["train_mode"] is False  # the average kept
    assert metrics["val/acc"] > 0.9


@pytest.mark.parametrize("schedule", options("schedule"))
def test_optimizer_lr_is_the_lr_every_schedule_trains_with(make_cfg, schedule):
    _, objects = train(make_cfg(f"schedule={schedule}", "optimizer.lr=0.001", "trainer.max_epochs=1"))
    if schedule == "plateau":  # it starts from the optimizer's own lr, and cuts it from there
        assert objects["schedule"].base_lr() == 0.001
        return
    if schedule == "finetune":  # phase 1 peaks at it (phase 2 at half of it)
        assert objects["schedule"].lrs == [0.001, 0.0005]
        return
    if schedule == "sequential":  # a tenth of it held, then a one-cycle peaking at it
        assert [p.params["max_lr"] for p in objects["schedule"].parts] == [pytest.approx(0.0001), 0.001]
        return
    assert objects["schedule"].params["max_lr"] == 0.001
    built = objects["schedule"].schedule
    lrs = [built(k)[0] for k in range(100)]  # a cyclical peak comes after 2 epochs of 23 steps
    # schedule=constant trained at 0.05 whatever optimizer.lr said
    assert max(lrs) <= 0.001 * (1 + 1e-9) and max(lrs) >= 0.001 * 0.95


def test_a_schedule_peak_far_from_the_optimizers_lr_warns_once(make_cfg, caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger="lightning_cyclic.run"):
        train(make_cfg("optimizer=adam", "schedule.max_lr=0.2", "trainer.max_steps=2", "progress_bar=none"))
    said = [r.getMessage() for r in caplog.records if "schedule.max_lr" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("schedule.max_lr=0.2 is 20x optimizer.lr=0.01 (Adam)")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lightning_cyclic.run"):  # 3x: an ordinary choice, no warning
        train(make_cfg("optimizer=adam", "schedule.max_lr=0.03", "trainer.max_steps=2", "progress_bar=none"))
    assert not [r for r in caplog.records if "schedule.max_lr" in r.getMessage()]


def test_optimizer_option_adam_with_onecycle(make_cfg):
    metrics, objects = train(make_cfg("optimizer=adam", "trainer.max_epochs=2"))
    assert metrics["val/acc"] > 0.5
    betas = objects["trainer"].optimizers[0].param_groups[0]["betas"]
    assert betas[1] == 0.999 and 0.85 <= betas[0] <= 0.95


def run_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, "train.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_cli_runs_and_prints_validation_accuracy(tmp_path):
    done = run_cli("schedule=onecycle", "trainer.max_epochs=1", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "val/acc = " in done.stdout
    assert (tmp_path / "csv" / "version_0" / "metrics.csv").exists()


def test_cli_unknown_schedule_lists_the_valid_ones():
    done = run_cli("schedule=oncycle")
    assert done.returncode != 0
    assert "Could not find 'schedule/oncycle'" in done.stderr
    for name in options("schedule"):
        assert name in done.stderr


def test_cli_bad_value_names_the_argument_before_training(tmp_path):
    done = run_cli("schedule.pct_start=1.5", f"hydra.run.dir={tmp_path}")
    assert done.returncode != 0
    assert "pct_start must be in (0, 1), got 1.5" in done.stderr
    assert "Epoch 0" not in done.stdout + done.stderr


def test_schedule_max_lr_auto_finds_logs_and_saves_the_lr(make_cfg, tmp_path):
    import csv
    import json

    metrics, objects = train(make_cfg("schedule.max_lr=auto", "trainer.max_epochs=2"))
    found = objects["schedule"].resolved["max_lr"]
    saved = json.loads((tmp_path / "lr_find.json").read_text())
    # the curve's reading, then the short trials around it chose the peak
    assert saved["extra"]["trials"]["lr"] == found and saved["config"]["evaluate"] == "val"
    assert saved["extra"]["trials"]["lrs"][2] == pytest.approx(saved["suggestion"]["lr"])
    assert (tmp_path / "lr_find.png").exists()
    rows = list(csv.DictReader(open(tmp_path / "csv" / "version_0" / "metrics.csv")))
    assert [float(r["OneCycle/max_lr"]) for r in rows if r.get("OneCycle/max_lr")] == [pytest.approx(found)]
    assert metrics["val/acc"] > 0.5


def test_cyclical_auto_from_the_command_line(make_cfg):
    _, objects = train(
        make_cfg("schedule=cyclical", "schedule.base_lr=auto", "schedule.max_lr=auto", "trainer.max_epochs=1")
    )
    resolved = objects["schedule"].resolved
    assert 0 < resolved["base_lr"] < resolved["max_lr"]


def test_best_weights_are_restored_and_measured(make_cfg):
    metrics, objects = train(make_cfg("trainer.max_epochs=4", "schedule=constant", "schedule.max_lr=0.3"))
    best = objects["best"]
    assert best.restored and best.monitor == "val/acc"
    assert metrics["val/acc"] == pytest.approx(best.best_score)  # validated again after the restore


def test_snapshot_ensemble_option_with_warm_restarts(make_cfg, tmp_path):
    cfg = make_cfg(
        "schedule=warm_restarts", "schedule.cycle_mult=1", "callbacks=snapshot_ensemble", "trainer.max_epochs=6"
    )
    metrics, objects = train(cfg)
    assert [s["epoch"] for s in objects["ensemble"].snapshots] == [1, 3, 5]
    assert 0.5 < metrics["ensemble/val_acc"] <= 1
    assert (tmp_path / "ensemble.pt").exists()


# --- the everyday workflow: every option runs, resume continues, bad input is named -------------------

FASHION = __import__("pathlib").Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.parametrize("schedule", options("schedule"))
@pytest.mark.parametrize("optimizer", [o for o in options("optimizer") if "schedule_free" not in o])  # (no schedule)
def test_every_schedule_with_every_optimizer_under_fast_dev_run(make_cfg, schedule, optimizer):
    metrics, objects = train(make_cfg(f"schedule={schedule}", f"optimizer={optimizer}", "debug=fast"))
    assert objects["trainer"].global_step == 1 and "val/acc" in metrics


@pytest.mark.parametrize(
    "data, model",
    [
        ("digits", "mlp"),
        ("digits", "cnn"),
        ("mnist1d", "cnn1d"),
        ("mnist1d", "mlp"),
        pytest.param("fashion_mnist", "cnn", marks=pytest.mark.skipif(not FASHION.exists(), reason="no Fashion-MNIST")),
        pytest.param("fashion_mnist", "mlp", marks=pytest.mark.skipif(not FASHION.exists(), reason="no Fashion-MNIST")),
    ],
)
def test_datasets_and_models_under_fast_dev_run(make_cfg, data, model):
    metrics, objects = train(make_cfg(f"data={data}", f"model={model}", "debug=fast"))
    assert objects["trainer"].global_step == 1 and 0 <= metrics["val/acc"] <= 1


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_under_fast_dev_run(make_cfg, experiment):
    if experiment.startswith("fashion") and not FASHION.exists():
        pytest.skip("no Fashion-MNIST (apt-get install dataset-fashion-mnist)")
    _, objects = train(make_cfg(f"experiment={experiment}", "debug=fast"))
    assert objects["trainer"].global_step == 1


def test_debug_overfit_learns_a_few_batches_perfectly(make_cfg):
    metrics, _ = train(make_cfg("debug=overfit", "trainer.max_epochs=60", "progress_bar=none"))
    assert metrics["train/acc"] == 1.0


def test_resume_from_ckpt_path_continues_the_schedule_exactly(make_cfg, tmp_path):
    import csv

    common = ["trainer.max_epochs=4", "trainer.log_every_n_steps=1", "progress_bar=none"]
    every_epoch = ["callbacks.model_checkpoint.save_top_k=-1", "callbacks.model_checkpoint.monitor=null"]
    train(make_cfg(*common, *every_epoch))
    ckpt = tmp_path / "checkpoints" / "epoch001.ckpt"  # after 2 of 4 epochs: mid-cycle
    assert ckpt.exists()
    full = {r["step"]: r["lr"] for r in csv.DictReader(open(tmp_path / "csv" / "version_0" / "metrics.csv")) if r["lr"]}
    _, objects = train(make_cfg(*common, f"ckpt_path={ckpt}"))
    assert objects["trainer"].global_step == 92
    resumed = {
        r["step"]: r["lr"] for r in csv.DictReader(open(tmp_path / "csv" / "version_1" / "metrics.csv")) if r["lr"]
    }
    assert min(map(int, resumed)) == 46 and len(resumed) == 46
    assert all(resumed[step] == full[step] for step in resumed)


def test_a_resume_in_the_guards_warm_up_ends_where_the_whole_run_does(make_cfg, tmp_path):
    # NaN weights before step 30: the Guard rolls back to the start and warms the lr up again over steps 31-60; the
    # checkpoint of epoch 1 (step 46) is taken half-way up, and a run resumed from it ends with the same weights
    import torch

    common = ["trainer.max_epochs=4", "progress_bar=none", "+callbacks.poison._target_=tests.helpers.PoisonAt",
              "+callbacks.poison.step=30"]  # fmt: skip
    every_epoch = ["callbacks.model_checkpoint.save_top_k=-1", "callbacks.model_checkpoint.monitor=null"]
    _, whole = train(make_cfg(*common, *every_epoch))
    guard = next(c for c in whole["trainer"].callbacks if type(c).__name__ == "Guard")
    assert [e["step"] for e in guard.events] == [30] and guard.events[0]["restored_step"] == 0
    ckpt = tmp_path / "checkpoints" / "epoch001.ckpt"
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"] == 46
    _, resumed = train(make_cfg(*common, f"ckpt_path={ckpt}"))
    assert resumed["trainer"].global_step == 92
    a, b = whole["model"].state_dict(), resumed["model"].state_dict()
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-6) for k in a)


def test_lr_scaling_rule_scales_and_reports(make_cfg, capsys):
    _, objects = train(
        make_cfg("lr_scaling.rule=sqrt", "lr_scaling.base_batch_size=16", "trainer.max_epochs=1", "progress_bar=none")
    )
    # sqrt(64 / 16) = 2, once: schedule.max_lr follows the scaled optimizer.lr, it is not scaled again
    assert objects["schedule"].params["max_lr"] == pytest.approx(0.1 * 2)
    assert objects["model"].optimizer_factory.keywords["lr"] == pytest.approx(0.1 * 2)
    assert "lr scaling: sqrt, lrs x 2" in capsys.readouterr().out


def test_lr_scaling_scales_every_lr_argument_the_shape_declares_and_nothing_else(make_cfg):
    overrides = ["schedule=warm_restarts", "schedule.max_lr=0.2", "schedule.min_lr=0.01",
                 "schedule.warmup_lr_init=0.001", "schedule.cycle_len=3", "lr_scaling.rule=linear",
                 "lr_scaling.base_batch_size=32", "trainer.max_steps=2", "progress_bar=none"]  # fmt: skip
    _, objects = train(make_cfg(*overrides))
    params = objects["schedule"].params
    assert (params["max_lr"], params["min_lr"], params["warmup_lr_init"]) == pytest.approx((0.4, 0.02, 0.002))
    assert params["cycle_len"] == 3 and params["cycle_decay"] == 1.0  # a length and a factor: not lrs


def test_summary_says_where_everything_is(make_cfg, tmp_path, capsys):
    _, objects = train(make_cfg("trainer.max_epochs=2", "progress_bar=none"))
    out = capsys.readouterr().out
    lines = ("[lightning_cyclic] val/acc = ", "best weights restored: epoch", "schedule: OneCycle, max_lr=0.1",
             "46 optimizer steps, 2 epochs", f"device: {objects['trainer'].strategy.root_device}")  # fmt: skip
    for line in lines:
        assert line in out
    assert f"checkpoint: {tmp_path}/checkpoints/last.ckpt" in out and f"logs (CSVLogger): {tmp_path}/csv" in out
    assert objects["curves"] == tmp_path / "training_curves.png" and objects["curves"].stat().st_size > 10_000


@pytest.mark.parametrize(
    "overrides, error, message",
    [
        (["optimizer.lr=-1"], ValueError, "optimizer.lr must be > 0, got -1"),
        (["optimizer.momentum=1.5"], ValueError, "optimizer.momentum must be in [0, 1), got 1.5"),
        (["data.batch_size=0"], ValueError, "batch_size must be >= 1, got 0"),
        (["model.net.dropout=1.5"], ValueError, "dropout must be in [0, 1), got 1.5"),
        (["schedule.max_lr=-0.1"], ValueError, "max_lr must be > 0, got -0.1"),
        (["lr_scaling.rule=cubic"], ValueError, "rule must be one of 'linear', 'sqrt', got 'cubic'"),
        (["progress_bar=fancy"], ValueError, "progress_bar must be one of 'rich', 'tqdm', 'none', got 'fancy'"),
        (["+model.lr_mult={net.9: 0.1}"], ValueError, "lr_mult names 'net.9', which matches no parameter"),
        (["data=fashion_mnist", "data.root=/nonexistent"], FileNotFoundError, "apt-get install dataset-fashion-mnist"),
    ],
)
def test_bad_values_fail_before_training_with_the_name(make_cfg, overrides, error, message):
    import re

    from hydra.errors import InstantiationException

    # raised by our code directly, or by it inside hydra's instantiate (which names the config key too)
    with pytest.raises((error, InstantiationException), match=re.escape(message)):
        train(make_cfg(*overrides, "progress_bar=none" if "progress_bar" not in overrides[0] else "seed=0"))


@pytest.mark.parametrize("group, wrong", [("optimizer", "adamx"), ("data", "cifar"), ("debug", "slow")])
def test_cli_unknown_option_of_any_group_lists_the_valid_ones(group, wrong):
    done = run_cli(f"{group}={wrong}")
    assert done.returncode != 0 and f"Could not find '{group}/{wrong}'" in done.stderr
    for name in options(group):
        assert name in done.stderr


def test_files_datasets_with_augmentation_and_resnet_under_fast_dev_run(make_cfg, tmp_path):
    """mnist and cifar10 read real files the test writes; augmentation and the ResNet run in the app."""
    import numpy as np

    from tests.data.test_cifar10 import write_fake_cifar10
    from tests.data.test_idx import write_idx

    mnist = tmp_path / "mnist"
    mnist.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 40), ("t10k", 10)):
        write_idx(mnist / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(mnist / f"{prefix}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8))
    cifar = tmp_path / "cifar"
    cifar.mkdir()
    write_fake_cifar10(cifar)
    for data, root, model in (("mnist", mnist, "resnet"), ("cifar10", cifar, "cnn"), ("cifar10", cifar, "resnet")):
        augment = ["data.augment=true", "data.cutout=4", "data.mixup=0.2", "data.batch_size=8"]
        _, objects = train(make_cfg(f"data={data}", f"data.root={root}", f"model={model}", *augment, "debug=fast"))
        assert objects["trainer"].global_step == 1


def test_schedule_via_scheduler_in_the_app(make_cfg):
    _, objects = train(make_cfg("schedule_via=scheduler", "trainer.max_epochs=1", "progress_bar=none"))
    trainer = objects["trainer"]
    assert objects["model"].schedule is objects["schedule"]
    assert objects["schedule"] not in trainer.callbacks and len(trainer.lr_scheduler_configs) == 1
    expected = OneCycleSchedule(max_lr=0.1, total_steps=23).lr(23)
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(expected)


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/model.ckpt", "s3://bucket/last.ckpt"])
def test_a_remote_ckpt_path_is_refused_before_anything_runs(make_cfg, url):
    with pytest.raises(ValueError, match=r"ckpt_path='.*' is a remote address; .* loads weights-only"):
        train(make_cfg(f"ckpt_path={url}", "progress_bar=none"))


def test_a_missing_or_special_ckpt_path_names_what_to_give(make_cfg, tmp_path):
    with pytest.raises(ValueError, match=r"ckpt_path='.*nothing.ckpt': no such checkpoint file"):
        train(make_cfg(f"ckpt_path={tmp_path}/nothing.ckpt", "progress_bar=none"))
    with pytest.raises(ValueError, match=r"ckpt_path=last: no earlier run with these overrides .* looked in"):
        train(make_cfg("ckpt_path=last", "progress_bar=none"))


def test_a_crafted_checkpoint_runs_no_code(make_cfg, tmp_path):
    import torch

    marker, ckpt = tmp_path / "pwned", tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {}, "payload": WritesAMarker(marker)}, ckpt)
    with pytest.raises(Exception, match=r"(?i)weights.only|unpickl"):
        train(make_cfg(f"ckpt_path={ckpt}", "progress_bar=none", "trainer.max_epochs=1"))
    assert not marker.exists()


def test_a_truncated_checkpoint_fails_with_its_path_and_the_app_writes_checksums(make_cfg, tmp_path):
    train(make_cfg("trainer.max_epochs=1", "progress_bar=none"))
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert (tmp_path / "checkpoints" / "last.ckpt.sha256").exists()
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(last.read_bytes()[:1000])
    with pytest.raises(ValueError, match=rf"checkpoint {broken} \(1000 bytes\) cannot be read"):
        train(make_cfg(f"ckpt_path={broken}", "progress_bar=none"))
    data = bytearray(last.read_bytes())
    data[-300] ^= 0xFF  # one flipped byte in a file the app saved
    last.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="has changed since it was saved"):
        train(make_cfg(f"ckpt_path={last}", "progress_bar=none"))


BAD_VALUES = [
    ("trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches must be an integer, at least 1"),
    ("trainer.accumulate_grad_batches=-2", "trainer.accumulate_grad_batches must be an integer, at least 1"),
    (
        "trainer.max_epochs=abc",
        "trainer.max_epochs must be an integer, at least 1 epoch, or -1 with max_steps; got 'abc'",
    ),
    ("trainer.max_epochs=0", "trainer.max_epochs must be an integer"),
    ("trainer.max_steps=0", "trainer.max_steps must be an integer, at least 1 step, or -1"),
    ("trainer.limit_train_batches=0", r"trainer.limit_train_batches must be a fraction in \(0, 1\]"),
    ("trainer.limit_val_batches=-1", r"trainer.limit_val_batches must be a fraction .* \(0 turns validation off\)"),
    ("trainer.log_every_n_steps=-1", "trainer.log_every_n_steps must be an integer, at least 1; got -1"),
    ("trainer.devices=0", "trainer.devices must be an integer, at least 1 device; got 0"),
    ("seed=abc", r"seed must be an integer in \[0, 2\*\*32\), got 'abc'"),
    ("seed=-1", r"seed must be an integer in \[0, 2\*\*32\), got -1"),
    ("optimizer=adam optimizer.betas=[1.5,0.999]", r"optimizer torch.optim.Adam refuses .*betas=\[1.5, 0.999\].*beta"),
    ("optimizer=rmsprop optimizer.alpha=-1", r"optimizer torch.optim.RMSprop refuses .*alpha=-1.*alpha"),
    ("callbacks.best_snapshot.monitor=val/accc", "callbacks.best_snapshot.monitor='val/accc' is not a metric"),
    ("callbacks.model_checkpoint.monitor=val_acc", "callbacks.model_checkpoint.monitor='val_acc' is not a metric"),
    ("callbacks.best_snapshot.mode=maximum", "callbacks.best_snapshot.mode must be one of"),
    ("trainer.precision=17", "trainer.precision=17: Trainer takes precision as one of 64, 32, 16 or .*'bf16-mixed'"),
    ("data.batch_size=1.5", "data.batch_size=1.5: DigitsDataModule takes batch_size as an integer"),
    ("+trainer.detect_anomaly=maybe", "trainer.detect_anomaly='maybe': Trainer takes detect_anomaly as true or false"),
    ("callbacks.model_checkpoint.save_top_k=abc", "callbacks.model_checkpoint.save_top_k='abc': ModelCheckpoint takes"),
    ("+model.net.dropuot=0.1", "model: .*unexpected keyword argument 'dropuot' \\(a misspelt key\\?\\)"),
    ("optimized_mode=maximum", "optimized_mode must be one of 'min', 'max', got 'maximum'"),
    (
        "schedule_via=scheduler schedule.max_lr=auto",
        "schedule_via=scheduler cannot take schedule.max_lr=auto: .* use schedule_via=callback, or give a number",
    ),
]


@pytest.mark.parametrize("overrides, message", BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_bad_values_fail_before_training_naming_the_key(make_cfg, overrides, message):
    from lightning_cyclic.run import ConfigError

    with pytest.raises(ConfigError, match=message):
        train(make_cfg(*overrides.split(), "progress_bar=none"))


def test_a_bad_value_on_the_command_line_is_one_line_and_exit_status_2(tmp_path):
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    done = subprocess.run(
        [sys.executable, "train.py", "trainer.max_epochs=abc", f"hydra.run.dir={tmp_path}"],
        cwd=ROOT, env={**os.environ, "PYTHONWARNINGS": "ignore"}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "error: trainer.max_epochs must be an integer" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["schedule_via=scheduler", "schedule.max_lr=auto"], "error: schedule_via=scheduler cannot take schedule"),
        (["optimized_mode=maximum"], "optimized_mode (the leaderboard's mode) must be one of 'min', 'max', got"),
    ],
)
def test_a_bad_value_on_the_command_line_names_its_key_without_a_traceback(tmp_path, overrides, message):
    done = run_cli(*overrides, f"hydra.run.dir={tmp_path}", timeout=120)
    assert done.returncode != 0 and message in done.stderr, done.stderr[-3000:]
    assert done.returncode == 2 or "leaderboard" in message  # (Hydra refuses its own callback's value first)
    assert "Traceback" not in done.stderr and "Epoch 0" not in done.stdout + done.stderr


def _group_leaves():
    """Every number and every word-valued choice of every option of every config group, as the app ships them."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from lightning_cyclic.run import _leaves
    from tests.conftest import CONF

    cases = []
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), **version_base()):
        for group in ("data", "model", "schedule", "optimizer", "callbacks", "lr_finder"):
            for option in options(group) if (CONF / group).is_dir() else [None]:
                chosen = [f"{group}={option}"] if option else ["schedule.max_lr=auto"]
                cfg = compose("train", overrides=chosen)
                for key, value in _leaves(cfg.get(group), group):
                    if isinstance(value, bool):
                        cases.append((chosen, key, "maybe"))
                    elif isinstance(value, (int, float)):
                        cases.append((chosen, key, "abc"))
                    elif isinstance(value, str) and key.rsplit(".", 1)[-1] in WORD_CHOICES:
                        cases.append((chosen, key, "bogus"))
    GlobalHydra.instance().clear()
    return cases


# the keys whose value is one word out of a fixed set (the others are names, paths or format strings)
WORD_CHOICES = ("mode", "decay", "anneal", "interval", "suggestion", "pool", "evaluate", "monitor")
GROUP_LEAVES = _group_leaves()


@pytest.mark.parametrize("chosen, key, value", GROUP_LEAVES, ids=[f"{c[0]}:{k}={v}" for c, k, v in GROUP_LEAVES])
def test_every_number_and_choice_of_every_group_refuses_a_wrong_value_naming_the_key(make_cfg, chosen, key, value):
    """The same classes of mistakes across all config groups: a word for a number or a flag, an unknown choice."""
    from lightning_cyclic.run import ConfigError

    name = key.rsplit(".", 1)[-1]
    extra = ["data=digits"] if not chosen[0].startswith("data=") else []  # the file datasets fail on their folder
    with pytest.raises(ConfigError) as caught:
        train(make_cfg(*chosen, *extra, f"{key}={value}", "progress_bar=none", "trainer.max_steps=1"))
    message = str(caught.value)
    assert name in message and value in message and "\n" not in message, message


# --- a model of one's own: the callbacks monitor what it logs ------------------------------------------


from lightning_cyclic.models import Classifier  # noqa: E402


class LogsItsOwnMetric(Classifier):
    """A reader's own model (the app's, with one more metric): it also logs the validation error rate."""

    def validation_step(self, batch, batch_idx):
        super().validation_step(batch, batch_idx)
        x, y = batch
        self.log("val/err", (self(x).argmax(-1) != y).float().mean())


OWN_MODEL = "model._target_=tests.test_run.LogsItsOwnMetric"


def test_callbacks_monitor_a_metric_that_only_the_users_own_model_logs(make_cfg):
    from lightning_cyclic.run import ConfigError

    on_err = ["callbacks.best_snapshot.monitor=val/err", "callbacks.best_snapshot.mode=min",
              "callbacks.model_checkpoint.monitor=val/err", "callbacks.model_checkpoint.mode=min"]  # fmt: skip
    metrics, objects = train(make_cfg(OWN_MODEL, *on_err, "trainer.max_epochs=3", "progress_bar=none"))
    best = objects["best"]
    assert best.monitor == "val/err" and best.restored and 0 <= best.best_score < 0.5
    assert metrics["val/err"] == pytest.approx(best.best_score)  # validated again after the restore
    with pytest.raises(ConfigError, match=r"best_snapshot.monitor='val/err' is not a metric the model \(Classifier\)"):
        train(make_cfg(*on_err, "trainer.max_epochs=1", "progress_bar=none"))  # the app's own model logs no val/err


def test_a_metric_the_users_own_model_does_not_log_is_named_at_fit_time_with_those_it_does(make_cfg):
    with pytest.raises(RuntimeError, match=r"BestSnapshot\(monitor='val/nothing'\) found no such metric; .*val/err"):
        train(make_cfg(OWN_MODEL, "callbacks.best_snapshot.monitor=val/nothing", "trainer.max_epochs=1",
                       "progress_bar=none"))  # fmt: skip


def test_a_max_lr_far_from_the_optimizers_warns_unless_the_sweep_varies_it(make_cfg):
    """``schedule.max_lr`` 50x ``optimizer.lr`` (an SGD peak under Adam, say) is worth one line in a run; in a job of a
    sweep over it (``hparams_search=coarse`` spans 1e-3..10) it is the point, and said once per job it was noise."""
    from hydra.core.hydra_config import HydraConfig

    from lightning_cyclic.run import warn_if_lrs_disagree

    def said(*overrides: str) -> str:
        cfg = make_cfg(*overrides, hydra=True)
        HydraConfig.instance().set_config(cfg)  # as @hydra.main sets it for the run or the job
        return warn_if_lrs_disagree(cfg)

    try:
        assert "schedule.max_lr=5 is 50x optimizer.lr=0.1 (SGD)" in said("schedule.max_lr=5")
        assert said("schedule.max_lr=5", "hydra.mode=MULTIRUN") == ""  # the job's own override: swept
    finally:
        HydraConfig.instance().cfg = None


def test_a_program_composes_the_apps_config_with_version_base_and_no_warning():
    """``version_base()`` is what this Hydra wants from a program that composes the app's config: on Hydra 1.3
    ``"1.3"`` (without it Hydra warns), on 1.4 nothing (given, it warns: the fresh-install test runs that one)."""
    import inspect
    import warnings

    import hydra
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    whitelists = "execution_whitelist" in inspect.signature(hydra.main).parameters
    assert version_base() == ({} if whitelists else {"version_base": "1.3"})
    GlobalHydra.instance().clear()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="(?s).*version_base")  # Hydra's, either way (no other warning counts)
        with initialize_config_module("lightning_cyclic.conf", **version_base()):
            cfg = compose("train", overrides=["schedule=onecycle"])
    GlobalHydra.instance().clear()
    assert cfg.schedule._target_ == "lightning_cyclic.OneCycle"
