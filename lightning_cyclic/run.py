"""``train(cfg) -> (metrics, objects)``: the application as a plain function.

``train.py`` only wraps it in ``@hydra.main``; tests compose a config and call it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lightning_cyclic._extras import needs

with needs("app", __name__):  # first: without the extra, one line and nothing else imported
    import hydra  # noqa: F401  (named first: the message names it)
    import rich  # noqa: F401  (the default progress bar)
    import yaml
    from hydra.utils import instantiate
    from omegaconf import DictConfig, OmegaConf, read_write

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, RichProgressBar, TQDMProgressBar
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lightning_cyclic import _compat
from lightning_cyclic.callbacks import (
    BestSnapshot,
    FineTune,
    Guard,
    LRFinder,
    PlateauDecay,
    Preemption,
    ScheduleCallback,
    SnapshotEnsemble,
)
from lightning_cyclic.callbacks.pruning import OptunaPruning
from lightning_cyclic.checkpoint import SafeCheckpointIO
from lightning_cyclic.optim import lr_scale_factor
from lightning_cyclic.shapes._checks import check_choice, check_number
from lightning_cyclic.sweeps import (
    TRIAL_ENV,
    job_overrides,
    optuna_trial_of_this_job,
    write_leaderboard_of_this_multirun,
    write_result,
)

log = logging.getLogger(__name__)

PROGRESS_BARS = ("rich", "tqdm", "none")
TERMINATED = 143  # 128 + SIGTERM: the exit status cluster schedulers (SLURM) expect of a preempted job


class _NotTheUsersBusiness(logging.Filter):
    """Drops Lightning's advertisement for its cloud logger, printed at every fit."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in str(record.msg)


def quiet_lightning_noise() -> None:
    """The app's one place for what Lightning and torch print that is not the user's business: the logger tip
    of every fit and torch's ``LeafSpec`` deprecation raised inside Lightning's own code. Idempotent; the
    callbacks (a library inside other projects) never change their host's warnings or logging."""
    import warnings

    leaf_spec = r"`isinstance\(treespec, LeafSpec\)` is deprecated"
    warnings.filterwarnings("ignore", message=leaf_spec, category=FutureWarning)
    for name in ("lightning.pytorch.utilities.rank_zero", "pytorch_lightning.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _NotTheUsersBusiness) for f in logger.filters):
            logger.addFilter(_NotTheUsersBusiness())


def _float_metrics(trainer: pl.Trainer) -> dict[str, float]:
    return {k: float(v) for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1}


def _check_optimizer(cfg: DictConfig) -> Any:
    """Fail before training, naming the argument, where torch would fail later or not at all."""
    opt = cfg.optimizer
    check_number("optimizer.lr", opt.get("lr"), 0, low_open=True)
    if "weight_decay" in opt:
        check_number("optimizer.weight_decay", opt.weight_decay, 0)
    if "momentum" in opt:
        check_number("optimizer.momentum", opt.momentum, 0, 1, high_open=True)
    # whatever else torch refuses (betas, alpha, eps, ...): build it on one parameter now, and say which key
    import torch

    try:
        return instantiate(opt)(params=[torch.nn.Parameter(torch.zeros(1))])
    except (ValueError, TypeError) as err:
        given = ", ".join(f"optimizer.{k}={v}" for k, v in opt.items() if k not in ("_target_", "_partial_"))
        raise ValueError(f"optimizer {opt.get('_target_')} refuses its arguments ({given}): {err}") from None


def _check_schedule_free(cfg: DictConfig, built: Any) -> None:
    """A schedule-free optimizer (``built``: the config's, on one parameter) takes no schedule: one line says so
    before anything trains."""
    from lightning_cyclic.optim import is_schedule_free

    if is_schedule_free(built) and cfg.get("schedule"):
        raise ValueError(
            f"optimizer {type(built).__name__} is schedule-free: it sets its own lr, so set schedule=null and add "
            f"its train/eval switching with callbacks=schedule_free (experiment=schedule_free does both)"
        )


# Trainer keys: (lowest allowed, what the value means when it is allowed); -1 means "no limit" where allowed
_TRAINER_INTS = {
    "max_epochs": (1, "at least 1 epoch, or -1 with max_steps"),
    "max_steps": (1, "at least 1 step, or -1 (no limit)"),
    "accumulate_grad_batches": (1, "at least 1 batch per optimizer step"),
    "log_every_n_steps": (1, "at least 1"),
    "devices": (1, "at least 1 device"),
    "num_nodes": (1, "at least 1 node"),
    "check_val_every_n_epoch": (1, "at least 1"),
}
_MINUS_ONE_ALLOWED = ("max_epochs", "max_steps")


def _check_trainer(cfg: DictConfig) -> None:
    """The Trainer keys whose bad values Lightning reports late, wrongly or not at all."""
    tr = cfg.trainer
    for key, (low, allowed) in _TRAINER_INTS.items():
        value = tr.get(key)
        if value is None or (key == "devices" and value == "auto"):
            continue
        if key in _MINUS_ONE_ALLOWED and value == -1:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"trainer.{key} must be an integer, {allowed}; got {value!r}")
    for key in ("limit_train_batches", "limit_val_batches", "val_check_interval"):
        value = tr.get(key)
        if value is None:
            continue
        zero_ok = key == "limit_val_batches"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (value == 0 and not zero_ok):
            raise ValueError(
                f"trainer.{key} must be a fraction in (0, 1] or a number of batches >= 1, got {value!r}"
                + ("" if key != "limit_val_batches" else " (0 turns validation off)")
            )
        if isinstance(value, float) and value > 1 and not value.is_integer():
            raise ValueError(f"trainer.{key} must be a fraction in (0, 1] or a whole number of batches, got {value!r}")
    if tr.get("max_epochs") == -1 and tr.get("max_steps", -1) == -1:
        raise ValueError("trainer.max_epochs=-1 needs trainer.max_steps >= 1: the run would never end")


# what the app's Classifier logs: callbacks that monitor a metric must name one of these
LOGGED = ("val/loss", "val/acc", "train/loss", "train/acc", "train/loss_step", "train/loss_epoch")


def _check_monitors(cfg: DictConfig) -> None:
    nodes = [(f"callbacks.{name}", cb) for name, cb in (cfg.get("callbacks") or {}).items()]
    for name, cb in [*nodes, ("schedule", cfg.get("schedule"))]:  # PlateauDecay monitors one too
        if not cb or "monitor" not in cb or cb.monitor is None:
            continue
        if cb.monitor not in LOGGED:
            raise ValueError(
                f"{name}.monitor={cb.monitor!r} is not a metric the model logs; choose one of: {', '.join(LOGGED)}"
            )
        if "mode" in cb:
            check_choice(f"{name}.mode", cb.mode, ("min", "max"))


class ConfigError(ValueError):
    """A bad value in the config: the message names the key, the value and what is allowed."""


def _leaves(node: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    if OmegaConf.is_dict(node):
        for key in node:
            if key not in ("_target_", "_partial_") and not OmegaConf.is_interpolation(node, key):
                yield from _leaves(node[key], f"{prefix}.{key}")
    elif not OmegaConf.is_list(node):
        yield prefix, node


def _named(group: str, node: Any, err: BaseException) -> str:
    """The constructor's message, led by the config key it is about when one key of the group is named in it."""
    import re

    message = (str(err).strip().splitlines() or [type(err).__name__])[0]
    if isinstance(err, TypeError) and "unexpected keyword argument" in message:  # a key the target does not take
        return f"{group}: {message} (a misspelt key?)"
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", message))
    keys = [key for key, _ in _leaves(node, group) if key.rsplit(".", 1)[-1] in words]
    if len(keys) == 1 and not message.startswith(keys[0]):
        value = OmegaConf.select(node, keys[0].split(".", 1)[1]) if "." in keys[0] else node
        return f"{keys[0]}={value!r}: {message}"
    return message if message.startswith(group) else f"{group}: {message}"


_SIMPLE = {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null"}


def _accepts(hint: Any, value: Any) -> bool | None:
    """Whether ``value`` fits the annotation ``hint``; None when the hint is not one this check reads."""
    import types
    import typing

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return value in args
    if origin in (typing.Union, types.UnionType):  # Optional[X], X | None
        verdicts = [_accepts(arg, value) for arg in args]
        return True if any(verdicts) else (None if None in verdicts else False)
    if hint in _SIMPLE:
        if hint is float:
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        if hint is int:
            return isinstance(value, int) and not isinstance(value, bool)
        return isinstance(value, hint)
    return None  # paths, tensors, callables, containers: their constructors check them


def _describe(hint: Any) -> str:
    import typing

    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    args = typing.get_args(hint)
    if args:
        return " or ".join(_describe(a) for a in args)
    return _SIMPLE.get(hint, getattr(hint, "__name__", str(hint)))


def _check_types(prefix: str, node: Any) -> None:
    """Each value of a ``_target_`` node against its constructor's annotations (int, float, bool, str, Literal,
    Optional and Unions of them): ``save_top_k=abc`` fails here, naming the key, not inside the constructor."""
    import inspect
    import typing

    from hydra._internal.utils import _locate

    if not OmegaConf.is_dict(node):
        return
    for key in node:  # nested targets first (model.net)
        if not OmegaConf.is_interpolation(node, key):
            _check_types(f"{prefix}.{key}", node[key])
    target = node.get("_target_")
    if not isinstance(target, str):
        return
    try:
        built = _locate(target)
        init = built.__init__ if inspect.isclass(built) else built
        hints = typing.get_type_hints(init)
    except Exception:  # an unimportable target fails in instantiate with its own message; odd hints: no check
        return
    for key in node:
        if key.startswith("_") or key not in hints or OmegaConf.is_interpolation(node, key):
            continue
        value = node[key]
        if OmegaConf.is_config(value):
            continue
        if _accepts(hints[key], value) is False:
            raise ValueError(
                f"{prefix}.{key}={value!r}: {target.rsplit('.', 1)[-1]} takes {key} as {_describe(hints[key])}"
            )


@contextmanager
def _config_errors(group: str, node: Any) -> Iterator[None]:
    """What a constructor refuses while the app builds ``group`` becomes a :class:`ConfigError` naming the key.

    Every group (data, model, schedule, callbacks, lr finder, loggers, trainer) is built before training, so a
    bad value anywhere fails in seconds, with one line.
    """
    from hydra.errors import InstantiationException
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    refused = (ValueError, TypeError, FileNotFoundError, MisconfigurationException)
    try:
        yield
    except InstantiationException as err:
        cause = err.__cause__
        while isinstance(cause, InstantiationException) and cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, ConfigError):
            raise cause from None
        if not isinstance(cause, refused):
            raise
        raise ConfigError(_named(group, node, cause)) from err
    except refused as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(_named(group, node, err)) from err


LR_DISAGREE = 10.0  # schedule.max_lr this many times above or below optimizer.lr: likely meant for another optimizer


def warn_if_lrs_disagree(cfg: DictConfig) -> str:
    """One warning line where ``schedule.max_lr`` was set to a number far from ``optimizer.lr`` (an SGD peak
    under Adam, say): the schedule's value is the one trained with. Returns the line ("" where none)."""
    schedule, optimizer = cfg.get("schedule"), cfg.get("optimizer")
    if not schedule or not optimizer or "max_lr" not in schedule or OmegaConf.is_interpolation(schedule, "max_lr"):
        return ""
    peak, lr = schedule.get("max_lr"), optimizer.get("lr")
    numbers = [isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in (peak, lr)]
    if not all(numbers) or 1 / LR_DISAGREE <= peak / lr <= LR_DISAGREE:
        return ""
    name = str(optimizer.get("_target_", "")).rsplit(".", 1)[-1]
    line = (
        f"schedule.max_lr={_number(peak)} is {_number(peak / lr)}x optimizer.lr={_number(lr)} ({name}); the schedule "
        f"sets the lr at every step, so {_number(peak)} is what trains. Meant for another optimizer? Leave "
        f"schedule.max_lr out (it follows optimizer.lr), or set schedule.max_lr=auto."
    )
    log.warning(line)
    return line


def check_config(cfg: DictConfig) -> None:
    """Every value checked before anything is built: one message naming the key, the value and what is allowed."""
    try:
        seed = cfg.get("seed")
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
            raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
        _check_trainer(cfg)
        optimizer = _check_optimizer(cfg)
        _check_monitors(cfg)
        for group in ("data", "model", "schedule", "optimizer", "lr_finder", "trainer"):
            _check_types(group, cfg.get(group))
        for group in ("callbacks", "logger"):
            for name, node in (cfg.get(group) or {}).items():
                _check_types(f"{group}.{name}", node)
        check_choice("schedule_via", cfg.get("schedule_via", "callback"), ("callback", "scheduler"))
        check_choice("optimized_mode", cfg.get("optimized_mode", "max"), ("min", "max"))
        _check_schedule_free(cfg, optimizer)
        _progress_bar(cfg)
        path = _checkpoint_path(cfg.get("ckpt_path"), cfg)
        if path is not None:  # read it now: a damaged or foreign file is a one-line error, not a traceback
            SafeCheckpointIO().load_checkpoint(path, map_location="cpu", weights_only=True)
    except (ValueError, FileNotFoundError) as err:
        raise ConfigError(str(err)) from None


def main(cfg: DictConfig) -> float | None:
    """What ``train.py`` runs: :func:`train`, and its optimized metric for sweeps.

    A bad config value in a single run prints one line (``error: ...``) and exits with status 2, without
    a traceback (``HYDRA_FULL_ERROR=1`` shows it); in a multirun it fails that job, which the leaderboard
    records with the message.
    """
    try:
        metrics, objects = train(cfg)
    except ConfigError as err:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if os.environ.get("HYDRA_FULL_ERROR") == "1" or HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    pruning = objects.get("pruning")
    if pruning is not None and pruning.pruned_at is not None:  # the sweeper records the trial as pruned
        import optuna

        raise optuna.TrialPruned(pruning.reason())
    return metrics.get(cfg.get("optimized_metric"))


def _lr_arguments(node: Any) -> list[str]:
    """The schedule config's arguments that are lrs, as its shape declares them (``Arg(unit="lr")``)."""
    from hydra._internal.utils import _locate

    target = node.get("_target_") if node else None
    try:
        shape = getattr(_locate(target), "schedule_cls", None) if isinstance(target, str) else None
    except ImportError:  # an unimportable target fails where the schedule is built, with its own message
        return []
    return [name for name, arg in getattr(shape, "ARGS", {}).items() if arg.unit == "lr"]


def _scale_lrs(cfg: DictConfig, trainer: pl.Trainer, datamodule: Any) -> float | None:
    """Apply the opt-in lr scaling rule to the optimizer's and the schedule's lrs; returns the factor."""
    rule = cfg.get("lr_scaling", {}) or {}
    if not rule.get("rule"):
        return None
    batch = datamodule.hparams.batch_size * trainer.accumulate_grad_batches * trainer.world_size
    factor = lr_scale_factor(batch, rule["base_batch_size"], rule["rule"])
    cfg.optimizer.lr = cfg.optimizer.lr * factor
    for key in _lr_arguments(cfg.get("schedule")):
        if not cfg.get("schedule") or OmegaConf.is_interpolation(cfg.schedule, key):
            continue  # ${optimizer.lr} and its shares follow the optimizer's lr, scaled above
        value = cfg.schedule.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            cfg.schedule[key] = value * factor
    log.info(
        "lr scaling (%s): effective batch %d = %d per device x %d accumulation x %d devices, base %d: lrs x %.4g",
        rule["rule"],
        batch,
        datamodule.hparams.batch_size,
        trainer.accumulate_grad_batches,
        trainer.world_size,
        rule["base_batch_size"],
        factor,
    )
    return factor


_CONFIG_FLAGS = ("--config-dir", "-cd", "--config-path", "-cp", "--config-name", "-cn")


def _config_flags(argv: list[str]) -> list[str]:
    """Hydra's flags in ``argv`` that say where the configs are (``--config-dir my_conf``, ``-cn=exp``), as given."""
    kept, i = [], 0
    while i < len(argv):
        name = argv[i].split("=", 1)[0]
        if name in _CONFIG_FLAGS:
            takes_next = "=" not in argv[i] and i + 1 < len(argv)
            kept += argv[i : i + 2] if takes_next else argv[i : i + 1]
            i += 2 if takes_next else 1
        else:
            i += 1
    return kept


@contextmanager
def _ddp_children_join_this_job() -> Iterator[None]:
    """Multirun + DDP without hangs or shared folders.

    Lightning's DDP launcher starts ranks 1.. by re-running the script with ``sys.argv`` and
    ``hydra.run.dir=<HydraConfig run.dir>``. Inside a multirun that would be the whole sweep
    again, in another folder. For the duration of ``fit`` both name this one job instead: its
    own overrides in RUN mode (with the flags that say where the configs are), and its own output folder.
    """
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
    except (ImportError, ValueError):  # not under @hydra.main
        yield
        return
    if hydra_cfg.mode != RunMode.MULTIRUN:
        yield
        return
    saved_argv, saved_dir, saved_env = sys.argv, hydra_cfg.run.dir, dict(os.environ)
    sys.argv = [sys.argv[0], *_config_flags(sys.argv[1:]), *hydra_cfg.overrides.task, "hydra.mode=RUN"]
    with read_write(hydra_cfg):  # type: ignore[arg-type]  # HydraConfig.get() is a DictConfig, typed as its schema
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir
    try:
        yield
    finally:
        sys.argv = saved_argv
        with read_write(hydra_cfg):  # type: ignore[arg-type]  # (as above)
            hydra_cfg.run.dir = saved_dir
        # the next job of this process starts its own process group, on a fresh port
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        os.environ.clear()
        os.environ.update(saved_env)


def _progress_bar(cfg: DictConfig) -> pl.Callback | None:
    kind = cfg.get("progress_bar", "rich")
    check_choice("progress_bar", kind, PROGRESS_BARS)
    return {"rich": RichProgressBar, "tqdm": TQDMProgressBar}.get(kind, lambda: None)()


# overrides that may differ between a run and the one it resumes ("the same config" ignores them)
_RESUME_MAY_CHANGE = ("ckpt_path", "trainer.max_epochs", "trainer.max_steps", "hydra.")


def _same_config(overrides: list[str]) -> frozenset[str]:
    return frozenset(o for o in overrides if not o.lstrip("+~").startswith(_RESUME_MAY_CHANGE))


def _latest_run_of_this_config(cfg: DictConfig) -> str:
    """``ckpt_path=last``: the newest ``checkpoints/last.ckpt`` of an earlier run with the same overrides."""
    here = Path(cfg.paths.output_dir).resolve()
    root = here.parent.parent  # outputs/<date>/<time>-<id> -> outputs
    mine = _same_config(job_overrides())
    candidates, looked = [], 0
    for ckpt in root.glob("*/*/checkpoints/last.ckpt"):
        run = ckpt.parent.parent
        if run.resolve() == here:
            continue
        looked += 1
        overrides_file = run / ".hydra" / "overrides.yaml"
        if not overrides_file.is_file():  # not a run of the app (or its record is gone): its config is unknown
            continue
        if _same_config(list(yaml.safe_load(overrides_file.read_text()) or [])) == mine:
            candidates.append(ckpt)
    if not candidates:
        shown = " ".join(sorted(mine)) or "(no overrides)"
        raise ValueError(
            f"ckpt_path=last: no earlier run with these overrides ({shown}) has checkpoints/last.ckpt; looked in "
            f"{root}/*/*/checkpoints/ ({looked} runs with a last.ckpt). Give the checkpoint's path instead."
        )
    return str(max(candidates, key=lambda p: p.stat().st_mtime))


def _checkpoint_path(value: Any, cfg: DictConfig | None = None) -> str | None:
    """``ckpt_path`` as a local file that exists; a remote address is refused (loading it could run code);
    ``last`` is the newest ``last.ckpt`` of an earlier run of the same config."""
    if value is None:
        return None
    text = str(value)
    if text == "last" and cfg is not None:
        return _latest_run_of_this_config(cfg)
    scheme = text.split("://", 1)[0] if "://" in text else ""
    if scheme and scheme != "file":
        raise ValueError(
            f"ckpt_path={text!r} is a remote address; the app resumes only from local checkpoint files, which it "
            f"loads weights-only (a checkpoint from elsewhere can run code when loaded). Download it and pass its path."
        )
    path = Path(text[len("file://") :] if scheme == "file" else text).expanduser()
    if not path.is_file():
        hint = " (give the path of a run's checkpoints/last.ckpt)" if text in ("best", "hpc") else ""
        raise ValueError(f"ckpt_path={text!r}: no such checkpoint file{hint}")
    return str(path)


def last_checkpoint(trainer: pl.Trainer) -> ModelCheckpoint | None:
    """The ModelCheckpoint that keeps ``last.ckpt`` (the latest state), if the run has one."""
    for cb in _compat.trainer_callbacks(trainer):
        if isinstance(cb, ModelCheckpoint) and (cb.filename == cb.CHECKPOINT_NAME_LAST or cb.save_last):
            return cb
    return None


class SaveOnInterrupt(Callback):
    """On SIGTERM (a preempted cluster job) or Ctrl-C, write ``last.ckpt`` before anything else reacts.

    It comes first in the callbacks, so its ``on_exception`` runs before ``BestSnapshot`` puts the best
    weights back: the checkpoint holds the latest state, and a resume from it continues where the run was.
    """

    def __init__(self) -> None:
        self.saved: str | None = None

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        keeper = last_checkpoint(trainer)
        if keeper is None or keeper.dirpath is None or not isinstance(exception, (SIGTERMException, KeyboardInterrupt)):
            return
        path = Path(keeper.dirpath) / f"{keeper.CHECKPOINT_NAME_LAST}{keeper.FILE_EXTENSION}"
        io = trainer.strategy.checkpoint_io
        refused = len(getattr(io, "skipped", []))
        trainer.save_checkpoint(path, weights_only=False)  # the whole state: a resume continues from it
        if len(getattr(io, "skipped", [])) == refused:  # (weights that hold NaN/inf are not written)
            self.saved = str(path)


def train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Build data, model, optimizer, schedule, callbacks, logger and trainer from ``cfg``; fit; report."""
    cfg = cfg.copy()  # the lr scaling rule writes into it
    OmegaConf.set_struct(cfg, False)
    quiet_lightning_noise()
    check_config(cfg)
    warn_if_lrs_disagree(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    ckpt_path = _checkpoint_path(cfg.get("ckpt_path"), cfg)
    with _config_errors("data", cfg.data):
        datamodule = instantiate(cfg.data)
    callbacks: list[pl.Callback] = []
    for name, node in (cfg.get("callbacks") or {}).items():
        if node:
            with _config_errors(f"callbacks.{name}", node):
                callbacks.append(instantiate(node))
    with _config_errors("progress_bar", cfg.get("progress_bar")):
        bar = _progress_bar(cfg)
    callbacks += [bar] if bar is not None else []
    saver = SaveOnInterrupt()
    callbacks.insert(0, saver)
    # SIGTERM: every rank stops after the same step (Lightning's own handler can leave DDP ranks waiting for each
    # other); SaveOnInterrupt writes last.ckpt, and the exit status is 143, below
    callbacks.append(Preemption(ckpt_path=False))
    # a trial of the app's Optuna sweeper with a pruner: report the optimized metric at every validation
    trial = optuna_trial_of_this_job()
    pruning = OptunaPruning(monitor=cfg.get("optimized_metric", "val/acc"), **trial) if trial else None
    callbacks += [pruning] if pruning is not None else []
    loggers = []
    for name, node in (cfg.get("logger") or {}).items():
        if node:
            with _config_errors(f"logger.{name}", node):
                loggers.append(instantiate(node))
    with _config_errors("trainer", cfg.trainer):
        trainer: pl.Trainer = instantiate(
            cfg.trainer,
            callbacks=callbacks,
            logger=loggers or False,
            enable_progress_bar=bar is not None,
            plugins=[SafeCheckpointIO()],  # atomic, checksummed checkpoint files
        )
    with _config_errors("lr_scaling", cfg.get("lr_scaling")):
        factor = _scale_lrs(cfg, trainer, datamodule)
    with _config_errors("model", cfg.model):
        model = instantiate(
            cfg.model,
            optimizer=instantiate(cfg.optimizer),
            input_shape=list(datamodule.input_shape),
            num_classes=datamodule.num_classes,
        )
    schedule = None
    if cfg.get("schedule"):
        with _config_errors("schedule", cfg.schedule):
            schedule = instantiate(cfg.schedule)
    if schedule is not None:
        if not isinstance(schedule, (ScheduleCallback, PlateauDecay, FineTune)):
            raise TypeError(
                f"schedule must build a lightning_cyclic schedule callback, got {type(schedule).__name__} "
                f"from _target_={cfg.schedule.get('_target_')!r}"
            )
        via = cfg.get("schedule_via", "callback")
        check_choice("schedule_via", via, ("callback", "scheduler"))
        if via == "scheduler" and not isinstance(schedule, ScheduleCallback):
            raise ConfigError(f"schedule_via=scheduler: {type(schedule).__name__} is a callback only; use callback")
        if via == "scheduler" and isinstance(schedule, ScheduleCallback) and schedule.auto:
            auto = " and ".join(f"schedule.{name}=auto" for name in sorted(schedule.auto))
            raise ConfigError(
                f"schedule_via=scheduler cannot take {auto}: the LR range test runs inside the fit, after "
                f"configure_optimizers has built the scheduler; use schedule_via=callback, or give a number"
            )
        if via == "scheduler":  # inside configure_optimizers, as a closed-form LRScheduler (ScheduleMixin)
            model.schedule = schedule
        else:
            _compat.trainer_callbacks(trainer).insert(0, schedule)
        if isinstance(schedule, ScheduleCallback) and schedule.auto and cfg.get("lr_finder"):
            with _config_errors("lr_finder", cfg.lr_finder):
                schedule.finder = instantiate(cfg.lr_finder)
            _compat.trainer_callbacks(trainer).insert(0, schedule.finder)
    if factor is not None:
        for lg in trainer.loggers:
            lg.log_hyperparams({"lr_scaling/rule": cfg.lr_scaling.rule, "lr_scaling/factor": factor})

    terminated = ""
    with _ddp_children_join_this_job():
        if trial and TRIAL_ENV not in os.environ:  # the DDP ranks Lightning starts follow rank 0's decisions
            os.environ[TRIAL_ENV] = json.dumps(trial)
        try:
            trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        except SIGTERMException:  # Lightning stops at the next batch; its exception is a SystemExit with code 0
            terminated = f"SIGTERM received at step {trainer.global_step} (epoch {trainer.current_epoch})"
            if saver.saved:
                terminated += f"; the latest state is in {saver.saved}: resume with ckpt_path={saver.saved}"
        metrics = _float_metrics(trainer)
        snapshots = [c for c in _compat.trainer_callbacks(trainer) if isinstance(c, BestSnapshot)]
        best = next((c for c in snapshots if c.restore), snapshots[0] if snapshots else None)  # the one that restores
        if best is not None and best.restored and not terminated:  # measure the weights the model now holds
            trainer.validate(model, datamodule=datamodule, verbose=False)
            metrics.update(_float_metrics(trainer))
    ensemble = next((c for c in _compat.trainer_callbacks(trainer) if isinstance(c, SnapshotEnsemble)), None)
    if ensemble is not None and ensemble.metrics:
        metrics["ensemble/val_acc"] = ensemble.metrics["val_acc"]
    curves = _curves(trainer, cfg, schedule)
    metric = cfg.get("optimized_metric", "val/acc")
    pruned = pruning.reason() if pruning is not None else ""
    if trainer.is_global_zero:
        status = "terminated" if terminated else "pruned" if pruned else "finished"
        write_result(cfg.paths.output_dir, metric, metrics, job_overrides(), status=status, reason=terminated or pruned)
    if trainer.is_global_zero:
        print(_summary(cfg, trainer, model, metrics, schedule, best, ensemble, curves, factor, terminated, pruned))
    if terminated:
        # a sweep stops here too (documented): record what ran so far, then exit as schedulers expect
        if trainer.is_global_zero:
            write_leaderboard_of_this_multirun(metric, cfg.get("optimized_mode", "max"))
        raise SystemExit(TERMINATED)
    objects = {"trainer": trainer, "model": model, "datamodule": datamodule, "schedule": schedule, "pruning": pruning}
    return metrics, {**objects, "best": best, "ensemble": ensemble, "curves": curves}


def _curves(trainer: pl.Trainer, cfg: DictConfig, schedule: Any) -> Path | None:
    """The training-curves PNG, from the CSV logger's metrics, next to the run; the lr drawn from the schedule
    itself (logging follows ``log_every_n_steps``, too sparse for a cyclical lr)."""
    csv = next((lg for lg in trainer.loggers if type(lg).__name__ == "CSVLogger"), None)
    if csv is None or csv.log_dir is None or not trainer.is_global_zero:
        return None
    metrics = Path(csv.log_dir) / "metrics.csv"
    if not metrics.exists():
        return None
    from lightning_cyclic.plot import plot_training_curves

    path = Path(cfg.paths.output_dir) / "training_curves.png"
    drawn = getattr(schedule, "schedule", None)  # PlateauDecay has none (it decides from the metrics): the log
    if isinstance(schedule, ScheduleCallback) and drawn is None and not schedule.auto:  # schedule_via=scheduler
        try:
            drawn = schedule.build(**schedule.planned(trainer))
        except ValueError:  # a run too short for it (fast_dev_run): the logged lr, if any
            drawn = None
    try:
        title = f"{cfg.data._target_.rsplit('.', 1)[-1]}, seed {cfg.seed}"
        fig = plot_training_curves(metrics, path, title=title, schedule=drawn)
        import matplotlib.pyplot as plt

        plt.close(fig)  # a sweep runs its jobs in one process: each run's figure goes with it
    except ImportError:
        return None
    return path


def _device(trainer: pl.Trainer) -> str:
    """``cpu``, ``cuda:0 (NVIDIA H100 80GB HBM3)``; with the process count under DDP and a precision other
    than 32-bit."""
    device = trainer.strategy.root_device
    text = str(device)
    if device.type == "cuda":
        import torch

        text += f" ({torch.cuda.get_device_name(device)})"
    if trainer.world_size > 1:
        text += f", {trainer.world_size} processes ({type(trainer.strategy).__name__})"
    precision = str(trainer.precision)
    if precision not in ("32-true", "32"):
        text += f", precision {precision}"
    return text


def _shown(path: str | Path) -> str:
    """A path as the user can paste it: relative to the working folder when it is inside it."""
    absolute = Path(path).resolve()
    try:
        return str(absolute.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _number(value: Any) -> str:
    """A config number as people write it: 4 significant digits (``0.1039``, not ``0.10387349801017592``)."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _group_peaks(model: Any, mult: dict[str, float], peak: float) -> str:
    """``net.1: 0.01 (x0.1), the rest: 0.1``: each ``lr_mult`` prefix's lr where the schedule peaks. The schedule
    drives the group with the largest lr; the others keep their ratio to it."""
    names = [n for n, _ in model.named_parameters()]
    rest = any(not any(n == p or n.startswith(p + ".") for p in mult) for n in names)
    top = max([*mult.values(), 1.0] if rest else mult.values())
    parts = [f"{prefix}: {_number(peak * m / top)} (x{m:g})" for prefix, m in mult.items()]
    if rest:
        parts.append(f"the rest: {_number(peak / top)}")
    return ", ".join(parts)


def _summary(
    cfg: DictConfig,
    trainer: pl.Trainer,
    model: Any,
    metrics: dict[str, float],
    schedule: ScheduleCallback | PlateauDecay | FineTune | None,
    best: BestSnapshot | None,
    ensemble: SnapshotEnsemble | None,
    curves: Path | None,
    factor: float | None,
    terminated: str = "",
    pruned: str = "",
) -> str:
    """One screen: what was reached, with what lr, and where everything is."""
    acc, train_acc = metrics.get("val/acc"), metrics.get("train/acc")
    head = f"val/acc = {acc:.4f}" if acc is not None else "no validation metric"
    head += f", train/acc = {train_acc:.4f}" if train_acc is not None else ""
    lines = ["", "[lightning_cyclic] " + ("TERMINATED: " if terminated else "") + head]
    if terminated:
        lines.append(f"  terminated: {terminated}")
    if pruned:
        lines.append(f"  {pruned}")
    if best is not None and best.restored:
        lines.append(f"  best weights restored: epoch {best.best_epoch}, {best.monitor} = {best.best_score:.4f}")
    if best is not None and best.stop_reason:
        lines.append(f"  stopped early: {best.stop_reason}")
    guard = next((c for c in _compat.trainer_callbacks(trainer) if isinstance(c, Guard)), None)
    if guard is not None and guard.events:
        steps = ", ".join(str(e["step"]) for e in guard.events)
        lines.append(
            f"  guard: {guard.rollbacks} rollback(s) (at step {steps}), lr scaled by {guard.lr_scale:.4g} since"
            + ("; it gave up and stopped the run" if guard.gave_up else "")
        )
    if ensemble is not None and ensemble.metrics:
        lines.append(f"  snapshot ensemble of {len(ensemble.snapshots)}: val/acc = {ensemble.metrics['val_acc']:.4f}")
    if isinstance(schedule, PlateauDecay):
        base, now, cuts = schedule.base_lr(), schedule.lead_lr(), schedule.cuts
        at = f" (after epochs {', '.join(str(c[0]) for c in cuts)})" if cuts else ""
        lines.append(f"  schedule: PlateauDecay on {schedule.monitor}, lr {_number(base)} -> {_number(now)}, "
                     f"{len(cuts)} cut{'' if len(cuts) == 1 else 's'}{at}")  # fmt: skip
    elif isinstance(schedule, FineTune):
        first, second = schedule.lrs
        share = f"layers x{schedule.layer_decay:g} each" if schedule.layer_decay else f"x{schedule.backbone_lr_mult:g}"
        lines.append(f"  schedule: FineTune, {schedule.backbone} frozen for {schedule.freeze_epochs} epoch(s) at peak "
                     f"{_number(first)}, then peak {_number(second)}, the backbone at {share} of the head")  # fmt: skip
    elif schedule is not None:
        used = ", ".join(f"{k}={v:.4g}" for k, v in (schedule.resolved or {}).items())
        given = ", ".join(f"{k}={_number(schedule.params[k])}" for k in ("base_lr", "max_lr") if k in schedule.params)
        finder = next((cb for cb in _compat.trainer_callbacks(trainer) if isinstance(cb, LRFinder)), None)
        trials = ((finder.result.extra.get("trials") or {}) if finder and finder.result else {}).get("lr")
        how = "the LR range test and its short trials" if trials is not None else "the LR range test"
        lr = f"{used} (found by {how})" if used else given
        lines.append(f"  schedule: {type(schedule).__name__}, {lr}")
        peak = {**schedule.params, **(schedule.resolved or {})}.get("max_lr")
        mult = dict(getattr(model, "lr_mult", None) or {})
        if mult and isinstance(peak, (int, float)):
            lines.append(f"  lr per param group (model.lr_mult), at the peak: {_group_peaks(model, mult, peak)}")
    if factor is not None:
        lines.append(f"  lr scaling: {cfg.lr_scaling.rule}, lrs x {factor:.4g}")
    epochs = trainer.current_epoch
    lines.append(f"  {trainer.global_step} optimizer steps, {epochs} epoch{'' if epochs == 1 else 's'}")
    lines.append(f"  device: {_device(trainer)}")
    callbacks = _compat.trainer_callbacks(trainer)
    ckpt = last_checkpoint(trainer) or next((c for c in callbacks if isinstance(c, ModelCheckpoint)), None)
    saved = ckpt and (ckpt.last_model_path or ckpt.best_model_path)
    io = trainer.strategy.checkpoint_io
    refused = [reason for path, reason in getattr(io, "skipped", []) if path == saved]
    if saved and Path(saved).exists():
        note = f"; later saves were not written: {refused[-1]}" if refused else ""
        lines.append(f"  checkpoint: {_shown(saved)} (resume with ckpt_path=...{note})")
    elif refused:
        lines.append(f"  checkpoint: none written: {refused[-1]}")
    for lg in trainer.loggers:
        if lg.log_dir:
            lines.append(f"  logs ({type(lg).__name__}): {_shown(lg.log_dir)}")
    if curves is not None:
        lines.append(f"  training curves: {_shown(curves)}")
    found = schedule.resolved if isinstance(schedule, ScheduleCallback) else None
    if found and math.isfinite(found.get("max_lr", 0)):
        lines.append(f"  range test: {_shown(Path(cfg.paths.output_dir) / 'lr_find.png')}")
    return "\n".join(lines)
