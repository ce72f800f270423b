"""Every config group option composes and instantiates."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from lightning_cyclic.callbacks import ScheduleCallback
from tests.conftest import options


def test_schedule_options_cover_every_schedule():
    assert {"onecycle", "cyclical", "warm_restarts", "warmup_decay", "constant"} <= set(options("schedule"))


@pytest.mark.parametrize("name", options("schedule"))
def test_schedule_instantiates(make_cfg, name):
    from lightning_cyclic import FineTune, PlateauDecay

    callback = instantiate(make_cfg(f"schedule={name}").schedule)
    assert isinstance(callback, (ScheduleCallback, PlateauDecay, FineTune))  # the last two: callbacks of their own


@pytest.mark.parametrize("name", options("optimizer"))
def test_optimizer_instantiates_as_a_partial(make_cfg, name):
    import torch

    factory = instantiate(make_cfg(f"optimizer={name}").optimizer)
    opt = factory(params=[torch.nn.Parameter(torch.zeros(2))])
    assert isinstance(opt, torch.optim.Optimizer)


@pytest.mark.parametrize("group", ["data", "model", "trainer"])
def test_other_groups_instantiate(make_cfg, group):
    for name in options(group):
        cfg = make_cfg(f"{group}={name}")
        if group == "model":
            dm = instantiate(cfg.data)
            model = instantiate(
                cfg.model, optimizer=instantiate(cfg.optimizer), input_shape=dm.input_shape, num_classes=10
            )
            assert model.net is not None
        elif group == "trainer" and cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
            assert cfg.trainer.strategy == "ddp"  # composes; a Trainer on GPUs needs GPUs (tests/callbacks/test_gpu.py)
        else:
            assert instantiate(cfg[group]) is not None


@pytest.mark.parametrize("name", options("callbacks"))
def test_callbacks_instantiate(make_cfg, name):
    import lightning.pytorch as pl

    cfg = make_cfg(f"callbacks={name}")
    built = [instantiate(c) for c in (cfg.callbacks or {}).values()]
    assert all(isinstance(c, pl.Callback) for c in built)
    assert (name == "none") == (not built)


@pytest.mark.parametrize("name", options("logger"))
def test_loggers_instantiate(make_cfg, name):
    from lightning.pytorch.loggers import Logger

    built = [instantiate(c) for c in (make_cfg(f"logger={name}").logger or {}).values()]
    assert all(isinstance(lg, Logger) for lg in built) and (name == "none") == (not built)


@pytest.mark.parametrize("group", ["debug", "experiment"])
def test_debug_and_experiment_options_compose_and_change_something(make_cfg, group):
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(make_cfg(), resolve=False)
    for name in options(group):
        changed = OmegaConf.to_container(make_cfg(f"{group}={name}"), resolve=False)
        assert changed != plain, f"{group}={name} changes nothing"


def test_experiment_files_hold_only_their_changes():
    from tests.conftest import CONF

    for path in (CONF / "experiment").glob("*.yaml"):
        text = path.read_text()
        assert text.splitlines()[0] == "# @package _global_", path.name
        assert "_target_" not in text, f"{path.name} redefines a whole config instead of changing it"


@pytest.mark.parametrize("name", options("hparams_search"))
def test_hparams_search_options_compose_into_a_multirun(make_cfg, name):
    from lightning_cyclic.sweeps import register_resolvers

    register_resolvers()
    extra = ["fine_from=recipes/does-not-matter.csv"] if name == "fine" else []
    cfg = make_cfg(f"hparams_search={name}", *extra, hydra=True)
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN" and cfg.hydra.sweeper.params


@pytest.mark.parametrize("launcher", ["joblib", "local", "slurm"])
def test_launchers_compose(make_cfg, launcher):
    # (trainer.devices as a count: tests/test_sweeps.py refuses -1 there)
    cfg = make_cfg(f"hydra/launcher={launcher}", "trainer=ddp", "trainer.devices=4", hydra=True)
    if launcher == "slurm":  # the cluster fields, wired to the trainer
        for key in ("partition", "nodes", "gpus_per_node", "tasks_per_node", "timeout_min"):
            assert key in cfg.hydra.launcher
        assert cfg.hydra.launcher.tasks_per_node == cfg.trainer.devices == 4
