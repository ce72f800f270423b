"""``lightning-cyclic``, the command line: ``lightning-cyclic train schedule=onecycle``.

``python -m lightning_cyclic`` is the same. ``train`` is the app that ``python train.py`` runs in a clone: Hydra's
command line, with the configs from the installed package (``pkg://lightning_cyclic.conf``) and any folder of
your own beside them (``--config-dir``). ``train`` is also what runs when the first argument is an override or a
Hydra flag, which is how Lightning's DDP launcher starts the other ranks (it repeats the command line).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from lightning_cyclic._extras import is_missing_extra

USAGE = """\
usage: lightning-cyclic train [HYDRA FLAGS] [OVERRIDES]   train a model (Hydra's command line)
       lightning-cyclic configs [--path]                  the config groups and their options
       lightning-cyclic --version | --help

  lightning-cyclic train schedule=warm_restarts data=mnist1d model=cnn1d schedule.max_lr=auto
  lightning-cyclic train -m schedule=onecycle,cyclical seed=0,1      a sweep; a leaderboard at its end
  lightning-cyclic train --config-dir my_conf model=my_net           your own config groups beside ours
  lightning-cyclic train --help                                      Hydra's help: every group and option
  lightning-cyclic train --cfg job                                   print the composed config, train nothing

python -m lightning_cyclic takes the same arguments. Without the [app] extra, train says what to install:
pip install "lightning-cyclic[app]".
"""

COMMANDS = ("train", "configs")


def config_dir() -> Path:
    """The folder of the packaged configs (``pkg://lightning_cyclic.conf``)."""
    return Path(__file__).resolve().parent / "conf"


def configs(args: list[str]) -> int:
    """Print the config groups and their options (``--path``: only the folder, to copy and change)."""
    folder = config_dir()
    if args == ["--path"]:
        print(folder)
        return 0
    if args:
        print(f"error: configs takes --path or nothing, got {' '.join(args)}", file=sys.stderr)
        return 2
    print(f"configs in {folder} (pkg://lightning_cyclic.conf); choose one per group with group=option")
    groups = sorted({p.parent.relative_to(folder).as_posix() for p in folder.rglob("*.yaml")} - {"."})
    width = max(len(g) for g in groups)
    for group in groups:
        names = sorted(p.stem for p in (folder / group).glob("*.yaml"))
        print(f"  {group:<{width}}  {', '.join(names)}")
    return 0


def _run(cfg: Any) -> float | None:
    """The Hydra task: the app (imported here, so that ``--help``, ``--cfg`` and config errors need no torch)."""
    from lightning_cyclic.run import main as run

    return run(cfg)


def train(args: list[str]) -> None:
    """The Hydra app on ``args`` (what ``python train.py args`` does in a clone)."""
    from lightning_cyclic._extras import needs

    with needs("app", "lightning-cyclic train"):
        import hydra  # noqa: F401
        import omegaconf  # noqa: F401

    # Hydra reads sys.argv; without the command name in it, Lightning's DDP launcher (which starts each rank with
    # this file and these arguments) runs the same command on every rank
    sys.argv = [sys.argv[0], *args]
    from lightning_cyclic.run import hydra_app

    hydra_app(_run)()


def main(argv: list[str] | None = None) -> int | None:
    args = sys.argv[1:] if argv is None else list(argv)
    first = args[0] if args else ""
    try:
        if first in ("", "-h", "--help", "help"):
            print(USAGE, end="")
            return 0
        if first in ("-V", "--version"):
            from lightning_cyclic import __version__

            print(f"lightning-cyclic {__version__}")
            return 0
        if first == "configs":
            return configs(args[1:])
        if first == "train":
            train(args[1:])
            return 0
        if "=" in first or first.startswith(("-", "+", "~")):  # an override or a Hydra flag: train
            train(args)
            return 0
    except ModuleNotFoundError as err:
        if not is_missing_extra(err):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"error: unknown command {first!r}; the commands are {', '.join(COMMANDS)} (--help)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
