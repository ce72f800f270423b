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

import cliff  # noqa: E402
import run as study  # noqa: E402
import tasks as corpus  # noqa: E402

TASK, SEED = "digits-plain-cnn8-adamw", 3


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=HERE, help="where tie.png goes (default: next to this file)")
    args = parser.parse_args()
    study.silence()
    torch.set_num_threads(1)
    task = corpus.find(TASK)
    result = cliff.start_of_fit(task, SEED, task.epochs)  # (as shipped: the settings the corpus's fit ran with)
    args.out.mkdir(parents=True, exist_ok=True)
    result.plot(args.out / "tie.png", title=f"{TASK}, seed {SEED}: the range test and the short trials")
    print(f"curve: {result.suggestion.lr:.3g}; {result.extra['trials']['reason']}; peak {result.chosen.lr:.3g}")
    print(json.dumps({"edge": result.suggestion.lr, "trials": result.extra["trials"], "peak": result.chosen.lr}))


if __name__ == "__main__":
    main()
