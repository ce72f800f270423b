"""Guard: a blow-up is rolled back to the last good weights and the run goes on at a lower lr."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from lightning_cyclic import Guard, LRFinder, OneCycle
from lightning_cyclic.callbacks.best import cpu_state
from tests.helpers import TinyModule, tiny_loader, tiny_trainer


class Recorded(torch.optim.SGD):
    """SGD that records the lr of group 0 each step is given (``used``), to see the scale the step gets."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.used: list[float] = []

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.used.append(float(self.param_groups[0]["lr"]))
        super().step()
        return loss


class Poisoned(TinyModule):
    """The tiny linear classifier on learnable data, whose loss is NaN at the optimizer steps in ``nan_at``
    (a batch that turns the loss NaN), under automatic or manual optimization."""

    def __init__(self, nan_at=(), lr: float = 0.1, scheduler=None, manual: bool = False):
        super().__init__(lr=lr, scheduler=scheduler)
        self.nan_at = set(nan_at)
        self.automatic_optimization = not manual

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        if self.global_step in self.nan_at:
            loss = loss * float("nan")
        if self.automatic_optimization:
            return loss
        optimizer = self.optimizers()
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()
        return None

    def configure_optimizers(self):
        optimizer = Recorded(self.parameters(), lr=self.lr, momentum=0.9)
        if self.scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler(optimizer), "interval": "step"}}


def fit(tmp_path, module, callbacks=(), **kwargs):
    pl.seed_everything(0)
    trainer = tiny_trainer(tmp_path, callbacks, **kwargs)
    trainer.fit(module, tiny_loader(learnable=True))
    return trainer


def finite(module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"factor": 1.0}, r"factor must be in \(0, 1\), got 1.0"),
        ({"factor": 0}, r"factor must be in \(0, 1\), got 0"),
        ({"spike": 1}, "spike must be > 1, got 1"),
        ({"patience": 0}, "patience must be >= 1, got 0"),
        ({"window": 2.5}, "window must be an integer, got 2.5"),
        ({"every": 0}, "every must be >= 1, got 0"),
        ({"max_rollbacks": -1}, "max_rollbacks must be >= 0, got -1"),
        ({"skip_batches": -2}, "skip_batches must be >= 0, got -2"),
        ({"rewarm": 1}, "rewarm must be one of True, False, got 1"),
    ],
)
def test_bad_arguments_name_the_argument_and_what_is_allowed(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Guard(**kwargs)


def test_a_healthy_run_is_the_same_run_with_or_without_the_guard(tmp_path):
    torch.manual_seed(0)
    plain = Poisoned()
    fit(tmp_path, plain, [OneCycle(0.5)], max_epochs=4)
    torch.manual_seed(0)
    guarded, guard = Poisoned(), Guard(every=3)
    fit(tmp_path, guarded, [OneCycle(0.5), guard], max_epochs=4)
    assert guard.events == [] and guard.lr_scale == 1.0 and not guard.gave_up
    assert len(guard.history) == 32  # every step's loss read (8 batches x 4 epochs), within window + patience
    a, b = cpu_state(plain), cpu_state(guarded)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert guarded.optimizers().optimizer.used == plain.optimizers().optimizer.used


@pytest.mark.parametrize("rewarm", [True, False])
def test_a_nan_loss_never_reaches_the_weights_and_the_rest_runs_at_half_the_lr(tmp_path, rewarm):
    unguarded = Poisoned(nan_at={10})
    fit(tmp_path, unguarded, [OneCycle(0.5)])
    assert not finite(unguarded)  # what the guard is for

    torch.manual_seed(0)
    module, guard = Poisoned(nan_at={10}), Guard(every=4, rewarm=rewarm)
    fit(tmp_path, module, [OneCycle(0.5), guard])
    assert finite(module)
    assert [e["step"] for e in guard.events] == [10] and "nan" in guard.events[0]["reason"]
    assert guard.events[0]["restored_step"] == 4  # taken at step 4, good since step 8 (4 healthy steps later)
    assert guard.lr_scale == 0.5 and guard.rollbacks == 1 and not guard.gave_up
    # the lr each step was given: the schedule's before step 10, half of it from step 11 on; with rewarm, the six
    # steps rolled back (4 to 10) are taken again with the scale rising from a sixth of it: 1/6, 2/6, ... 6/6
    schedule = OneCycle(0.5).build(total_steps=24, steps_per_epoch=8)
    used = module.optimizers().optimizer.used
    assert len(used) == 24
    for step, lr in enumerate(used):
        ramp = min((step - 10) / 6, 1.0) if rewarm else 1.0
        expected = schedule(step)[0] * (0.5 * ramp if step > 10 else 1.0)
        assert math.isclose(lr, expected, rel_tol=1e-9), (step, lr, expected)


def test_the_rollback_puts_back_the_good_weights_and_optimizer_state(tmp_path):
    states = {}

    class Keep(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            buffers = {p: s["momentum_buffer"].clone() for p, s in trainer.optimizers[0].state_dict()["state"].items()}
            states[trainer.global_step] = (cpu_state(pl_module), buffers)

    torch.manual_seed(0)
    # the Guard is first: its on_train_batch_end rolls back before Keep records the step
    module, guard = Poisoned(nan_at={6}), Guard(every=2)
    fit(tmp_path, module, [guard, Keep()], max_epochs=1)
    assert guard.events[0]["restored_step"] == 4
    after, opt_after = states[7]  # the weights after the blow-up's step: step 4's
    before, opt_before = states[4]
    assert all(torch.equal(after[k], before[k]) for k in after)
    assert opt_after.keys() == opt_before.keys()
    assert all(torch.equal(opt_after[p], opt_before[p]) for p in opt_after)


def test_a_torch_scheduler_is_scaled_for_the_step_and_otherwise_left_alone(tmp_path):
    # Recorded.step calls SGD.step: where SGD.step is wrapped too (any SGD built in the process patches it), torch
    # runs the step hooks at both levels; the scale goes on once
    torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)

    def cosine(optimizer):
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=24)

    torch.manual_seed(0)
    plain = Poisoned(scheduler=cosine)
    fit(tmp_path, plain)
    torch.manual_seed(0)
    module, guard = Poisoned(nan_at={5}, scheduler=cosine), Guard(factor=0.25, rewarm=False)
    fit(tmp_path, module, [guard])
    reference = plain.optimizers().optimizer.used
    used = module.optimizers().optimizer.used
    assert used[:6] == reference[:6]
    assert all(math.isclose(u, 0.25 * r, rel_tol=1e-12) for u, r in zip(used[6:], reference[6:]))
    # the scheduler's own trajectory is the unguarded one: the scale is taken off after each step
    assert module.optimizers().param_groups[0]["lr"] == plain.optimizers().param_groups[0]["lr"]


def test_it_gives_up_after_max_rollbacks_with_the_good_weights_back(tmp_path):
    torch.manual_seed(0)
    module, guard = Poisoned(nan_at=set(range(9, 100))), Guard(max_rollbacks=2, every=3)
    with pytest.warns(UserWarning, match=r"after 2 rollback\(s\) \(max_rollbacks=2\); giving up"):
        trainer = fit(tmp_path, module, [guard], max_epochs=5)
    assert guard.gave_up and guard.rollbacks == 2 and [e["gave_up"] for e in guard.events] == [False, False, True]
    assert trainer.global_step == 12  # steps 9, 10 and 11 blew up; the fit stopped after the third
    assert finite(module) and guard.lr_scale == 0.25


def test_skip_batches_leaves_the_next_updates_out(tmp_path):
    torch.manual_seed(0)
    module, guard = Poisoned(nan_at={5}), Guard(skip_batches=1)
    states = []

    class Keep(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            states.append(cpu_state(pl_module))

    fit(tmp_path, module, [guard, Keep()], max_epochs=1)
    # steps 5 (the blow-up) and 6 (skipped) leave the weights as the rollback put them; step 7 updates again
    assert all(torch.equal(states[5][k], states[6][k]) for k in states[5])
    assert not all(torch.equal(states[6][k], states[7][k]) for k in states[6])


def test_gradient_accumulation_and_manual_optimization(tmp_path):
    torch.manual_seed(0)
    module, guard = Poisoned(nan_at={3}), Guard()
    trainer = fit(tmp_path, module, [guard], accumulate_grad_batches=2)
    assert trainer.global_step == 12 and [e["step"] for e in guard.events] == [3] and finite(module)

    torch.manual_seed(0)
    module, guard = Poisoned(nan_at={3}, manual=True), Guard()
    fit(tmp_path, module, [guard])
    assert [e["step"] for e in guard.events] == [3] and finite(module) and guard.lr_scale == 0.5


def test_state_belongs_to_one_fit_and_a_resume_keeps_the_scale(tmp_path):
    guard = Guard()
    torch.manual_seed(0)
    fit(tmp_path / "a", Poisoned(nan_at={20}), [guard])
    assert guard.lr_scale == 0.5 and guard._ramp is not None  # (back to its start at step 20: still warming up)
    torch.manual_seed(0)
    fit(tmp_path / "b", Poisoned(), [guard])  # the same instance, a new fit (a k-fold loop): fresh
    assert guard.lr_scale == 1.0 and guard.events == [] and guard._ramp is None and guard._relearn is None

    # uninterrupted, against stopped after epoch 1 and resumed from its checkpoint
    torch.manual_seed(0)
    whole = Poisoned(nan_at={5})
    fit(tmp_path / "c", whole, [Guard()], max_epochs=3)
    torch.manual_seed(0)
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, every_n_epochs=1, filename="{epoch}")
    fit(tmp_path / "d", Poisoned(nan_at={5}), [Guard(), saver], max_epochs=1, enable_checkpointing=True)
    torch.manual_seed(1)  # other initial weights: the checkpoint's must replace them
    resumed, guard = Poisoned(nan_at={5}), Guard()
    pl.seed_everything(0)
    tiny_trainer(tmp_path / "e", [guard], max_epochs=3).fit(
        resumed, tiny_loader(learnable=True), ckpt_path=str(tmp_path / "ckpt" / "epoch=0.ckpt")
    )
    assert guard.lr_scale == 0.5 and [e["step"] for e in guard.events] == [5]
    a, b = cpu_state(whole), cpu_state(resumed)
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-7) for k in a)


def test_two_guards_that_differ_only_in_a_rule_keep_their_own_state_in_a_checkpoint(tmp_path):
    # the key of a Guard at its defaults is as it was; a rule's argument names it too, max_rollbacks does not (a
    # resume may raise it)
    assert Guard().state_key == "Guard{'factor': 0.5, 'spike': 2.0, 'patience': 10}" == Guard(max_rollbacks=9).state_key
    keys = {Guard(**kw).state_key for kw in ({}, {"collapse": False}, {"rewarm": False}, {"every": 7}, {"window": 9})}
    assert len(keys) == 5
    first, second = Guard(every=3), Guard(every=3, rewarm=False)
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="last")
    fit(tmp_path / "a", Poisoned(nan_at={20}), [first, second, saver], enable_checkpointing=True)  # (was refused)
    assert first._ramp is not None and second._ramp is None  # the one warms up after its rollback, the other not
    states = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["callbacks"]
    assert states[first.state_key]["ramp"] is not None and states[second.state_key]["ramp"] is None


def test_a_checkpoint_from_before_the_key_named_every_still_resumes_the_guards_scale(tmp_path):
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="last")
    fit(tmp_path / "a", Poisoned(nan_at={5}), [Guard(every=3), saver], max_epochs=1, enable_checkpointing=True)
    checkpoint = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    state = checkpoint["callbacks"].pop(Guard(every=3).state_key)
    assert state["lr_scale"] == 0.5
    checkpoint["callbacks"][Guard().state_key] = state  # where a Guard(every=3) kept its state until now
    torch.save(checkpoint, tmp_path / "older.ckpt")
    resumed = Guard(every=3)
    pl.seed_everything(0)
    trainer = tiny_trainer(tmp_path / "b", [resumed], max_epochs=2)
    trainer.fit(Poisoned(), tiny_loader(learnable=True), ckpt_path=str(tmp_path / "older.ckpt"))
    assert resumed.lr_scale == 0.5 and [e["step"] for e in resumed.events] == [5]


def test_the_range_test_inside_the_fit_is_not_a_blow_up(tmp_path):
    torch.manual_seed(0)
    module, guard = Poisoned(), Guard()
    fit(tmp_path, module, [OneCycle(max_lr="auto"), LRFinder(num_steps=60, verbose=False), guard])
    assert guard.events == [] and guard.lr_scale == 1.0


def _digits(lr: float, guard: Guard | None):
    from sklearn.datasets import load_digits
    from torch.utils.data import DataLoader, TensorDataset

    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x, dtype=torch.float32) / 16, torch.tensor(y)

    class MLP(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))

        def training_step(self, batch, batch_idx):
            return nn.functional.cross_entropy(self.net(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)

    pl.seed_everything(0)
    model = MLP()
    callbacks = [OneCycle(max_lr=lr)] + ([guard] if guard else [])
    trainer = pl.Trainer(
        max_epochs=10,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )
    trainer.fit(model, DataLoader(TensorDataset(x[:1400], y[:1400]), batch_size=32, shuffle=True))
    with torch.no_grad():
        return float((model.net(x[1400:]).argmax(1) == y[1400:]).float().mean())


def test_a_one_cycle_ten_times_too_bold_is_brought_back(tmp_path):
    # a digits MLP whose one-cycle trains at max_lr 0.3 collapses to chance at 3.0; the guard brings it back
    assert _digits(3.0, None) < 0.2
    guard = Guard()
    accuracy = _digits(3.0, guard)
    assert accuracy > 0.85 and guard.rollbacks >= 2 and finite_scale(guard)


def finite_scale(guard: Guard) -> bool:
    return 0 < guard.lr_scale < 1 and guard.lr_scale == guard.factor**guard.rollbacks


def test_best_snapshot_leaves_a_nan_loss_to_the_guard(tmp_path):
    from lightning_cyclic import BestSnapshot

    torch.manual_seed(0)
    module, guard = Poisoned(nan_at={5}), Guard()
    module.validation_step = lambda batch, batch_idx: module.log("val_loss", nn.functional.cross_entropy(*batch))
    best = BestSnapshot("val_loss", verbose=False)
    pl.seed_everything(0)
    trainer = tiny_trainer(tmp_path, [best, guard])
    trainer.fit(
        module, tiny_loader(learnable=True), tiny_loader(n=16, seed=1, learnable=True)
    )  # BestSnapshot alone would stop at step 5
    assert trainer.global_step == 24 and best.stop_reason == "" and [e["step"] for e in guard.events] == [5]


def test_bf16_mixed_precision_on_cpu(tmp_path):
    torch.manual_seed(0)
    module, guard = Poisoned(nan_at={5}), Guard()
    fit(tmp_path, module, [guard], precision="bf16-mixed")
    assert [e["step"] for e in guard.events] == [5] and finite(module) and guard.lr_scale == 0.5


def test_pytorch_lightning_trainer_and_learning_rate_monitor(tmp_path):
    pl_namespace = pytest.importorskip("pytorch_lightning")
    from pytorch_lightning.callbacks import LearningRateMonitor
    from pytorch_lightning.demos.boring_classes import BoringModel, RandomDataset
    from pytorch_lightning.loggers import CSVLogger
    from torch.utils.data import DataLoader

    class Model(BoringModel):
        def training_step(self, batch, batch_idx):
            out = super().training_step(batch, batch_idx)
            return {"loss": out["loss"] * float("nan")} if self.global_step == 6 else out

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)

    guard = Guard(every=2)
    callbacks = [LearningRateMonitor(logging_interval="step"), OneCycle(0.1), guard]
    trainer = tiny_trainer(
        tmp_path, callbacks, pl_namespace, max_epochs=1, limit_train_batches=20, log_every_n_steps=1,
        logger=CSVLogger(tmp_path),
    )  # fmt: skip
    torch.manual_seed(0)
    model = Model()
    trainer.fit(model, DataLoader(RandomDataset(32, 64), batch_size=2))
    assert [e["step"] for e in guard.events] == [6] and finite(model)
    import csv

    rows = list(csv.DictReader(open(trainer.logger.log_dir + "/metrics.csv")))
    scales = {int(r["step"]): float(r["guard/lr_scale"]) for r in rows if r.get("guard/lr_scale")}
    monitored = [float(r["lr-SGD"]) for r in rows if r.get("lr-SGD")]
    # at the start, at the rollback (step 6), and at each step of the warm-up after it (back at step 2, before the
    # run had learnt a tenth: the scale rises to 0.5 over the 4 steps rolled back), at the monitor's step keys
    [event] = guard.events
    back = event["step"] - event["restored_step"]
    assert back == 4 and scales == {0: 1.0, 6: 0.5, **{6 + k: 0.5 * k / back for k in range(1, back + 1)}}
    # the monitor logs the schedule's lr (before the Guard's scale): one-cycle's, step by step
    schedule = OneCycle(0.1).build(total_steps=20, steps_per_epoch=20)
    assert monitored == pytest.approx([schedule(k)[0] for k in range(20)], rel=1e-6)


def test_a_rollback_to_before_backbone_finetuning_added_its_param_group(tmp_path):
    from lightning.pytorch.callbacks import BackboneFinetuning

    class Finetuned(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.backbone, self.head = nn.Linear(4, 8), nn.Linear(8, 3)

        def training_step(self, batch, batch_idx):
            loss = nn.functional.cross_entropy(self.head(torch.relu(self.backbone(batch[0]))), batch[1])
            return loss * float("nan") if self.global_step == 20 else loss  # in epoch 2, after the unfreeze

        def configure_optimizers(self):
            return torch.optim.SGD([p for p in self.parameters() if p.requires_grad], lr=0.1, momentum=0.9)

    torch.manual_seed(0)
    module, guard = Finetuned(), Guard(every=50)  # the good snapshot is the start's: one param group then
    trainer = fit(tmp_path, module, [BackboneFinetuning(unfreeze_backbone_at_epoch=2), guard], max_epochs=4)
    assert [(e["step"], e["restored_step"]) for e in guard.events] == [(20, 0)] and trainer.global_step == 32
    optimizer = trainer.optimizers[0]
    assert len(optimizer.param_groups) == 2 and finite(module)  # the backbone's group stays, and trains on
    assert all(p in optimizer.state for p in module.backbone.parameters())


class Collapsing(TinyModule):
    """The tiny classifier on learnable data, whose outputs go flat (the chance level, no gradient) from optimizer
    step ``at`` until the Guard has rolled back: a collapse too small for the ratio rules (the loss, fallen to
    about 0.75, climbs back to 1.1, under twice its level)."""

    def __init__(self, at: int, guard: Guard):
        super().__init__(lr=0.02)
        self.at, self.guard = at, guard
        self.losses: list[float] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        if self.global_step >= self.at and not self.guard.events:
            logits = logits * 0
        loss = nn.functional.cross_entropy(logits, y)
        self.losses.append(float(loss))
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


def test_a_run_that_collapses_to_the_chance_level_is_rolled_back_and_learns_again(tmp_path):
    guard = Guard(verbose=False)
    module = Collapsing(at=40, guard=guard)
    trainer = fit(tmp_path, module, [guard], max_epochs=24)
    assert module.losses[38] < 0.9 and module.losses[44] == pytest.approx(math.log(3))  # it had learnt, then lost
    [event] = guard.events
    assert "what it learnt is lost" in event["reason"] and event["restored_step"] < 40
    assert 40 <= event["step"] <= 40 + 3 * guard.patience  # seen once the median of 3 x patience steps is back
    assert trainer.global_step == 192 and not guard.gave_up and guard.lr_scale == 0.5
    before, last = sum(module.losses[32:40]) / 8, sum(module.losses[-8:]) / 8  # an epoch's mean, before and at the end
    assert last < before and finite(module)  # it learns again from the weights put back, past where it was


def test_the_collapse_rule_needs_a_tenth_learnt_and_restarts_with_the_snapshot():
    def fed(guard, losses):  # each loss through the rules as the Guard's step hook feeds them
        verdicts = [guard._check(v) if guard.history else guard._judge(v) for v in losses]
        return [(i, why) for i, why in enumerate(verdicts) if why]

    flat = [2.3 + 0.1 * math.sin(i) for i in range(200)]  # never a tenth below its start: nothing learnt to lose
    assert fed(Guard(), flat) == []
    fell = [2.3] * 20 + [1.9] * 30 + [2.3] * 30  # fell by 17%, then back to the start and stays
    guard = Guard()
    [(step, why), *_] = fed(guard, fell)
    assert 50 <= step <= 50 + 3 * guard.patience and "what it learnt is lost" in why
    kept = [2.3] * 20 + [1.9] * 30 + [2.2] * 30  # three quarters of the fall lost: not yet nine tenths
    assert fed(Guard(), kept) == []
    # back at a snapshot taken before it learnt anything, the losses of the start are no collapse
    guard._rewind([], math.inf)
    assert fed(guard, [2.3] * 40) == []
    # and the lowest so far goes with the state of a resumed run
    again = Guard()
    again.load_state_dict(Guard().state_dict() | {"level": [*guard.state_dict()["level"][:3], 1.9]})
    assert again._lowest == 1.9


def test_a_jump_of_a_nearly_fitted_model_below_a_tenth_of_its_first_loss_is_no_blow_up():
    # the end of a long one-cycle: losses about 0.014, one batch at 0.03 (2.2x the highest of the last 100 steps, a
    # tenth of a tenth of the start) was rolled back, four times in a 450-epoch digits run, which then gave up and
    # stopped at epoch 242; a jump that leaves the floor is still one
    def fed(guard, losses):  # each loss through the rules as the Guard's step hook feeds them
        verdicts = [guard._check(v) if guard.history else guard._judge(v) for v in losses]
        return [(i, why) for i, why in enumerate(verdicts) if why]

    fitted = [2.3] * 10 + [2.3 * 0.97**i for i in range(150)] + [0.014 + 0.001 * (i % 3) for i in range(120)]
    assert fed(Guard(), [*fitted, 0.034, *[0.015] * 20]) == []
    [(step, why)] = fed(Guard(), [*fitted, 0.6])  # 40x, above the floor (0.23): a step that threw the weights out
    assert step == len(fitted) and "jumped to 0.6" in why


class Scripted(TinyModule):
    """A training loss that follows a script by optimizer step (the weights get no gradient from it): 2.3, then
    1.9 from step 10, then back to 2.3 from step 40 until the Guard has rolled back, then 1.5."""

    def __init__(self, guard: Guard):
        super().__init__()
        self.guard = guard

    def training_step(self, batch, batch_idx):
        step = self.global_step
        script = 1.5 if self.guard.events else 2.3 if step < 10 or step >= 40 else 1.9
        return self(batch[0]).sum() * 0 + script


def test_collapse_false_leaves_a_climb_back_to_the_start_alone(tmp_path):
    guard = Guard(verbose=False, collapse=False)
    fit(tmp_path, Collapsing(at=40, guard=guard), [guard], max_epochs=12)
    assert guard.events == [] and "collapse=False" in repr(guard)
    with pytest.raises(ValueError, match="collapse must be one of True, False, got 'yes'"):
        Guard(collapse="yes")


def test_a_snapshot_taken_after_a_collapse_is_never_the_one_rolled_back_to(tmp_path):
    # snapshots every 5 steps: the one of step 50, its loss (the median of its last 10) back at the start, would be
    # trusted at step 55, before the collapse rule (a climb held over 3 x patience steps) fires
    guard = Guard(every=5, verbose=False)
    fit(tmp_path, Scripted(guard), [guard], max_epochs=10)
    [event] = guard.events
    assert "what it learnt is lost" in event["reason"] and event["step"] >= 55
    # the last snapshot whose loss was below the bar: 5 steps into the collapse, the median 2.1 (1.9 and 2.3)
    assert event["restored_step"] == 45 and event["level"] == pytest.approx(2.1)


class Stuck(TinyModule):
    """A scripted training loss (no gradient from it): 2.3, then 1.9 from step 10, then back to 2.3 from step 40,
    where it stays after the Guard's first rollback too (the run stuck at the chance level), until its second; then
    1.5."""

    def __init__(self, guard: Guard):
        super().__init__()
        self.guard = guard

    def training_step(self, batch, batch_idx):
        step = self.global_step
        script = 1.5 if len(self.guard.events) >= 2 else 2.3 if step < 10 or step >= 40 else 1.9
        return self(batch[0]).sum() * 0 + script


def test_a_run_stuck_at_the_start_after_a_rollback_is_rolled_back_again(tmp_path):
    guard = Guard(verbose=False)
    fit(tmp_path, Stuck(guard), [guard], max_epochs=40)
    first, second = guard.events
    assert "what it learnt is lost" in first["reason"] and first["restored_step"] == 0
    # back at the start, it has the steps rolled back and the collapse rule's span (3 x patience) to learn a tenth
    # again (counted from its first 2 x patience steps, which the rules need for a level)
    back = first["step"] - first["restored_step"]
    assert "has not fallen by a tenth" in second["reason"] and "stuck" in second["reason"]
    assert back + 3 * guard.patience <= second["step"] - first["step"] <= back + 6 * guard.patience
    # the snapshots taken while it was stuck are never trusted: back to the start again, at a quarter of the lr
    assert second["restored_step"] == 0 and guard.lr_scale == 0.25 and guard.rollbacks == 2


def test_a_run_that_learns_again_after_the_rollback_is_left_alone(tmp_path):
    # Collapsing's outputs come back after the rollback: it learns a tenth again within its time, no second rollback
    guard = Guard(verbose=False)
    module = Collapsing(at=40, guard=guard)
    fit(tmp_path, module, [guard], max_epochs=40)
    assert len(guard.events) == 1 and guard._relearn is None


def test_a_rollback_to_after_the_run_had_learnt_goes_on_at_once_at_the_lower_lr(tmp_path):
    # the good snapshot is step 50's, when the run had learnt (its loss fallen by more than a tenth): no ramp, the
    # steps after the rollback are given half the lr at once (the ramp is for a restart from before it learnt)
    torch.manual_seed(0)
    module, guard = Poisoned(nan_at={120}), Guard(verbose=False)
    fit(tmp_path, module, [guard], max_epochs=20)
    [event] = guard.events
    assert event["restored_step"] == 50 and guard._ramp is None
    used = module.optimizers().optimizer.used
    assert used[:121] == [0.1] * 121 and all(math.isclose(lr, 0.05, rel_tol=1e-12) for lr in used[121:])


class FineTuned(TinyModule):
    """A scripted training loss (no gradient from it) of a model that starts near its best, as a fine-tune does:
    0.5 falling to 0.475 over 200 steps (never a tenth below its start), NaN at step 25."""

    def training_step(self, batch, batch_idx):
        step = self.global_step
        script = float("nan") if step == 25 else 0.5 - 0.025 * min(step, 200) / 200
        return self(batch[0]).sum() * 0 + script


def test_a_run_that_never_learnt_a_tenth_is_not_called_stuck_after_a_rollback(tmp_path):
    # the "stuck" rule expects a run to learn a tenth again only where it had before the blow-up: a fine-tune whose
    # loss falls 5% in all, rolled back to its start for a NaN, goes on at half the lr, with no further rollback
    guard = Guard(verbose=False)
    trainer = fit(tmp_path, FineTuned(), [guard], max_epochs=30)
    [event] = guard.events
    assert "nan" in event["reason"] and event["restored_step"] == 0
    assert trainer.global_step == 240 and not guard.gave_up and guard.rollbacks == 1
