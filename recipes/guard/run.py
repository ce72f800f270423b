"""Guard: what it saves when one-cycle's peak is too bold, and what it costs when nothing goes wrong.

    python recipes/guard/run.py                 # the corpus tasks at 1, 3 and 10x their oracle lr; overhead; picture
    python recipes/guard/run.py --quick         # one task, one epoch, two repeats (CI runs it)
    python recipes/guard/run.py --report-only   # table.md and guard.png again from results.json
    python recipes/guard/run.py --overhead-only # the overhead measured again, into results.json and table.md

1. **Bold peaks.** Every task of ``recipes/range_test_corpus`` (its data, model, optimizer, batch, epochs and
   scoring) trains one-cycle at 1x, 3x and 10x the best ``max_lr`` of that study's one-cycle grid, with and
   without ``Guard()`` (its defaults), seed 0. The regret is against that study's oracle (mean over its seeds),
   in accuracy points or % of the oracle's RMSE. At 1x the Guard should do nothing (false alarms are counted).
2. **Overhead.** A tiny model (a linear layer on 4,096 random samples, batch 32, 640 steps) fits with and without
   ``Guard()``, alternately, ``--repeats`` times; the overhead is the median of the paired time ratios. A Guard
   whose hooks time themselves gives the share of the fit spent inside them, and the same timer around an empty
   callback's three hooks gives the timer's own share.
3. **Picture.** The digits MLP of ``tests/callbacks/test_guard.py`` at ``max_lr`` 3.0 (one-cycle trains it at
   0.3): the training loss and the lr each step was given, with and without the Guard, rollbacks marked.

Each finished job is appended to ``jobs.jsonl`` in ``--out``; a run started again skips the jobs there.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
HERE = Path(__file__).resolve().parent
CORPUS = HERE.parent / "range_test_corpus"
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(CORPUS))

import tasks as corpus  # noqa: E402
from common import arguments, quiet, trainer  # noqa: E402

MULTIPLES = (1, 3, 10)
QUICK_TASK = "digits-mlp-sgd"
# the Guard's rules were shaped on a digits MLP of SGD at 3-30x its lr, and its floor after false alarms on
# digits-mlp-adamw-long at 1x in this study's first pass
IN_SAMPLE = {"digits-mlp-sgd", "digits-mlp-adamw-long"}


def oracles() -> dict:
    return json.loads((CORPUS / "results.json").read_text())["derived"]["oracles"]


def bold_fit(job: dict) -> dict:
    """One-cycle at ``mult`` x the task's oracle lr, with or without a Guard: the corpus's own training run."""
    import run as study

    from lightning_cyclic import Guard

    task = next(t for t in corpus.TASKS if t.name == job["task"])
    guard = Guard(verbose=False)
    extra = [guard] if job["guard"] else []
    out = study.fit(task, job["seed"], job["lr"], "onecycle", job["epochs"], tempfile.mkdtemp(prefix="guard-"), extra)
    if job["guard"]:
        out.update(rollbacks=guard.rollbacks, lr_scale=guard.lr_scale, gave_up=guard.gave_up, events=guard.events)
    return out


HOOKS = ("on_before_backward", "on_before_optimizer_step", "on_train_batch_end", "_scale_lrs", "_unscale_lrs")


def timed(base=None):
    """A Guard (or ``base``) whose hooks (the callback's and the optimizer's step hooks) add up the seconds spent
    in them, in ``seconds[0]``: a list changed in place, since setting an attribute of the class at every call
    would make Python look every attribute of the instance up afresh (it drops its caches of the class), and the
    hooks would be timed slower than they run."""
    from lightning_cyclic import Guard

    base = base or Guard

    class Timed(base):
        seconds = [0.0]

    for name in HOOKS:
        if not hasattr(base, name):
            continue

        def clocked(self, *args, __hook=getattr(base, name), __seconds=Timed.seconds, **kwargs):  # noqa: B008
            start = time.perf_counter()
            try:
                return __hook(self, *args, **kwargs)
            finally:
                __seconds[0] += time.perf_counter() - start

        setattr(Timed, name, clocked)
    return Timed()


def idle():
    """A callback with the Guard's three training hooks, empty: timed as the Guard is, the timer's own cost."""
    import lightning.pytorch as pl

    class Idle(pl.Callback):
        def on_before_backward(self, trainer, pl_module, loss):
            pass

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            pass

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            pass

    return Idle


def tiny_fit(guard, epochs: int) -> float:
    """Seconds of a tiny model's fit (a linear layer, 4,096 samples, batch 32), with ``guard`` or none."""
    import lightning.pytorch as pl
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from lightning_cyclic import OneCycle

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(32, 10)

        def training_step(self, batch, batch_idx):
            return torch.nn.functional.cross_entropy(self.layer(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(4096, 32, generator=g), torch.randint(0, 10, (4096,), generator=g)
    pl.seed_everything(0, verbose=False)
    callbacks = [OneCycle(max_lr=0.1, log=False)] + ([guard] if guard is not None else [])
    fitting = trainer(tempfile.mkdtemp(prefix="guard-tiny-"), callbacks, max_epochs=epochs)
    start = time.perf_counter()
    fitting.fit(Tiny(), DataLoader(TensorDataset(x, y), batch_size=32))
    return time.perf_counter() - start


def _share(callback, epochs: int) -> float:
    seconds = tiny_fit(callback, epochs)
    return type(callback).seconds[0] / seconds


def overhead(repeats: int, epochs: int) -> dict:
    from lightning_cyclic import Guard

    tiny_fit(None, 1)  # warm up (imports, first allocations)
    plain, guarded, inside, timer = [], [], [], []
    for _ in range(repeats):
        plain.append(tiny_fit(None, epochs))
        guarded.append(tiny_fit(Guard(), epochs))
        inside.append(_share(timed(), epochs))
        timer.append(_share(timed(idle()), epochs))
    ratios = [g / p for p, g in zip(plain, guarded)]
    steps = 128 * epochs
    return {
        "hooks_share": statistics.median(inside),
        "timer_share": statistics.median(timer),
        "repeats": repeats,
        "steps": steps,
        "plain_s": statistics.median(plain),
        "guard_s": statistics.median(guarded),
        "overhead": statistics.median(ratios) - 1,
        "per_step_us": 1e6 * (statistics.median(guarded) - statistics.median(plain)) / steps,
    }


def picture_runs(epochs: int) -> dict:
    """The digits MLP at max_lr 3.0, with and without a Guard: loss and used lr per step, and the events."""
    import lightning.pytorch as pl
    import torch
    from sklearn.datasets import load_digits
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from lightning_cyclic import Guard, OneCycle

    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x, dtype=torch.float32) / 16, torch.tensor(y)
    runs = {}
    for guarded in (False, True):

        class MLP(pl.LightningModule):
            def __init__(self):
                super().__init__()
                self.net = nn.Sequential(
                    nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10)
                )
                self.losses: list[float] = []
                self.lrs: list[float] = []

            def training_step(self, batch, batch_idx):
                loss = nn.functional.cross_entropy(self.net(batch[0]), batch[1])
                self.losses.append(float(loss))
                return loss

            def on_before_optimizer_step(self, optimizer):
                self.lrs.append(float(optimizer.param_groups[0]["lr"]))  # inside the step: the lr it is given

            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)

        pl.seed_everything(0, verbose=False)
        model, guard = MLP(), Guard(verbose=False)
        callbacks = [OneCycle(max_lr=3.0, log=False)] + ([guard] if guarded else [])
        fitting = trainer(tempfile.mkdtemp(prefix="guard-pic-"), callbacks, max_epochs=epochs)
        fitting.fit(model, DataLoader(TensorDataset(x[:1400], y[:1400]), batch_size=32, shuffle=True))
        with torch.no_grad():
            accuracy = float((model.net(x[1400:]).argmax(1) == y[1400:]).float().mean())
        runs["guard" if guarded else "plain"] = {
            "losses": model.losses,
            "lrs": model.lrs,
            "accuracy": accuracy,
            "events": guard.events if guarded else [],
        }
    return runs


# --- report ---------------------------------------------------------------------------------------


def regret(metric: str, oracle: float, value: float) -> float:
    return 100 * (oracle - value) if metric == "acc" else 100 * (value - oracle) / oracle


def report(results: dict) -> str:
    lines = ["### Bold peaks: regret against the one-cycle oracle (points, or % of RMSE), seed 0", ""]
    lines.append(
        "| task | metric | oracle lr | "
        + " | ".join(f"{m}x: no guard / Guard (rollbacks)" for m in results["multiples"])
        + " |"
    )
    lines.append("|---|---|---|" + "---|" * len(results["multiples"]))
    by = {(j["task"], j["mult"], j["guard"]): j for j in results["bold"] if "error" not in j}
    rows = {}
    for name, oracle in results["oracles"].items():
        cells = []
        for m in results["multiples"]:
            plain, guarded = by.get((name, m, False)), by.get((name, m, True))
            if plain is None or guarded is None:
                cells.append("not run")
                continue
            a = regret(oracle["metric"], oracle["best"], plain["best"])
            b = regret(oracle["metric"], oracle["best"], guarded["best"])
            rows.setdefault(m, []).append((a, b, guarded["rollbacks"], name))
            cells.append(
                f"{a:.1f} / **{b:.1f}** ({guarded['rollbacks']})"
                if b < a - 1
                else f"{a:.1f} / {b:.1f} ({guarded['rollbacks']})"
            )
        mark = " (in-sample)" if name in IN_SAMPLE else ""
        lines.append(f"| {name}{mark} | {oracle['metric']} | {oracle['best_lr']:.3g} | " + " | ".join(cells) + " |")
    lines += ["", "| peak | tasks | median regret: no guard / Guard | worst: no guard / Guard | runs with a rollback |"]
    lines.append("|---|---|---|---|---|")
    for which, keep in (("all", lambda n: True), ("held out", lambda n: n not in IN_SAMPLE)):
        for m, values in rows.items():
            values = [v for v in values if keep(v[3])]
            if not values:
                continue
            plain, guarded = [v[0] for v in values], [v[1] for v in values]
            rolled = sum(1 for v in values if v[2])
            lines.append(
                f"| {m}x oracle, {which} | {len(values)} | {statistics.median(plain):.2f} / "
                f"{statistics.median(guarded):.2f} | {max(plain):.1f} / {max(guarded):.1f} | "
                f"{rolled} of {len(values)} |"
            )
    o = results.get("overhead")
    if o:
        lines += [
            "",
            f"### Overhead when nothing goes wrong: a tiny model, {o['steps']} steps, {o['repeats']} paired fits",
            "",
            "| fit without Guard (median) | with Guard (median) | fit difference (median of paired ratios) | "
            "per step | time inside the Guard's hooks (median share of the fit) | the timer alone (the same hooks, "
            "empty) |",
            "|---|---|---|---|---|---|",
            f"| {o['plain_s']:.3f} s | {o['guard_s']:.3f} s | {100 * o['overhead']:+.2f}% | "
            f"{o['per_step_us']:+.1f} µs | {100 * o['hooks_share']:.2f}% | "
            + (f"{100 * o['timer_share']:.2f}% |" if "timer_share" in o else "not measured |"),
        ]
    p = results.get("picture")
    if p:
        lines += [
            "",
            f"Picture run (digits MLP, one-cycle max_lr 3.0): accuracy {100 * p['plain']['accuracy']:.1f}% without "
            f"the Guard, {100 * p['guard']['accuracy']:.1f}% with it ({len(p['guard']['events'])} rollbacks).",
        ]
    return "\n".join(lines)


def plot(results: dict, path: Path):
    """``guard.png``: the picture runs' loss and lr per step, rollbacks marked; returns the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["picture"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True, height_ratios=(3, 2))
    colours = {"plain": "tab:red", "guard": "tab:blue"}
    names = {
        "plain": f"no guard ({100 * runs['plain']['accuracy']:.0f}% accuracy)",
        "guard": f"Guard ({100 * runs['guard']['accuracy']:.0f}% accuracy)",
    }
    for key in ("plain", "guard"):
        losses = runs[key]["losses"]
        top.plot(range(len(losses)), losses, color=colours[key], lw=0.8, alpha=0.85, label=names[key])
        bottom.plot(range(len(runs[key]["lrs"])), runs[key]["lrs"], color=colours[key], lw=1.2, label=names[key])
    for i, event in enumerate(runs["guard"]["events"]):
        for ax in (top, bottom):
            ax.axvline(event["step"], color="black", ls=":", lw=1, label="rollback" if i == 0 and ax is top else None)
        top.annotate(
            f"back to {event['restored_step']}, lr x{event['lr_scale']:g}",
            (event["step"], 0.9 - 0.1 * (i % 4)),
            xycoords=("data", "axes fraction"),
            fontsize=8,
            ha="left",
            xytext=(3, 0),
            textcoords="offset points",
        )
    top.set_yscale("log")
    top.set_ylabel("training loss (per step)")
    top.set_title("One-cycle at 10x a digits MLP's lr: the Guard rolls back and lowers the peak")
    top.legend(loc="lower left", fontsize=8)
    bottom.set_ylabel("lr each step was given")
    bottom.set_xlabel("optimizer step")
    bottom.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


# --- main -----------------------------------------------------------------------------------------


def main() -> None:
    parser = arguments(__doc__, HERE, seeds=1, quick="one task, one epoch, two repeats: a smoke run")
    parser.add_argument("--repeats", type=int, default=15, help="paired fits of the overhead measurement")
    parser.add_argument("--report-only", action="store_true", help="table.md and guard.png from results.json")
    parser.add_argument("--overhead-only", action="store_true", help="measure the overhead again into results.json")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    if args.report_only:
        results = json.loads(results_path.read_text())
    elif args.overhead_only:
        quiet()
        import torch

        torch.set_num_threads(1)
        results = json.loads(results_path.read_text())
        results["overhead"] = overhead(args.repeats, 5)
        results_path.write_text(json.dumps(results, indent=1))
    else:
        quiet()
        import torch

        torch.set_num_threads(1)
        known = oracles()
        names = [QUICK_TASK] if args.quick else [t.name for t in corpus.available() if t.name in known]
        multiples = (1, 10) if args.quick else MULTIPLES
        journal = args.out / "jobs.jsonl"
        done = {}
        if journal.exists():
            for line in journal.read_text().splitlines():
                job = json.loads(line)
                done[(job["task"], job["mult"], job["guard"], job["epochs"])] = job
        bold = []
        for name in names:
            task = next(t for t in corpus.TASKS if t.name == name)
            epochs = 1 if args.quick else task.epochs
            for mult in multiples:
                for guarded in (False, True):
                    key = (name, mult, guarded, epochs)
                    if key not in done:
                        job = {"task": name, "mult": mult, "guard": guarded, "epochs": epochs, "seed": 0}
                        job["lr"] = mult * known[name]["onecycle"]["best_lr"]
                        try:
                            job.update(bold_fit(job))
                        except Exception as err:  # recorded, not fatal: the table says "not run"
                            job["error"] = repr(err)
                        with journal.open("a") as f:
                            f.write(json.dumps(job) + "\n")
                        done[key] = job
                        print(f"{name} {mult}x guard={guarded}: {job.get('best', job.get('error'))}", flush=True)
                    bold.append(done[key])
        results = {
            "multiples": list(multiples),
            "oracles": {n: {"metric": known[n]["metric"], **known[n]["onecycle"]} for n in names},
            "bold": bold,
            "overhead": overhead(2 if args.quick else args.repeats, 1 if args.quick else 5),
            "picture": picture_runs(1 if args.quick else 10),
        }
        results_path.write_text(json.dumps(results, indent=1))
    table = report(results)
    (args.out / "table.md").write_text(table + "\n")
    if not args.overhead_only:  # (the picture's runs are as they were)
        import matplotlib.pyplot as plt

        plt.close(plot(results, args.out / "guard.png"))
    print(table)


if __name__ == "__main__":
    main()
