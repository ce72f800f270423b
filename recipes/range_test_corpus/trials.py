"""Short trials as a second signal for ``max_lr="auto"``: the data.

For every task and seed of the corpus, from the seed's initial weights and data order (those of the
corpus's range tests and grid), one-cycle runs compressed to a short budget at a ladder of candidate peaks
around the ``edge`` suggestion of the corpus's range test (``ours edge (val)``, LRFinder's default), and
records what a finder could read after each: the loss on the validation split (full, and its first 4
batches as the range test reads it), the training loss over the trial's last quarter, and, for reference
only (no rule may read it), the held-out score.

    python recipes/range_test_corpus/trials.py [--tasks a,b] [--seeds 3]

Every finished trial is appended to ``trials.jsonl`` next to this file; started again, the script skips
the trials already there. ``analyse_trials.py`` reads the journal and scores rules on the oracle grid.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import run as study  # noqa: E402
import tasks as corpus  # noqa: E402
from common import trainer  # noqa: E402

LADDER = (-4, -3, -2, -1, 0, 1, 2)  # candidates: edge * 2 ** j
BUDGETS = (0.02, 0.03, 0.1)  # a trial's share of the task's run
FLOOR = 30  # optimizer steps a trial takes at least


def edges(journal: Path) -> dict[tuple[str, int], float]:
    out = {}
    for line in journal.read_text().splitlines():
        job = json.loads(line)
        if job["kind"] == "range_tests" and "finders" in job:
            out[(job["task"], job["seed"])] = job["finders"]["ours edge (val)"]["lr"]
    return out


def trial_steps(task: corpus.Task, budget: float) -> int:
    return max(FLOOR, round(budget * corpus.total_steps(task)))


def losses_of(net, task: corpus.Task, x, y, batches: int | None = None) -> float:
    import torch

    loss = corpus.criterion(task)
    was = net.training
    net.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for i, (xb, yb) in enumerate(zip(x.split(task.batch), y.split(task.batch))):
            if batches is not None and i == batches:
                break
            total += float(loss(net(xb), yb)) * len(xb)
            n += len(xb)
    net.train(was)
    return total / n


def trial(task: corpus.Task, seed: int, lr: float, steps: int, root: str) -> dict:
    import lightning.pytorch as pl

    from lightning_cyclic import OneCycle

    data = corpus.load(task)
    pl.seed_everything(seed, verbose=False)
    module = study.task_module(task)
    module.lr = lr
    seen: list[float] = []

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append(float(outputs["loss"]) if isinstance(outputs, dict) else float(outputs))

    start = time.perf_counter()
    fitted = trainer(root, [OneCycle(max_lr=lr, log=False), Record()], max_steps=steps, max_epochs=-1)
    fitted.fit(module, train_dataloaders=study.loader(data.x_train, data.y_train, task.batch, shuffle=True))
    net = module.net
    tail = seen[-max(1, len(seen) // 4) :]
    tail_loss = sum(tail) / len(tail) if all(math.isfinite(v) for v in tail) else math.inf
    out = {
        "train_tail": tail_loss,
        "val": losses_of(net, task, data.x_val, data.y_val),
        "val4": losses_of(net, task, data.x_val, data.y_val, batches=4),
        "score": study.score(net, task),
        "seconds": time.perf_counter() - start,
        "steps": fitted.global_step,
    }
    return {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=None)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "trials.jsonl")
    args = parser.parse_args()
    study.silence()
    import torch

    torch.set_num_threads(1)
    found = edges(HERE / "jobs.jsonl")
    names = args.tasks.split(",") if args.tasks else [t.name for t in corpus.TASKS]
    done = set()
    if args.out.exists():
        for line in args.out.read_text().splitlines():
            job = json.loads(line)
            if "error" not in job:
                done.add((job["task"], job["seed"], job["j"], job["budget"]))
    root = tempfile.mkdtemp(prefix="trials-")
    for task in corpus.TASKS:
        if task.name not in names or (task.needs == "fashion" and not corpus.fashion_available()):
            continue
        for seed in range(args.seeds):
            edge = found.get((task.name, seed))
            if edge is None:
                continue
            for budget in BUDGETS:
                for j in LADDER:
                    if (task.name, seed, j, budget) in done:
                        continue
                    lr = edge * 2.0**j
                    job = {"task": task.name, "seed": seed, "j": j, "budget": budget, "edge": edge, "lr": lr}
                    steps = trial_steps(task, budget)
                    try:
                        job.update(trial(task, seed, lr, steps, root))
                    except Exception:
                        job["error"] = traceback.format_exc(limit=6)
                    with args.out.open("a") as f:
                        f.write(json.dumps(job) + "\n")
                    print(task.name, seed, budget, j, job.get("val"), job.get("train_tail"), flush=True)


if __name__ == "__main__":
    main()
