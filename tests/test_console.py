"""``lightning-cyclic`` and ``python -m lightning_cyclic``: the commands, their help and their errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from lightning_cyclic import __version__
from lightning_cyclic.cli import config_dir, main
from tests.conftest import CONF, ROOT, options


def test_help_and_version(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: lightning-cyclic train") and "configs" in out and "[app]" in out
    assert main([]) == 0 and capsys.readouterr().out == out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"lightning-cyclic {__version__}\n"


def test_configs_lists_every_group_and_its_options(capsys):
    assert main(["configs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert str(CONF) in lines[0]
    listed = {line.split()[0]: line.split(None, 1)[1] for line in lines[1:]}
    for group in ("data", "model", "optimizer", "schedule", "hparams_search", "hydra/launcher"):
        assert listed[group] == ", ".join(options(group)), group
    assert main(["configs", "--path"]) == 0
    assert capsys.readouterr().out == f"{CONF}\n" and config_dir() == CONF


@pytest.mark.parametrize(
    "args, message",
    [
        (["trian", "schedule=onecycle"], "unknown command 'trian'; the commands are train, configs"),
        (["configs", "--all"], "configs takes --path or nothing, got --all"),
    ],
)
def test_a_wrong_command_says_what_there_is(capsys, args, message):
    assert main(args) == 2
    assert message in capsys.readouterr().err


def cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "lightning_cyclic", *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def test_python_dash_m_trains_with_the_packaged_configs(tmp_path):
    quick = [
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=2",
        "progress_bar=none",
    ]
    done = cli("train", *quick, f"hydra.run.dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[lightning_cyclic] val/acc = " in done.stdout and "3 optimizer steps" in done.stdout
    assert (tmp_path / "train.log").is_file()  # the job is called train, however it was started
    sources = yaml.safe_load((tmp_path / ".hydra" / "hydra.yaml").read_text())["hydra"]["runtime"]["config_sources"]
    assert {"path": "lightning_cyclic.conf", "schema": "pkg", "provider": "main"} in sources


def test_an_override_first_is_the_train_command():
    """How Lightning's DDP launcher restarts the command on each rank: the same arguments, without ``train``."""
    done = cli("schedule=oncycle")
    assert done.returncode == 1
    assert "Could not find 'schedule/oncycle'" in done.stderr and "unknown command" not in done.stderr
