"""The second signal of ``"auto"``: short one-cycle trials around the range test's reading, on a real Trainer."""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np
import pytest
import torch

from lightning_cyclic import Guard, LRFinder, OneCycle, RangeTestResult, WarmRestarts, lr_find
from lightning_cyclic.finder import GUARDED_TRIAL_BIAS, TRIAL_BIAS, TRIAL_LADDER, RangeTestConfig, trial_length
from lightning_cyclic.finder_control import TRIAL_BELOW, cannot_tell, choose_trial
from lightning_cyclic.shapes import OneCycleSchedule
from tests.helpers import RichModule, tiny_loader, tiny_trainer


def fit(tmp_path, max_lr, callbacks=(), val=True, module=None):
    torch.manual_seed(0)
    module = module or RichModule(scheduler=False)
    schedule = OneCycle(max_lr=max_lr)
    trainer = tiny_trainer(tmp_path, [schedule, *callbacks], max_epochs=2)
    val_loader = tiny_loader(n=32, seed=3, learnable=True) if val else None
    trainer.fit(module, tiny_loader(learnable=True), val_loader)
    return module, schedule


def test_auto_takes_the_lowest_trial_divided_by_sqrt2_and_a_fit_given_that_lr_ends_identical(tmp_path, caplog):
    finder = LRFinder(num_steps=60)
    with caplog.at_level(logging.INFO):
        found, schedule = fit(tmp_path, "auto", [finder])
    result = finder.result
    trials = result.extra["trials"]
    edge = result.suggestion.lr
    assert result.suggestion.rule == "edge" and edge is not None
    assert trials["lrs"] == pytest.approx([edge * 2.0**j for j in TRIAL_LADDER])
    assert trials["steps"] == 30 and trials["evaluated"] == "validation loss"  # 16 steps in the fit: the floor
    losses = [math.inf if x is None else x for x in trials["losses"]]
    best = int(np.argmin(losses))
    assert result.chosen.rule == "trials" and result.chosen.lr == pytest.approx(trials["lrs"][best] / TRIAL_BIAS)
    assert schedule.resolved == {"max_lr": result.chosen.lr}
    assert "short trials" in caplog.text and f"'auto' takes lr={result.chosen.lr:.3g}" in caplog.text
    # the trials trained the model 5 x 30 steps and left nothing behind: the same fit given that lr is identical
    plain, _ = fit(tmp_path, result.chosen.lr)
    for (name, a), (_, b) in zip(plain.state_dict().items(), found.state_dict().items()):
        assert torch.equal(a, b), name
    # the trials are part of the result a checkpoint holds
    again = RangeTestResult.from_dict(result.to_dict())
    assert again.extra["trials"] == trials and again.chosen.lr == result.chosen.lr


def test_with_a_guard_in_the_fit_auto_takes_the_lowest_trial_as_it_is(tmp_path):
    # the same fit as above, a Guard added: the same trials, their pick not divided (the Guard catches a too bold
    # peak; chosen on the corpus's earlier tasks, trained in the fit)
    plain = LRFinder(num_steps=60)
    fit(tmp_path, "auto", [plain])
    guarded = LRFinder(num_steps=60)
    _, schedule = fit(tmp_path, "auto", [guarded, Guard(verbose=False)])
    trials, before = guarded.result.extra["trials"], plain.result.extra["trials"]
    assert trials["losses"] == before["losses"] and trials["guarded"] and not before["guarded"]
    assert guarded.result.chosen.lr == pytest.approx(plain.result.chosen.lr * TRIAL_BIAS)
    assert schedule.resolved == {"max_lr": guarded.result.chosen.lr} and GUARDED_TRIAL_BIAS == 1.0
    assert "as it is (a Guard in the fit rolls a too bold peak back)" in trials["reason"]


def test_where_the_trials_cannot_tell_the_candidates_apart_two_more_run_below_the_ladder(tmp_path):
    # random labels: no 30-step trial learns anything, every loss within 1% of the others
    finder = LRFinder(num_steps=60)
    schedule = OneCycle(max_lr="auto")
    torch.manual_seed(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tiny_trainer(tmp_path, [schedule, finder], max_epochs=2).fit(
            RichModule(scheduler=False), tiny_loader(), tiny_loader(n=32, seed=3)
        )
    result = finder.result
    trials, edge = result.extra["trials"], result.suggestion.lr
    ladder = (*TRIAL_BELOW, *TRIAL_LADDER)
    losses = [math.inf if x is None else x for x in trials["losses"]]
    assert cannot_tell(losses[2:]) and trials["lrs"] == pytest.approx([edge * 2.0**j for j in ladder])
    # what they chose is choose_trial's reading of the seven (a trial below only if clearly lower)
    chosen = choose_trial(trials["lrs"], losses, trials["steps"], trials["evaluated"], ladder=ladder)
    assert result.chosen.lr == pytest.approx(chosen["lr"]) == schedule.resolved["max_lr"]
    assert trials["reason"].startswith(chosen["reason"]) and "two more at x 2^-6, 2^-4" in trials["reason"]
    # nor did any of the seven learn more than the sweep: two longer ones ran at the ends, from the same start, and
    # did not leave the plateau either (random labels); the seven's reading stands
    long = trials["long"]
    assert long["steps"] == 4 * trials["steps"] and long["lrs"] == pytest.approx([edge / 64, edge * 4])
    assert long["taken"] is False and trials["reason"].endswith("the choice stands")
    # the two below did not tell either (random labels): a warning says that nothing tested the peak
    untested = [w for w in caught if "No trial learnt more than the others within 30 steps" in str(w.message)]
    assert trials["told"] is False and len(untested) == 1 and "LRFinder(trial_steps=...)" in str(untested[0].message)
    # on learnable data the same fit runs the ladder alone (the first test): the extra trials cost only there


def test_where_the_ladder_learnt_no_more_than_the_sweep_two_more_run_at_its_lowest(tmp_path, monkeypatch):
    # the fit of the first test, its sweep's lowest put at its 15th step's lr with a loss of 0 (no trial ends lower:
    # on the data here every trial learns; a deep plain CNN's sweep reaches its lowest far below the ladder, at the
    # chance level where every trial ends, tests/test_recipe_corpus.py): two more trials run there, from the same
    # start, and what they chose is choose_trial's reading of the seven; the fit trains at it
    import lightning_cyclic.finder as finder_module

    seen: list[tuple[float, float]] = []

    def at_the_15th(lrs, losses, smooth):
        seen.append((0.0, lrs[15]))
        return seen[-1]

    monkeypatch.setattr(finder_module, "sweep_lowest", at_the_15th)
    finder = LRFinder(num_steps=60)
    _, schedule = fit(tmp_path, "auto", [finder])
    result = finder.result
    trials, edge, (_, lowest_lr) = result.extra["trials"], result.suggestion.lr, seen[0]
    assert len(trials["lrs"]) == 7 and trials["lrs"][:2] == pytest.approx([lowest_lr / 2, lowest_lr])
    assert trials["lrs"][2:] == pytest.approx([edge * 2.0**j for j in TRIAL_LADDER])
    ladder = tuple(math.log2(lr / edge) for lr in trials["lrs"][:2]) + TRIAL_LADDER
    losses = [math.inf if x is None else x for x in trials["losses"]]
    chosen = choose_trial(trials["lrs"], losses, trials["steps"], trials["evaluated"], ladder=ladder, lowest=0.0)
    assert trials["reason"] == chosen["reason"] and trials["at_lowest"] == chosen["at_lowest"]
    assert "no lower than the sweep's lowest (0), two more at its lr x 2^-1, 2^0" in trials["reason"]
    assert result.chosen.lr == pytest.approx(chosen["lr"]) == schedule.resolved["max_lr"]
    # the five are the first test's: the two more ran from the same start and changed none of them
    monkeypatch.undo()
    plain = LRFinder(num_steps=60)
    fit(tmp_path, "auto", [plain])
    assert plain.result.extra["trials"]["losses"] == trials["losses"][2:]


def test_where_the_seven_sat_on_the_sweeps_plateau_two_longer_trials_run_from_the_same_start(tmp_path, monkeypatch):
    # on the data here every trial learns; a GRU's seven sit at the chance level (tests/test_finder.py): the rule's
    # condition is put by monkeypatching our own trials_long. Trials of 4x the steps run at the edge x 2^-6, then
    # (where that did not leave the plateau) 2^2, from the same start, one-cycle compressed to their length; what
    # they chose is choose_long's reading, and the fit trains at it; the seven are the plain run's
    import lightning_cyclic.finder as finder_module
    from lightning_cyclic.finder_control import choose_long, left_plateau

    monkeypatch.setattr(finder_module, "trials_long", lambda record, lowest: (-6, 2))
    finder = LRFinder(num_steps=40, trial_steps=12)
    module, schedule = fit(tmp_path, "auto", [finder], val=False)
    result = finder.result
    trials, edge = result.extra["trials"], result.suggestion.lr
    long = trials["long"]
    assert long["steps"] == 48 and long["lrs"] == pytest.approx([edge / 64, edge * 4][: len(long["lrs"])])
    assert len(long["lrs"]) == (1 if left_plateau(trials, long["losses"][0]) else 2)
    n = len(result.lrs) + 12 * len(trials["lrs"])
    for i, peak in enumerate(long["lrs"]):
        steps = module.calls[n + 48 * i : n + 48 * (i + 1)]
        expected = OneCycleSchedule(max_lr=peak, total_steps=48)
        assert [lrs[1] for lrs, _ in steps] == pytest.approx([expected.lr(k) for k in range(48)])
        assert long["losses"][i] == pytest.approx(np.mean([value for _, value in steps[-12:]]), rel=1e-6)
    monkeypatch.undo()
    again = LRFinder(num_steps=40, trial_steps=12)
    fit(tmp_path, "auto", [again], val=False)
    seven = again.result.extra["trials"]
    assert seven["losses"] == trials["losses"] and "long" not in seven
    chosen = choose_long(seven, long["lrs"], long["losses"], 48, math.nan, (-6, 2)[: len(long["lrs"])])
    assert trials["lr"] == pytest.approx(chosen["lr"]) and long["taken"] == chosen["long"]["taken"]
    assert result.chosen.lr == pytest.approx(trials["lr"]) == schedule.resolved["max_lr"]


def test_without_validation_data_a_trial_reads_the_training_loss_of_its_last_quarter(tmp_path):
    finder = LRFinder(num_steps=40, trial_steps=12)
    module, _ = fit(tmp_path, "auto", [finder], val=False)
    trials = finder.result.extra["trials"]
    assert trials["evaluated"] == "training loss of the last quarter" and trials["steps"] == 12
    n = len(finder.result.lrs)
    for i, loss in enumerate(trials["losses"]):
        steps = module.calls[n + 12 * i : n + 12 * (i + 1)]
        # each trial is one-cycle compressed to 12 steps at its candidate, the groups' 1:10 ratio kept
        expected = OneCycleSchedule(max_lr=trials["lrs"][i], total_steps=12)
        assert [lrs[1] for lrs, _ in steps] == pytest.approx([expected.lr(k) for k in range(12)])
        assert [lrs[0] for lrs, _ in steps] == pytest.approx([expected.lr(k) / 10 for k in range(12)])
        assert loss == pytest.approx(np.mean([value for _, value in steps[-3:]]), rel=1e-6)


class NanAfter(RichModule):
    """Its training loss is NaN from the ``after``-th training step on: every trial blows up."""

    def __init__(self, after: int):
        super().__init__(scheduler=False)
        self.after, self.steps = after, 0

    def training_step(self, batch, batch_idx):
        out = super().training_step(batch, batch_idx)
        if self.training:
            self.steps += 1
            if self.steps > self.after:
                out["loss"] = out["loss"] * float("nan")
        return out


def test_where_every_trial_blows_up_auto_takes_a_quarter_of_the_lowest_and_warns(tmp_path):
    finder = LRFinder(num_steps=40, diverge=1e9, extend=1, trial_steps=6)
    schedule = OneCycle(max_lr="auto")
    with pytest.warns(UserWarning, match=r"all 5 trials of 6 steps blew up, the lowest at .*: a quarter of that"):
        torch.manual_seed(0)
        tiny_trainer(tmp_path, [schedule, finder], max_epochs=1).fit(NanAfter(after=40), tiny_loader())
    result = finder.result
    assert len(result.lrs) == 40 and result.suggestion.lr is not None
    trials = result.extra["trials"]
    assert trials["losses"] == [None] * 5 and trials["lr"] == pytest.approx(result.suggestion.lr / 16)
    assert schedule.resolved == {"max_lr": pytest.approx(result.suggestion.lr / 16)}


def test_schedules_that_do_not_warm_up_move_by_the_same_ratio(tmp_path):
    finder = LRFinder(num_steps=60)
    schedule = WarmRestarts(max_lr="auto", cycle_len=4, interval="step")
    torch.manual_seed(0)
    tiny_trainer(tmp_path, [finder, schedule], max_epochs=2).fit(
        RichModule(scheduler=False), tiny_loader(learnable=True), tiny_loader(n=32, seed=3, learnable=True)
    )
    result = finder.result
    ratio = result.chosen.lr / result.suggestion.lr
    assert result.chosen_for(warms_up=False).lr == pytest.approx(result.suggest(warms_up=False).lr * ratio)
    assert schedule.resolved["max_lr"] == pytest.approx(result.chosen_for(warms_up=False).lr)


def test_trial_length_is_a_share_of_the_fit_with_a_floor():
    config = RangeTestConfig()
    assert trial_length(config, 100) == 30 and trial_length(config, 2000) == 60 and trial_length(config, 1e5) == 3000
    assert trial_length(config, math.inf) is None  # max_steps=-1 and max_epochs=-1: no share to take
    assert trial_length(RangeTestConfig(trial_steps=7), math.inf) == 7


def test_lr_find_runs_no_trials_unless_asked(tmp_path):
    trainer = tiny_trainer(tmp_path, max_epochs=1)
    plain = lr_find(trainer, RichModule(scheduler=False), train_dataloaders=tiny_loader(), num_steps=40, verbose=False)
    assert "trials" not in plain.extra and plain.chosen == plain.suggestion
    asked = lr_find(
        trainer, RichModule(scheduler=False), train_dataloaders=tiny_loader(), num_steps=40, verbose=False,
        trials=True, trial_steps=4,
    )  # fmt: skip
    # (random labels: the 4-step trials cannot tell the candidates apart, two more run below the ladder)
    assert asked.extra["trials"]["steps"] == 4 and len(asked.extra["trials"]["lrs"]) == len(TRIAL_LADDER) + 2


def test_trial_arguments_are_checked_and_keep_older_checkpoints_state_key():
    with pytest.raises(ValueError, match="trial_steps must be >= 2, got 1"):
        LRFinder(trial_steps=1)
    with pytest.raises(ValueError, match="trials must be one of True, False, got 'yes'"):
        LRFinder(trials="yes")
    assert LRFinder().state_key == LRFinder(trials=True, trial_steps=None).state_key
    assert "trial" not in LRFinder().state_key  # a checkpoint saved before the trials existed still matches
    assert LRFinder(trials=False).state_key != LRFinder().state_key


def test_a_resume_after_trials_that_tied_keeps_all_seven_and_runs_none(tmp_path):
    # the fit of the tie test above, checkpointed each epoch; resumed with new callbacks from epoch 0's checkpoint:
    # the seven trials and their verdict come with it, the peak is the same, and no range test or trial runs again
    from lightning.pytorch.callbacks import ModelCheckpoint

    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, every_n_epochs=1, filename="{epoch}")
    schedule, finder = OneCycle(max_lr="auto"), LRFinder(num_steps=60)
    torch.manual_seed(0)
    first = RichModule(scheduler=False)
    val = tiny_loader(n=32, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (the warning that nothing told: the tie test's)
        tiny_trainer(tmp_path, [schedule, finder, ckpt], max_epochs=2, enable_checkpointing=True).fit(
            first, tiny_loader(), val
        )
    tied = finder.result.extra["trials"]
    assert len(tied["lrs"]) == 7 and tied["told"] is False
    resumed_schedule, resumed = OneCycle(max_lr="auto"), LRFinder(num_steps=60)
    second = RichModule(scheduler=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tiny_trainer(tmp_path, [resumed_schedule, resumed], max_epochs=2).fit(
            second, tiny_loader(), val, ckpt_path=str(tmp_path / "ckpt" / "epoch=0.ckpt")
        )
    assert len(second.calls) == 8  # one real epoch of 8 batches: no range test, no trial
    assert resumed.result.extra["trials"] == tied and resumed_schedule.resolved == schedule.resolved
    assert [lrs for lrs, _ in second.calls] == [lrs for lrs, _ in first.calls[-8:]]
    assert not [w for w in caught if "No trial learnt" in str(w.message)]  # (said once, when they ran)
