"""SafeCheckpointIO: whole or absent, checksummed, every error naming the file; on a real Trainer too."""

from __future__ import annotations

import math

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_cyclic import OneCycle
from lightning_cyclic.checkpoint import SafeCheckpointIO, sha256_of
from tests.helpers import TinyModule, tiny_loader, tiny_trainer


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_save_then_load_round_trips_with_a_digest_and_no_temp_file(tmp_path):
    io, path = SafeCheckpointIO(), tmp_path / "a.ckpt"
    io.save_checkpoint({"w": torch.arange(5.0), "epoch": 3}, path)
    assert (tmp_path / "a.ckpt.sha256").read_text().split()[0] == sha256_of(path)
    assert leftovers(tmp_path) == []
    loaded = io.load_checkpoint(path, weights_only=True)
    assert loaded["epoch"] == 3 and torch.equal(loaded["w"], torch.arange(5.0))
    io.remove_checkpoint(path)
    assert list(tmp_path.iterdir()) == []


def test_a_save_that_fails_leaves_the_old_checkpoint_and_no_temp_file(tmp_path):
    io, path = SafeCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"epoch": 1}, path)
    before = path.read_bytes()
    with pytest.raises(Exception, match=r"(?i)pickle|lambda"):
        io.save_checkpoint({"epoch": 2, "oops": lambda: None}, path)  # torch.save fails half-way
    assert path.read_bytes() == before and io.load_checkpoint(path)["epoch"] == 1
    assert leftovers(tmp_path) == []


class Killed(BaseException):
    """Stands for a SIGKILL at one instant of a save (a BaseException, so nothing catches it)."""


@pytest.mark.parametrize("instant", ["before_the_rename", "after_the_rename"])
def test_a_kill_between_the_checkpoint_and_its_digest_leaves_a_file_that_loads(tmp_path, monkeypatch, instant):
    import lightning_cyclic.files as files

    io, path = SafeCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"epoch": 1}, path)
    real = files._replace_durably

    def killed_there(tmp, target):
        if target == path and instant == "before_the_rename":
            raise Killed
        real(tmp, target)
        if target == path:
            raise Killed

    monkeypatch.setattr(files, "_replace_durably", killed_there)
    with pytest.raises(Killed):
        io.save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert io.load_checkpoint(path)["epoch"] == (1 if instant == "before_the_rename" else 2)
    io.save_checkpoint({"epoch": 3}, path)  # the next whole save lists one digest again
    assert len((tmp_path / "last.ckpt.sha256").read_text().splitlines()) == 1
    assert io.load_checkpoint(path)["epoch"] == 3


def flip(path, from_end: int, count: int = 64) -> None:
    """Invert ``count`` bytes of the file, starting ``from_end`` bytes before its end."""
    data = bytearray(path.read_bytes())
    for i in range(len(data) - from_end, len(data) - from_end + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_flipped_bytes_are_refused_with_the_file_and_the_remedy(tmp_path):
    io, path = SafeCheckpointIO(), tmp_path / "a.ckpt"
    io.save_checkpoint({"w": torch.zeros(1000)}, path)
    flip(path, 200)  # 64 bytes inside the tensor's storage
    with pytest.raises(ValueError, match=rf"checkpoint {path} has changed since it was saved.*Delete .*a.ckpt.sha256"):
        io.load_checkpoint(path)


@pytest.mark.parametrize("content", [b"", b"\x00garbage" * 10, None], ids=["empty", "random", "truncated"])
def test_unreadable_files_name_the_file(tmp_path, content):
    io, path = SafeCheckpointIO(), tmp_path / "a.ckpt"
    torch.save({"w": torch.zeros(100)}, path)  # no digest: written by someone else
    path.write_bytes(path.read_bytes()[:50] if content is None else content)
    with pytest.raises(ValueError, match=rf"checkpoint {path} \(\d+ bytes\) cannot be read"):
        io.load_checkpoint(path)


def test_on_a_real_trainer_checkpoints_resume_exactly(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, every_n_epochs=1)
    first = TinyModule()
    trainer = tiny_trainer(tmp_path, [OneCycle(max_lr=0.4), ckpt], enable_checkpointing=True, max_epochs=2)
    trainer.strategy.checkpoint_io = SafeCheckpointIO()
    trainer.fit(first, tiny_loader())
    assert (tmp_path / "ckpt" / "last.ckpt.sha256").exists() and leftovers(tmp_path / "ckpt") == []
    resumed = TinyModule()
    trainer = tiny_trainer(tmp_path, [OneCycle(max_lr=0.4)], max_epochs=2, plugins=[SafeCheckpointIO()])
    trainer.fit(resumed, tiny_loader(), ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    for a, b in zip(first.parameters(), resumed.parameters()):
        assert torch.equal(a, b)  # nothing left to train: the checkpoint's weights, exactly


def test_flipped_bytes_without_a_digest_fail_the_zip_crc(tmp_path):
    io, path = SafeCheckpointIO(), tmp_path / "copied.ckpt"
    io.save_checkpoint({"w": torch.arange(1000.0)}, path)
    (tmp_path / "copied.ckpt.sha256").unlink()  # copied without its digest
    assert io.load_checkpoint(path)["w"][999] == 999  # whole: it loads
    flip(path, 4200)  # 64 bytes inside the tensor's storage
    with pytest.raises(ValueError, match=rf"checkpoint {path} \(\d+ bytes\) is damaged: the CRC-32 of its record"):
        io.load_checkpoint(path)


def test_weights_with_nan_are_never_written_over_a_checkpoint(tmp_path):
    io, path = SafeCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 10, "state_dict": {"w": torch.ones(3)}}, path)
    before = path.read_bytes()
    with pytest.warns(UserWarning, match=r"last.ckpt not written: the weights hold NaN/inf \(w at step 11\); the file"):
        io.save_checkpoint({"global_step": 11, "state_dict": {"w": torch.tensor([1.0, math.nan, 0.0])}}, path)
    assert path.read_bytes() == before and io.load_checkpoint(path)["global_step"] == 10
    assert io.skipped == [(str(path), "the weights hold NaN/inf (w at step 11)")]
    fresh = tmp_path / "other.ckpt"
    with pytest.warns(UserWarning, match="no file is written"):
        io.save_checkpoint({"state_dict": {"w": torch.tensor([math.inf])}}, fresh)
    assert not fresh.exists()
