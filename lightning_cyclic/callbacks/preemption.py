"""``Preemption``: SIGTERM stops every rank at the same batch, writes a checkpoint, and exits 143.

A cluster scheduler (SLURM, Kubernetes) preempts or cancels a job with SIGTERM, then kills it a while later.
Lightning's own handler broadcasts from inside the signal handler, wherever rank 0 happens to be: in the middle
of a ``training_step`` while rank 1 waits in the gradient all-reduce, every rank can wait for ever; and when the
ranks do stop, the fit ends with exit status 0 and no checkpoint, so the scheduler sees a success and does not
requeue the job, and the work since the last checkpoint is lost.

This callback's handler only notes the signal. At the end of each training batch the ranks agree (one
all-reduce of a flag under DDP, nothing on one process); if any rank was signalled, every rank stops there
together: the checkpoint is written (the whole training state: a resume continues from it), the other
callbacks' ``on_exception`` run (``BestSnapshot`` puts its best weights back), and ``fit`` raises
:class:`Preempted`, a ``SystemExit`` with status 143 (128 + SIGTERM), so the process exits as a job killed by
SIGTERM does, and a scheduler requeues it. A signal during validation takes effect at the next training batch.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException
from typing_extensions import override

from lightning_cyclic import _compat
from lightning_cyclic._compat import Callback
from lightning_cyclic.shapes._checks import check_number

EXIT_CODE = 128 + int(signal.SIGTERM)


class Preempted(SIGTERMException):
    """Raised out of ``fit`` when a SIGTERM stopped it: a ``SystemExit`` whose status is ``code`` (143)."""

    def __init__(self, code: int = EXIT_CODE, checkpoint: str | None = None) -> None:
        super().__init__(code)
        self.checkpoint = checkpoint


class Preemption(Callback):
    """On SIGTERM, stop every rank at the same batch, save a checkpoint and exit with status 143.

    Args:
        ckpt_path: where the checkpoint goes; by default ``last.ckpt`` in the first ``ModelCheckpoint``'s
            folder, or in ``<default_root_dir>/checkpoints`` when there is none. ``False``: no checkpoint
            (another callback writes one).
        exit_code: the ``SystemExit`` status ``fit`` raises (143, as a process killed by SIGTERM).

    After a preemption: ``received`` is ``True`` and ``saved`` the checkpoint's path. Resume with
    ``trainer.fit(model, ckpt_path=...)`` on that path.

    Example::

        trainer = Trainer(strategy="ddp", devices=4, callbacks=[OneCycle(0.1), Preemption()])
        trainer.fit(model, datamodule)  # sbatch --requeue: exits 143 on preemption, resumes from last.ckpt
    """

    def __init__(self, ckpt_path: str | Path | bool | None = None, exit_code: int = EXIT_CODE) -> None:
        if ckpt_path is True:
            ckpt_path = None
        if ckpt_path is not None and ckpt_path is not False and not isinstance(ckpt_path, (str, Path)):
            raise ValueError(f"ckpt_path must be a path, None (the default place) or False, got {ckpt_path!r}")
        check_number("exit_code", exit_code, 0, 255, integer=True)
        self.ckpt_path, self.exit_code = ckpt_path, int(exit_code)
        self.received = False
        self.saved: str | None = None
        self._previous: Any = None

    def _note(self, signum: int, frame: Any) -> None:  # a signal handler: it only sets a flag
        self.received = True

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.received, self.saved = False, None

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # after Lightning registered its own handlers (at the start of the fit); only the main thread can
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGTERM)
            signal.signal(signal.SIGTERM, self._note)

    def _path(self, trainer: pl.Trainer) -> Path:
        if self.ckpt_path not in (None, False):
            return Path(self.ckpt_path)  # type: ignore[arg-type]
        saver = next((c for c in _compat.trainer_callbacks(trainer) if isinstance(c, ModelCheckpoint)), None)
        folder = (
            saver.dirpath if saver is not None and saver.dirpath else Path(trainer.default_root_dir) / "checkpoints"
        )
        return Path(folder) / "last.ckpt"

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        stop = self.received
        if trainer.world_size > 1:
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if not stop:
            return
        self.received = True
        saved = None
        if self.ckpt_path is not False:
            path = self._path(trainer)
            trainer.save_checkpoint(path, weights_only=False)  # every rank calls it: the strategy saves once
            saved = self.saved = str(path)
        rank_zero_info(
            f"Preemption: SIGTERM received; every rank stopped after step {trainer.global_step}"
            + (f", the training state is in {saved} (resume with ckpt_path={saved})" if saved else "")
            + f"; exiting with status {self.exit_code}"
        )
        raise Preempted(self.exit_code, saved)

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._previous is not None and signal.getsignal(signal.SIGTERM) == self._note:
            signal.signal(signal.SIGTERM, self._previous)
        self._previous = None
