"""LRFinder and lr_find on a real (tiny) Trainer: side-effect free, correct under accumulation, handing off 'auto'."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import random
import warnings

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_cyclic import Cyclical, LRFinder, OneCycle, RangeTestResult, WarmRestarts, lr_find
from lightning_cyclic.finder import RangeTestConfig, run_range_test
from lightning_cyclic.shapes import CyclicalSchedule, OneCycleSchedule, RangeTestSweep, WarmRestartsSchedule
from tests.helpers import RichModule, TinyModule, tiny_loader, tiny_trainer


def deep_state(obj):
    """A comparable deep copy: tensors cloned, everything else deep-copied."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, dict):
        return {k: deep_state(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [deep_state(v) for v in obj]
    return copy.deepcopy(obj)


def assert_same(a, b, path="state"):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.device == b.device, path
        assert torch.equal(a, b), f"{path} changed"
    elif isinstance(a, dict):
        assert set(a) == set(b), f"{path} keys changed: {set(a) ^ set(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), f"{path} length changed"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and a != a:
        assert b != b, path
    else:
        assert a == b, f"{path}: {a!r} -> {b!r}"


def everything(trainer, module):
    """Every piece of state a range test could disturb."""
    metric = module.acc
    return deep_state(
        {
            "params_and_buffers": {**dict(module.named_parameters()), **dict(module.named_buffers())},
            "grads": {n: p.grad for n, p in module.named_parameters()},
            "modes": {n: m.training for n, m in module.named_modules()},
            "metric": {a: getattr(metric, a) for a in metric._defaults} | {"n": metric._update_count},
            "optimizer": trainer.optimizers[0].state_dict(),
            "scheduler": trainer.lr_scheduler_configs[0].scheduler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": list(np.random.get_state()),
                "python": list(random.getstate()),
            },
            "counters": [trainer.global_step, trainer.current_epoch, trainer.fit_loop.state_dict()],
            "callbacks": [cb.state_dict() for cb in trainer.callbacks],
            "callback_metrics": dict(trainer.callback_metrics),
        }
    )


def fit_steps(module, finder):
    """``TinyModule.seen`` of the fit's own optimizer steps.

    The module's ``on_before_optimizer_step`` sees the range test's steps too (they run through the
    precision plugin, as fit's do), first, one per point of the curve: check them and drop them.
    """
    n = finder.result.optimizer_steps
    assert [lr for _, lr, _, _ in module.seen[:n]] == finder.result.lrs
    trials = finder.result.extra.get("trials")
    if trials is not None:  # then each short trial: one-cycle compressed to its steps, at its candidate peak
        steps = trials["steps"]
        expected = [
            OneCycleSchedule(max_lr=peak, total_steps=steps).lr(k) for peak in trials["lrs"] for k in range(steps)
        ]
        assert [lr for _, lr, _, _ in module.seen[n : n + len(expected)]] == pytest.approx(expected)
        n += len(expected)
    assert all(step == 0 for step, *_ in module.seen[:n])  # the test moves no counter
    return module.seen[n:]


class RangeTestMidway(Callback):
    """Runs the range test at the start of epoch 1, after real training filled momentum buffers and metrics."""

    def __init__(self):
        self.before = self.after = self.result = None

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            pl_module.body[0].weight.grad = torch.ones_like(pl_module.body[0].weight)  # a leftover gradient
            self.before = everything(trainer, pl_module)
            self.result = run_range_test(trainer, pl_module, RangeTestConfig(num_steps=30, max_lr=100.0))
            self.after = everything(trainer, pl_module)
            pl_module.body[0].weight.grad = None


def test_range_test_puts_every_tensor_and_counter_back(tmp_path):
    probe = RangeTestMidway()
    callbacks = [EarlyStopping(monitor="val_loss", patience=5), ModelCheckpoint(dirpath=tmp_path), probe]
    trainer = tiny_trainer(tmp_path, callbacks, max_epochs=2, enable_checkpointing=True)
    trainer.fit(RichModule(), tiny_loader(), tiny_loader(n=16, seed=1))
    assert probe.result is not None and len(probe.result.lrs) >= 10  # it really trained
    assert probe.before["optimizer"]["state"]  # momentum buffers existed
    assert_same(probe.before, probe.after)


def test_fit_with_the_finder_is_bit_identical_to_fit_without(tmp_path):
    """The test consumes no RNG and changes nothing: the same run, with and without LRFinder, ends identical."""

    def run(callbacks):
        torch.manual_seed(0)
        module = RichModule(scheduler=False)
        trainer = tiny_trainer(tmp_path, [OneCycle(max_lr=0.1), *callbacks], max_epochs=2)
        trainer.fit(module, tiny_loader())
        return module, trainer

    plain, _ = run([])
    found, trainer = run([LRFinder(num_steps=40)])
    assert trainer.callbacks[1].result is not None
    for (name, a), (_, b) in zip(plain.state_dict().items(), found.state_dict().items()):
        assert torch.equal(a, b), name
    assert [lrs for lrs, _ in found.calls[-16:]] == [lrs for lrs, _ in plain.calls[-16:]]


class Counter(Callback):
    def __init__(self):
        self.batches = self.steps = 0

    def on_train_batch_start(self, *args):
        self.batches += 1

    def on_before_optimizer_step(self, *args):
        self.steps += 1


def test_accumulation_steps_once_per_window_with_the_mean_loss_and_other_callbacks_see_nothing(tmp_path):
    module = RichModule(scheduler=False)
    finder = LRFinder(min_lr=1e-4, max_lr=1e-1, num_steps=12, diverge=1e9, extend=1, trials=False)
    counter = Counter()
    trainer = tiny_trainer(tmp_path, [finder, counter], max_epochs=1, accumulate_grad_batches=3)
    trainer.fit(module, tiny_loader(n=64, batch_size=8))  # 8 batches: 3 optimizer steps in the real epoch

    test_calls, real_calls = module.calls[:36], module.calls[36:]
    assert len(real_calls) == 8 and counter.batches == 8 and counter.steps == 3  # the test's steps were unseen
    sweep = RangeTestSweep(min_lr=1e-4, max_lr=1e-1, num_steps=12)
    result = finder.result
    assert result.lrs == [pytest.approx(sweep.lr(k)) for k in range(12)]
    for k in range(12):
        window = test_calls[3 * k : 3 * k + 3]
        for group_lrs, _ in window:  # the lr moves once per optimizer step, and keeps the groups' 1:10 ratio
            assert group_lrs == [pytest.approx(sweep.lr(k) / 10), pytest.approx(sweep.lr(k))]
        assert result.losses[k] == pytest.approx(np.mean([loss for _, loss in window]), rel=1e-6)
    # the real run starts from the optimizer's own lrs again
    assert real_calls[0][0] == [pytest.approx(0.005), pytest.approx(0.05)]


def test_no_files_unless_asked_and_records_when_asked(tmp_path):
    quiet = tmp_path / "quiet"
    trainer = tiny_trainer(quiet, [LRFinder(num_steps=20)], max_epochs=1)
    trainer.fit(TinyModule(), tiny_loader())
    assert not quiet.exists() or not any(quiet.rglob("lr_find*"))

    finder = LRFinder(num_steps=60, save_dir=tmp_path / "run")
    tiny_trainer(tmp_path, [finder], max_epochs=1).fit(TinyModule(), tiny_loader())
    saved = json.loads((tmp_path / "run" / "lr_find.json").read_text())
    assert saved["lrs"] == finder.result.lrs and saved["suggestion"]["rule"] == "edge"
    assert RangeTestResult.load_json(tmp_path / "run" / "lr_find.json").suggestion == finder.result.suggestion
    png = tmp_path / "run" / "lr_find.png"
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 10_000


def test_a_model_that_diverges_at_once_gets_no_suggestion_and_no_crash(tmp_path):
    class FiniteAtStart(Callback):
        def on_train_start(self, trainer, pl_module):
            self.finite = all(torch.isfinite(p).all() for p in pl_module.parameters())

    finder, probe = LRFinder(num_steps=30), FiniteAtStart()
    trainer = tiny_trainer(tmp_path, [finder, probe], max_epochs=1)
    trainer.fit(RichModule(nan=True), tiny_loader())
    result = finder.result
    assert result.suggestion.lr is None and "every loss was NaN/inf" in result.suggestion.reason
    assert "the loss became nan" in result.stop_reason and len(result.lrs) == 1
    assert probe.finite  # the NaN step was undone before training started
    assert result.outcome == "fallback" and result.fallback.rule == "optimizer"  # what "auto" would take


def finder_warnings(run) -> list[str]:
    """The LRFinder warnings issued while ``run()`` runs."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run()
    return [str(w.message) for w in caught if str(w.message).startswith("LRFinder:")]


def test_auto_on_a_loss_nan_from_the_first_step_falls_back_to_the_optimizers_lr_and_trains(tmp_path):
    finder, schedule = LRFinder(num_steps=30), OneCycle(max_lr="auto")
    trainer = tiny_trainer(tmp_path, [finder, schedule], max_epochs=1)
    module = RichModule(nan=True)  # SGD at lr 0.05 (the head) and 0.005 (the body)
    said = finder_warnings(lambda: trainer.fit(module, tiny_loader()))
    assert len(said) == 1 and "found no sound suggestion: every loss was NaN/inf" in said[0]
    assert "fallback lr=0.05 instead (optimizer: the optimizer's own lr)" in said[0]
    assert finder.result.outcome == "fallback" and finder.result.chosen.lr == 0.05
    assert schedule.resolved == {"max_lr": 0.05}
    assert trainer.global_step == 8 and len(module.calls) == 1 + 8  # one range-test step, then the whole epoch
    assert module.calls[1][0] == [pytest.approx(0.05 / 25 / 10), pytest.approx(0.05 / 25)]  # one-cycle's start


def test_auto_without_a_suggestion_or_a_fallback_fails_before_training_with_the_reason(tmp_path):
    trainer = tiny_trainer(tmp_path, [OneCycle(max_lr="auto")], max_epochs=1)
    with pytest.raises(ValueError, match=r"OneCycle\(max_lr='auto'\): the LR range test found no sound suggestion"):
        trainer.fit(RichModule(lr=0.0, nan=True), tiny_loader())  # no curve, and no lr of its own to fall back to


class LinearRegression(pl.LightningModule):
    """``nn.Linear(8, 1)`` on a regression target around 300, mean absolute error, SGD with momentum.

    Its loss keeps falling well past lr 10: the gradient of the absolute error is bounded, and the
    weights have a long way to go; it turns up only at lrs of tens to hundreds.
    """

    def __init__(self, lr: float = 0.01):
        super().__init__()
        self.net = nn.Linear(8, 1)
        self.lr = lr
        self.losses: list[float] = []  # every training_step's, the range test's first

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.l1_loss(self.net(x).squeeze(-1), y)
        self.losses.append(float(loss))
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


def regression_loader(n: int = 256, batch_size: int = 32, seed: int = 0) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = 300 * (1 + 0.3 * (x @ torch.randn(8, generator=g)) + 0.1 * torch.randn(n, generator=g))
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


def test_a_curve_that_has_not_turned_up_by_max_lr_is_extended_and_auto_trains(tmp_path):
    torch.manual_seed(0)
    finder, schedule = LRFinder(), OneCycle(max_lr="auto")
    module = LinearRegression()
    trainer = tiny_trainer(tmp_path, [finder, schedule], max_epochs=4)
    trainer.fit(module, regression_loader())
    result = finder.result
    n = result.optimizer_steps
    assert result.outcome == "extended" and 100 < n <= 124  # the 100 steps asked for, then at most 24 more
    assert result.lrs[:100] == [pytest.approx(RangeTestSweep(1e-7, 10.0, 100).lr(k)) for k in range(100)]
    assert result.lrs[100:] == [pytest.approx(result.config.lr(k)) for k in range(100, n)]  # same spacing on
    assert result.extra["extended_to"] == result.lrs[-1] > 10 and "past max_lr" in result.stop_reason
    assert result.suggestion.rule == "edge" and result.suggestion.lr > 1  # read where the loss turned up
    assert schedule.resolved == {"max_lr": result.chosen.lr}  # as the short trials moved it
    assert trainer.global_step == 32
    start, last_epoch = module.losses[0], np.mean(module.losses[-8:])
    assert last_epoch < start / 5  # it trained: from about 300 to a small fraction of it


def test_extend_1_does_not_go_past_max_lr_and_auto_takes_the_stated_fallback(tmp_path):
    torch.manual_seed(0)
    finder, schedule = LRFinder(extend=1, save_dir=tmp_path / "run"), OneCycle(max_lr="auto")
    module = LinearRegression()
    trainer = tiny_trainer(tmp_path, [finder, schedule], max_epochs=1)
    said = finder_warnings(lambda: trainer.fit(module, regression_loader()))
    result = finder.result
    assert len(result.lrs) == 100 and result.stop_reason == "reached max_lr after 100 steps"
    assert result.suggestion.lr is None and "never turned back up" in result.suggestion.reason
    assert result.outcome == "fallback" and "extended_to" not in result.extra
    valley = result.suggest("valley")
    assert (result.fallback.rule, result.fallback.lr, result.fallback.low) == ("valley", valley.lr, valley.low)
    assert len(said) == 1 and "the loss never turned back up" in said[0]
    assert f"fallback lr={result.fallback.lr:.3g} instead (valley: fastai's valley rule" in said[0]
    assert schedule.resolved == {"max_lr": result.fallback.lr} and trainer.global_step == 8
    # and it all comes back from a checkpoint's state and from the saved JSON
    restored = LRFinder(extend=1)
    restored.load_state_dict(copy.deepcopy(finder.state_dict()))
    assert restored.result == result and restored.result.chosen == result.fallback
    saved = RangeTestResult.load_json(tmp_path / "run" / "lr_find.json")
    assert saved.outcome == "fallback" and saved.fallback == result.fallback


def test_a_noisy_training_loss_gets_one_low_confidence_warning_with_the_remedies(tmp_path, caplog):
    torch.manual_seed(0)
    finder = LRFinder(evaluate="train")  # the training loss of each step, batches of two, random labels
    trainer = tiny_trainer(tmp_path, [finder], max_epochs=1)
    with caplog.at_level(logging.INFO):
        said = finder_warnings(lambda: trainer.fit(TinyModule(), tiny_loader(batch_size=2), tiny_loader(n=16, seed=1)))
    s = finder.result.suggestion
    assert s.lr is not None and s.confidence.level == "low" and finder.result.outcome == "found"
    assert len(said) == 1 and said[0].startswith(f"LRFinder: low confidence in the suggested lr={s.lr:.3g} (edge)")
    assert "more num_steps (now 100)" in said[0] and "a larger batch size" in said[0]
    assert "evaluate='val'" in said[0]  # there was validation data to read instead
    report = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("LRFinder: "))
    assert f"confidence {s.confidence.describe()}" in report and "confidence low (" in report


def test_extend_is_an_argument_that_keeps_the_state_key_of_older_checkpoints():
    assert LRFinder().state_key == LRFinder(extend=100.0).state_key
    assert "extend" not in LRFinder().state_key and "extend" in LRFinder(extend=1).state_key
    assert LRFinder(extend=3).config.extend == 3
    with pytest.raises(ValueError, match=r"extend must be >= 1, got 0"):
        LRFinder(extend=0)


def test_state_key_is_kept_for_its_config_and_follows_a_new_one():
    # Lightning reads the key at every hook call: it is built once per config (frozen), not per call
    finder = LRFinder(num_steps=80)
    key = finder.state_key
    assert finder.state_key is key and "'num_steps': 80" in key
    finder.config = dataclasses.replace(finder.config, num_steps=50)
    assert "'num_steps': 50" in finder.state_key and finder.state_key != key


def test_onecycle_auto_takes_the_suggestion_in_the_same_fit(tmp_path):
    finder = LRFinder(num_steps=80)
    schedule = OneCycle(max_lr="auto")
    trainer = tiny_trainer(tmp_path, [schedule, finder], max_epochs=2)
    module = TinyModule(lr=0.01)
    trainer.fit(module, tiny_loader())
    found = finder.result.chosen.lr  # the edge reading, moved by the short trials
    assert found is not None and schedule.resolved == {"max_lr": found}
    expected = OneCycleSchedule(max_lr=found, total_steps=16)
    assert [lr for _, lr, _, _ in fit_steps(module, finder)] == [pytest.approx(expected.lr(k)) for k in range(16)]


def test_auto_runs_a_default_finder_when_none_is_given(tmp_path):
    schedule = OneCycle(max_lr="auto")
    tiny_trainer(tmp_path, [schedule], max_epochs=1).fit(TinyModule(), tiny_loader())
    assert schedule.finder is not None and schedule.resolved["max_lr"] == schedule.finder.result.chosen.lr


def test_warm_restarts_auto_takes_its_value_in_the_same_fit(tmp_path):
    finder = LRFinder(num_steps=80)
    schedule = WarmRestarts(max_lr="auto", cycle_len=4, interval="step")
    module = TinyModule(lr=0.01)
    tiny_trainer(tmp_path, [finder, schedule], max_epochs=2).fit(module, tiny_loader())
    found = schedule.resolved["max_lr"]
    assert found is not None and 0 < found <= finder.result.chosen.lr
    expected = WarmRestartsSchedule(max_lr=found, cycle_len=4)
    assert [lr for _, lr, _, _ in fit_steps(module, finder)] == [pytest.approx(expected.lr(k)) for k in range(16)]


@pytest.mark.parametrize("floor", [2.1, 0.3])  # a shallow curve (divided by 1.5) and a deep one (by 3)
def test_warm_restarts_auto_never_peaks_above_a_third_of_the_edge(floor):
    from lightning_cyclic.suggest import EDGE_DIV, read_edge, suggest

    lrs = [1e-6 * 10 ** (k / 20) for k in range(121)]
    losses = []
    for lr in lrs:  # flat, a fall two decades below 0.1, then an explosion past 0.05
        loss = floor + (2.3 - floor) / (1 + math.exp(3 * math.log10(lr / 1e-3)))
        losses.append(loss + (max(lr / 0.05 - 1, 0) * 46))
    result = RangeTestResult(lrs, losses, RangeTestConfig(), suggest(lrs, losses))
    edge = read_edge(lrs, losses).at
    restarts, onecycle = WarmRestarts(max_lr="auto", cycle_len=1), OneCycle(max_lr="auto")
    assert onecycle._auto_values(result) == {"max_lr": result.suggestion.lr}
    assert restarts._auto_values(result)["max_lr"] == pytest.approx(edge / EDGE_DIV[1])
    if floor > 2:  # one-cycle warms up to its peak: it may go higher on a shallow curve
        assert result.suggestion.lr == pytest.approx(edge / EDGE_DIV[0])


def test_cyclical_auto_takes_the_good_range(tmp_path):
    finder = LRFinder(num_steps=80)
    schedule = Cyclical(base_lr="auto", max_lr="auto", step_size_up=2)
    module = TinyModule(lr=0.01)
    tiny_trainer(tmp_path, [finder, schedule], max_epochs=1).fit(module, tiny_loader())
    s = finder.result.chosen  # the good range, moved with the lr by the short trials
    assert schedule.resolved == {"base_lr": s.low, "max_lr": s.high} and s.low < s.high
    expected = CyclicalSchedule(base_lr=s.low, max_lr=s.high, step_size_up=2)
    assert [lr for _, lr, _, _ in fit_steps(module, finder)] == [pytest.approx(expected.lr(k)) for k in range(8)]


def test_resume_keeps_the_found_lr_and_does_not_test_again(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, every_n_epochs=1, filename="{epoch}")
    first = RichModule(scheduler=False)
    tiny_trainer(
        tmp_path, [OneCycle(max_lr="auto"), LRFinder(num_steps=50), ckpt], max_epochs=3, enable_checkpointing=True
    ).fit(first, tiny_loader())
    resumed_schedule, resumed_finder = OneCycle(max_lr="auto"), LRFinder(num_steps=50)
    second = RichModule(scheduler=False)
    tiny_trainer(tmp_path, [resumed_schedule, resumed_finder], max_epochs=3).fit(
        second, tiny_loader(), ckpt_path=str(tmp_path / "ckpt" / "epoch=0.ckpt")
    )
    assert len(second.calls) == 16  # two real epochs of 8 batches, no range test
    assert resumed_finder.result is not None and resumed_finder.result.lrs  # the curve came with the checkpoint
    assert [lrs for lrs, _ in second.calls] == [lrs for lrs, _ in first.calls[-16:]]


def test_lr_find_function_leaves_model_and_trainer_ready_to_fit(tmp_path):
    module = RichModule(scheduler=False)
    before = deep_state(module.state_dict())
    trainer = tiny_trainer(tmp_path, max_epochs=1, accumulate_grad_batches=2)
    result = lr_find(trainer, module, train_dataloaders=tiny_loader(), num_steps=60, verbose=False)
    assert isinstance(result, RangeTestResult) and result.suggestion.lr is not None
    assert result.extra["accumulate_grad_batches"] == 2 and len(module.calls) == 2 * len(result.lrs)
    assert_same(before, deep_state(module.state_dict()))
    trainer.fit(module, tiny_loader())
    assert trainer.global_step == 4


@pytest.mark.parametrize("accumulate", [1, 2])
def test_a_training_step_that_returns_none_for_a_whole_step_is_a_clear_error(tmp_path, accumulate):
    class Skipping(TinyModule):
        def training_step(self, batch, batch_idx):
            return None  # Lightning skips such a batch; the range test has nothing to read

    trainer = tiny_trainer(tmp_path, [LRFinder(num_steps=20)], max_epochs=1, accumulate_grad_batches=accumulate)
    with pytest.raises(ValueError, match=rf"returned None for all {accumulate} micro-batches of LR range test step 0"):
        trainer.fit(Skipping(), tiny_loader())


def test_finder_rejects_bad_arguments_and_unsupported_setups(tmp_path):
    with pytest.raises(ValueError, match=r"max_lr must be > min_lr, got max_lr=0\.001 and min_lr=0\.01"):
        LRFinder(min_lr=1e-2, max_lr=1e-3)
    with pytest.raises(ValueError, match="suggestion must be one of 'edge', 'valley', 'steepest', 'minimum'"):
        LRFinder(suggestion="fastai")
    with pytest.raises(ValueError, match=r"diverge must be > 1, got 0.5"):
        LRFinder(diverge=0.5)
    with pytest.raises(ValueError, match="num_steps must be >= 2, got 1"):
        LRFinder(num_steps=1)

    class Manual(TinyModule):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False

    with pytest.raises(ValueError, match="LRFinder needs automatic optimization"):
        tiny_trainer(tmp_path, [LRFinder()], max_epochs=1).fit(Manual(), tiny_loader())


class SizedModule(RichModule):
    """Records the batch size of every training_step in eval mode; ``fixed``: refuses any batch but its own
    size there, as a model built for one batch size would."""

    def __init__(self, fixed: int | None = None):
        super().__init__(scheduler=False)
        self.fixed, self.eval_sizes = fixed, []

    def training_step(self, batch, batch_idx):
        if not self.training:
            self.eval_sizes.append(len(batch[0]))
            if self.fixed is not None and len(batch[0]) != self.fixed:
                raise RuntimeError(f"this model takes batches of {self.fixed}, got {len(batch[0])}")
        return super().training_step(batch, batch_idx)


def test_evaluate_on_validation_batches_reads_them_as_one_batch_with_the_same_mean_loss(tmp_path):
    """Each step trains on one batch and evaluates the two fixed validation batches in one forward, merged;
    a model that takes only its own batch size gets them one by one, after one refused try, and the same curve."""
    curves = {}
    for fixed in (None, 8):
        pl.seed_everything(0)
        finder = LRFinder(num_steps=40, evaluate="val", val_batches=2, trials=False)
        module = SizedModule(fixed)
        tiny_trainer(tmp_path, [finder], max_epochs=1).fit(module, tiny_loader(), tiny_loader(n=32, seed=3))
        steps = len(finder.result.lrs)
        curves[fixed] = finder.result.losses
        if fixed is None:
            assert module.eval_sizes == [16] * steps  # the two batches of 8 as one
            assert len(module.calls) == 2 * steps + 8  # then fit's own 8 training steps
        else:
            assert module.eval_sizes == [16] + [8] * (2 * steps)  # one refused merged try, then one by one
            assert len(module.calls) == 3 * steps + 8
    assert curves[None] == pytest.approx(curves[8], rel=1e-5)


def test_merge_batches_concatenates_like_structures_and_refuses_the_rest():
    from collections import namedtuple

    from lightning_cyclic.finder import _NotMergeable, merge_batches

    a, b = torch.ones(2, 3), torch.zeros(1, 3)
    assert torch.equal(merge_batches([a, b]), torch.cat([a, b]))
    merged = merge_batches([(a, [a]), (b, [b])])
    assert type(merged) is tuple and type(merged[1]) is list and merged[0].shape == (3, 3)
    pair = namedtuple("Pair", "x y")
    merged = merge_batches([pair(a, a[:, 0]), pair(b, b[:, 0])])
    assert type(merged) is pair and merged.y.shape == (3,)
    merged = merge_batches([{"x": a, "y": a}, {"x": b, "y": b}])
    assert set(merged) == {"x", "y"} and merged["x"].shape == (3, 3)
    for refused in (
        [a, torch.ones(2, 4)],  # other trailing shape
        [a, a.long()],  # other dtype
        [torch.tensor(1.0), torch.tensor(2.0)],  # no batch dimension
        [(a, "text"), (b, "text")],  # not a tensor
        [{"x": a}, {"y": b}],  # other keys
        [(a, a), (b,)],  # other length
        [(a,), [b]],  # other container
    ):
        with pytest.raises(_NotMergeable):
            merge_batches(refused)


@pytest.mark.parametrize("with_val, expected", [(True, "val"), (False, "train")])
def test_evaluate_auto_uses_validation_data_when_there_is_some(tmp_path, with_val, expected):
    finder = LRFinder(num_steps=20)
    val = tiny_loader(n=16, seed=3) if with_val else None
    tiny_trainer(tmp_path, [finder], max_epochs=1).fit(RichModule(scheduler=False), tiny_loader(), val)
    assert finder.config.evaluate == "auto" and finder.result.config.evaluate == expected
