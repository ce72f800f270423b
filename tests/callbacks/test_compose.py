"""Schedules made of others: Sequential (torch's SequentialLR, closed form) and LambdaSchedule (LambdaLR's role)."""

from __future__ import annotations

import math

import pytest
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.optim import lr_scheduler as L

from lightning_cyclic import CustomSchedule, OneCycle, Sequential, WarmupDecay
from lightning_cyclic.shapes import (
    LambdaSchedule,
    OneCycleSchedule,
    SequenceSchedule,
    WarmupDecaySchedule,
)
from tests.helpers import TinyModule, tiny_loader, tiny_trainer, torch_trajectory


def test_a_sequence_equals_torchs_sequential_lr():
    """LinearLR warmup for 5 steps, then CosineAnnealingLR over 25, switched at step 5, as SequentialLR does."""

    def make(opt):
        warm = L.LinearLR(opt, start_factor=0.1, end_factor=1.0, total_iters=5)
        cos = L.CosineAnnealingLR(opt, T_max=25, eta_min=0.001)
        return L.SequentialLR(opt, [warm, cos], milestones=[5])

    ref, _ = torch_trajectory(make, 40)
    parts = [
        WarmupDecaySchedule(max_lr=0.1, warmup=5, warmup_lr_init=0.01, decay="constant"),
        WarmupDecaySchedule(max_lr=0.1, decay="cosine", min_lr=0.001, total_steps=25),
    ]
    ours = SequenceSchedule(parts=parts, boundaries=[5])
    for step in range(30):  # (past its T_max torch's cosine climbs back up; ours holds, as every schedule here)
        assert ours.lr(step) == pytest.approx(ref[step], rel=1e-9), step


def test_sequential_builds_each_part_for_its_own_segment_in_a_trainer(tmp_path):
    # 8 steps an epoch, 4 epochs: hold 0.02 for 1 epoch, then a one-cycle over the other 24 steps
    callback = Sequential(
        [WarmupDecay(max_lr=0.02, decay="constant"), OneCycle(max_lr=0.3)], boundaries=[1], interval="epoch"
    )
    module = TinyModule()
    tiny_trainer(tmp_path, [callback], max_epochs=4).fit(module, tiny_loader())
    cycle = OneCycleSchedule(max_lr=0.3, total_steps=24)
    want = [0.02] * 8 + [cycle.lr(k) for k in range(24)]
    assert [lr for _, lr, *_ in module.seen] == [pytest.approx(w) for w in want]
    moms = [m for _, _, m, _ in module.seen]
    assert moms[:8] == [0.9] * 8 and min(moms[8:]) == pytest.approx(0.85, abs=1e-3)  # the part's own momentum


def test_sequential_resumes_mid_way_on_the_same_trajectory(tmp_path):
    def make():
        return Sequential([WarmupDecay(max_lr=0.1, warmup=4, decay="constant"), OneCycle(max_lr=0.3)], [12])

    full = TinyModule()
    tiny_trainer(tmp_path / "full", [make()], max_epochs=4).fit(full, tiny_loader())
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, every_n_epochs=1, filename="{epoch}")
    first = tiny_trainer(tmp_path / "a", [make(), ckpt], max_epochs=2, enable_checkpointing=True)
    first.fit(TinyModule(), tiny_loader())
    resumed = TinyModule()
    trainer = tiny_trainer(tmp_path / "b", [make()], max_epochs=4)
    # the first run was planned 2 epochs long; at step 8 (the first part) both plans give 0.1: no jump
    trainer.fit(resumed, tiny_loader(), ckpt_path=str(tmp_path / "ckpt" / "epoch=0.ckpt"))
    want = {s: lr for s, lr, *_ in full.seen}
    assert resumed.seen[0][0] == 8 and all(lr == pytest.approx(want[s]) for s, lr, *_ in resumed.seen)


@pytest.mark.parametrize(
    "parts, boundaries, message",
    [
        ([], [], "parts must be a non-empty list of schedule callbacks"),
        ([OneCycle(max_lr=0.1), "cosine"], [2], r"parts\[1\] must be a schedule callback"),
        ([OneCycle(max_lr="auto"), OneCycle(max_lr=0.1)], [2], r"parts\[0\] \(OneCycle\) has max_lr='auto'"),
        ([OneCycle(max_lr=0.1), OneCycle(max_lr=0.1)], [2, 4], "one position fewer than parts: got 2 boundaries"),
        ([OneCycle(max_lr=0.1), OneCycle(max_lr=0.1)], [-2], "boundaries must be > 0, got -2"),
    ],
)
def test_sequential_refuses_bad_parts_at_once(parts, boundaries, message):
    with pytest.raises(ValueError, match=message):
        Sequential(parts, boundaries)


def test_a_part_that_starts_after_the_run_is_left_out_with_one_warning(tmp_path):
    callback = Sequential([OneCycle(max_lr=0.1), OneCycle(max_lr=0.5)], boundaries=[30])
    module = TinyModule()
    with pytest.warns(UserWarning, match=r"the run \(16 optimizer steps\) ends before part 2 starts \(at 30 steps\)"):
        tiny_trainer(tmp_path, [callback], max_epochs=2).fit(module, tiny_loader())
    cycle = OneCycleSchedule(max_lr=0.1, total_steps=16)  # the first part, over the whole run
    assert [lr for _, lr, *_ in module.seen] == [pytest.approx(cycle.lr(k)) for k in range(16)]


def square_root_decay(progress: float) -> float:
    return 1 - math.sqrt(progress)


def test_a_schedule_from_a_function_of_progress_in_a_trainer(tmp_path):
    callback = CustomSchedule(LambdaSchedule, max_lr=0.2, fn=square_root_decay)
    module = TinyModule()
    tiny_trainer(tmp_path, [callback], max_epochs=3).fit(module, tiny_loader())
    assert [lr for _, lr, *_ in module.seen] == [pytest.approx(0.2 * (1 - math.sqrt(k / 24))) for k in range(24)]
    other = CustomSchedule(LambdaSchedule, max_lr=0.2, fn=lambda p: 1 - p)
    assert callback.state_key != other.state_key  # the function by name: two of them keep two states
    assert "square_root_decay" in callback.state_key


def test_a_lambda_that_gives_a_negative_lr_says_so():
    s = LambdaSchedule(max_lr=0.1, fn=lambda p: 1 - 2 * p, total_steps=10)
    assert s.lr(2) == pytest.approx(0.06)
    with pytest.raises(ValueError, match=r"fn\(0\.8\) gave the lr -0\.06"):
        s.lr(8)
    with pytest.raises(ValueError, match="fn must be a callable"):
        LambdaSchedule(max_lr=0.1, fn=0.5)


def test_sequence_schedule_checks_its_parts():
    with pytest.raises(ValueError, match=r"parts\[0\] must be a Schedule, got OneCycle"):
        SequenceSchedule(parts=[OneCycle(max_lr=0.1)], boundaries=[])
    assert SequenceSchedule(parts=[OneCycleSchedule(max_lr=0.1, total_steps=5)], boundaries=[]).lr(2) > 0


def test_two_sequences_of_other_parts_keep_two_states():
    a = Sequential([OneCycle(max_lr=0.1), OneCycle(max_lr=0.2)], boundaries=[5])
    b = Sequential([OneCycle(max_lr=0.1), OneCycle(max_lr=0.3)], boundaries=[5])
    assert a.state_key != b.state_key
    assert a.state_key == Sequential([OneCycle(max_lr=0.1), OneCycle(max_lr=0.2)], boundaries=[5]).state_key
