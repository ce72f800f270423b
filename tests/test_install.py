"""The package as pip users get it: the built wheel in venvs of its own, used from a folder outside the clone.

Two venvs, built once under the clone and reused (rebuilt when the dependencies they install change):

- ``.venv-wheel``: ``pip install "lightning-cyclic[app,sweeps]"`` from the wheel, every dependency resolved by pip;
- ``.venv-core``: ``pip install lightning-cyclic`` from the wheel: the core alone.

Each pytest run installs the wheel of the working tree into them (``--force-reinstall --no-deps``: seconds).
Every command runs with ``cwd`` in a temporary folder, so nothing of the clone is importable.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import ROOT

# minutes (a first run builds the venvs): make test-wheel, make test-all; one pytest-xdist worker builds them
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("wheel_venvs")]

HERE = Path(__file__).resolve().parent
ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))},
    "PYTHONWARNINGS": "ignore",
}
QUICK = ["trainer.max_epochs=1", "trainer.limit_train_batches=4", "trainer.limit_val_batches=2", "progress_bar=none"]


def _requirements(extras: tuple[str, ...]) -> list[str]:
    """The requirements pip installs for ``lightning-cyclic[extras]`` by pyproject.toml (extras followed through)."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted, seen, todo = list(project["dependencies"]), set(), list(extras)
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for req in project["optional-dependencies"][extra]:
            if req.startswith("lightning-cyclic["):
                todo += req[len("lightning-cyclic[") : -1].split(",")
            else:
                wanted.append(req)
    return sorted(wanted)


def venv(name: str, extras: tuple[str, ...], wheel: Path) -> Path:
    """``ROOT/name`` with the wheel and its ``extras`` installed; built when missing or its requirements changed."""
    import torch

    folder = ROOT / name
    python = folder / "bin" / "python"
    torch_pin = f"torch=={torch.__version__}"  # the build this machine has (the CPU wheel), not the newest
    stamp = json.dumps({"python": sys.version, "torch": torch_pin, "requires": _requirements(extras)})
    stamp_file = folder / "requirements.stamp"
    if not python.exists() or not stamp_file.exists() or stamp_file.read_text() != stamp:
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, timeout=300)
        spec = f"{wheel}[{','.join(extras)}]" if extras else str(wheel)
        pip = [str(python), "-m", "pip", "install", "-q", torch_pin, spec]
        done = subprocess.run(pip, cwd=folder, env=ENV, capture_output=True, text=True, timeout=1800)
        assert done.returncode == 0, done.stderr[-3000:]
        stamp_file.write_text(stamp)
    reinstall = [str(python), "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", str(wheel)]
    done = subprocess.run(reinstall, cwd=folder, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return python


@pytest.fixture(scope="module")
def app_venv(wheel) -> Path:
    return venv(".venv-wheel", ("app", "sweeps"), wheel)


@pytest.fixture(scope="module")
def core_venv(wheel) -> Path:
    return venv(".venv-core", (), wheel)


def run(command: list, cwd: Path, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    env = ENV if env is None else env
    return subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_lightning_cyclic_train_runs_the_app_from_the_wheel_under_ddp(app_venv, tmp_path):
    """The console script, outside the clone, as two DDP processes (Lightning starts rank 1 with the same command)."""
    out = tmp_path / "run"
    done = run(
        [app_venv.parent / "lightning-cyclic", "train", "trainer=ddp_cpu", *QUICK, "schedule=warm_restarts",
         f"hydra.run.dir={out}"],
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "[lightning_cyclic] val/acc = " in done.stdout and "schedule: WarmRestarts" in done.stdout
    assert (out / "train.log").is_file() and (out / "train_ddp_process_1.log").is_file()  # both ranks ran
    assert (out / "checkpoints" / "last.ckpt").is_file()
    where = run([app_venv, "-c", "import lightning_cyclic; print(lightning_cyclic.__file__)"], cwd=tmp_path)
    assert where.stdout.startswith(str(app_venv.parent.parent)), where.stdout  # the wheel's copy, not the clone's


def _user_project(folder: Path) -> Path:
    """A project of a user's own: its model module, its config folder with a model option and a primary config
    that starts from the packaged ``train`` config, and an app of its own."""
    (folder / "conf" / "model").mkdir(parents=True)
    (folder / "my_models.py").write_text(
        textwrap.dedent(
            """
            from torch import nn

            from lightning_cyclic.models import Classifier

            def classifier(optimizer, input_shape, num_classes):
                print("my_models.classifier built a", num_classes, "class linear model")
                net = nn.Sequential(nn.Flatten(), nn.Linear(int(input_shape[-1]), num_classes))
                return Classifier(net=net, optimizer=optimizer, input_shape=input_shape, num_classes=num_classes)
            """
        )
    )
    (folder / "conf" / "model" / "linear.yaml").write_text("_target_: my_models.classifier\n")
    (folder / "conf" / "config.yaml").write_text(
        textwrap.dedent(
            """
            defaults:
              - train            # the package's, found on Hydra's search path
              - override model: linear
              - _self_
            seed: 3
            """
        )
    )
    (folder / "my_app.py").write_text(
        textwrap.dedent(
            """
            import hydra

            from lightning_cyclic.run import main as run

            @hydra.main(version_base="1.3", config_path="conf", config_name="config")
            def main(cfg):
                return run(cfg)

            if __name__ == "__main__":
                main()
            """
        )
    )
    return folder


def test_a_users_own_app_and_config_group_compose_beside_the_packaged_configs(app_venv, tmp_path):
    project = _user_project(tmp_path / "project")
    # 1. the user's own @hydra.main app: its primary config starts from ours (the search path plugin finds it)
    done = run([app_venv, "my_app.py", *QUICK, f"hydra.run.dir={tmp_path / 'own'}"], cwd=project)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "my_models.classifier built a 10 class linear model" in done.stdout  # their model, our digits data
    assert "[lightning_cyclic] val/acc = " in done.stdout
    config = (tmp_path / "own" / ".hydra" / "config.yaml").read_text()
    assert "_target_: my_models.classifier" in config and "seed: 3" in config
    assert "schedule:\n  _target_: lightning_cyclic.OneCycle" in config  # ours fill in
    # 2. the packaged app with the user's folder beside its configs, as python -m
    done = run(
        [app_venv, "-m", "lightning_cyclic", "train", "--config-dir", project / "conf", "model=linear", *QUICK,
         f"hydra.run.dir={tmp_path / 'packaged'}"],
        cwd=project,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "my_models.classifier built a 10 class linear model" in done.stdout
    # 3. and the options of both in one list
    done = run([app_venv, "my_app.py", "model=nosuch"], cwd=project)
    assert done.returncode == 1 and "Available options in 'model'" in done.stderr
    for name in ("cnn", "linear", "mlp", "resnet"):
        assert name in done.stderr.split("Available options in 'model'")[1], done.stderr[-1500:]


def test_an_optuna_sweep_from_the_wheel_stores_its_study(app_venv, tmp_path):
    """The [sweeps] extra as pip resolves it: the resumable sweeper found in the wheel, the study in SQLite."""
    sweep = tmp_path / "sweep"
    command = [app_venv.parent / "lightning-cyclic", "train", "-m", "hparams_search=optuna", "hydra.sweeper.n_trials=1"]
    done = run([*command, *QUICK, f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert f"optuna-dashboard sqlite:///{sweep}/optuna.db" in done.stdout
    count = "import optuna, sys; print(len(optuna.load_study(study_name='onecycle', storage=sys.argv[1]).trials))"
    trials = run([app_venv, "-c", count, f"sqlite:///{sweep}/optuna.db"], cwd=tmp_path)
    assert trials.stdout.strip() == "1", trials.stderr[-2000:]


def test_python_dash_m_and_the_command_from_the_wheel(app_venv, tmp_path):
    assert run([app_venv, "-m", "lightning_cyclic", "--version"], cwd=tmp_path).stdout.startswith("lightning-cyclic ")
    done = run([app_venv.parent / "lightning-cyclic", "configs", "--path"], cwd=tmp_path)
    folder = Path(done.stdout.strip())
    assert done.returncode == 0 and folder.is_relative_to(app_venv.parent.parent) and (folder / "train.yaml").is_file()


def test_the_core_alone_runs_every_callback_and_imports_no_extra(core_venv, app_venv, tmp_path):
    """Without any extra every callback works; with all of them installed the callbacks import none."""
    reports = {}
    for name, python in (("core", core_venv), ("app", app_venv)):
        out = tmp_path / name
        out.mkdir()
        script = out / "core_only.py"
        shutil.copy(HERE / "core_only.py", script)
        done = run([python, "-I", script, out], cwd=out)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
        reports[name] = json.loads(done.stdout.strip().splitlines()[-1])
    core, app = reports["core"], reports["app"]
    assert core["installed"] == []  # the core install pulls in no extra's package
    assert "rich" in app["installed"] and "hydra" in app["installed"]
    for report in reports.values():
        assert report["package"].startswith(str(ROOT / ".venv-")), report["package"]
        assert report["loaded_before_lightning"] == [] and report["loaded_by_callbacks"] == []
        assert report["loaded_after_fits"] == [], report["loaded_after_fits"]
        fits = report["fits"]
        for schedule in ("OneCycle", "Cyclical", "WarmRestarts", "WarmupDecay"):
            assert fits[schedule]["steps"] == 36 and fits[schedule]["max_lr"] > 0.1, (schedule, fits[schedule])
        assert fits["LRFinder"]["used"]["max_lr"] > 0 and "lr_find.json" in fits["LRFinder"]["files"]
        assert fits["BestSnapshot"]["restored"] and fits["BestSnapshot"]["best_score"] > 0.5
        assert fits["SnapshotEnsemble"]["members"] == 3 and fits["SnapshotEnsemble"]["metrics"]
        assert fits["InitialLossCheck"]["initial_loss"] is not None
        assert fits["lr_find"]["points"] > 5
    assert "lr_find.png" not in core["fits"]["LRFinder"]["files"]  # no matplotlib: the curve is in the JSON
    one_line = 'needs the [{0}] extra (no module named {1!r}): pip install "lightning-cyclic[{0}]"'
    assert core["errors"] == {
        "lightning_cyclic.run": "ModuleNotFoundError: lightning_cyclic.run " + one_line.format("app", "hydra"),
        "lightning_cyclic.sweeps": "ModuleNotFoundError: lightning_cyclic.sweeps " + one_line.format("app", "hydra"),
        "lightning_cyclic.plot:plot_schedule": "ModuleNotFoundError: plotting " + one_line.format("plot", "matplotlib"),
    }
    assert set(app["errors"].values()) == {None}


def test_without_the_app_extra_the_app_says_which_extra_in_one_line(core_venv, tmp_path):
    done = run([core_venv, "-c", "import lightning_cyclic.run"], cwd=tmp_path)
    message = (
        "lightning_cyclic.run needs the [app] extra (no module named 'hydra'): pip install \"lightning-cyclic[app]\""
    )
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1] == f"ModuleNotFoundError: {message}"
    assert "During handling" not in done.stderr  # one error, not a chain
    done = run([core_venv.parent / "lightning-cyclic", "train", "schedule=onecycle"], cwd=tmp_path)
    assert done.returncode == 1 and done.stderr == (
        "error: lightning-cyclic train needs the [app] extra (no module named 'hydra'): "
        'pip install "lightning-cyclic[app]"\n'
    )
