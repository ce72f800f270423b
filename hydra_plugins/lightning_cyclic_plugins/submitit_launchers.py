"""The app's cluster launchers (``hydra/launcher=slurm``, ``hydra/launcher=local``): hydra-submitit-launcher's; a
job that submitit requeues goes on from its own ``last.ckpt``, and a sweep with a job that a SIGTERM stopped ends as
the app's runs end.

Submitit requeues a job on its signal before the time limit (``USR2``, ``signal_delay_s`` ahead; up to
``max_num_timeout`` times: 0 by default on SLURM, 3 locally) or on a preemption: its launcher resubmits the job as it
was, so the job started over from epoch 0 in the folder of the run it was to continue. Here it goes on from that
run's ``checkpoints/last.ckpt`` (one written since the job first started), which the app rewrites at every
epoch's end. On SLURM a preemption reaches the job as submitit's signal only where the cluster sends one
(``SlurmctldParameters=preempt_send_user_signal``); otherwise it is a SIGTERM: the app's stop (below).

On SIGTERM (a preempted job, ``scancel``, ``kill``) the app writes ``last.ckpt``, ``result.json`` (``terminated``,
with where to resume from) and the leaderboard, then exits with 143. Under submitit's launchers that exit left the
job without a result, and the sweep ended in a traceback of submitit's (``UncompletedJobError: ... has not produced
any output``), leaving the sweep's other jobs behind. Here the job returns what stopped it instead, the sweep waits
for its other jobs as usual, then says in one line per stopped job where it resumes from (and in one line per
failed job why it failed), and exits with 143 (:class:`SweepStopped`, which holds the jobs' results: the Optuna
sweeper records its other trials from them first), as a sweep of the basic launcher does. The stopped job's own
process then ends with status 0, not 143: submitit needs it to end normally to hand its result over (a SLURM
dependency ``afterok`` on it is met; its ``result.json`` says ``terminated``).

Hydra imports this module at every start-up: it imports Hydra's launcher plugin only (not torch or Lightning).
Without hydra-submitit-launcher the module stays importable (Hydra 1.4 loads its launchers by entry point), and
the launchers' configs are not found (they extend the plugin's ``submitit_local`` and ``submitit_slurm``).
"""

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher

log = logging.getLogger(__name__)

TERMINATED = 143  # the app's exit status on SIGTERM (lightning_cyclic.faults.TERMINATED)
REQUEUED_FROM = "LIGHTNING_CYCLIC_REQUEUED_FROM"  # (lightning_cyclic.faults.REQUEUED_FROM)


@dataclass
class StoppedJob:
    """What a job that a SIGTERM stopped returns to the sweep: why, and where it resumes from."""

    reason: str


class SweepStopped(SystemExit):
    """The end of a sweep with a stopped job: status 143, with every job's result (``results``)."""

    def __init__(self, results: list[JobReturn]) -> None:
        super().__init__(TERMINATED)
        self.results = results


try:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
        LocalLauncher as _Local,
    )
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
        SlurmLauncher as _Slurm,
    )
except ImportError:  # (no [sweeps]: see the module's docstring)

    class _Missing(Launcher):
        def __init__(self, **params: Any) -> None:
            raise ImportError(
                "hydra/launcher=local and hydra/launcher=slurm run on submitit: "
                'pip install "lightning-cyclic[sweeps]" (hydra-submitit-launcher)'
            )

        def setup(self, **kwargs: Any) -> None:  # pragma: no cover - never built
            pass

        def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
            raise NotImplementedError  # pragma: no cover - never built

    _Local = _Slurm = _Missing


def _own_last_checkpoint(since: float) -> str | None:
    """``checkpoints/last.ckpt`` of the job running in this process (its Hydra output folder), if written since
    ``since`` (the job's first start: not one an earlier sweep left in the folder)."""
    from pathlib import Path

    from hydra.core.hydra_config import HydraConfig

    try:
        path = Path(HydraConfig.get().runtime.output_dir) / "checkpoints" / "last.ckpt"
        return str(path) if path.is_file() and path.stat().st_mtime >= since else None
    except Exception:  # (no job's config here: nothing of its own to go on from)
        return None


class _EndsAsTheApp:
    """The job side: a SIGTERM's exit becomes the job's result; the sweep side: it ends the sweep with 143."""

    def __call__(self, *args: Any, **kwargs: Any) -> JobReturn:  # (runs in the job's process)
        if getattr(self, "_job_start", None) is None:  # (a requeued job's launcher keeps its first start)
            self._job_start = time.time()
        resume = getattr(self, "_requeued_from", None)
        if resume is not None:
            os.environ[REQUEUED_FROM] = resume
        try:
            return super().__call__(*args, **kwargs)  # type: ignore[misc]
        except SystemExit as stop:
            if stop.code != TERMINATED:
                raise
            return JobReturn(status=JobStatus.COMPLETED, _return_value=StoppedJob(getattr(stop, "reason", "")))

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:  # (runs in the job's process, on submitit's signal)
        """Submitit's requeue (its signal before a timeout, or a preemption where the cluster sends it): the same
        job again, as submitit's launcher resubmits it, but going on from the job's own ``last.ckpt`` where it has
        written one (the app rewrites it at every epoch's end), not from the start over its run's folder. The path
        goes to the new attempt with this launcher (an environment variable there), not as an override: the job's
        record (its overrides, ``result.json``, the leaderboard) stays its own."""
        last = _own_last_checkpoint(getattr(self, "_job_start", None) or time.time())
        if last is not None:
            self._requeued_from = last
            log.warning(f"Requeued: the job goes on from {last}")
        return super().checkpoint(*args, **kwargs)  # type: ignore[misc]

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
        results: list[JobReturn] = list(super().launch(job_overrides, initial_job_idx))  # type: ignore[misc]
        stopped = [i for i, r in enumerate(results) if isinstance(r._return_value, StoppedJob)]
        if not stopped:
            return results
        for i, job in enumerate(results):
            why = job._return_value  # (``return_value`` would raise a failed job's error)
            if i in stopped:
                log.error(f"Job #{initial_job_idx + i} was stopped: {why.reason or 'SIGTERM'}")
            elif job.status == JobStatus.FAILED:
                log.error(f"Job #{initial_job_idx + i} failed: {type(why).__name__}: {why}")
        raise SweepStopped(results)


class LocalLauncher(_EndsAsTheApp, _Local):
    """``hydra/launcher=local``: submitit's local executor (one process per task), ending as the app does."""


class SlurmLauncher(_EndsAsTheApp, _Slurm):
    """``hydra/launcher=slurm``: submitit on SLURM, ending as the app does."""
