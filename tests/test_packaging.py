"""The built wheel: typed, licensed, one version."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from tests.conftest import ROOT


def test_the_wheel_is_typed_licensed_and_has_the_package_version(tmp_path):
    import lightning_cyclic

    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    done = subprocess.run([*build, str(ROOT), "-w", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = tmp_path.glob("lightning_cyclic-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "lightning_cyclic/py.typed" in names  # a user's type checker reads our annotations
    assert any(n.endswith("licenses/LICENSE") for n in names)
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert f"Version: {lightning_cyclic.__version__}\n" in metadata  # the version lives in one place
    assert "License: Apache-2.0" in metadata and "Classifier: Typing :: Typed" in metadata
    assert wheel.name.startswith(f"lightning_cyclic-{lightning_cyclic.__version__}-")
