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
with changed weights. Every error names the file and what is wrong with it.

The two files cannot be renamed together, so a save records the new digest
*before* the rename, beside the old one, and drops the old one after it: a kill
at any instant leaves a checkpoint whose digest is listed.

    trainer = pl.Trainer(plugins=[SafeCheckpointIO()], ...)

Local paths only (remote ones go through Lightning's own writer).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins import TorchCheckpointIO

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


class SafeCheckpointIO(TorchCheckpointIO):
    """Atomic, checksummed checkpoint files (see the module docstring)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(
                f"SafeCheckpointIO.save_checkpoint takes no storage_options, got {storage_options!r}; "
                f"use Lightning's TorchCheckpointIO for remote storage"
            )
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
