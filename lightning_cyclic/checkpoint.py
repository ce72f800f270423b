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

    trainer = pl.Trainer(plugins=[SafeCheckpointIO()], ...)

Local paths only (remote ones go through Lightning's own writer).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins import TorchCheckpointIO

DIGEST_SUFFIX = ".sha256"


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _digest_path(path: Path) -> Path:
    return path.with_name(path.name + DIGEST_SUFFIX)


def _replace_durably(tmp: Path, path: Path) -> None:
    os.replace(tmp, path)
    try:  # the rename itself reaches the disk with the folder's entry
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # pragma: no cover - folders that cannot be opened (some platforms)
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _write_file(path: Path, write: Any) -> None:
    """Write through ``write(file)`` into a temp file beside ``path``, fsync, rename; no temp file survives."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        _replace_durably(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
        _write_file(path, lambda f: torch.save(checkpoint, f))
        digest = sha256_of(path)
        _write_file(_digest_path(path), lambda f: f.write(f"{digest}  {path.name}\n".encode()))

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {path} does not exist")
        digest_file = _digest_path(path)
        if digest_file.is_file():
            expected = digest_file.read_text().split()[0] if digest_file.read_text().strip() else ""
            actual = sha256_of(path)
            if actual != expected:
                raise ValueError(
                    f"checkpoint {path} has changed since it was saved: its SHA-256 is {actual[:16]}..., "
                    f"{digest_file.name} says {expected[:16] or '(empty)'}... (a damaged or partial copy?). "
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
