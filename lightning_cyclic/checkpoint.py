"""``SafeCheckpointIO``: checkpoints that are whole or absent, and that say when they changed.

Lightning's default writer streams the file through fsspec, whose temporary file
may sit on another filesystem (``$TMPDIR``) and is then copied over the target in
place: a kill during the copy leaves a ``last.ckpt`` that cannot be read. This
plugin writes a temporary file *beside* the target, flushes it to disk, and
renames it over the target (``os.replace``: atomic on one filesystem), so a
reader sees the old checkpoint or the new one, never half of one; a failed save
leaves no temporary file behind. Beside each checkpoint it keeps
``<name>.sha256``; loading checks it, so a file that changed after it was saved
(bit rot, a partial copy, a hand edit) is refused instead of loading silently
with changed weights. A checkpoint without its digest (copied alone, or written by
someone else) is checked against the CRC-32 that torch's zip format stores for
every record, so flipped bytes in its data are refused too. Every error names the
file and what is wrong with it.

A checkpoint whose weights hold NaN/inf is never written over a file: the save is
skipped with one warning (``skipped`` lists it), so ``last.ckpt`` keeps the last
state a resume can start from.

The two files cannot be renamed together, so a save records the new digest
*before* the rename, beside the old one, and drops the old one after it: a kill
at any instant leaves a checkpoint whose digest is listed.

    trainer = pl.Trainer(plugins=[SafeCheckpointIO()], ...)

Local paths only (remote ones go through Lightning's own writer).
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_warn

from lightning_cyclic.files import write_atomically

DIGEST_SUFFIX = ".sha256"


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _digest_path(path: Path) -> Path:
    return path.with_name(path.name + DIGEST_SUFFIX)


def _listed_digests(digest_file: Path) -> list[str]:
    try:
        lines = digest_file.read_text().splitlines()
    except FileNotFoundError:
        return []
    return [line.split()[0] for line in lines if line.strip()]


def _digest_text(digests: list[str], name: str) -> str:
    unique = list(dict.fromkeys(digests))  # a save killed twice in a row still lists each digest once
    return "".join(f"{d}  {name}\n" for d in unique)


def non_finite(state_dict: Any) -> str | None:
    """The name of the first floating-point tensor of ``state_dict`` that holds a NaN or an inf, or ``None``."""
    if not isinstance(state_dict, dict):
        return None
    for name, value in state_dict.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return str(name)
    return None


def crc_damage(path: Path) -> str | None:
    """Where a zip-format torch checkpoint's stored CRC-32 disagrees with its data (the record's name, or the
    archive's own error), or ``None`` when every record checks (or the file is not a zip archive)."""
    if not zipfile.is_zipfile(path):
        return None  # torch's legacy format, or not a checkpoint: the loader says what it is
    try:
        with zipfile.ZipFile(path) as archive:
            if all(info.CRC == 0 for info in archive.infolist() if info.file_size):
                return None  # written with torch's CRC-32 turned off: nothing to check against
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:  # a damaged directory or header
        return f"its zip structure is damaged ({err})"
    return None if bad is None else f"the CRC-32 of its record {bad!r} does not match its data"


class SafeCheckpointIO(TorchCheckpointIO):
    """Atomic, checksummed checkpoint files that never hold NaN weights (see the module docstring).

    ``skipped``: ``(path, reason)`` of each save refused because the weights were not finite.
    """

    def __init__(self) -> None:
        super().__init__()
        self.skipped: list[tuple[str, str]] = []

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(
                f"SafeCheckpointIO.save_checkpoint takes no storage_options, got {storage_options!r}; "
                f"use Lightning's TorchCheckpointIO for remote storage"
            )
        bad = non_finite(checkpoint.get("state_dict", checkpoint))
        if bad is not None:
            where = f"step {checkpoint['global_step']}" if "global_step" in checkpoint else "this save"
            reason = f"the weights hold NaN/inf ({bad} at {where})"
            self.skipped.append((str(path), reason))
            kept = (
                "the file there is kept: the last state a resume can start from"
                if Path(path).exists()
                else ("no file is written")
            )
            rank_zero_warn(f"checkpoint {path} not written: {reason}; {kept}")
            return
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        digest_file = _digest_path(path)
        new: list[str] = []

        def record_both(tmp: Path) -> None:  # the old file or the new one: either is listed until the rename
            new.append(sha256_of(tmp))
            write_atomically(digest_file, _digest_text([new[0], *_listed_digests(digest_file)], path.name))

        write_atomically(path, lambda f: torch.save(checkpoint, f), before_replace=record_both)
        write_atomically(digest_file, _digest_text(new, path.name))

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {path} does not exist")
        digest_file = _digest_path(path)
        if digest_file.is_file():
            expected = _listed_digests(digest_file)
            actual = sha256_of(path)
            if actual not in expected:
                said = " or ".join(f"{d[:16]}..." for d in expected) or "nothing (it is empty)"
                raise ValueError(
                    f"checkpoint {path} has changed since it was saved: its SHA-256 is {actual[:16]}..., "
                    f"{digest_file.name} says {said} (a damaged or partial copy?). "
                    f"Delete {digest_file} to load it anyway."
                )
        else:  # no digest beside it: the zip archive's own CRC-32s
            damage = crc_damage(path)
            if damage is not None:
                raise ValueError(
                    f"checkpoint {path} ({path.stat().st_size} bytes) is damaged: {damage} "
                    f"(a damaged or partial copy?), and no {digest_file.name} lies beside it"
                )
        try:
            kwargs = {} if weights_only is None else {"weights_only": weights_only}  # Lightning < 2.5 has no such
            return super().load_checkpoint(path, map_location=map_location, **kwargs)
        except Exception as err:
            size = path.stat().st_size
            first = (str(err).strip().splitlines() or ["no message"])[0]
            raise ValueError(
                f"checkpoint {path} ({size} bytes) cannot be read: {type(err).__name__}: {first} "
                f"(truncated, empty, or not a torch checkpoint?)"
            ) from err

    def remove_checkpoint(self, path: Any) -> None:
        super().remove_checkpoint(path)
        _digest_path(Path(path)).unlink(missing_ok=True)
