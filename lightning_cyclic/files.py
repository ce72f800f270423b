"""Files that are whole or absent: the one atomic write the package uses (checkpoints, results, leaderboards)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # someone else's process, or no way to ask: leave its file
        return True
    return True


def _remove_stale_temps(folder: Path) -> None:
    """A killed writer leaves its temp file (no cleanup runs under SIGKILL); the next write into ``folder`` removes it.

    Any file's temp, not only the one being written: a killed save of ``epoch019.ckpt`` or its checksum is never
    written again under that name. Only names of this module's form (``.<name>.<pid>.tmp``) whose writer is gone.
    """
    for old in folder.glob(".*.tmp"):
        pid = old.name[: -len(".tmp")].rpartition(".")[2]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            old.unlink(missing_ok=True)


def write_atomically(
    path: str | Path,
    write: Callable[[IO[bytes]], Any] | bytes | str,
    before_replace: Callable[[Path], Any] | None = None,
) -> None:
    """Write ``path`` through a temp file beside it (same filesystem), fsync, and rename it over ``path``.

    ``write`` is the content (bytes, or text as UTF-8) or a function that writes into the open binary
    file. ``before_replace(tmp)`` runs on the whole temp file just before the rename (to record its
    checksum first). A reader sees the old file or the new one, never half of one; no temp file survives
    a failure; one left by a killed writer (of any file in the folder) goes at the next write there.
    """
    path = Path(path)
    _remove_stale_temps(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            if callable(write):
                write(f)
            else:
                f.write(write.encode() if isinstance(write, str) else write)
            f.flush()
            os.fsync(f.fileno())
        if before_replace is not None:
            before_replace(tmp)
        _replace_durably(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
