"""How :class:`~lightning_cyclic.SnapshotEnsemble` evaluates its snapshots on the validation data, on all ranks
together: each member's and the ensemble's accuracy and negative log-likelihood, or why it cannot."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch

from lightning_cyclic._compat import has_val_source, setup_val_data
from lightning_cyclic.callbacks.weights import cpu_state

Predict = Callable[[pl.LightningModule, Any], tuple[torch.Tensor, torch.Tensor]]
"""``predict(pl_module, batch) -> (logits, targets)``: class logits ``(N, C)`` and integer class targets ``(N,)``."""


NO_VAL_DATA = "this fit has no validation data"
NO_VAL_BATCHES = "there are no validation batches (no validation_step, or limit_val_batches=0)"
NO_SAMPLES = "the validation data has no samples"
NO_DATA = (NO_VAL_DATA, NO_VAL_BATCHES, NO_SAMPLES)  # the reasons that are for want of data, not of a way to read it


class CannotEvaluate(Exception):
    """Raised by :meth:`SnapshotEnsemble.logits_and_targets` for a batch it cannot read; the message says why."""


def checked(out: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``out`` as (float logits (N, C), long targets (N,)), or :class:`CannotEvaluate` saying what is wrong."""
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise CannotEvaluate(f"predict must return (logits, targets), got {type(out).__name__}")
    logits, y = out
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point() or logits.ndim != 2:
        what = f"shape {tuple(logits.shape)}, {logits.dtype}" if isinstance(logits, torch.Tensor) else "no tensor"
        raise CannotEvaluate(f"the model's outputs are not class logits of shape (N, C): {what}")
    if logits.shape[1] < 2:
        raise CannotEvaluate(f"the model's outputs have {logits.shape[1]} class, need at least 2")
    if (
        not isinstance(y, torch.Tensor)
        or y.dtype == torch.bool
        or y.is_floating_point()
        or y.is_complex()
        or y.shape != logits.shape[:1]
    ):
        what = f"shape {tuple(y.shape)}, {y.dtype}" if isinstance(y, torch.Tensor) else type(y).__name__
        raise CannotEvaluate(
            f"the targets are not integer classes of shape ({logits.shape[0]},) to match the logits: {what}"
        )
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= logits.shape[1]):
        raise CannotEvaluate(
            f"the targets are not classes in [0, {logits.shape[1]}): they span {int(y.min())}..{int(y.max())}"
        )
    return logits.float().to(device), y.long().to(device)


def evaluate(
    trainer: pl.Trainer, pl_module: pl.LightningModule, snapshots: list[dict[str, Any]], read: Predict
) -> tuple[dict[str, Any], str, bool]:
    """(metrics, "", False) or ({}, why it could not evaluate, whether this rank warns), on all ranks together;
    ``read(pl_module, batch)`` gives a batch's (logits, targets)."""
    if not has_val_source(trainer):
        local, reason = None, NO_VAL_DATA
    else:
        local, reason = local_sums(trainer, pl_module, snapshots, read)
    # every rank skips if any rank cannot evaluate, so that no rank waits in a reduction alone;
    # rank 0 warns with its reason, or, when only other ranks failed, each of them warns with its own
    if trainer.strategy.reduce_boolean_decision(bool(reason), all=False):
        first = trainer.strategy.broadcast(reason, src=0)
        if first:
            return {}, reason or first, trainer.is_global_zero
        if trainer.is_global_zero:
            return {}, "another rank could not evaluate (that rank's warning says why)", True
        return (
            {},
            f"on rank {trainer.global_rank}, {reason}" if reason else "another rank could not evaluate",
            bool(reason),
        )
    if local is None:  # not reached: a rank without sums has a reason, and then every rank returned above
        raise RuntimeError(f"SnapshotEnsemble has no sums to reduce ({reason!r})")
    correct, nll, last_k, count = (trainer.strategy.reduce(t, reduce_op="sum") for t in local)
    if float(count) == 0:
        return {}, NO_SAMPLES, trainer.is_global_zero
    acc, loss = (correct / count).tolist(), (nll / count).tolist()
    metrics = {
        "val_acc": acc[-1],
        "val_nll": loss[-1],
        "member_acc": acc[:-1],
        "member_nll": loss[:-1],
        "last_k_acc": (last_k / count).tolist(),
    }
    return metrics, "", False


@torch.no_grad()
def local_sums(
    trainer: pl.Trainer, pl_module: pl.LightningModule, snapshots: list[dict[str, Any]], read: Predict
) -> tuple[Any, str]:
    """This rank's sums (correct, nll, last_k, count), or (None, why not). Never raises an ``Exception``."""
    try:
        loaders = trainer.val_dataloaders
        if loaders is None:
            setup_val_data(trainer)
            loaders = trainer.val_dataloaders
    except Exception as err:
        return None, f"setting up the validation data raised {type(err).__name__}: {err}"
    if loaders is None:
        return None, NO_VAL_BATCHES
    loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
    device = pl_module.device
    original = cpu_state(pl_module)
    was_training = pl_module.training
    n = len(snapshots)
    correct = torch.zeros(n + 1, device=device)
    nll = torch.zeros(n + 1, device=device)
    last_k = torch.zeros(n, device=device)  # accuracy of the ensemble of the last k snapshots, k = 1..n
    count = torch.zeros((), device=device)
    try:
        pl_module.eval()
        batches = [trainer.strategy.batch_to_device(b) for b in loader]
        member_probs: list[list[torch.Tensor]] = []
        targets: list[torch.Tensor] = []
        for i, snap in enumerate(snapshots):
            pl_module.load_state_dict(snap["state"])
            probs = []
            for batch in batches:
                logits, y = checked(read(pl_module, batch), device)
                probs.append(torch.softmax(logits, -1))
                if i == 0:
                    targets.append(y)
            member_probs.append(probs)
        for j, y in enumerate(targets):
            probs = [p[j] for p in member_probs]
            if any(p.shape != probs[0].shape for p in probs):
                raise CannotEvaluate("the snapshots' outputs for the same batch differ in shape")
            probs.append(torch.stack(probs).mean(0))
            for i, p in enumerate(probs):
                correct[i] += (p.argmax(-1) == y).sum()
                nll[i] += -torch.log(p.gather(1, y[:, None]).clamp_min(1e-12)).sum()
            for k in range(1, n + 1):
                last_k[k - 1] += (torch.stack(probs[n - k : n]).mean(0).argmax(-1) == y).sum()
            count += len(y)
    except CannotEvaluate as err:
        return None, str(err)
    except Exception as err:
        return None, f"evaluating a snapshot raised {type(err).__name__}: {err}"
    finally:
        pl_module.load_state_dict(original)
        pl_module.train(was_training)
    return (correct, nll, last_k, count), ""
