"""How far below the edge of stability should one-cycle peak? The study behind ``EDGE_DIV``
and ``EDGE_DEPTH``.

    python recipes/lr_range_test/calibrate.py [--jobs N]

For each dataset and seed of ``benchmark.py`` it runs our range test, reads
the edge (the lr where training becomes unstable, before dividing) and how far
the log loss fell before it, and trains one-cycle with ``max_lr = edge / d``
for several divisors ``d``. It prints the mean best validation accuracy per
divisor and writes ``calibration.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import benchmark as B
from common import run_all, train

DIVISORS = [1.5, 2, 3, 4, 6, 8]


def one_seed(task):
    dataset, seed = task
    B.quiet()
    import torch

    torch.set_num_threads(1)
    import lightning.pytorch as pl

    from lightning_cyclic import lr_find
    from lightning_cyclic.suggest import finite_prefix, read_edge

    root = "/tmp/lrcal"
    datamodule, model, _ = B.build(dataset, False)
    pl.seed_everything(seed, verbose=False)
    result = lr_find(B.trainer(root), model(), datamodule=datamodule, verbose=False)
    reading = read_edge(*finite_prefix(result.lrs, result.losses))
    accs = {str(d): train(dataset, seed, False, root, reading.at / d, "onecycle")["best"] for d in DIVISORS}
    return {"dataset": dataset, "seed": seed, "edge": reading.at, "depth": reading.depth, "best": accs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default=",".join(B.DATASETS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=max(1, min(os.cpu_count() or 1, 16)))
    parser.add_argument("--out", type=Path, default=B.HERE)
    args = parser.parse_args()
    datasets = args.datasets.split(",")
    tasks = [(d, s) for d in datasets for s in range(args.seeds)]
    start = time.perf_counter()
    runs = run_all(one_seed, tasks, args.jobs)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "calibration.json").write_text(json.dumps(runs, indent=1))
    print("| dataset | edge per seed | fall before it, nats | " + " | ".join(f"edge/{d}" for d in DIVISORS) + " |")
    print("|---|---|---|" + "---|" * len(DIVISORS))
    for dataset in datasets:
        rows = [r for r in runs if r["dataset"] == dataset]
        edges = ", ".join(f"{r['edge']:.3g}" for r in rows)
        depths = ", ".join(f"{r['depth']:.2f}" for r in rows)
        cells = [f"{100 * statistics.mean(r['best'][str(d)] for r in rows):.1f}" for d in DIVISORS]
        print(f"| {dataset} | {edges} | {depths} | " + " | ".join(cells) + " |")
    print(f"\n{len(tasks)} seed runs in {time.perf_counter() - start:.0f}s with {args.jobs} processes")


if __name__ == "__main__":
    main()
