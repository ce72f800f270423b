"""The range test and short trials of one seed where the trials could not tell the candidates apart: the deep plain
CNN (``digits-plain-cnn8-adamw``, held out) at seed 3, as ``OneCycle(max_lr="auto")`` + ``LRFinder()`` + ``Guard()``
run them at the start of its fit (the corpus arm ``auto-trials-guard``). The curve reads 0.31; the five trials
around it all end near chance; the two below the ladder learn, and the lowest of the seven is the peak.

    python recipes/range_test_corpus/tie.py     # writes tie.png next to this file (or into --out), prints the trials
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import run as study  # noqa: E402
import tasks as corpus  # noqa: E402
from common import trainer  # noqa: E402

TASK, SEED = "digits-plain-cnn8-adamw", 3


class _Stop(Exception):
    """Raised at ``on_train_start``: the range test and the trials have run, the fit itself is not needed."""


def main() -> None:
    import tempfile

    import lightning.pytorch as pl
    import torch

    from lightning_cyclic import Guard, LRFinder, OneCycle

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=HERE, help="where tie.png goes (default: next to this file)")
    args = parser.parse_args()
    study.silence()
    torch.set_num_threads(1)
    task = corpus.find(TASK)
    pl.seed_everything(SEED, verbose=False)  # the seed's initial weights and data order, as the corpus's fit
    module = study.task_module(task, None)
    finder = LRFinder(verbose=False)

    class Stop(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            raise _Stop

    with tempfile.TemporaryDirectory() as root:
        fit = trainer(root, [OneCycle(max_lr="auto", log=False), finder, Guard(verbose=False), Stop()], max_epochs=20)
        try:
            fit.fit(module, datamodule=study.task_datamodule(task))
        except _Stop:
            pass
    result = finder.result
    args.out.mkdir(parents=True, exist_ok=True)
    result.plot(args.out / "tie.png", title=f"{TASK}, seed {SEED}: the range test and the short trials")
    print(f"curve: {result.suggestion.lr:.3g}; {result.extra['trials']['reason']}; peak {result.chosen.lr:.3g}")
    print(json.dumps({"edge": result.suggestion.lr, "trials": result.extra["trials"], "peak": result.chosen.lr}))


if __name__ == "__main__":
    main()
