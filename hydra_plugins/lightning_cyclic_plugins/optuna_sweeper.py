"""The app's Optuna sweeper (``hydra/sweeper=optuna``, ``hparams_search=...``): Optuna >= 4 through its ask/tell API.

It replaces Hydra's Optuna plugin (hydra-optuna-sweeper), which requires Optuna 2 and so SQLAlchemy below 2,
and keeps its YAML surface: ``params`` in Hydra's override grammar (``interval(a, b)``, ``tag(log,
interval(a, b))``, ``choice(...)``, ``range(...)``, ``a,b,c``, or a YAML list), ``sampler`` (a config group:
``hydra/sweeper/sampler=tpe|random|grid|cmaes|nsgaii|qmc``, with ``seed``), ``direction``, ``n_trials``,
``n_jobs`` (trials asked at once and handed to the launcher together), ``study_name``, ``storage``,
``max_failure_rate``. What it adds:

- **a stored, resumable study**: ``storage`` defaults to ``sqlite:///<sweep folder>/optuna.db``; the same
  command with the same ``hydra.sweep.dir`` opens the study again and adds ``n_trials`` more, each job in a
  folder named after its trial's number. A seeded sampler draws afresh when the study already holds trials,
  and a trial left running by a sweeper of this machine that died (a kill, a power cut) is recorded as
  failed. Any URL Optuna accepts works (``postgresql://...``).
- **one study over many processes or nodes**: ``journal: <file>`` (or ``storage: journal:///<file>``) keeps it
  in Optuna's journal file storage, which workers on a shared filesystem append to; start the same command on
  each node (or as SLURM array tasks) with the same ``hydra.sweep.dir``: each asks its own trials, none runs
  twice, and the leaderboard lists them all.
- **pruning**: ``pruner: median`` (default) ``| percentile | successive_halving | hyperband | threshold |
  none``, ``pruner_args`` (its Optuna keywords), ``pruner_warmup`` (validations before a trial may be pruned;
  ``auto``: the schedule's rise to its peak, plus one). The sweeper gives each job its trial's number (in
  ``hydra.job.env_set``: the job's environment); the job opens the trial from the storage and reports the
  optimized metric at every validation (:class:`lightning_cyclic.callbacks.pruning.OptunaPruning`); a job
  that is pruned raises ``optuna.TrialPruned`` and is told ``PRUNED``, a job that fails is told ``FAIL``.

Hydra imports this module at every start-up: it imports Hydra and the dataclasses only; Optuna when it sweeps.
"""

import logging
import math
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

# (its classes read at each use: Hydra 1.3's plugin scan runs each plugin module again in place, after this import)
from . import submitit_launchers

log = logging.getLogger(__name__)
# Optuna's storage imports alembic, whose plugins announce themselves at INFO through Hydra's console handler
logging.getLogger("alembic").setLevel(logging.WARNING)

HOST, PID = "sweeper_host", "sweeper_pid"  # user attributes of a trial: which sweeper process asked for it
TRIAL_NUMBER, STUDY_NAME = "LIGHTNING_CYCLIC_OPTUNA_TRIAL", "LIGHTNING_CYCLIC_OPTUNA_STUDY"  # a job's environment


# --- the configs: hydra/sweeper=optuna, hydra/sweeper/sampler=... ------------------------------------------
# Sampler fields left None take Optuna's default (which moves between releases); only the ones set are passed.
# The annotations are typing's (Optional, Dict): Hydra runs this module before it is in sys.modules, where
# dataclasses cannot resolve postponed (string) annotations, and OmegaConf reads them at run time.


@dataclass
class SamplerConf:
    _target_: str = MISSING
    seed: Optional[int] = None


@dataclass
class TPESamplerConf(SamplerConf):
    _target_: str = "optuna.samplers.TPESampler"
    n_startup_trials: Optional[int] = None
    n_ei_candidates: Optional[int] = None
    multivariate: Optional[bool] = None
    group: Optional[bool] = None
    constant_liar: Optional[bool] = None
    warn_independent_sampling: Optional[bool] = None


@dataclass
class RandomSamplerConf(SamplerConf):
    _target_: str = "optuna.samplers.RandomSampler"


@dataclass
class GridSamplerConf(SamplerConf):
    """Every combination of ``params`` (choices and ranges; an interval has no grid), each once."""

    _target_: str = "optuna.samplers.GridSampler"


@dataclass
class CmaEsSamplerConf(SamplerConf):
    """Needs the ``cmaes`` package (``pip install cmaes``)."""

    _target_: str = "optuna.samplers.CmaEsSampler"
    sigma0: Optional[float] = None
    n_startup_trials: Optional[int] = None
    restart_strategy: Optional[str] = None
    use_separable_cma: Optional[bool] = None
    with_margin: Optional[bool] = None
    warn_independent_sampling: Optional[bool] = None


@dataclass
class NSGAIISamplerConf(SamplerConf):
    _target_: str = "optuna.samplers.NSGAIISampler"
    population_size: Optional[int] = None


@dataclass
class QMCSamplerConf(SamplerConf):
    _target_: str = "optuna.samplers.QMCSampler"
    qmc_type: Optional[str] = None
    scramble: Optional[bool] = None


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.lightning_cyclic_plugins.optuna_sweeper.OptunaSweeper"
    _recursive_: bool = False  # the sweeper builds the sampler (the grid's from params), not Hydra
    defaults: List[Any] = field(default_factory=lambda: [{"sampler": "tpe"}])
    sampler: Any = MISSING
    direction: Any = "minimize"  # maximize | minimize (or max | min), or a list of them for several objectives
    storage: Optional[str] = "sqlite:///${hydra.sweep.dir}/optuna.db"  # null: in memory (no resume, no pruning)
    journal: Optional[str] = None  # a journal file for workers on a shared filesystem (replaces storage)
    study_name: Optional[str] = "${hydra.job.name}"
    n_trials: int = 20  # trials this process adds
    n_jobs: int = 1  # trials asked at once and launched together (hydra/launcher=joblib runs them in parallel)
    max_failure_rate: float = 0.0  # a batch with a larger share of failed jobs ends the sweep with the error
    params: Optional[Dict[str, Any]] = None
    pruner: str = "median"  # median | percentile | successive_halving | hyperband | threshold | none
    pruner_args: Dict[str, Any] = field(default_factory=dict)  # the pruner's Optuna keywords
    pruner_warmup: Any = "auto"  # validations before a trial may be pruned; auto: the schedule's rise + 1


ConfigStore.instance().store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="lightning_cyclic")
for _name, _node in {
    "tpe": TPESamplerConf,
    "random": RandomSamplerConf,
    "grid": GridSamplerConf,
    "cmaes": CmaEsSamplerConf,
    "nsgaii": NSGAIISamplerConf,
    "qmc": QMCSamplerConf,
}.items():
    ConfigStore.instance().store(group="hydra/sweeper/sampler", name=_name, node=_node, provider="lightning_cyclic")


# --- the search space ------------------------------------------------------------------------------------


def _as_override(key: str, value: Any) -> str:
    """A ``params`` entry as an override: a YAML list is a choice."""
    if isinstance(value, (list, tuple, ListConfig)):
        return f"{key}=choice({', '.join(str(v) for v in value)})"
    return f"{key}={value}"


def search_space(overrides: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Hydra override strings -> (Optuna distributions by name, the plain overrides every trial gets).

    ``interval(a, b)``: uniform (integers when both ends are); ``tag(log, interval(a, b))``: log-uniform;
    ``choice(...)``, ``a,b,c`` and ``shuffle(range(...))``: categorical; ``range(start, stop, step)``: the values
    Python's range gives (``stop`` left out, as Hydra's basic sweeper does). Later overrides of a key win.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import IntervalSweep, RangeSweep, Transformer
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    space: dict[str, Any] = {}
    fixed: dict[str, str] = {}
    for override in OverridesParser.create().parse_overrides(overrides):
        name = override.get_key_element()
        space.pop(name, None)
        fixed.pop(name, None)
        if not override.is_sweep_override():
            fixed[name] = override.input_line or f"{name}={override.get_value_element_as_str()}"
            continue
        value = override.value()
        if override.is_interval_sweep():
            assert isinstance(value, IntervalSweep)  # (for mypy: is_interval_sweep says so)
            low, high, logs = value.start, value.end, "log" in value.tags
            if isinstance(low, int) and isinstance(high, int):
                space[name] = IntDistribution(low, high, log=logs)
            else:
                space[name] = FloatDistribution(float(low), float(high), log=logs)  # type: ignore[arg-type]
        elif override.is_range_sweep() and not getattr(value, "shuffle", False):
            assert isinstance(value, RangeSweep)
            values: list[Any] = list(override.sweep_iterator())
            if not values:
                raise ValueError(f"{override.input_line}: the range is empty")
            step = abs(value.step if value.step is not None else 1)
            low, high = min(values), max(values)
            if all(isinstance(v, int) for v in values) and isinstance(step, int):
                space[name] = IntDistribution(int(low), int(high), step=step)
            else:
                space[name] = FloatDistribution(float(low), float(high), step=float(step))
        else:  # choice, a,b,c, shuffled ranges
            choices = list(override.sweep_iterator(transformer=Transformer.encode))
            space[name] = CategoricalDistribution(choices)  # type: ignore[arg-type]
    return space, list(fixed.values())


def grid_of(space: dict[str, Any]) -> dict[str, list[Any]]:
    """The grid sampler's values for each parameter: choices and ranges only."""
    from optuna.distributions import CategoricalDistribution

    grid = {}
    for name, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            grid[name] = list(dist.choices)
        elif getattr(dist, "step", None) is not None and not dist.log:
            n = round((dist.high - dist.low) / dist.step) + 1
            grid[name] = [dist.low + i * dist.step for i in range(n)]
        else:
            raise ValueError(f"the grid sampler needs choices or ranges; {name} is a continuous interval")
    return grid


def build_sampler(config: Any, space: dict[str, Any]) -> Any:
    """The sampler of ``hydra.sweeper.sampler``: only the fields that are set are passed to it."""
    from hydra.utils import get_class

    given = OmegaConf.to_container(config, resolve=True) if OmegaConf.is_config(config) else dict(config)
    assert isinstance(given, dict)
    target = str(given.pop("_target_"))
    given.pop("_partial_", None)
    kwargs = {str(k): v for k, v in given.items() if v is not None}
    if target.endswith("CmaEsSampler"):
        import importlib.util

        if importlib.util.find_spec("cmaes") is None:
            raise ValueError("hydra/sweeper/sampler=cmaes needs the cmaes package: pip install cmaes")
    if target.endswith("GridSampler"):
        return get_class(target)(grid_of(space), **kwargs)
    return get_class(target)(**kwargs)


def directions_of(direction: Any) -> list[Any]:
    names = list(direction) if isinstance(direction, (list, tuple, ListConfig)) else [direction]
    aliases = {"max": "maximize", "min": "minimize", "maximize": "maximize", "minimize": "minimize"}
    bad = [d for d in names if str(d) not in aliases]
    if bad or not names:
        raise ValueError(
            f"hydra.sweeper.direction must be maximize or minimize (or max, min), or a list; got {direction}"
        )
    return [aliases[str(d)] for d in names]


# --- the study -------------------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def resume(study: Any) -> int:
    """Prepare a stored study for more trials; returns the number of trials it holds (0 for a new study).

    A trial still ``RUNNING`` that a sweeper of this machine asked for, whose process is gone, is recorded as
    failed; one of another machine (a worker of a shared study) is left alone: it may be running.
    """
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    if not trials:
        return 0
    host, dead, elsewhere = socket.gethostname(), [], 0
    for t in trials:
        if t.state != TrialState.RUNNING:
            continue
        pid = t.user_attrs.get(PID)
        if t.user_attrs.get(HOST) == host and isinstance(pid, int) and pid != os.getpid() and not _alive(pid):
            dead.append(t.number)
        else:
            elsewhere += 1
    for number in dead:
        study.tell(number, state=TrialState.FAIL)
    reseed = getattr(study.sampler, "reseed_rng", None)  # a seeded sampler would propose the first trials again
    if callable(reseed):
        reseed()
    log.info(
        "Resuming study %s with %d trials (%d left running by a sweeper that died, now recorded as failed; "
        "%d running in other processes)",
        study.study_name,
        len(trials),
        len(dead),
        elsewhere,
    )
    return len(trials)


class OptunaSweeper(Sweeper):
    """Hydra sweeper over an Optuna study (see the module's docstring); its config is ``OptunaSweeperConf``."""

    def __init__(self, **config: Any) -> None:
        from lightning_cyclic.sweeps import unusable_range

        params = config.get("params")
        why = unusable_range(params)
        if why:  # Hydra prints the message of an error raised here, without a traceback
            raise ValueError(why)
        self.conf = config
        self.pruner = str(config.get("pruner") or "none")
        from lightning_cyclic.callbacks.pruning import PRUNERS

        if self.pruner not in PRUNERS:
            raise ValueError(f"hydra.sweeper.pruner must be one of: {', '.join(PRUNERS)}; got {self.pruner!r}")
        self.directions = directions_of(config.get("direction", "minimize"))
        for key, low in (("n_trials", 0), ("n_jobs", 1)):
            value = config.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"hydra.sweeper.{key} must be an integer >= {low}, got {value!r}")
        rate = config.get("max_failure_rate", 0.0)
        if not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise ValueError(f"hydra.sweeper.max_failure_rate must be in [0, 1], got {rate!r}")

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )
        self.sweep_dir = Path(str(config.hydra.sweep.dir))
        self.cwd = str(config.hydra.runtime.cwd)

    def _open_study(self, sampler: Any) -> Any:
        import optuna

        from lightning_cyclic.callbacks.pruning import JOURNAL, make_pruner, open_storage
        from lightning_cyclic.sweeps import SQLITE, storage_url

        url = storage_url(self.conf, self.cwd)
        if url is None and self.pruner != "none":
            log.warning("hydra.sweeper.storage=null keeps the study in memory, where jobs cannot report: no pruning")
        for scheme in (SQLITE, JOURNAL):
            if url is not None and url.startswith(scheme):
                Path(url[len(scheme) :]).parent.mkdir(parents=True, exist_ok=True)
        warmup = self.conf.get("pruner_warmup", "auto")
        pruner_args = OmegaConf.to_container(self.conf["pruner_args"]) if self.conf.get("pruner_args") else {}
        pruner = make_pruner(self.pruner, warmup if isinstance(warmup, int) else 0, pruner_args)  # type: ignore[arg-type]
        self.url = url
        return optuna.create_study(
            study_name=self.conf.get("study_name"),
            storage=open_storage(url) if url is not None else None,
            sampler=sampler,
            pruner=pruner,  # (the jobs' decide; this one is for samplers that read it, TPE under Hyperband)
            directions=self.directions,
            load_if_exists=True,
        )

    def sweep(self, arguments: list[str]) -> None:
        import optuna
        from optuna.trial import TrialState

        params = self.conf.get("params") or {}
        space, fixed = search_space([*(_as_override(str(k), v) for k, v in params.items()), *arguments])
        sampler = build_sampler(self.conf["sampler"], space)
        study = self._open_study(sampler)
        held = resume(study)
        n_trials = int(self.conf["n_trials"])
        if isinstance(sampler, optuna.samplers.GridSampler):
            size = math.prod(len(v) for v in grid_of(space).values())
            visited = sum(1 for t in study.get_trials(deepcopy=False) if "grid_id" in t.system_attrs)
            n_trials = min(n_trials, max(0, size - visited))
            log.info("Grid of %d points, %d visited: %d trials to run", size, visited, n_trials)
        subdir = OmegaConf.to_container(self.config.hydra.sweep, resolve=False).get("subdir")  # type: ignore[union-attr]
        by_number = subdir == "${hydra.job.num}"  # a job's folder is its trial's number (shared and resumed studies)
        log.info(
            "Study %s (%s), sampler %s, pruner %s, %s: %d trials%s",
            study.study_name,
            self.url or "in memory",
            type(sampler).__name__,
            self.pruner,
            "/".join(self.directions),
            n_trials,
            f", after the {held} it holds" if held else "",
        )
        done = 0
        while done < n_trials:
            batch = min(int(self.conf["n_jobs"]), n_trials - done)
            trials = [study.ask(fixed_distributions=space) for _ in range(batch)]
            overrides = []
            for trial in trials:
                trial.set_user_attr(HOST, socket.gethostname())
                trial.set_user_attr(PID, os.getpid())
                job = [*fixed, *(f"{name}={value}" for name, value in trial.params.items())]
                # the job's trial: through its environment, since Hydra (1.4) refuses jobs whose hydra.sweeper
                # differs from the sweep's; an Optuna-made study name ("no-name-<uuid>") with it
                job.append(f"+hydra.job.env_set.{TRIAL_NUMBER}={trial.number}")
                if not self.conf.get("study_name"):
                    job.append(f"+hydra.job.env_set.{STUDY_NAME}={study.study_name}")
                job += [f"hydra.sweep.subdir={trial.number}"] if by_number else []
                overrides.append(job)
            assert self.launcher is not None  # (set in setup, which Hydra calls first)
            stop = None
            try:
                returns = self.launcher.launch(overrides, initial_job_idx=trials[0].number)
            except submitit_launchers.SweepStopped as stopped:  # a job stopped by SIGTERM: the others are recorded
                stop, returns = stopped, stopped.results
            failures = []
            for trial, ret in zip(trials, returns):
                state, values, error = self._outcome(ret)
                if error is not None:
                    failures.append(ret)
                    log.warning("Trial %d failed: %s", trial.number, error)
                try:
                    study.tell(trial.number, values, state=state)
                except RuntimeError as err:  # the grid sampler stops the study when its grid is done
                    if "Study.stop" not in str(err):
                        raise
            done += batch
            if stop is not None:
                self._write_results(study, TrialState)
                raise stop
            if failures and len(failures) / len(returns) > float(self.conf.get("max_failure_rate", 0.0)):
                log.error(
                    "%d of %d jobs failed (max_failure_rate=%s): the sweep stops here",
                    len(failures),
                    len(returns),
                    self.conf.get("max_failure_rate", 0.0),
                )
                failures[0].return_value  # noqa: B018  (raises the job's error, with its traceback)
            if isinstance(sampler, optuna.samplers.GridSampler) and sampler.is_exhausted(study):
                break
        self._write_results(study, TrialState)

    def _outcome(self, ret: Any) -> tuple[Any, list[float] | None, str | None]:
        """(state, values, error) of a job: COMPLETE with its value(s), PRUNED, or FAIL with the reason."""
        import optuna
        from hydra.core.utils import JobStatus
        from optuna.trial import TrialState

        from lightning_cyclic.sweeps import failure_reason

        if ret.status != JobStatus.COMPLETED:
            error = ret._return_value  # the exception (ret.return_value re-raises it)
            if isinstance(error, optuna.TrialPruned):
                return TrialState.PRUNED, None, None
            return TrialState.FAIL, None, failure_reason(error) if isinstance(error, BaseException) else str(error)
        value = ret.return_value
        if isinstance(value, submitit_launchers.StoppedJob):  # (the launchers' result of a job a SIGTERM stopped)
            return TrialState.FAIL, None, f"stopped: {value.reason or 'SIGTERM'}"
        try:
            values = [float(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
        except (TypeError, ValueError):
            values = []
        if len(values) != len(self.directions):
            log.warning(
                "The job returned %r, not %d number(s): its trial is recorded failed", value, len(self.directions)
            )
            return TrialState.FAIL, None, None
        return TrialState.COMPLETE, values, None

    def _write_results(self, study: Any, states: Any) -> None:
        trials = study.get_trials(deepcopy=False)
        count = {s.name.lower(): sum(1 for t in trials if t.state == s) for s in states if s != states.WAITING}
        results: dict[str, Any] = {"name": "optuna", "study_name": study.study_name, "trials": count}
        if self.url is not None:
            results["storage"] = self.url
        complete = [t for t in trials if t.state == states.COMPLETE]
        if complete and len(self.directions) == 1:
            best = study.best_trial
            results.update(best_params=best.params, best_value=best.value, best_trial=best.number)
            log.info("Best trial %d: %s = %s", best.number, best.params, best.value)
        elif complete:
            results["solutions"] = [{"params": t.params, "values": t.values} for t in study.best_trials]
        log.info("Study %s: %s", study.study_name, ", ".join(f"{v} {k}" for k, v in count.items() if v))
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(results), self.sweep_dir / "optimization_results.yaml")
