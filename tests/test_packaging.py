"""The built wheel and sdist: what they hold, what they declare, and that the sdist's tests run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import zipfile

from tests.conftest import CONF, ROOT

CORE = {"torch", "lightning", "torchmetrics", "numpy", "typing-extensions"}


def metadata_of(wheel) -> str:
    names = zipfile.ZipFile(wheel).namelist()
    return zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()


def test_the_wheel_is_typed_licensed_and_has_the_package_version(wheel):
    import lightning_cyclic

    names = zipfile.ZipFile(wheel).namelist()
    assert "lightning_cyclic/py.typed" in names  # a user's type checker reads our annotations
    assert any(n.endswith("licenses/LICENSE") for n in names)
    metadata = metadata_of(wheel)
    assert f"Version: {lightning_cyclic.__version__}\n" in metadata  # the version lives in one place
    assert "License-Expression: Apache-2.0\n" in metadata and "Classifier: Typing :: Typed" in metadata
    assert "License-File: LICENSE\n" in metadata
    assert wheel.name.startswith(f"lightning_cyclic-{lightning_cyclic.__version__}-")


def test_the_wheel_holds_every_config_the_hydra_plugins_and_the_command(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {f"lightning_cyclic/conf/{p.relative_to(CONF).as_posix()}" for p in CONF.rglob("*.yaml")}
    assert len(configs) > 40 and configs <= names, sorted(configs - names)
    assert "lightning_cyclic/conf/__init__.py" in names  # importable: pkg://lightning_cyclic.conf
    for module in ("__init__", "searchpath", "optuna_sweeper"):  # hydra_plugins: a namespace package, no __init__
        assert f"hydra_plugins/lightning_cyclic_plugins/{module}.py" in names
    assert "hydra_plugins/__init__.py" not in names  # it would hide every other Hydra plugin
    assert "lightning_cyclic/__main__.py" in names
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "lightning-cyclic = lightning_cyclic.cli:main" in entry_points


def test_the_core_needs_torch_lightning_and_numpy_and_the_rest_is_extras(wheel):
    requires = [line.split(": ", 1)[1] for line in metadata_of(wheel).splitlines() if line.startswith("Requires-Dist:")]
    core = {re.split(r"[<>=!~ ]", r)[0].lower().replace("_", "-") for r in requires if ";" not in r}
    assert core == CORE, requires
    extras = {line.split(": ", 1)[1] for line in metadata_of(wheel).splitlines() if line.startswith("Provides-Extra:")}
    assert {"app", "sweeps", "plot", "data", "all", "dev"} <= extras
    needs_app = [r for r in requires if r.lower().startswith(("hydra-core", "omegaconf", "rich"))]
    assert needs_app and all('extra == "app"' in r for r in needs_app), needs_app


def _sdist(out) -> str:
    """The sdist of this tree, built by the project's build backend (as ``python -m build --sdist`` calls it)."""
    code = f"from setuptools import build_meta; print(build_meta.build_sdist({str(out)!r}))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return str(out / done.stdout.strip().splitlines()[-1])


def test_the_sdist_holds_the_tests_and_they_run_from_it(tmp_path):
    sdist = _sdist(tmp_path)
    with tarfile.open(sdist) as tar:
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.10.12
        tar.extractall(tmp_path / "unpacked", **safe)
    (top,) = (tmp_path / "unpacked").iterdir()
    wanted = [p.relative_to(ROOT) for p in (ROOT / "tests").rglob("*.py") if "__pycache__" not in p.parts]
    missing = [str(p) for p in wanted if not (top / p).is_file()]
    assert not missing, missing  # conftest.py, helpers.py, every test module
    for path in ("train.py", "CHANGELOG.md", "LICENSE", "lightning_cyclic/conf/train.yaml", "recipes/common.py"):
        assert (top / path).is_file(), path
    # the sdist's own tests, with the sdist's package (every test file is there, checked above; these run quickly)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    quick = ["tests/shapes/test_torch_free.py", "tests/test_console.py", "-k", "not trains"]
    run = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *quick]
    done = subprocess.run(run, cwd=top, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout.splitlines()[-1], done.stdout[-1000:]
