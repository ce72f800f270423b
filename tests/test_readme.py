"""The code of the README and of the guide (``docs/guide/*.md``), run as a newcomer runs it, so that no page can
drift from what the package does. On every page:

- every ```python block runs, with the reader's own ``model`` and ``datamodule`` standing in (a small MLP on
  digits), and whatever it trains finishes;
- every ``python train.py`` / ``lightning-cyclic train`` command of a ```bash block runs in a fast form (a few
  optimizer steps): a single run trains, a sweep (``-m``) composes and passes the config checks for its first job,
  a DDP run composes (the 2-process runs are tests of their own in ``test_sweeps.py``);
- every ```console block (``$ command`` then what it printed) is run in full, as a real process, and prints
  exactly the lines the page shows (run folders and timings aside).

Each test is named by its page and line: ``test_python_block_runs[docs/guide/schedules.md:42]``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest

from lightning_cyclic.run import version_base
from tests.conftest import CONF, ROOT

README = ROOT / "README.md"
PAGES = {path.relative_to(ROOT).as_posix(): path for path in [README, *sorted((ROOT / "docs" / "guide").glob("*.md"))]}
TEXTS = {name: path.read_text() for name, path in PAGES.items()}


def blocks(lang: str, page: str | None = None) -> list[tuple[str, int, str]]:
    """``(page, line number, body)`` of every fenced block of ``lang``, on every page or on ``page``."""
    return [
        (name, text[: m.start()].count("\n") + 1, m.group(1))
        for name, text in TEXTS.items()
        if page in (None, name)
        for m in re.finditer(rf"^```{lang}\n(.*?)^```", text, re.S | re.M)
    ]


def params(cases: list[tuple]) -> list:
    """Each case as a test named by its page and line (``README.md:42``)."""
    return [pytest.param(*case, id=f"{case[0]}:{case[1]}") for case in cases]


HEADS = (["python", "train.py"], ["lightning-cyclic", "train"], ["python", "-m", "lightning_cyclic", "train"])


def commands(page: str | None = None) -> list[tuple[str, int, list[str]]]:
    """The app's commands in the bash blocks: ``(page, line, arguments after train.py)``, continuations joined."""
    out = []
    for name, start, body in blocks("bash", page):
        joined = body.replace("\\\n", " ")
        for offset, line in enumerate(joined.splitlines()):
            words = shlex.split(line, comments=True)
            for head in HEADS:
                n = len(head)
                for i in range(len(words) - n + 1):
                    if words[i : i + n] == head:
                        args = [w for w in words[i + n :] if w not in ("&", "&&")]
                        out.append((name, start + offset + 1, args))
                        break
    return out


# --- python blocks -----------------------------------------------------------------------------


def readers_model_and_data():
    """The reader's ``model`` and ``datamodule``: the app's classifier (a small MLP) on digits, 6 steps an epoch."""
    import torch

    from lightning_cyclic.data import DigitsDataModule
    from lightning_cyclic.models import MLP, Classifier

    datamodule = DigitsDataModule(batch_size=256)
    model = Classifier(
        partial(MLP, hidden=[32]), partial(torch.optim.SGD, lr=0.05, momentum=0.9), datamodule.input_shape, 10
    )
    return model, datamodule


@pytest.mark.parametrize("page, line, code", params(blocks("python")))
def test_python_block_runs(page, line, code, tmp_path, monkeypatch):
    import lightning.pytorch as pl

    monkeypatch.chdir(tmp_path)
    model, datamodule = readers_model_and_data()
    namespace = {"model": model, "datamodule": datamodule, "__name__": "readme"}
    exec(compile(code, f"{page}:{line}", "exec", dont_inherit=True), namespace)  # not this file's __future__
    if "configure_optimizers" in namespace:  # a method of the reader's LightningModule: a subclass that has it
        readers = type("ReadersModule", (type(model),), {"configure_optimizers": namespace["configure_optimizers"]})
        model = readers(model.net, model.optimizer_factory, datamodule.input_shape, 10)
        namespace["trainer"] = pl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False)
        namespace["trainer"].fit(model, datamodule)
        assert namespace["trainer"].lr_scheduler_configs[0].interval == "step"
    trainer = namespace.get("trainer")
    if trainer is not None:
        assert trainer.state.finished and trainer.global_step > 0, f"{page}:{line}"
    for name in re.findall(r'path="([^"]+\.png)"', code):
        assert (tmp_path / name).stat().st_size > 10_000
    if "best" in namespace:
        assert namespace["best"].best_score is not None


# --- the app's commands ------------------------------------------------------------------------

FAST = ["trainer.max_steps=3", "trainer.limit_val_batches=2", "progress_bar=none"]
PLACEHOLDER = re.compile(r"YYYY-MM-DD")  # a run folder the reader fills in


def _compose(overrides: list[str], tmp_path: Path, config_dir: Path | None = None):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    extra = [f"hydra.searchpath=[file://{config_dir}]"] if config_dir else []
    with initialize_config_dir(config_dir=str(CONF), **version_base()):
        cfg = compose("train", overrides=[f"paths.output_dir={tmp_path}", *overrides, *extra])
    GlobalHydra.instance().clear()
    return cfg


def _first_job(args: list[str]) -> list[str]:
    """A sweep's first job: each sweep override at its first value; Hydra's own settings (launcher, sweeper,
    folders) left out, as Hydra hands a job its task overrides alone."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    job = []
    for override in OverridesParser.create().parse_overrides([a for a in args if a != "-m"]):
        key = override.get_key_element()
        if key.startswith(("hydra.", "hydra/")):
            continue
        sweep = override.is_sweep_override()
        job.append(f"{key}={next(override.sweep_string_iterator())}" if sweep else override.input_line)
    return job


def _fill_placeholders(args: list[str], tmp_path: Path) -> list[str]:
    """``ckpt_path=outputs/YYYY-MM-DD/HH-MM-SS-XXXXXX/checkpoints/last.ckpt``: a checkpoint of a run made here first."""
    from lightning_cyclic.run import train

    filled = []
    for arg in args:
        if arg.startswith("ckpt_path=") and PLACEHOLDER.search(arg):
            first = tmp_path / "first"
            train(_compose(FAST, first))
            arg = f"ckpt_path={first / 'checkpoints' / 'last.ckpt'}"
        filled.append(arg)
    return filled


@pytest.mark.parametrize("page, line, args", params(commands()))
def test_command_runs_in_a_fast_form(page, line, args, tmp_path, monkeypatch):
    from lightning_cyclic.run import check_config, train

    monkeypatch.chdir(tmp_path)
    config_dir = None
    if "--config-dir" in args:  # the reader's own model config beside ours, as the page's comment describes
        i = args.index("--config-dir")
        config_dir = tmp_path / args[i + 1]
        (config_dir / "model").mkdir(parents=True)
        (config_dir / "model" / "my_net.yaml").write_text((CONF / "model" / "mlp.yaml").read_text())
        args = args[:i] + args[i + 2 :]
    if "data=fashion_mnist" in args:
        from lightning_cyclic.data import FashionMNISTDataModule

        if FashionMNISTDataModule().missing_files():
            pytest.skip("Fashion-MNIST is not installed here (make data)")
    ddp = any(a.startswith("trainer=ddp") for a in args)
    if "-m" in args or ddp:
        job = _first_job(args) if "-m" in args else args
        check_config(_compose(job, tmp_path))
        return
    cfg = _compose(_fill_placeholders(args, tmp_path) + FAST, tmp_path / "run", config_dir)
    _, objects = train(cfg)
    assert 0 < objects["trainer"].global_step <= 3, f"{page}:{line}"  # debug=fast: one step


def test_the_readme_has_commands_of_each_kind():
    """The pages together show every kind of command (single runs, sweeps, DDP, DDP sweeps), and the front page
    shows a block of each kind the tests run: code, an app command, a command with what it printed."""
    assert PAGES.keys() > {"README.md", "docs/guide/app.md", "docs/guide/sweeps.md"}  # the guide was found
    kinds = {("-m" in a, any(x.startswith("trainer=ddp") for x in a)) for _, _, a in commands()}
    assert kinds == {(False, False), (True, False), (False, True), (True, True)}
    assert len(commands()) >= 20 and len(blocks("python")) >= 5 and len(console_blocks()) >= 3
    assert commands("README.md") and blocks("python", "README.md") and blocks("console", "README.md")


def test_the_front_page_is_a_front_page():
    """The README stays short enough to read in a few minutes: the rest of it is the guide."""
    size = len(README.read_bytes())
    assert size <= 12 * 1024, f"README.md is {size} bytes: move what is not the front page's to docs/guide/"


# --- the outputs the README shows --------------------------------------------------------------

RUN_FOLDER = re.compile(r"(outputs|multirun)/\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d(-[0-9a-f]{6})?")


def console_blocks() -> list[tuple[str, int, str, list[str]]]:
    out = []
    for page, line, body in blocks("console"):
        first, *shown = body.rstrip("\n").splitlines()
        assert first.startswith("$ "), f"{page}:{line}: a console block starts with the command"
        out.append((page, line, first[2:], shown))
    return out


def _normalised(lines: list[str]) -> list[str]:
    return [RUN_FOLDER.sub(r"\1/<run>", line.rstrip()) for line in lines]


# The pages' numbers are the CPU's, and the last digit of a float differs with the vector unit the kernels use
# (AVX2, AVX-512, AMX): enough, in a run whose validation accuracy ties at two epochs, to restore the other epoch's
# weights. The pages' outputs are printed with torch's, MKL's and oneDNN's kernels held to AVX2 (MKL's
# conditional numerical reproducibility), which every x86-64 CPU of the last decade runs.
SAME_ON_EVERY_CPU = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


@pytest.mark.parametrize("page, line, command, shown", params(console_blocks()))
def test_sample_output_is_what_the_command_prints(page, line, command, shown, tmp_path):
    words = shlex.split(command)
    assert words[:2] == ["python", "train.py"], command
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "CUDA_VISIBLE_DEVICES": "", **SAME_ON_EVERY_CPU}
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # as the reader runs it (make test sets one thread)
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *words[2:]],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    printed = _normalised(done.stdout.splitlines())
    expected = _normalised(shown)
    # the page shows a stretch of what was printed, from its first line on
    start = next((i for i, text in enumerate(printed) if text == expected[0]), None)
    assert start is not None, f"{page}:{line}: {expected[0]!r} not printed; printed:\n" + "\n".join(printed[-30:])
    assert printed[start : start + len(expected)] == expected, f"{page}:{line}"
