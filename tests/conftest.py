from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# CI explores the same examples every run; locally hypothesis keeps searching for new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "lightning_cyclic" / "conf"  # the app's Hydra configs, shipped in the package


@pytest.fixture
def make_cfg(tmp_path):
    """Compose the app's ``train.yaml`` with overrides, writing into ``tmp_path`` (``hydra=True``: with Hydra's own
    node, ``cfg.hydra``: the launcher, the sweeper, the mode)."""

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from lightning_cyclic import run

    def make(*overrides: str, hydra: bool = False):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF), **run.version_base()):
            return compose("train", overrides=[f"paths.output_dir={tmp_path}", *overrides], return_hydra_config=hydra)

    yield make
    GlobalHydra.instance().clear()


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """The wheel of this tree, built once per pytest run, as a user would (no network, no build isolation)."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(ROOT), "-w", str(out)]
    done = subprocess.run(build, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = out.glob("lightning_cyclic-*.whl")
    return path


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same RNG state: random initialisations make no test flaky."""
    import random

    import numpy as np
    import torch

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
