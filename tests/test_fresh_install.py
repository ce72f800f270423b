"""Each extra as pip installs it today: a fresh venv per extra, pip's own resolution, the documented command.

``make test-extras`` (part of ``make test``, so CI runs it) runs this file; it is marked slow, so the main test run
leaves it out. Every run resolves again, from nothing, as a user's ``pip install`` would: a new release (a
pre-release that pip accepts, a dependency that moved) shows here before a user meets it. What differs from a
user's machine is only the speed:

- torch: ``pip install torch==<the version of this environment>`` (the local CPU wheel, never an unpinned torch that
  would pull a CUDA build) goes once into a template venv (kept in ``.make/``), whose site-packages every fresh
  venv starts from as hard links: a venv where the user ran ``pip install torch`` first, in a second, not twenty;
- the wheel of this tree (``conftest.wheel``), installed with its extra and nothing pinned, ``--no-compile`` (Python
  compiles what is imported, as it runs: half the install time); pip's cache as it is.

What runs in each: the core (``pip install lightning-cyclic``) fits a tiny module with ``OneCycle`` and the other
callbacks; ``[app]`` runs ``lightning-cyclic train`` (the README's command, one short epoch); ``[sweeps]`` runs
``python train.py -m hparams_search=optuna`` for two trials with pruning on, in a venv that already held Optuna 5
and SQLAlchemy 2, which it leaves as they were (pip's install report, then ``pip list``; an empty venv resolves the
same versions for ``[sweeps]``, so one venv checks both).

Each test prints what pip resolved (``pytest -rP`` shows it; ``make test-extras`` does).
``tests/test_install.py`` (``make test-wheel``) goes further into the app in venvs it keeps between runs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_extras import QUICK_FIT
from tests.test_install import ENV, QUICK
from tests.test_install import run as run_quietly

# about 3 minutes on 2 cores: make test-extras (in make test), make test-all; one pytest-xdist worker runs them, with
# tests/test_install.py (the wheel fixture builds in the clone: two at once would collide)
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("wheel_venvs")]

# a user's shell: Python's own warning filters (tests/test_install.py's runs ignore warnings), one thread
ENV = {**{k: v for k, v in ENV.items() if k != "PYTHONWARNINGS"}, "OMP_NUM_THREADS": "1"}


def run(command: list, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return run_quietly(command, cwd, timeout, env=ENV)


SHOWN = ("torch", "lightning", "hydra-core", "omegaconf", "optuna", "sqlalchemy")  # the versions each test prints
SITE = Path(sysconfig.get_paths()["purelib"]).relative_to(sysconfig.get_paths()["data"])  # lib/python3.X/site-packages


def pip(python: Path, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    done = run([python, "-m", "pip", *args], cwd=cwd, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done


# what Hydra 1.4 and OmegaConf 2.4 (the pre-releases pip resolves for the launchers' pins) say of an app not yet
# migrated, once per target or resolver: the app passes its execution whitelist, no version_base there (and one
# where it is needed), and registers its resolvers the new way. (The plugins' entry points matter to an editable
# install on Hydra 1.4 only, which these wheel installs are not: checked by hand, see the CHANGELOG.)
MIGRATION = (
    "_execution_whitelist_",
    "version_base parameter is deprecated",
    "version_base parameter is not specified",
    "register_new_resolver() is deprecated",
    "expected Union",  # OmegaConf 2.4 checks a resolver's arguments against its annotations
)


def not_migrated(done: subprocess.CompletedProcess) -> list[str]:
    return [said for said in MIGRATION if said in done.stdout + done.stderr]


def installed(python: Path, cwd: Path) -> dict[str, str]:
    """``pip list``: distribution name (lower case) -> version."""
    listing = json.loads(pip(python, "list", "--format", "json", cwd=cwd).stdout)
    return {d["name"].lower().replace("_", "-"): d["version"] for d in listing}


def resolved(versions: dict[str, str]) -> str:
    return ", ".join(f"{name} {versions[name]}" for name in SHOWN if name in versions)


@pytest.fixture(scope="session")
def torch_template() -> Path:
    """A venv holding what ``pip install torch==<this environment's torch>`` installs, and nothing else: built once
    under ``.make/`` (half a minute) and kept, since it holds only the local torch wheel and what that requires."""
    torch = f"torch=={version('torch')}"
    folder = ROOT / ".make" / f"{torch.replace('==', '-')}-py{sys.version_info[0]}.{sys.version_info[1]}-template"
    if not (folder / "done").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, timeout=300)
        pip(folder / "bin" / "python", "install", "-q", torch, cwd=folder)
        (folder / "done").write_text(torch)
    return folder


def fresh_venv(folder: Path, torch_template: Path) -> Path:
    """A new venv at ``folder`` whose site-packages is the torch template's, as hard links (pip replaces a file
    by unlinking it, so nothing it installs or removes here reaches the template)."""
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, timeout=300)
    shutil.rmtree(folder / SITE)
    linked = subprocess.run(["cp", "-al", str(torch_template / SITE), str(folder / SITE)], timeout=300)
    if linked.returncode != 0:  # another filesystem (a tmpfs /tmp): a copy
        shutil.rmtree(folder / SITE, ignore_errors=True)
        subprocess.run(["cp", "-a", str(torch_template / SITE), str(folder / SITE)], check=True, timeout=600)
    return folder / "bin" / "python"


def install(python: Path, spec: str, cwd: Path) -> dict:
    """``pip install --report`` of ``spec``; the report (what pip installed), after checking torch stayed."""
    report = cwd / "report.json"
    pip(python, "install", "-q", "--no-compile", "--report", report, spec, cwd=cwd)  # .pyc of what is imported only
    got = json.loads(report.read_text())
    names = {item["metadata"]["name"].lower() for item in got["install"]}
    assert "torch" not in names, "pip replaced the torch that was there"  # so no CUDA build comes down
    return got


def test_the_core_alone_fits_with_the_callbacks(wheel, torch_template, tmp_path):
    """``pip install lightning-cyclic``: a tiny fit with ``LRFinder``, ``OneCycle(max_lr="auto")`` and the rest."""
    python = fresh_venv(tmp_path / "venv", torch_template)
    report = install(python, str(wheel), cwd=tmp_path)
    names = {item["metadata"]["name"].lower() for item in report["install"]}
    assert {"lightning", "torchmetrics", "numpy"} <= names
    assert not names & {"hydra-core", "omegaconf", "optuna", "matplotlib", "scikit-learn", "rich"}, names
    (tmp_path / "fit.py").write_text(QUICK_FIT)
    done = run([python, "-I", "fit.py"], cwd=tmp_path)  # -I: only the venv's packages, nothing of the clone
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert done.stdout.strip().splitlines()[-1] == "[] 16", done.stdout[-2000:]  # 16 steps, no extra imported
    print("core:", resolved(installed(python, tmp_path)))


def test_the_app_extra_runs_lightning_cyclic_train(wheel, torch_template, tmp_path):
    """``pip install "lightning-cyclic[app]"`` then the README's ``lightning-cyclic train schedule=onecycle``."""
    python = fresh_venv(tmp_path / "venv", torch_template)
    install(python, f"{wheel}[app]", cwd=tmp_path)
    out = tmp_path / "run"
    command = [python.parent / "lightning-cyclic", "train", "schedule=onecycle", *QUICK, f"hydra.run.dir={out}"]
    done = run(command, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "[lightning_cyclic] val/acc = " in done.stdout and "schedule: OneCycle" in done.stdout, done.stdout
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert not not_migrated(done), done.stderr[-4000:]
    print("[app]:", resolved(installed(python, tmp_path)))


def test_the_sweeps_extra_installs_beside_optuna_5_and_runs_an_optuna_sweep_with_pruning(
    wheel, torch_template, tmp_path
):
    """A project that already has Optuna 5 and SQLAlchemy 2 (MLflow's, a web app's): ``pip install
    "lightning-cyclic[sweeps]"`` keeps both, then ``python train.py -m hparams_search=optuna`` runs two trials on
    them, each reporting its validations to the study (pruning is on by default), the leaderboard written, and
    ``hparams_search=fine`` around its best; no migration warning of the Hydra and OmegaConf pip resolved. (Pip's
    own resolution of ``[sweeps]`` in an empty venv picks these same versions: Optuna 5.1, SQLAlchemy 2.)"""
    python = fresh_venv(tmp_path / "venv", torch_template)
    pip(python, "install", "-q", "--no-compile", "optuna==5.1.0", "sqlalchemy>=2", cwd=tmp_path)
    before = installed(python, tmp_path)
    assert before["optuna"] == "5.1.0" and int(before["sqlalchemy"].split(".")[0]) >= 2, resolved(before)
    report = install(python, f"{wheel}[sweeps]", cwd=tmp_path)
    changed = {item["metadata"]["name"].lower() for item in report["install"]} & {"optuna", "sqlalchemy", "alembic"}
    assert not changed, f"pip would change {changed} (the report's install list)"
    after = installed(python, tmp_path)
    assert {name: after[name] for name in ("optuna", "sqlalchemy", "alembic")} == {
        name: before[name] for name in ("optuna", "sqlalchemy", "alembic")
    }
    assert "lightning-cyclic" in after and "hydra-core" in after
    check = run([python, "-m", "pip", "check"], cwd=tmp_path)
    assert check.returncode == 0, check.stdout[-3000:]

    shutil.copy(ROOT / "train.py", tmp_path / "train.py")  # the clone's script, run beside no clone: the wheel's app
    sweep = tmp_path / "sweep"
    quick = [o for o in QUICK if not o.startswith("trainer.max_epochs=")] + ["trainer.max_epochs=2"]  # 2 reports
    command = [python, "train.py", "-m", "hparams_search=optuna", "hydra.sweeper.n_trials=2", *quick]
    done = run([*command, f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "Traceback" not in done.stderr, done.stderr[-4000:]
    assert not not_migrated(done), done.stderr[-4000:]  # (a wall of warnings on Hydra 1.4.0rc3 before)
    assert (sweep / "leaderboard.csv").is_file() and f"optuna-dashboard sqlite:///{sweep}/optuna.db" in done.stdout
    study = (
        "import json, optuna, sys\n"
        "study = optuna.load_study(study_name='onecycle', storage=sys.argv[1])\n"
        "print(json.dumps([[t.state.name, len(t.intermediate_values)] for t in study.trials]))\n"
    )
    trials = run([python, "-c", study, f"sqlite:///{sweep}/optuna.db"], cwd=tmp_path)
    assert trials.returncode == 0, trials.stderr[-3000:]
    states = json.loads(trials.stdout.strip().splitlines()[-1])
    assert len(states) == 2 and all(state in ("COMPLETE", "PRUNED") and reports >= 1 for state, reports in states)
    # the fine sweep around that one's best (its ranges come from the app's resolver, ${lc.around:...})
    fine = [python, "train.py", "-m", "hparams_search=fine", f"fine_from={sweep / 'leaderboard.csv'}"]
    done = run([*fine, "hydra.sweeper.n_trials=1", *QUICK, f"hydra.sweep.dir={tmp_path / 'fine'}"], cwd=tmp_path)
    assert done.returncode == 0 and not not_migrated(done), done.stdout[-2000:] + done.stderr[-4000:]
    assert (tmp_path / "fine" / "leaderboard.csv").is_file()
    # train(cfg) from a program (compose, then train): no warning either; a caller's own whitelist decides
    (tmp_path / "program.py").write_text(PROGRAM)
    done = run([python, "-I", "program.py", *QUICK, f"paths.output_dir={tmp_path / 'program'}"], cwd=tmp_path)
    assert done.returncode == 0 and not not_migrated(done), done.stdout[-2000:] + done.stderr[-4000:]
    lines = done.stdout.strip().splitlines()
    # (the optimizer's target, torch.optim.SGD, is the first outside it; Hydra 1.3 has no whitelists to refuse)
    whitelists = not after["hydra-core"].startswith("1.3")
    refused = "refused: optimizer" if whitelists else "refused: n/a (a Hydra without whitelists)"
    assert lines[-2] == refused, done.stdout[-2000:]
    assert lines[-1].startswith("val/acc "), done.stdout[-2000:]
    print("[sweeps] beside Optuna 5 and SQLAlchemy 2:", resolved(after), "| trials:", states)


# the app's train(cfg) called from a program: first inside the caller's execution whitelist of the package alone (on
# a Hydra with whitelists: it must refuse the config's other targets), then as it is
PROGRAM = """
import contextlib, io, sys
import hydra.utils
from hydra import compose, initialize_config_module
from lightning_cyclic.run import train, version_base

with initialize_config_module(config_module="lightning_cyclic.conf", **version_base()):
    cfg = compose("train", overrides=sys.argv[1:] + ["logger=none"])
strict = getattr(hydra.utils, "execution_whitelist", None)
if strict is not None:
    try:
        with strict(["lightning_cyclic.*"], reset=True), contextlib.redirect_stdout(io.StringIO()):
            train(cfg)
        print("refused: nothing")
    except Exception as err:  # Hydra's refusal, as the app names the key it was building
        said = " ".join(str(err).split())
        print("refused:", "optimizer" if "'torch.optim.SGD' is not in the" in said else said[:40])
else:
    print("refused: n/a (a Hydra without whitelists)")
with contextlib.redirect_stdout(io.StringIO()):
    metrics, _ = train(cfg)
print("val/acc", metrics["val/acc"])
"""
