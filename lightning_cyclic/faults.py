"""The app's faults: a SIGTERM or Ctrl-C during ``fit``, a resume, the DDP ranks of a sweep's job.

- :class:`SaveOnInterrupt` writes ``last.ckpt`` (the latest state) on SIGTERM or Ctrl-C, before the other
  callbacks react; :func:`fit` reports a SIGTERM and where to resume from; the app then exits with
  ``TERMINATED`` (143), as cluster schedulers expect of a preempted job.
- :func:`checkpoint_to_resume` is ``ckpt_path`` as a local file, read once before anything trains;
  ``ckpt_path=last`` is the newest ``last.ckpt`` of an earlier run of the same config.
- :func:`ddp_children_join_this_job`: in a multirun, the DDP ranks Lightning starts run this job, in its folder.
- :class:`SubmititLocalRanks`: the DDP ranks of a job whose tasks submitit's local executor started (the
  cluster path, ``hydra/launcher=local``), as SLURM starts them on a cluster.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lightning_cyclic._extras import needs

with needs("app", __name__):
    import yaml
    from omegaconf import DictConfig, read_write

import lightning.pytorch as pl
from lightning.fabric.plugins.environments import ClusterEnvironment
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lightning_cyclic import _compat
from lightning_cyclic.checkpoint import SafeCheckpointIO
from lightning_cyclic.sweeps import job_overrides, this_multirun

TERMINATED = 143  # 128 + SIGTERM: the exit status cluster schedulers (SLURM) expect of a preempted job


class Terminated(SystemExit):
    """The app's exit after a SIGTERM: status ``TERMINATED``, with ``reason`` (what stopped and where the run
    resumes from), which the app's cluster launchers hand to the sweep."""

    def __init__(self, reason: str) -> None:
        super().__init__(TERMINATED)
        self.reason = reason


def last_checkpoint(trainer: pl.Trainer) -> ModelCheckpoint | None:
    """The ModelCheckpoint that keeps ``last.ckpt`` (the latest state), if the run has one."""
    for cb in _compat.trainer_callbacks(trainer):
        if isinstance(cb, ModelCheckpoint) and (cb.filename == cb.CHECKPOINT_NAME_LAST or cb.save_last):
            return cb
    return None


class SaveOnInterrupt(Callback):
    """On SIGTERM (a preempted cluster job) or Ctrl-C, write ``last.ckpt`` before anything else reacts.

    It comes before ``BestSnapshot`` in the callbacks, so its ``on_exception`` runs before the best weights are
    put back: the checkpoint holds the latest state, and a resume from it continues where the run was.
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


def fit(trainer: pl.Trainer, model: Any, datamodule: Any, ckpt_path: str | None, saver: SaveOnInterrupt) -> str:
    """``trainer.fit``; returns ``""``, or what a SIGTERM stopped and where the run resumes from.

    On SIGTERM, ``Preemption`` stops every rank at the same batch and ``fit`` raises a ``SIGTERMException`` (a
    ``SystemExit``); the app reports it, then exits with ``TERMINATED`` (143).
    """
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except SIGTERMException:
        terminated = f"SIGTERM received at step {trainer.global_step} (epoch {trainer.current_epoch})"
        if saver.saved:
            terminated += f"; the latest state is in {saver.saved}: resume with ckpt_path={saver.saved}"
        return terminated
    return ""


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


def _checkpoint_path(value: Any, cfg: DictConfig) -> str | None:
    """``ckpt_path`` as a local file that exists; a remote address is refused (loading it could run code);
    ``last`` is the newest ``last.ckpt`` of an earlier run of the same config."""
    if value is None:
        return None
    text = str(value)
    if text == "last":
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


# set by the app's cluster launchers in a job that submitit requeued: the job's own last.ckpt, where it goes on from
# (hydra_plugins/lightning_cyclic_plugins/submitit_launchers.py; not a config value: the job's record keeps its own)
REQUEUED_FROM = "LIGHTNING_CYCLIC_REQUEUED_FROM"


def checkpoint_to_resume(cfg: DictConfig) -> str | None:
    """The checkpoint ``ckpt_path`` names (or, in a job that submitit requeued, the job's own ``last.ckpt``), read
    now, weights-only: a damaged or foreign file is a one-line error before anything is built, not a traceback
    inside ``fit``."""
    requeued = os.environ.get(REQUEUED_FROM)
    if requeued and Path(requeued).is_file():
        print(f"[lightning_cyclic] requeued: going on from {requeued}", flush=True)
        path: str | None = requeued
    else:
        path = _checkpoint_path(cfg.get("ckpt_path"), cfg)
    if path is not None:
        SafeCheckpointIO().load_checkpoint(path, map_location="cpu", weights_only=True)
    return path


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
def ddp_children_join_this_job() -> Iterator[None]:
    """Multirun + DDP without hangs or shared folders.

    Lightning's DDP launcher starts ranks 1.. by re-running the script with ``sys.argv`` and
    ``hydra.run.dir=<HydraConfig run.dir>``. Inside a multirun that would be the whole sweep
    again, in another folder. For the duration of ``fit`` both name this one job instead: its
    own overrides in RUN mode (with the flags that say where the configs are), and its own output folder.
    """
    hydra_cfg = this_multirun()
    if hydra_cfg is None:  # a single run, or not under @hydra.main
        yield
        return
    saved_argv, saved_dir, saved_env = sys.argv, hydra_cfg.run.dir, dict(os.environ)
    sys.argv = [sys.argv[0], *_config_flags(sys.argv[1:]), *hydra_cfg.overrides.task, "hydra.mode=RUN"]
    with read_write(hydra_cfg):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir
    try:
        yield
    finally:
        sys.argv = saved_argv
        with read_write(hydra_cfg):
            hydra_cfg.run.dir = saved_dir
        # the next job of this process starts its own process group, on a fresh port
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        os.environ.clear()
        os.environ.update(saved_env)


class SubmititLocalRanks(ClusterEnvironment):
    """The DDP ranks of a job that submitit's local executor runs as its tasks (``hydra.launcher.tasks_per_node``,
    one per process), on this machine: the cluster path of ``hydra/launcher=local``, as SLURM runs it.

    On SLURM each task is a rank that Lightning finds in SLURM's variables; submitit's local executor names its
    tasks in its own (``SUBMITIT_LOCAL_*``), which Lightning does not read, so without this it would start the
    ranks itself, by running the submitit worker's command line again, which fails. The port is the job's own,
    from the job's id (the same for all of its tasks, another for each job: submitit runs a sweep's jobs at once, so
    one ``MASTER_PORT`` for all would not do), below the range Linux gives out to outgoing connections.
    """

    PORTS = (15000, 15000)  # the first port a job's id maps to, and how many there are (15000..29999)

    def __init__(self) -> None:
        tasks = self.tasks()
        if tasks is None:
            raise RuntimeError("SubmititLocalRanks: this process is not a task of a job of submitit's local executor")
        env = os.environ
        self._tasks, self._rank, self._local = (
            tasks,
            int(env["SUBMITIT_LOCAL_GLOBALID"]),
            int(env["SUBMITIT_LOCAL_LOCALID"]),
        )
        self._node = int(env.get("SUBMITIT_LOCAL_NODEID", "0"))
        first, count = self.PORTS
        self._port = first + int(env["SUBMITIT_LOCAL_JOB_ID"]) % count

    @staticmethod
    def tasks() -> int | None:
        """The tasks of the job of submitit's local executor that this process is one of; ``None`` outside one."""
        env = os.environ
        if "SUBMITIT_LOCAL_JOB_ID" not in env or "SUBMITIT_LOCAL_GLOBALID" not in env:
            return None
        return int(env["SUBMITIT_LOCAL_NTASKS"]) * int(env.get("SUBMITIT_LOCAL_JOB_NUM_NODES", "1"))

    @property
    def creates_processes_externally(self) -> bool:
        return True

    @property
    def main_address(self) -> str:
        return "127.0.0.1"

    @property
    def main_port(self) -> int:
        return self._port

    @staticmethod
    def detect() -> bool:
        return SubmititLocalRanks.tasks() is not None

    def world_size(self) -> int:
        return self._tasks

    def set_world_size(self, size: int) -> None:
        if size != self._tasks:  # (run checks the config before: this is for a Trainer built another way)
            raise ValueError(
                f"the Trainer runs {size} processes (devices x num_nodes), but submitit started {self._tasks} "
                "task(s) for the job: set hydra.launcher.tasks_per_node to trainer.devices"
            )

    def global_rank(self) -> int:
        return self._rank

    def set_global_rank(self, rank: int) -> None:
        pass  # (submitit named it)

    def local_rank(self) -> int:
        return self._local

    def node_rank(self) -> int:
        return self._node
