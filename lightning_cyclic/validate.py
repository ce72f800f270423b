"""The app's config checks: :class:`ConfigError`, and the translation around each build that makes one.

:func:`~lightning_cyclic.run.train` builds every group of the config once, in order, each inside
:func:`config_errors`: what a constructor refuses becomes one line naming the key, the value and what is allowed.
:func:`check_values` checks, before anything is built, the values no constructor checks, or checks late.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lightning_cyclic._extras import needs

with needs("app", __name__):
    from omegaconf import DictConfig, OmegaConf

from lightning_cyclic.shapes._checks import check_choice, check_number

PROGRESS_BARS = ("rich", "tqdm", "none")


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


@contextmanager
def config_errors(group: str, node: Any) -> Iterator[None]:
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


def located(path: str) -> Any:
    """The object a ``_target_`` names, or None where there is none to import (building it then says why).

    ``pydoc.locate`` finds it as Hydra does; Hydra's public ``get_object`` also logs an error line of its own
    for a name it cannot find, a second message beside the one the build gives.
    """
    import pydoc

    try:
        return pydoc.locate(path)
    except Exception:  # a module that fails while it is imported: its build reports it
        return None


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

    if not OmegaConf.is_dict(node):
        return
    for key in node:  # nested targets first (model.net)
        if not OmegaConf.is_interpolation(node, key):
            _check_types(f"{prefix}.{key}", node[key])
    target = node.get("_target_")
    if not isinstance(target, str):
        return
    built = located(target)
    try:
        init = built.__init__ if inspect.isclass(built) else built
        hints = typing.get_type_hints(init)
    except Exception:  # nothing found (its build says why), or hints this check cannot read: no check
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


def _monitoring(cfg: DictConfig) -> Iterator[tuple[str, Any]]:
    """``(key, node)`` of each callback, and the schedule (``PlateauDecay``), that monitors a metric."""
    nodes = [(f"callbacks.{name}", cb) for name, cb in (cfg.get("callbacks") or {}).items()]
    for name, node in [*nodes, ("schedule", cfg.get("schedule"))]:
        if node and "monitor" in node and node.monitor is not None:
            yield name, node


def check_values(cfg: DictConfig) -> None:
    """The values no constructor checks, or checks late: the seed, the Trainer's numbers, the optimizer's lr,
    weight decay and momentum, the ``mode`` of each monitor, each ``_target_`` node's values against its
    constructor's annotations, and the app's own choices."""
    try:
        seed = cfg.get("seed")
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
            raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
        _check_trainer(cfg)
        opt = cfg.optimizer
        check_number("optimizer.lr", opt.get("lr"), 0, low_open=True)
        if "weight_decay" in opt:
            check_number("optimizer.weight_decay", opt.weight_decay, 0)
        if "momentum" in opt:
            check_number("optimizer.momentum", opt.momentum, 0, 1, high_open=True)
        for name, node in _monitoring(cfg):
            if "mode" in node:
                check_choice(f"{name}.mode", node.mode, ("min", "max"))
        for group in ("data", "model", "schedule", "optimizer", "lr_finder", "trainer"):
            _check_types(group, cfg.get(group))
        for group in ("callbacks", "logger"):
            for name, node in (cfg.get(group) or {}).items():
                _check_types(f"{group}.{name}", node)
        check_choice("schedule_via", cfg.get("schedule_via", "callback"), ("callback", "scheduler"))
        check_choice("optimized_mode", cfg.get("optimized_mode", "max"), ("min", "max"))
        check_choice("progress_bar", cfg.get("progress_bar", "rich"), PROGRESS_BARS)
    except ValueError as err:
        raise ConfigError(str(err)) from None


# what the app's Classifier logs
CLASSIFIER_LOGS = ("val/loss", "val/acc", "train/loss", "train/acc", "train/loss_step", "train/loss_epoch")


def check_monitors(cfg: DictConfig, model: Any) -> None:
    """A monitor that the app's own ``Classifier`` does not log, named before anything trains.

    Any other model, a subclass of it too, may log metrics of its own: the callback that monitors one reports a
    missing metric at fit time, with the metrics that were logged (``BestSnapshot``, ``ModelCheckpoint``).
    """
    from lightning_cyclic.models import Classifier

    if type(model) is not Classifier:
        return
    for name, node in _monitoring(cfg):
        if node.monitor not in CLASSIFIER_LOGS:
            raise ConfigError(
                f"{name}.monitor={node.monitor!r} is not a metric the model (Classifier) logs; choose one of: "
                f"{', '.join(CLASSIFIER_LOGS)}"
            )
