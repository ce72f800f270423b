"""Hydra's Optuna sweeper, for studies that are stored and resumed (``hydra/sweeper=...``, ``hparams_search=...``).

The app's Optuna searches keep their study in ``<sweep folder>/optuna.db`` (SQLite); the same command with the
same ``hydra.sweep.dir`` opens the study again and adds ``n_trials`` more. Hydra's own sweeper does that too,
but a second run would number its jobs from 0 again, writing into the first run's job folders, and a seeded
sampler would propose the first run's trials once more. This sweeper:

- creates the sweep folder before the study is opened, so SQLite can create its file there;
- numbers the jobs of a resumed study after the trials it holds (new folders; the leaderboard lists them all);
- draws the sampler's random numbers afresh when the study already holds trials;
- records trials left running by a process that died (a kill, a power cut) as failed, so they do not stay
  "running" in the study and the dashboard.

Without the [sweeps] extra this module defines nothing (Hydra imports it at start-up in every case).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
# Optuna's storage imports alembic, whose plugins announce themselves at INFO through Hydra's console handler
logging.getLogger("alembic").setLevel(logging.WARNING)

SQLITE = "sqlite:///"


def sqlite_file(storage: Any) -> Path | None:
    """The file of an ``sqlite:///<path>`` storage URL (relative or, with a fourth slash, absolute)."""
    if isinstance(storage, str) and storage.startswith(SQLITE):
        return Path(storage[len(SQLITE) :])
    return None


def resume(study_name: str | None, storage: Any, sampler: Any) -> int:
    """Prepare a stored study for more trials; returns the number of trials it holds (0 for a new study)."""
    if storage is None or study_name is None:  # in memory, or a fresh name each time: nothing to resume
        return 0
    import optuna

    summaries = {s.study_name: s for s in optuna.get_all_study_summaries(storage)}
    if study_name not in summaries:
        return 0
    study = optuna.load_study(study_name=study_name, storage=storage)
    left_running = [t.number for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    for number in left_running:
        study.tell(number, state=optuna.trial.TrialState.FAIL)
    reseed = getattr(sampler, "reseed_rng", None)  # a grid sampler has no random numbers
    if callable(reseed):
        reseed()
    log.info(
        "Resuming study %s with %d trials (%d left running by an earlier process, now recorded as failed)",
        study_name,
        len(study.trials),
        len(left_running),
    )
    return len(study.trials)


try:
    from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
except ImportError:  # no [sweeps] extra: nothing to extend, nothing for Hydra to find here
    pass
else:
    from hydra.types import HydraContext, TaskFunction
    from omegaconf import DictConfig

    class ResumableOptunaSweeper(OptunaSweeper):
        """``OptunaSweeper`` whose study may already hold trials: same arguments, same config."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            from lightning_cyclic.sweeps import unusable_range

            why = unusable_range(kwargs.get("params"))
            if why:  # Hydra prints the message of an error raised here, without a traceback
                raise ValueError(why)
            super().__init__(*args, **kwargs)

        def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
            super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
            impl = self.sweeper
            db = sqlite_file(impl.storage)
            if db is not None:
                db.parent.mkdir(parents=True, exist_ok=True)
            impl.job_idx = resume(impl.study_name, impl.storage, impl.sampler)
