"""BestSnapshot and SnapshotEnsemble beside code nobody here wrote: Lightning's weight averaging
callbacks (in either order) and its BoringModel, whose batches are plain tensors."""

from __future__ import annotations

import copy

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.demos.boring_classes import BoringModel
from torch.utils.data import DataLoader, Dataset

from lightning_cyclic import BestSnapshot, Ensemble, SnapshotEnsemble, WarmRestarts
from lightning_cyclic.callbacks.best import cpu_state
from tests.helpers import TinyModule, tiny_loader, tiny_trainer

try:
    from lightning.pytorch.callbacks import EMAWeightAveraging, WeightAveraging
except ImportError:  # Lightning < 2.6 has no weight averaging callbacks: nothing there to be compatible with
    EMAWeightAveraging = WeightAveraging = None
needs_averaging = pytest.mark.skipif(WeightAveraging is None, reason="this Lightning has no WeightAveraging (2.6+)")

# --- BestSnapshot with weight averaging --------------------------------------------------------


class Regressing(TinyModule):
    """Learns for two epochs, then climbs its own loss: the best validation is never the last one."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss if self.current_epoch < 2 else -loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.cross_entropy(self(x), y))


class Evaluated(Callback):
    """The weights the model holds at each validation's first batch, in order."""

    def __init__(self):
        self.seen: list[dict[str, torch.Tensor]] = []

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if batch_idx == 0 and not trainer.sanity_checking and trainer.state.fn == "fit":
            self.seen.append(cpu_state(pl_module))


def averaging(kind: str) -> Callback:
    if kind == "ema":
        return EMAWeightAveraging(decay=0.5)
    return WeightAveraging()  # the generic one: an equal-weight average of every step (SWA)


def val_loader():
    return tiny_loader(n=24, seed=5, learnable=True)


def validate(tmp_path, module) -> float:
    """val_loss of the weights in ``module``, by a fresh Trainer with no callbacks."""
    (result,) = tiny_trainer(tmp_path / "check").validate(module, val_loader(), verbose=False)
    return result["val_loss"]


def fit_best(tmp_path, callbacks, **kwargs):
    module = Regressing(lr=0.2)
    kwargs.setdefault("max_epochs", 5)
    trainer = tiny_trainer(tmp_path, callbacks, num_sanity_val_steps=0, **kwargs)
    trainer.fit(module, tiny_loader(learnable=True), val_loader())
    return module, trainer


@needs_averaging
@pytest.mark.parametrize("order", ["averaging first", "best first"])
@pytest.mark.parametrize("kind", ["ema", "swa"])
def test_best_snapshot_keeps_and_restores_the_averaged_weights_it_scored(tmp_path, kind, order):
    best, evaluated, avg = BestSnapshot("val_loss", "min", verbose=False), Evaluated(), averaging(kind)
    callbacks = [avg, best, evaluated] if order == "averaging first" else [evaluated, best, avg]
    module, trainer = fit_best(tmp_path, callbacks)
    assert best.best_epoch < trainer.current_epoch - 1  # the last weights (and the last average) are not the best
    assert best.restored
    assert validate(tmp_path, module) == pytest.approx(best.best_score, abs=1e-6)
    # bit for bit the weights validated at the best epoch: the average, not the training weights
    for name, value in module.state_dict().items():
        assert torch.equal(value, evaluated.seen[best.best_epoch][name]), name
        assert torch.equal(value, best.snapshot[name]), name


@pytest.mark.parametrize(
    "kwargs, validations",
    [
        (dict(val_check_interval=0.5), 10),  # twice per epoch
        (dict(check_val_every_n_epoch=2, max_epochs=6), 3),  # every other epoch
    ],
)
@needs_averaging
def test_averaged_best_with_other_validation_rhythms(tmp_path, kwargs, validations):
    best, evaluated = BestSnapshot("val_loss", "min", verbose=False), Evaluated()
    module, _ = fit_best(tmp_path, [best, evaluated, EMAWeightAveraging(decay=0.5)], **kwargs)
    assert len(evaluated.seen) == validations
    assert validate(tmp_path, module) == pytest.approx(best.best_score, abs=1e-6)
    scored = [
        i for i, state in enumerate(evaluated.seen) if all(torch.equal(state[k], v) for k, v in best.snapshot.items())
    ]
    assert scored  # the snapshot is one of the evaluated states
    assert all(torch.equal(v, best.snapshot[k]) for k, v in module.state_dict().items())


def test_without_averaging_the_best_is_the_training_weights_as_before(tmp_path):
    best, evaluated = BestSnapshot("val_loss", "min", verbose=False), Evaluated()
    module, trainer = fit_best(tmp_path, [best, evaluated])
    assert best.best_epoch < trainer.current_epoch - 1 and best.restored
    assert validate(tmp_path, module) == pytest.approx(best.best_score, abs=1e-6)
    for name, value in module.state_dict().items():
        assert torch.equal(value, evaluated.seen[best.best_epoch][name]), name


class LastWords(Callback):
    """Writes zeros into the model at on_train_end, as a weight-averaging callback writes its average."""

    def on_train_end(self, trainer, pl_module):
        self.at_train_end = cpu_state(pl_module)
        with torch.no_grad():
            for p in pl_module.parameters():
                p.zero_()


def test_the_restore_comes_after_every_on_train_end(tmp_path):
    best, last = BestSnapshot("val_loss", "min", verbose=False), LastWords()
    module, _ = fit_best(tmp_path, [best, last])
    assert any(not torch.equal(v, best.snapshot[k]) for k, v in last.at_train_end.items())  # the last weights there
    assert all(torch.equal(v, best.snapshot[k]) for k, v in module.state_dict().items())


# --- SnapshotEnsemble on batches it cannot read ------------------------------------------------


def restarts():
    return WarmRestarts(max_lr=0.1, cycle_len=1, interval="epoch")


def test_boring_model_tensor_batches_skip_the_evaluation_and_keep_the_snapshots(tmp_path):
    ensemble, model = SnapshotEnsemble(), BoringModel()
    trainer = tiny_trainer(tmp_path, [restarts(), ensemble], num_sanity_val_steps=0)
    with pytest.warns(
        UserWarning, match=r"SnapshotEnsemble skipped .*3 snapshots: the validation batches are a Tensor"
    ):
        trainer.fit(model)
    assert trainer.state.finished and trainer.current_epoch == 3
    assert ensemble.metrics == {} and "Tensor" in ensemble.skipped_reason
    assert [s["step"] for s in ensemble.snapshots] == [64, 128, 192]
    probs = ensemble.ensemble(model)(torch.randn(5, 32))
    assert probs.shape == (5, 2) and torch.allclose(probs.sum(1), torch.ones(5))


@pytest.mark.parametrize(
    "val, kwargs, reason",
    [
        (None, {}, "this fit has no validation data"),
        (tiny_loader(n=8), {}, "there are no validation batches"),  # a loader but no validation_step
        (tiny_loader(n=8), dict(limit_val_batches=0), "there are no validation batches"),
    ],
)
def test_no_validation_data_skips_the_evaluation_and_keeps_the_snapshots(tmp_path, val, kwargs, reason):
    ensemble = SnapshotEnsemble(save_path=tmp_path / "ensemble.pt")
    module = TinyModule()  # no validation_step
    trainer = tiny_trainer(tmp_path, [restarts(), ensemble], max_epochs=2, **kwargs)
    with pytest.warns(UserWarning, match=f"{reason}.*give fit\\(\\) validation data"):
        trainer.fit(module, tiny_loader(), val)
    assert trainer.state.finished and ensemble.metrics == {} and ensemble.skipped_reason.startswith(reason)
    assert len(ensemble.snapshots) == 2
    loaded = Ensemble.load(tmp_path / "ensemble.pt", TinyModule())
    x = torch.randn(3, 4)
    assert torch.equal(loaded(x), ensemble.ensemble(module)(x))


class DictData(Dataset):
    def __init__(self, n, seed):
        loader = tiny_loader(n=n, seed=seed, learnable=True, batch_size=n)
        self.x, self.y = next(iter(loader))

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"features": self.x[i], "label": self.y[i]}


class DictClassifier(TinyModule):
    def training_step(self, batch, batch_idx):
        return torch.nn.functional.cross_entropy(self(batch["features"]), batch["label"])

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", torch.nn.functional.cross_entropy(self(batch["features"]), batch["label"]))


def predict_dict(pl_module, batch):
    return pl_module(batch["features"]), batch["label"]


def fit_dict(tmp_path, ensemble, epochs=3):
    module = DictClassifier()
    trainer = tiny_trainer(tmp_path, [WarmRestarts(max_lr=0.3, cycle_len=1, interval="epoch"), ensemble])
    trainer.fit(module, DataLoader(DictData(64, 0), batch_size=8), DataLoader(DictData(24, 5), batch_size=8))
    assert trainer.current_epoch == epochs
    return module, trainer


def independent_metrics(module, snapshots, data):
    """Each member's and the averaged-softmax ensemble's accuracy, on all of ``data`` at once."""
    probs = []
    for snap in snapshots:
        member = copy.deepcopy(module).cpu().eval()
        member.load_state_dict(snap["state"])
        with torch.no_grad():
            probs.append(torch.softmax(member(data.x), -1))
    mean = torch.stack(probs).mean(0)
    accuracy = lambda p: float((p.argmax(1) == data.y).float().mean())  # noqa: E731
    nll = float(-torch.log(mean.gather(1, data.y[:, None])).mean())
    return accuracy(mean), [accuracy(p) for p in probs], nll


def test_dict_batches_with_a_predict_hook_are_evaluated(tmp_path):
    ensemble = SnapshotEnsemble(predict=predict_dict)
    module, _ = fit_dict(tmp_path, ensemble)
    acc, members, nll = independent_metrics(module, ensemble.snapshots, DictData(24, 5))
    assert len(ensemble.snapshots) == 3 and ensemble.skipped_reason == ""
    assert ensemble.metrics["val_acc"] == pytest.approx(acc, abs=1e-6)
    assert ensemble.metrics["member_acc"] == pytest.approx(members, abs=1e-6)
    assert ensemble.metrics["val_nll"] == pytest.approx(nll, rel=1e-5)


def test_an_overridden_method_works_as_the_hook_does(tmp_path):
    class DictEnsemble(SnapshotEnsemble):
        def logits_and_targets(self, pl_module, batch):
            return predict_dict(pl_module, batch)

    ensemble = DictEnsemble()
    module, _ = fit_dict(tmp_path, ensemble)
    acc, members, _ = independent_metrics(module, ensemble.snapshots, DictData(24, 5))
    assert ensemble.metrics["val_acc"] == pytest.approx(acc, abs=1e-6)
    assert ensemble.metrics["member_acc"] == pytest.approx(members, abs=1e-6)


def test_dict_batches_without_a_hook_warn_and_say_what_to_give(tmp_path):
    ensemble = SnapshotEnsemble()
    with pytest.warns(UserWarning, match=r"batches are a dict, not \(inputs, targets, \.\.\.\).*predict=\.\.\."):
        fit_dict(tmp_path, ensemble)
    assert ensemble.metrics == {} and len(ensemble.snapshots) == 3


def boom(pl_module, batch):
    raise RuntimeError("boom in predict")


@pytest.mark.parametrize(
    "predict, message",
    [
        (boom, "evaluating a snapshot raised RuntimeError: boom in predict"),
        (lambda m, b: m(b["features"])[:, 0], "predict must return \\(logits, targets\\), got Tensor"),
        (lambda m, b: (m(b["features"])[:, 0], b["label"]), "not class logits of shape \\(N, C\\): shape \\(8,\\)"),
        (lambda m, b: (m(b["features"]), b["label"].float()), "targets are not integer classes of shape \\(8,\\)"),
        (lambda m, b: (m(b["features"]), b["label"] + 3), "targets are not classes in \\[0, 3\\)"),
        (lambda m, b: (m(b["features"]), b["label"][:4]), "targets are not integer classes of shape \\(8,\\)"),
    ],
)
def test_a_failing_or_wrong_predict_warns_and_never_ends_the_run(tmp_path, predict, message):
    ensemble, weights = SnapshotEnsemble(predict=predict), []

    class LastWeights(Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            weights[:] = [cpu_state(pl_module)]

    module = DictClassifier()
    trainer = tiny_trainer(tmp_path, [restarts(), ensemble, LastWeights()], max_epochs=2)
    with pytest.warns(UserWarning, match=f"SnapshotEnsemble skipped .*{message}"):
        trainer.fit(module, DataLoader(DictData(32, 0), batch_size=8), DataLoader(DictData(16, 5), batch_size=8))
    assert trainer.state.finished and ensemble.metrics == {} and len(ensemble.snapshots) == 2
    # the evaluation put the model's own weights and mode back
    assert all(torch.equal(v, weights[0][k]) for k, v in module.state_dict().items()) and module.training
