"""The one module that knows Lightning's namespaces and the few internals the package reads.

Two namespaces: Lightning ships the same classes as ``lightning.pytorch`` and as
``pytorch_lightning``; a Trainer, a LightningCLI or a LightningModule from one
does not accept the other's callbacks. Our callbacks derive from
:class:`Callback` below, which is a subclass of *both* namespaces' ``Callback``
when ``pytorch_lightning`` is installed, so ``isinstance`` checks of either
(the Trainer's, jsonargparse's in ``LightningCLI``) pass, with one class.

Internals: each function below reads one private attribute, with the reason
and the public alternative we checked. CI runs the integration tests on the
oldest and the newest Lightning that ``pyproject.toml`` allows (``make
test-lightning-oldest``), so a rename upstream fails there, not in a user's run.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import lightning.pytorch as _lightning


def _optional_pytorch_lightning() -> Any:
    if importlib.util.find_spec("pytorch_lightning") is None:
        return None
    import pytorch_lightning

    return pytorch_lightning


pytorch_lightning = _optional_pytorch_lightning()

_CALLBACK_BASES: tuple[type, ...] = (_lightning.Callback,)
_MODULE_TYPES: tuple[type, ...] = (_lightning.LightningModule,)
_SWA_TYPES: tuple[type, ...] = (_lightning.callbacks.StochasticWeightAveraging,)
# Lightning's WeightAveraging (EMAWeightAveraging's base): 2.6 and later
_AVERAGING_TYPES: tuple[type, ...] = tuple(
    t for t in (getattr(_lightning.callbacks, "WeightAveraging", None),) if t is not None
)
_PROGRESS_TYPES: tuple[type, ...] = (_lightning.callbacks.ProgressBar,)
if pytorch_lightning is not None:
    _CALLBACK_BASES += (pytorch_lightning.Callback,)
    _PROGRESS_TYPES += (pytorch_lightning.callbacks.ProgressBar,)
    _MODULE_TYPES += (pytorch_lightning.LightningModule,)
    _SWA_TYPES += (pytorch_lightning.callbacks.StochasticWeightAveraging,)
    _AVERAGING_TYPES += tuple(
        t for t in (getattr(pytorch_lightning.callbacks, "WeightAveraging", None),) if t is not None
    )


class Callback(*_CALLBACK_BASES):  # type: ignore[misc]
    """Base of every callback here: a ``Callback`` of ``lightning.pytorch`` and of ``pytorch_lightning``."""

    def _cached_state_key(self, **kwargs: Any) -> str:
        """``_generate_state_key(**kwargs)``, built once per set of values.

        Lightning reads ``state_key`` at every call of every hook (to name the hook for its profiler), where
        building the key (a ``repr`` of the arguments) costs more than most hooks.
        """
        args = tuple(kwargs.items())
        cached = self.__dict__.get("_state_key_cached")
        if cached is not None and cached[0] == args:
            return cached[1]
        key = self._generate_state_key(**kwargs)
        self.__dict__["_state_key_cached"] = (args, key)
        return key

    def _fixed_state_key(self, source: object, arguments: Callable[[], dict[str, Any]]) -> str:
        """``_generate_state_key(**arguments())``, built once for each ``source``: the object the arguments are read
        from (an immutable config, or a dict read once at construction), compared by identity, so that a hook call
        pays one lookup (comparing the arguments themselves at every call cost 1-2 us: more than many hooks)."""
        cached = self.__dict__.get("_state_key_fixed")
        if cached is not None and cached[0] is source:
            return cached[1]
        key = self._generate_state_key(**arguments())
        self.__dict__["_state_key_fixed"] = (source, key)
        return key


def is_lightning_module(obj: Any) -> bool:
    """Whether ``obj`` is a LightningModule of either namespace."""
    return isinstance(obj, _MODULE_TYPES)


def swa_callback(trainer: _lightning.Trainer) -> Any:
    """The Trainer's ``StochasticWeightAveraging`` callback (of either namespace), or ``None``."""
    return next((c for c in trainer_callbacks(trainer) if isinstance(c, _SWA_TYPES)), None)


# --- public Trainer attributes its class does not declare ----------------------------------------
# Lightning's connectors set these on the Trainer during its __init__: they are public and documented,
# but a type checker does not find them on the class. These read them, typed as Lightning documents them.


def trainer_callbacks(trainer: _lightning.Trainer) -> list[_lightning.Callback]:
    """``trainer.callbacks``: the Trainer's own list (changes to it change the Trainer's callbacks)."""
    return trainer.callbacks  # type: ignore[attr-defined]  # set by its callback connector


def progress_bars(callbacks: list[_lightning.Callback]) -> list[_lightning.Callback]:
    """The progress bars among ``callbacks`` (either namespace's ``ProgressBar``)."""
    return [callback for callback in callbacks if isinstance(callback, _PROGRESS_TYPES)]


def set_trainer_callbacks(trainer: _lightning.Trainer, callbacks: list[_lightning.Callback]) -> None:
    """Make ``callbacks`` the Trainer's list (to put a list set aside with :func:`trainer_callbacks` back)."""
    trainer.callbacks = callbacks  # type: ignore[attr-defined]  # (as above)


def fast_dev_run(trainer: _lightning.Trainer) -> int | bool:
    """``trainer.fast_dev_run``: ``False``, or the number of batches of a development run."""
    return trainer.fast_dev_run  # type: ignore[attr-defined]  # set by its setup code


def reload_every(trainer: _lightning.Trainer) -> int:
    """``trainer.reload_dataloaders_every_n_epochs``: 0, or how often the train dataloader is built again (its
    length may change from one epoch to the next)."""
    return trainer.reload_dataloaders_every_n_epochs  # type: ignore[attr-defined]  # set by its data connector


def runs_sanity_check(trainer: _lightning.Trainer) -> bool:
    """Whether this ``fit`` runs a sanity check, asked from ``on_fit_start``: Lightning's own condition
    (``Trainer._run_sanity_check``): validation enabled, ``num_sanity_val_steps > 0``, and not restarting,
    which a fit resumed from a checkpoint is (its loops are restored after ``on_fit_start``)."""
    return bool(trainer.enable_validation and trainer.num_sanity_val_steps > 0 and trainer.ckpt_path is None)


def log_every_n_steps(trainer: _lightning.Trainer) -> int:
    """``trainer.log_every_n_steps``: how often Lightning writes logs (0: never)."""
    return trainer.log_every_n_steps  # type: ignore[attr-defined]  # set by its logger connector


# --- private reads, one per function -------------------------------------------------------------


def should_update_logs(trainer: Any) -> bool:
    """Whether Lightning writes logs at this step (``log_every_n_steps``).

    Private: ``trainer._logger_connector.should_update_logs``. It is what Lightning's own
    ``LearningRateMonitor`` asks; there is no public equivalent (``trainer.log_every_n_steps``
    alone misses the loop's step arithmetic and ``log_every_n_steps=0``).
    """
    return bool(trainer._logger_connector.should_update_logs)


def batches_stepped(trainer: Any) -> int:
    """Training batches completed in this run (resumes included), counted once per batch.

    Private: ``trainer.fit_loop.epoch_loop._batches_that_stepped``. It is the step Lightning's
    loggers and ``LearningRateMonitor`` use; under manual optimization it counts batches where
    ``trainer.global_step`` counts every ``optimizer.step()`` of every optimizer. It is restored
    from checkpoints, including mid-epoch ones, which a counter of our own would get wrong by one
    depending on callback order.
    """
    return int(trainer.fit_loop.epoch_loop._batches_that_stepped)


def has_val_source(trainer: Any) -> bool:
    """Whether this fit was given validation data at all (a ``val_dataloader`` or loaders).

    Private: ``val_loop._data_source.is_defined()``. ``trainer.val_dataloaders`` is ``None``
    until the validation loop sets up its data; asking the source first avoids calling a
    ``val_dataloader`` hook that raises or was never meant to run.
    """
    return bool(trainer.fit_loop.epoch_loop.val_loop._data_source.is_defined())


def setup_val_data(trainer: Any) -> None:
    """Set up the validation dataloaders now, as ``fit`` would on its first validation.

    ``val_loop.setup_data()`` is a public method of a public loop object; it is idempotent.
    """
    trainer.fit_loop.epoch_loop.val_loop.setup_data()


_VAL_DATA_STATE = ("_combined_loader", "_max_batches", "_last_val_dl_reload_epoch")


def val_data_state(trainer: Any) -> dict[str, Any]:
    """The validation loop's data as it is set up now (or not), for :func:`set_val_data_state`.

    Private: ``val_loop._combined_loader`` (``None`` until ``setup_data``), ``_max_batches`` and
    ``_last_val_dl_reload_epoch``, the three things ``EvaluationLoop.setup_data`` sets. A fit without a sanity
    check sets its validation data up at its first validation, mid-training, where a ``val_dataloader`` that
    draws from the global RNG moves the training's random stream on; the LR range test, which sets it up
    earlier, puts the loop back as it was so that this happens where it would have. There is no public way to
    undo ``setup_data``.
    """
    loop = trainer.fit_loop.epoch_loop.val_loop
    return {name: getattr(loop, name) for name in _VAL_DATA_STATE if hasattr(loop, name)}


def set_val_data_state(trainer: Any, state: dict[str, Any]) -> None:
    """Put the validation loop's data back as :func:`val_data_state` found it."""
    loop = trainer.fit_loop.epoch_loop.val_loop
    for name, value in state.items():
        setattr(loop, name, value)


def setup_train_data(trainer: Any) -> None:
    """Set up the training dataloaders now, as ``fit`` would (idempotent)."""
    trainer.fit_loop.setup_data()


def attached_trainer(model: Any) -> Any:
    """The Trainer a LightningModule is attached to, or ``None``.

    Private: ``model._trainer``. The public ``model.trainer`` raises when none is attached.
    """
    return model._trainer


def attach_trainer(model: Any, trainer: Any) -> None:
    """Re-attach ``trainer`` (possibly ``None``) to ``model``: the public setter refuses ``None``."""
    model._trainer = trainer


def swap_worker_iterator(loader: Any, iterator: Any) -> Any:
    """Put ``iterator`` (or ``None``) in the place where a ``DataLoader`` with ``persistent_workers=True``
    keeps its iterator between epochs; return the one that was there.

    Private (torch, not Lightning): ``DataLoader._iterator``. ``iter(loader)`` on such a loader does not
    make a new iterator but resets the kept one, which Lightning's fit loop already holds for its next
    epoch (``FitLoop.setup_data`` calls ``iter()``). The LR range test sets it aside, iterates with workers
    of its own, and puts it back; there is no public way to iterate such a loader apart.
    """
    previous = getattr(loader, "_iterator", None)
    loader._iterator = iterator
    return previous


def shutdown_workers(iterator: Any) -> None:
    """End a DataLoader iterator's worker processes now, not whenever it is garbage-collected.

    Private (torch): ``_MultiProcessingDataLoaderIter._shutdown_workers()``, what its ``__del__`` calls.
    """
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()


def swa_start_epoch(callback: Any, max_epochs: int | None) -> int:
    """The 0-based epoch from which Lightning's ``StochasticWeightAveraging`` sets the lr (its ``SWALR``).

    Private: ``StochasticWeightAveraging._swa_epoch_start``, the ``swa_epoch_start`` it was given (1-based), or
    a share of ``max_epochs``, which its ``on_fit_start`` turns into ``int(max_epochs * share)``. Its public
    ``swa_start`` property computes the same but fails before that ``on_fit_start``; this reads the same
    arithmetic at any point of the fit.
    """
    start = callback._swa_epoch_start
    if isinstance(start, float):
        start = int((max_epochs or 0) * start)
    return max(int(start) - 1, 0)


def swa_average(callback: Any) -> Any:
    """The module holding ``StochasticWeightAveraging``'s running average (``None`` before its ``setup``).

    Private: ``StochasticWeightAveraging._average_model``. Its ``on_train_end`` copies these parameters into the
    model when the run reached SWA's last epoch; comparing with them tells whether it did.
    """
    return getattr(callback, "_average_model", None)


def weight_averages(trainer: Any) -> list[tuple[Any, dict[str, Any]]]:
    """The running weight averages of the Trainer's averaging callbacks, as ``(callback, state)``: Lightning's
    ``WeightAveraging`` (``EMAWeightAveraging``'s base) and ``StochasticWeightAveraging``, of either namespace.

    ``state`` holds the live tensors (read it, copy it; :func:`load_weight_average` puts a copy back): the averaged
    parameters and buffers and how many updates they hold. Private: ``WeightAveraging._average_model`` (a torch
    ``AveragedModel``, whose state dict has its ``n_averaged``); ``StochasticWeightAveraging._average_model`` (a
    copy of the module) and its public ``n_averaged`` (``None`` until its first average). Neither has a public way to
    set its average back; their checkpoint hooks do the same through these attributes.
    """
    found = []
    for callback in trainer_callbacks(trainer):
        average = getattr(callback, "_average_model", None)
        if average is None or not isinstance(callback, _AVERAGING_TYPES + _SWA_TYPES):
            continue
        state: dict[str, Any] = {"model": average.state_dict()}
        if isinstance(callback, _SWA_TYPES):
            state["n_averaged"] = getattr(callback, "n_averaged", None)
        found.append((callback, state))
    return found


def load_weight_average(callback: Any, state: dict[str, Any]) -> None:
    """Put a state of :func:`weight_averages` back into ``callback``'s running average (copied into its tensors)."""
    callback._average_model.load_state_dict(state["model"])
    if "n_averaged" in state:
        n, now = state["n_averaged"], callback.n_averaged
        if now is None:  # (no average yet now: none then either)
            callback.n_averaged = None if n is None else n.clone()
        elif n is None:  # no average then is a count of 0 (SWA's next update copies the weights in, as its first does)
            now.fill_(0)
        else:
            now.copy_(n)


# --- Optuna -------------------------------------------------------------------------------------------


def optuna_trial(study: Any, number: int) -> Any:
    """``optuna.trial.Trial`` for trial ``number`` of ``study``: a trial another process (the sweeper) asked for.

    Optuna's public API hands out a ``Trial`` only from ``study.ask()``, which starts a new trial; a job that
    reports to the trial its sweeper started reaches it by id, and the id is ``FrozenTrial._trial_id`` (private;
    the same from Optuna 2 to 5, and what Optuna's own ``Trial`` and ``_tell`` use). ``Trial(study, trial_id)``
    is public.
    """
    import optuna

    frozen = next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
    if frozen is None:
        raise ValueError(f"study {study.study_name!r} has no trial number {number}")
    return optuna.trial.Trial(study, frozen._trial_id)


# --- torchmetrics ---------------------------------------------------------------------------------------


def metric_state_names(metric: Any) -> list[str]:
    """The names of a torchmetrics ``Metric``'s states (those of ``add_state``).

    Private: ``Metric._defaults``. Its public ``metric_state`` reads the same names, but only from torchmetrics 1.1
    on; the package allows 1.0.
    """
    return list(metric._defaults)


def metric_counters(metric: Any) -> dict[str, Any]:
    """What a torchmetrics ``Metric`` keeps beside its states: how often ``update`` ran, and ``compute()``'s cache.

    Private: ``Metric._update_count`` and ``Metric._computed``. The public ``update_count`` cannot be set, and
    ``reset()``, the only public way to change either, also clears the states. :func:`set_metric_counters` puts
    them back.
    """
    return {"_update_count": metric._update_count, "_computed": metric._computed}


def set_metric_counters(metric: Any, counters: dict[str, Any]) -> None:
    """Put back what :func:`metric_counters` read (the same two private attributes)."""
    for name, value in counters.items():
        setattr(metric, name, value)


# --- Hydra --------------------------------------------------------------------------------------------


def hydra_job_error(job_return: Any) -> BaseException:
    """The exception a failed Hydra job raised, as a callback's ``on_job_end`` receives it.

    Private: ``JobReturn._return_value``. The public ``return_value`` re-raises it after writing "Error executing
    job" to stderr, which Hydra's sweeper does once itself for each failed job; Hydra's own job-logging callback
    reads the private field too.
    """
    error: BaseException = job_return._return_value
    return error


def hydra_has_whitelists() -> bool:
    """Whether the installed Hydra checks the targets a config names against execution whitelists (Hydra >= 1.4):
    ``hydra.main`` takes ``execution_whitelist`` and ``hydra.utils`` has the ``execution_whitelist`` context. The
    one test of that for the app: it decides ``version_base``, the whitelist ``hydra_app`` gives and whether a run
    trusts its config. Public names only."""
    import inspect

    import hydra
    import hydra.utils

    takes = "execution_whitelist" in inspect.signature(hydra.main).parameters
    return takes and hasattr(hydra.utils, "execution_whitelist")


def hydra_execution_whitelist_active() -> bool:
    """Whether a Hydra execution whitelist is in force here (``hydra.main(execution_whitelist=...)`` or an
    ``execution_whitelist()`` context, Hydra >= 1.4); ``False`` on a Hydra without whitelists. Where Hydra has
    whitelists but this cannot be read, ``True``: a caller's whitelist is never overridden (a run then warns).

    Private: ``hydra._internal.execution_policy._get_active_execution_whitelist`` (Hydra has no public read of it).
    """
    if not hydra_has_whitelists():
        return False
    try:
        from hydra._internal.execution_policy import _get_active_execution_whitelist  # type: ignore[import-not-found]
    except ImportError:
        return True
    return _get_active_execution_whitelist() is not None
