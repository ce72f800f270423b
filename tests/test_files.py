"""write_atomically: whole or absent, even when the writer is SIGKILLed mid-write."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from lightning_cyclic.files import write_atomically

WRITER = """
import sys, time
from lightning_cyclic.files import write_atomically
def forever(f):
    f.write(b"half of a new file")
    f.flush()
    print("writing", flush=True)
    time.sleep(600)
write_atomically(sys.argv[1], forever)
"""


def temps(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def killed_writer(path):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    return proc


def test_a_writer_killed_mid_write_leaves_the_old_file_and_the_next_write_removes_its_temp(tmp_path):
    path = tmp_path / "result.json"
    write_atomically(path, "old\n")
    proc = killed_writer(path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert path.read_text() == "old\n"  # whole: the old content, not half of the new
    assert temps(tmp_path) == [f".result.json.{proc.pid}.tmp"]  # nothing runs under SIGKILL
    write_atomically(path, "new\n")
    assert path.read_text() == "new\n" and temps(tmp_path) == []


def test_a_killed_writers_temp_goes_at_the_next_write_of_any_file_in_the_folder(tmp_path):
    # a killed save of epoch019.ckpt's checksum is never written again under its name: the next save of last.ckpt
    # (any file in the folder) removes it; a file of another form that merely ends in .tmp is not ours to touch
    proc = killed_writer(tmp_path / "epoch019.ckpt.sha256")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    (tmp_path / "notes.tmp").write_text("someone else's")
    assert temps(tmp_path) == [f".epoch019.ckpt.sha256.{proc.pid}.tmp", "notes.tmp"]
    write_atomically(tmp_path / "last.ckpt", b"whole")
    assert temps(tmp_path) == ["notes.tmp"] and not (tmp_path / "epoch019.ckpt.sha256").exists()


def test_a_live_writers_temp_file_is_left_alone(tmp_path):
    path = tmp_path / "leaderboard.csv"
    proc = killed_writer(path)
    try:
        write_atomically(path, "mine\n")
        assert temps(tmp_path) == [f".leaderboard.csv.{proc.pid}.tmp"]  # still being written by someone alive
        assert path.read_text() == "mine\n"
    finally:
        proc.kill()
        proc.wait(timeout=30)


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b"\x00bytes", b"\x00bytes"), ("text é", "text é".encode()), (lambda f: f.write(b"fn"), b"fn")],
    ids=["bytes", "text", "function"],
)
def test_content_forms_and_a_failing_write_leaves_nothing(tmp_path, content, expected):
    path = tmp_path / "f"
    write_atomically(path, content)
    assert path.read_bytes() == expected

    def fails(f):
        f.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(path, fails)
    assert path.read_bytes() == expected and temps(tmp_path) == []
