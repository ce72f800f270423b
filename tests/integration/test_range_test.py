"""The LR range test runs through Lightning: the strategy, the precision plugin and the module's own hooks.

Real Trainers and real modules only: ours, Lightning's demo models, and ``pytorch_lightning``'s namespace.
"""

from __future__ import annotations

import math

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.demos.boring_classes import BoringModel, RandomDataset
from lightning.pytorch.plugins.precision import MixedPrecision
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

from lightning_cyclic import LRFinder, OneCycle, _compat, lr_find
from lightning_cyclic.finder import FAST_DEV_RUN, StepWatch
from lightning_cyclic.shapes import RangeTestSweep
from tests.helpers import RichModule, TinyModule, tiny_loader, tiny_trainer


class AtTrainStart(Callback):
    """Calls ``record(trainer, module)`` at ``on_train_start``: after the range test, before the fit's steps."""

    def __init__(self, record):
        self.record, self.value = record, None

    def on_train_start(self, trainer, pl_module):
        self.value = self.record(trainer, pl_module)


def fit(tmp_path, module, loader, callbacks=(), **kwargs):
    trainer = tiny_trainer(tmp_path, list(callbacks), **{"max_epochs": 1, **kwargs})
    trainer.fit(module, loader)
    return trainer


# --- the module's own hooks ----------------------------------------------------------------------


class OwnClipping(TinyModule):
    """Clips by its own rule (each gradient element to +-1e-3) and records what Lightning passed."""

    def __init__(self):
        super().__init__()
        self.clips = []

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        grads = [p.grad for p in self.parameters()]
        assert all(g is not None for g in grads)  # called after backward
        torch.nn.utils.clip_grad_value_(self.parameters(), 1e-3)
        self.clips.append((gradient_clip_val, max(float(g.abs().max()) for g in grads)))


def test_configure_gradient_clipping_override_runs_once_per_range_test_step(tmp_path):
    module = OwnClipping()
    finder = LRFinder(num_steps=15, diverge=1e9, extend=1, verbose=False)
    probe = AtTrainStart(lambda trainer, m: list(m.clips))
    fit(tmp_path, module, tiny_loader(), [finder, probe], accumulate_grad_batches=2, gradient_clip_val=0.5)
    during = probe.value
    assert len(finder.result.lrs) == 15 and len(during) == 15  # once per optimizer step, not per micro-batch
    limit = float(torch.tensor(1e-3))  # in float32
    assert all(val == 0.5 and biggest <= limit for val, biggest in during)  # Lightning's arguments, our own rule
    assert len(module.clips) == 15 + 4  # and the fit's own 8 batches / 2


class Hooked(TinyModule):
    """Records every optimizer_step, optimizer_zero_grad and backward hook Lightning calls."""

    def __init__(self):
        super().__init__()
        self.events = []

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure):
        self.events.append(("step", batch_idx, isinstance(optimizer, LightningOptimizer)))
        optimizer.step(closure=optimizer_closure)

    def optimizer_zero_grad(self, epoch, batch_idx, optimizer):
        self.events.append(("zero_grad", batch_idx, None))
        optimizer.zero_grad()

    def on_before_backward(self, loss):
        self.events.append(("before_backward", None, loss.requires_grad))

    def on_after_backward(self):
        self.events.append(("after_backward", None, all(p.grad is not None for p in self.parameters())))


def test_optimizer_step_zero_grad_and_backward_hooks_of_the_module_run_in_the_range_test(tmp_path):
    module = Hooked()
    finder = LRFinder(num_steps=10, diverge=1e9, extend=1, verbose=False, trials=False)
    probe = AtTrainStart(lambda trainer, m: list(m.events))
    fit(tmp_path, module, tiny_loader(), [finder, probe], accumulate_grad_batches=2)
    events = probe.value
    # Lightning's order for a window of two micro-batches: zero_grad after the first training_step, then each
    # backward; the second micro-batch runs inside optimizer_step (the closure), backward between the two
    # before/after hooks
    window = lambda i: [  # noqa: E731
        ("zero_grad", 2 * i, None),
        ("before_backward", None, True),
        ("after_backward", None, True),
        ("step", 2 * i + 1, True),
        ("before_backward", None, True),
        ("after_backward", None, True),
    ]
    assert events == [e for i in range(10) for e in window(i)]
    assert len(module.events) == len(events) + 4 * 6  # the fit's own 4 windows follow


class Watcher(Callback):
    """Counts the hooks a range test's steps would reach if callbacks saw them."""

    def __init__(self):
        hooks = ["on_train_batch_start", "on_before_optimizer_step", "on_before_backward", "on_after_backward"]
        self.counts = dict.fromkeys([*hooks, "on_before_zero_grad"], 0)
        self.callbacks = None

    def setup(self, trainer, pl_module, stage):
        self.callbacks = trainer.callbacks

    def on_train_batch_start(self, *args):
        self.counts["on_train_batch_start"] += 1

    def on_before_optimizer_step(self, *args):
        self.counts["on_before_optimizer_step"] += 1

    def on_before_backward(self, *args):
        self.counts["on_before_backward"] += 1

    def on_after_backward(self, *args):
        self.counts["on_after_backward"] += 1

    def on_before_zero_grad(self, *args):
        self.counts["on_before_zero_grad"] += 1


class SeesCallbacks(TinyModule):
    def on_before_optimizer_step(self, optimizer):
        super().on_before_optimizer_step(optimizer)
        self.seen_callbacks = [*getattr(self, "seen_callbacks", []), list(self.trainer.callbacks)]


def test_no_other_callback_sees_the_range_test_and_the_callbacks_list_comes_back(tmp_path):
    module, watcher = SeesCallbacks(), Watcher()
    finder = LRFinder(num_steps=12, diverge=1e9, extend=1, verbose=False, trial_steps=3)
    trainer = fit(tmp_path, module, tiny_loader(), [watcher, finder])
    assert len(finder.result.lrs) == 12 and finder.result.extra["trials"]["steps"] == 3  # and 5 trials of 3 steps
    assert watcher.counts == {  # the fit's own 8 steps only
        "on_train_batch_start": 8,
        "on_before_optimizer_step": 8,
        "on_before_backward": 8,
        "on_after_backward": 8,
        "on_before_zero_grad": 8,
    }
    assert trainer.callbacks is watcher.callbacks  # the very same list object
    assert [len(cbs) for cbs in module.seen_callbacks[:27]] == [0] * 27  # empty during the sweep and the trials
    assert len(module.seen_callbacks) == 27 + 8
    assert all(watcher in cbs and finder in cbs for cbs in module.seen_callbacks[27:])


# --- a sweep extended past max_lr ---------------------------------------------------------------------


def regression_fit(tmp_path, callbacks, **kwargs):
    from tests.callbacks.test_lr_finder import LinearRegression, regression_loader

    torch.manual_seed(0)
    module = LinearRegression()
    trainer = tiny_trainer(tmp_path, [OneCycle(max_lr=1.0), *callbacks], max_epochs=2, **kwargs)
    trainer.fit(module, regression_loader())
    return module, trainer


def test_an_extended_sweep_steps_once_per_window_and_leaves_the_fit_bit_identical(tmp_path):
    plain, _ = regression_fit(tmp_path, [], accumulate_grad_batches=2)
    finder = LRFinder(verbose=False, trials=False)
    found, trainer = regression_fit(tmp_path, [finder], accumulate_grad_batches=2)
    result = finder.result
    assert result.outcome == "extended" and result.optimizer_steps > 100  # it went on past max_lr
    assert len(found.losses) == 2 * result.optimizer_steps + len(plain.losses)  # two micro-batches per point
    assert result.losses[-1] == pytest.approx(sum(found.losses[2 * result.optimizer_steps - 2 :][:2]) / 2)
    assert found.losses[2 * result.optimizer_steps :] == plain.losses  # then the same fit, step for step
    for (name, a), (_, b) in zip(plain.state_dict().items(), found.state_dict().items()):
        assert torch.equal(a, b), name
    assert trainer.global_step == 8  # two epochs of 8 batches, two to a step


# --- DataLoader generators and workers -----------------------------------------------------------

DATA = TensorDataset(torch.randn(64, 4, generator=torch.Generator().manual_seed(5)), torch.arange(64) % 3)


def seeded_loader(where, seed=0, **kwargs):
    """A shuffling loader whose randomness comes from its own generator, held where ``where`` says."""
    g = torch.Generator().manual_seed(seed)
    if where == "loader":
        return DataLoader(DATA, batch_size=8, shuffle=True, generator=g, **kwargs), g
    if where == "sampler":
        return DataLoader(DATA, batch_size=8, sampler=RandomSampler(DATA, generator=g), **kwargs), g
    batches = BatchSampler(RandomSampler(DATA, generator=g), batch_size=8, drop_last=False)
    return DataLoader(DATA, batch_sampler=batches, **kwargs), g


def two_epochs(tmp_path, callbacks, where, val=False, **loader_kwargs):
    torch.manual_seed(0)
    module = RichModule(scheduler=False)
    loader, _ = seeded_loader(where, **loader_kwargs)
    val_loader = seeded_loader(where, seed=1)[0] if val else None
    trainer = tiny_trainer(tmp_path, [OneCycle(max_lr=0.1), *callbacks], max_epochs=2)
    trainer.fit(module, loader, val_loader)
    return module


@pytest.mark.parametrize("where", ["loader", "sampler", "batch_sampler"])
def test_fit_with_a_seeded_loader_is_bit_identical_with_and_without_the_finder(tmp_path, where):
    plain = two_epochs(tmp_path, [], where, val=True)
    finder = LRFinder(num_steps=20, verbose=False)
    found = two_epochs(tmp_path, [finder], where, val=True)
    assert finder.result.config.evaluate == "val" and len(finder.result.lrs) >= 10
    for (name, a), (_, b) in zip(plain.state_dict().items(), found.state_dict().items()):
        assert torch.equal(a, b), name
    assert [loss for _, loss in found.calls[-16:]] == [loss for _, loss in plain.calls[-16:]]


@pytest.mark.parametrize("where", ["loader", "sampler", "batch_sampler"])
def test_lr_find_leaves_the_loader_generators_as_they_were(tmp_path, where):
    loader, g = seeded_loader(where)
    val_loader, val_g = seeded_loader(where, seed=1)
    before, val_before = g.get_state(), val_g.get_state()
    result = lr_find(tiny_trainer(tmp_path), RichModule(scheduler=False), train_dataloaders=loader,
                     val_dataloaders=val_loader, num_steps=20, verbose=False)  # fmt: skip
    assert len(result.lrs) >= 10 and result.config.evaluate == "val"
    assert torch.equal(g.get_state(), before) and torch.equal(val_g.get_state(), val_before)
    next(iter(loader))  # the state compared is the one the loader draws from
    assert not torch.equal(g.get_state(), before)


def test_persistent_workers_start_afresh_after_the_range_test(tmp_path):
    plain = two_epochs(tmp_path, [], "loader", num_workers=1, persistent_workers=True)
    finder = LRFinder(num_steps=20, verbose=False)
    found = two_epochs(tmp_path, [finder], "loader", num_workers=1, persistent_workers=True)
    assert len(finder.result.lrs) >= 10
    for (name, a), (_, b) in zip(plain.state_dict().items(), found.state_dict().items()):
        assert torch.equal(a, b), name


# --- other namespaces and Lightning's demo models ------------------------------------------------

ptl = _compat.pytorch_lightning
needs_ptl = pytest.mark.skipif(ptl is None, reason="pytorch_lightning is not installed")


class PtlClassifier(ptl.LightningModule if ptl is not None else nn.Module):
    """A ``pytorch_lightning`` module: a small classifier."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


def ptl_trainer(tmp_path, callbacks=()):
    return ptl.Trainer(
        default_root_dir=tmp_path,
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        callbacks=list(callbacks),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


@needs_ptl
def test_lr_find_and_the_callback_with_a_pytorch_lightning_trainer_and_module(tmp_path):
    module = PtlClassifier()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    trainer = ptl_trainer(tmp_path)
    result = lr_find(trainer, module, train_dataloaders=tiny_loader(learnable=True), num_steps=40, verbose=False)
    assert len(result.lrs) >= 10 and all(math.isfinite(x) for x in result.losses[:-1])
    assert result.suggestion.lr is not None, result.suggestion.reason
    assert _compat.attached_trainer(module) is None  # as it was: never attached
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())

    finder = LRFinder(num_steps=30, verbose=False)
    trainer = ptl_trainer(tmp_path, [finder])
    trainer.fit(module, tiny_loader(learnable=True))
    assert len(finder.result.lrs) >= 10 and trainer.global_step == 8


@needs_ptl
def test_trials_that_tie_then_a_fold_that_tells_with_one_reused_finder_on_pytorch_lightning(tmp_path):
    # a k-fold loop in pytorch_lightning's namespace, one OneCycle("auto") and one LRFinder for both folds: on random
    # labels the five trials cannot tell the candidates apart (two more run below, then two longer ones, and a
    # warning says nothing told);
    # the next fold, on learnable labels, is the fit a new pair of callbacks gives: five trials, no leftovers
    import warnings

    class Validated(PtlClassifier):  # batch norm and dropout, the body at a tenth of the head's lr
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))

        def validation_step(self, batch, batch_idx):
            self.log("val_loss", nn.functional.cross_entropy(self.net(batch[0]), batch[1]))

        def configure_optimizers(self):
            body, head = self.net[:4].parameters(), self.net[4].parameters()
            return torch.optim.SGD([{"params": body, "lr": 0.005}, {"params": head}], lr=0.05, momentum=0.9)

    schedule, finder = OneCycle(max_lr="auto", log=False), LRFinder(num_steps=40, verbose=False)

    def fold(name, learnable, callbacks):
        torch.manual_seed(0)
        trainer = ptl_trainer(tmp_path / name, callbacks)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.fit(Validated(), tiny_loader(learnable=learnable), tiny_loader(32, seed=3, learnable=learnable))
        return [str(w.message) for w in caught if "No trial learnt more than the others" in str(w.message)]

    told = fold("a", False, [schedule, finder])
    tied = finder.result.extra["trials"]
    assert len(tied["lrs"]) == 7 and tied["told"] is False and len(told) == 1, tied
    # (none learnt more than the sweep either: longer trials ran from the same start, and left no plateau)
    assert len(tied["long"]["lrs"]) == 2 and tied["long"]["taken"] is False
    assert schedule.resolved == {"max_lr": finder.result.chosen.lr}
    again = fold("b", True, [schedule, finder])
    fresh_schedule, fresh = OneCycle(max_lr="auto", log=False), LRFinder(num_steps=40, verbose=False)
    alone = fold("c", True, [fresh_schedule, fresh])
    trials = finder.result.extra["trials"]
    assert again == alone == [] and len(trials["lrs"]) == 5 and "told" not in trials and "long" not in trials
    assert trials == fresh.result.extra["trials"] and schedule.resolved == fresh_schedule.resolved


def boring_fit(tmp_path, callbacks):
    from lightning.pytorch.demos.boring_classes import BoringModel

    torch.manual_seed(0)
    model = BoringModel()  # its loaders come from hooks that draw their data from the global RNG
    trainer = tiny_trainer(tmp_path, callbacks, max_epochs=2, limit_train_batches=8, limit_val_batches=2)
    trainer.fit(model)
    return model, trainer


def test_lightning_boring_model_fit_is_the_same_with_and_without_the_finder(tmp_path):
    plain, plain_trainer = boring_fit(tmp_path, [])
    finder = LRFinder(num_steps=30, verbose=False)
    found, trainer = boring_fit(tmp_path, [finder])
    assert len(finder.result.lrs) >= 10 and finder.result.config.evaluate == "val"
    assert torch.equal(plain.layer.weight, found.layer.weight) and torch.equal(plain.layer.bias, found.layer.bias)
    # the validation data were drawn from the same RNG state, as in the sanity check of the plain fit
    assert torch.equal(trainer.val_dataloaders.dataset.data, plain_trainer.val_dataloaders.dataset.data)
    assert torch.equal(trainer.train_dataloader.dataset.data, plain_trainer.train_dataloader.dataset.data)


class ShuffledBoring(BoringModel):
    """Lightning's BoringModel with a shuffling train loader and no generator of its own: its data and its
    order come from the global RNG, as do its validation data."""

    def train_dataloader(self):
        return DataLoader(RandomDataset(32, 64), batch_size=2, shuffle=True)


class LrFindAtFitStart(Callback):
    """Runs ``lr_find`` on the fit's own Trainer and module from ``on_fit_start``; the schedule ignores it."""

    def on_fit_start(self, trainer, pl_module):
        self.result = lr_find(trainer, pl_module, num_steps=30, verbose=False)


def shuffled_boring_fit(tmp_path, how, num_sanity_val_steps):
    pl.seed_everything(0, workers=True)
    model = ShuffledBoring()
    callbacks = {"none": [], "LRFinder": [LRFinder(num_steps=30, verbose=False)], "lr_find at on_fit_start": [
        LrFindAtFitStart()]}.get(how, [])  # fmt: skip
    trainer = tiny_trainer(tmp_path, [OneCycle(max_lr=0.1), *callbacks], max_epochs=2, limit_train_batches=8,
                           limit_val_batches=2, num_sanity_val_steps=num_sanity_val_steps)  # fmt: skip
    if how == "lr_find before fit":
        lr_find(trainer, model, num_steps=30, verbose=False)
    trainer.fit(model)
    return model, trainer


@pytest.mark.parametrize("num_sanity_val_steps", [2, 0])  # without a sanity check, fit sets up validation later
@pytest.mark.parametrize("how", ["LRFinder", "lr_find at on_fit_start", "lr_find before fit"])
def test_a_range_test_the_schedule_does_not_use_leaves_a_boring_model_fit_bit_identical(
    tmp_path, how, num_sanity_val_steps
):
    plain, plain_trainer = shuffled_boring_fit(tmp_path, "none", num_sanity_val_steps)
    found, trainer = shuffled_boring_fit(tmp_path, how, num_sanity_val_steps)
    for (name, a), (_, b) in zip(plain.state_dict().items(), found.state_dict().items()):
        assert torch.equal(a, b), name
    assert torch.equal(trainer.train_dataloader.dataset.data, plain_trainer.train_dataloader.dataset.data)
    assert torch.equal(trainer.val_dataloaders.dataset.data, plain_trainer.val_dataloaders.dataset.data)


class Tokens(torch.utils.data.Dataset):
    """Synthetic sequences that count up modulo the vocabulary: the target is the next token."""

    def __init__(self, n=64, length=8, vocab=32):
        self.starts = torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(0))
        self.length, self.vocab = length, vocab

    def __len__(self):
        return len(self.starts)

    def __getitem__(self, i):
        seq = (self.starts[i] + torch.arange(self.length + 1)) % self.vocab
        return seq[:-1], seq[1:]


def test_lightning_demo_transformer_gives_a_finite_curve(tmp_path):
    from lightning.pytorch.demos.transformer import LightningTransformer

    class OfflineTransformer(LightningTransformer):
        def prepare_data(self):  # the demo downloads WikiText2 here; these tokens are synthetic
            pass

    torch.manual_seed(0)
    module = OfflineTransformer(vocab_size=32)
    loader = DataLoader(Tokens(), batch_size=8)
    result = lr_find(tiny_trainer(tmp_path), module, train_dataloaders=loader, min_lr=1e-4, max_lr=1.0, num_steps=12,
                     diverge=1e9, extend=1, verbose=False)  # fmt: skip
    assert len(result.lrs) == 12 and all(math.isfinite(x) for x in result.losses)
    assert result.losses[0] > 2.0  # about log(32) at the start: it really ran the model


# --- fast_dev_run --------------------------------------------------------------------------------


class CountsSteps(TinyModule):
    def __init__(self):
        super().__init__()
        self.training_steps = 0

    def training_step(self, batch, batch_idx):
        self.training_steps += 1
        return super().training_step(batch, batch_idx)


def test_fast_dev_run_skips_the_range_test_and_says_so_once(tmp_path):
    module, finder = CountsSteps(), LRFinder(num_steps=20)
    with pytest.warns(UserWarning) as caught:
        trainer = tiny_trainer(tmp_path, [finder], fast_dev_run=True)
        trainer.fit(module, tiny_loader())
        again = finder.run(trainer, module)  # a schedule's 'auto' asks again: the same answer, no second line
    assert module.training_steps == 1 and len(module.seen) == 1  # only fast_dev_run's own step
    said = [str(w.message) for w in caught if FAST_DEV_RUN in str(w.message)]
    assert said == [f"LRFinder: the LR range test does not run: {FAST_DEV_RUN}"]
    assert again.suggestion.lr is None and "fast_dev_run" in again.suggestion.reason and again.lrs == []
    assert finder.result is None and finder.state_dict() == {"result": None}  # nothing to keep in a checkpoint

    with pytest.warns(UserWarning, match="lr_find: the LR range test does not run: fast_dev_run"):
        result = lr_find(tiny_trainer(tmp_path, fast_dev_run=True), module, train_dataloaders=tiny_loader())
    assert result.suggestion.lr is None and "fast_dev_run" in result.suggestion.reason
    assert module.training_steps == 1


# --- fp16: steps the GradScaler skips ------------------------------------------------------------


def test_step_watch_tells_a_step_the_grad_scaler_skipped():
    param = nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([param], lr=0.1)
    scaler = torch.amp.GradScaler("cpu")
    with StepWatch(optimizer, scaler) as watch:
        for factor, expected in [(float("inf"), False), (1.0, True), (float("nan"), False), (2.0, True)]:
            watch.begin()
            optimizer.zero_grad()
            scaler.scale((param * factor).sum()).backward()
            scaler.step(optimizer)
            scaler.update()
            assert watch.stepped() is expected, factor
    assert float(param[0]) == pytest.approx(1 - 0.1 * (1 + 2))  # only the two finite steps moved it
    calls = watch.calls
    optimizer.step()
    assert watch.calls == calls  # the hook went with the context


class Overflows(TinyModule):
    """Its gradients overflow (inf/NaN) on chosen calls of training_step; the loss itself stays finite."""

    def __init__(self, at):
        super().__init__()
        self.at, self.losses = set(at), []

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        if len(self.losses) in self.at:
            logits.register_hook(lambda grad: grad * float("inf"))
        loss = nn.functional.cross_entropy(logits, y)
        self.losses.append(float(loss))
        return loss


class ScalerState(Callback):
    def setup(self, trainer, pl_module, stage):
        self.before = dict(trainer.precision_plugin.state_dict())

    def on_train_start(self, trainer, pl_module):
        self.after = dict(trainer.precision_plugin.state_dict())


def fp16_cpu() -> MixedPrecision:
    # the scaler given explicitly: Lightning before 2.2 makes a CUDA one by default, disabled on a CPU
    return MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))


def test_fp16_steps_the_grad_scaler_skips_are_not_points_and_its_state_comes_back(tmp_path):
    """fp16 autocast and a real GradScaler on the CPU, through Lightning's own MixedPrecision plugin."""
    module, probe = Overflows(at=[3, 7]), ScalerState()  # the range test's 4th and 8th micro-batches
    finder = LRFinder(min_lr=1e-4, max_lr=1e-1, num_steps=12, diverge=1e9, extend=1, verbose=False)
    trainer = fit(tmp_path, module, tiny_loader(), [probe, finder], plugins=[fp16_cpu()])
    assert trainer.precision_plugin.scaler is not None
    result, sweep = finder.result, RangeTestSweep(min_lr=1e-4, max_lr=1e-1, num_steps=12)
    assert result.lrs == [pytest.approx(sweep.lr(k)) for k in range(12)]  # every lr once, none lost
    assert result.extra["skipped_steps"] == 2
    tried = [0, 1, 2, 3, 3, 4, 5, 6, 6, 7, 8, 9, 10, 11]  # a skipped step is tried again at the same lr
    assert [lr for _, lr, _, _ in module.seen[:14]] == [pytest.approx(sweep.lr(k)) for k in tried]
    kept = [loss for i, loss in enumerate(module.losses[:14]) if i not in (3, 7)]
    assert result.losses == [pytest.approx(loss, rel=1e-6) for loss in kept]
    assert probe.before["scale"] == 2.0**16 and probe.after == probe.before  # scale and growth tracker restored
    assert trainer.global_step == 8  # the fit's own steps all happened
