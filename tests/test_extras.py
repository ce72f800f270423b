"""The extras, in this environment: a missing one fails in one line naming it; the callbacks import none of them.

A package is made missing in a subprocess by wrapping the import system's finders so that they do not see it, as
for a package that is not installed. ``tests/test_install.py`` checks the same on the installed wheel, in venvs
with and without the extras.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lightning_cyclic._extras import is_missing_extra, needs
from tests.conftest import ROOT

NOT_INSTALLED = """
import sys

MODULES = {names!r}
DISTRIBUTIONS = {{"hydra": "hydra-core", "sklearn": "scikit-learn"}}
HIDDEN = {{DISTRIBUTIONS.get(name, name) for name in MODULES}}

class NotInstalled:
    # the finders of this interpreter, blind to some packages and their metadata: to Python they are not installed
    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in MODULES or not hasattr(self.finder, "find_spec"):
            return None
        return self.finder.find_spec(name, path, target)

    def find_distributions(self, *args, **kwargs):
        found = getattr(self.finder, "find_distributions", lambda *a, **k: [])(*args, **kwargs)
        return [d for d in found if (d.metadata["Name"] or "").lower().replace("_", "-") not in HIDDEN]

    def __getattr__(self, name):
        return getattr(self.finder, name)

sys.meta_path[:] = [NotInstalled(finder) for finder in sys.meta_path]
"""

TRY_EACH = """
import json

def attempt(code):
    try:
        exec(code, {})
    except ImportError as err:
        return f"{type(err).__name__}: {err}"
    return None

print(json.dumps({
    "run": attempt("import lightning_cyclic.run"),
    "sweeps": attempt("import lightning_cyclic.sweeps"),
    "conf": attempt("import lightning_cyclic.conf"),
    "digits": attempt("from lightning_cyclic.data import DigitsDataModule; DigitsDataModule().setup()"),
    "mnist1d": attempt("from lightning_cyclic.data.mnist1d import generate_mnist1d; generate_mnist1d(10)"),
    "plot": attempt("from lightning_cyclic import OneCycle, plot_schedule; plot_schedule(OneCycle(0.1), 10)"),
}))
"""


def python(code: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env_code = [sys.executable, "-c", code]
    return subprocess.run(env_code, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def one_line(user: str, extra: str, missing: str) -> str:
    install = f'pip install "lightning-cyclic[{extra}]"'
    return f"ModuleNotFoundError: {user} needs the [{extra}] extra (no module named {missing!r}): {install}"


def test_every_module_of_an_extra_names_it_in_one_line():
    blocked = ["hydra", "omegaconf", "rich", "sklearn", "mnist1d", "matplotlib"]
    done = python(NOT_INSTALLED.format(names=blocked) + TRY_EACH)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got == {
        "run": one_line("lightning_cyclic.run", "app", "hydra"),
        "sweeps": one_line("lightning_cyclic.sweeps", "app", "hydra"),
        "conf": one_line("lightning_cyclic.sweeps", "app", "hydra"),
        "digits": one_line("DigitsDataModule", "data", "sklearn"),
        "mnist1d": one_line("MNIST1DDataModule", "data", "mnist1d"),
        "plot": one_line("plotting", "plot", "matplotlib"),
    }


def test_without_the_app_the_command_and_the_import_say_so_in_one_line():
    block = NOT_INSTALLED.format(names=["hydra", "omegaconf"])
    done = python(block + "import sys; from lightning_cyclic.cli import main; sys.exit(main(['train', 'seed=1']))")
    assert done.returncode == 1
    assert done.stderr == (
        "error: lightning-cyclic train needs the [app] extra (no module named 'hydra'): "
        'pip install "lightning-cyclic[app]"\n'
    )
    done = python(block + "import lightning_cyclic.run")
    assert done.returncode == 1 and done.stderr.splitlines()[-1] == one_line("lightning_cyclic.run", "app", "hydra")
    assert "During handling" not in done.stderr  # one error, not a chain


QUICK_FIT = """
import sys

EXTRAS = {"hydra", "omegaconf", "sklearn", "scipy", "rich", "matplotlib", "mnist1d", "optuna", "tensorboard"}
import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

baseline = {name.split(".")[0] for name in sys.modules}
import lightning_cyclic
from lightning_cyclic import BestSnapshot, Guard, InitialLossCheck, LRFinder, OneCycle, Preemption, lr_find
from lightning_cyclic import SnapshotEnsemble
from lightning_cyclic import ScheduleLR, ScheduleMixin, shapes, optim, finder, suggest, snapshot, checkpoint


class Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(4, 3)

    def training_step(self, batch, batch_idx):
        loss = torch.nn.functional.cross_entropy(self.net(batch[0]), batch[1])
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
data = DataLoader(TensorDataset(x, y), batch_size=8)
callbacks = [LRFinder(num_steps=10, verbose=False), OneCycle(max_lr="auto"), BestSnapshot(monitor="train_loss"),
             SnapshotEnsemble(every_n_epochs=1, evaluate=False), InitialLossCheck(num_classes=3), Guard(),
             Preemption(ckpt_path=False)]
trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks)
trainer.fit(Tiny(), data)
print(sorted(({name.split(".")[0] for name in sys.modules} - baseline) & EXTRAS), trainer.global_step)
"""


def test_the_callbacks_import_no_extra_even_where_every_extra_is_installed():
    done = python(QUICK_FIT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[] 16", done.stdout[-2000:]


def test_needs_leaves_other_missing_modules_alone():
    with pytest.raises(ModuleNotFoundError) as ours:
        with needs("app", "this test"):
            import lightning_cyclic.no_such_module  # noqa: F401  (a bug of ours, not an extra)
    assert not is_missing_extra(ours.value) and ours.value.name == "lightning_cyclic.no_such_module"
    with pytest.raises(ModuleNotFoundError) as theirs:
        with needs("plot", "this test"):
            import no_such_package_anywhere  # noqa: F401
    assert is_missing_extra(theirs.value) and theirs.value.name == "no_such_package_anywhere"
    assert str(theirs.value) == (
        "this test needs the [plot] extra (no module named 'no_such_package_anywhere'): "
        'pip install "lightning-cyclic[plot]"'
    )
    with pytest.raises(ValueError, match="unknown extra 'gui'; the extras are: app, sweeps"):
        with needs("gui", "this test"):
            pass
