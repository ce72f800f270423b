"""The closed-form schedules import and run where torch, Lightning and numpy cannot be imported."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

BLOCKED = """
import sys

class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "lightning", "pytorch_lightning", "numpy"):
            raise ImportError(f"{name} is blocked in this test")

sys.meta_path.insert(0, Blocked())
"""

USE_THE_SHAPES = """
from lightning_cyclic.shapes import OneCycleSchedule
import lightning_cyclic
from lightning_cyclic.files import write_atomically

s = OneCycleSchedule(max_lr=0.1, total_steps=100)
lrs = [s(t)[0] for t in range(101)]
assert abs(max(lrs) - 0.1) < 1e-12 and lrs[0] < 0.01 and lrs[-1] < 1e-5, lrs
print(lightning_cyclic.__version__, sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "lightning")))
try:
    lightning_cyclic.OneCycle
except ImportError as err:
    print("callbacks need torch:", err)
"""


def test_the_shapes_need_no_torch_lightning_or_numpy():
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED + USE_THE_SHAPES], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    import lightning_cyclic

    first = done.stdout.splitlines()[0]
    assert first == f"{lightning_cyclic.__version__} []", done.stdout  # nothing of torch or Lightning was loaded
    assert "callbacks need torch:" in done.stdout and "is blocked in this test" in done.stdout


def test_the_package_names_are_all_there_and_lazy():
    import lightning_cyclic

    for name in lightning_cyclic.__all__:
        assert getattr(lightning_cyclic, name).__name__ == name
    assert set(lightning_cyclic.__all__) <= set(dir(lightning_cyclic))
    try:
        lightning_cyclic.NoSuchName  # noqa: B018
    except AttributeError as err:
        assert "no attribute 'NoSuchName'" in str(err)
    else:
        raise AssertionError("an unknown name must raise AttributeError")
