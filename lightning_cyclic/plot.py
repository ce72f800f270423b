"""Pictures: preview a schedule before training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning_cyclic._extras import needs
from lightning_cyclic.shapes import Schedule


def pyplot() -> Any:
    """pyplot, on the Agg backend (files only, no window) unless the user's session chose one: a backend set
    with ``MPLBACKEND``, pyplot already imported (the user's own backend), or a Jupyter kernel (figures show
    inline: every plotting function returns its figure). Every picture of the package draws through it."""
    import os
    import sys

    with needs("plot", "plotting"):
        import matplotlib

        chosen = "matplotlib.pyplot" in sys.modules or os.environ.get("MPLBACKEND") or "ipykernel" in sys.modules
        if not chosen:
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    return plt


def schedule_curve(schedule: Any, total_steps: int, steps_per_epoch: int = 1) -> tuple[list, list, list]:
    """``(steps, lrs, momentums)`` of a schedule or schedule callback over ``total_steps`` steps."""
    if not isinstance(schedule, Schedule):
        build = getattr(schedule, "build", None)
        if build is None:
            raise TypeError(f"schedule must be a Schedule or a schedule callback, got {type(schedule).__name__}")
        schedule = build(total_steps=total_steps, steps_per_epoch=steps_per_epoch)
    steps = list(range(int(total_steps)))
    pairs = [schedule(k) for k in steps]
    return steps, [p[0] for p in pairs], [p[1] for p in pairs]


def plot_schedule(
    schedule: Any,
    total_steps: int,
    path: str | Path | None = None,
    steps_per_epoch: int = 1,
    title: str | None = None,
    ax: Any = None,
) -> Any:
    """Plot lr (and momentum, where the schedule cycles it) over a run of ``total_steps``.

    ``schedule`` is a :class:`~lightning_cyclic.shapes.Schedule` or a schedule
    callback (``OneCycle(...)``; ``steps_per_epoch`` then converts its epoch
    lengths). Saves a PNG at ``path`` if given; returns the matplotlib figure.
    """
    plt = pyplot()
    steps, lrs, moms = schedule_curve(schedule, total_steps, steps_per_epoch)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 3.2))
    else:
        fig = ax.figure
    ax.plot(steps, lrs, color="tab:blue", label="lr")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("lr", color="tab:blue")
    ax.set_title(title or repr(schedule).split("(")[0])
    ax.grid(alpha=0.3)
    handles = ax.get_lines()[-1:]
    if any(m is not None for m in moms):
        twin = ax.twinx()
        handles += twin.plot(steps, moms, color="tab:orange", linestyle="--", label="momentum")
        twin.set_ylabel("momentum", color="tab:orange")
    ax.legend(handles=handles, fontsize=8, loc="upper right")
    if path is not None:
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    return fig


def _read_metrics(path: str | Path) -> dict[str, list[tuple[float, float]]]:
    """Columns of a Lightning CSVLogger ``metrics.csv`` as ``{name: [(step, value), ...]}``."""
    import csv

    out: dict[str, list[tuple[float, float]]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            step = float(row.get("step") or 0)
            for key, value in row.items():
                if key == "step" or value in ("", None):
                    continue
                out.setdefault(key, []).append((step, float(value)))
    return out


def centred_mean(values: list[float], window: int) -> list[float]:
    """Mean over a window centred on each value (``window`` odd; shorter at the ends): no lag behind the data,
    as a trailing average would have."""
    half = window // 2
    out = []
    for i in range(len(values)):
        part = values[max(i - half, 0) : i + half + 1]
        out.append(sum(part) / len(part))
    return out


def plot_training_curves(
    metrics_csv: str | Path, path: str | Path | None = None, title: str | None = None, schedule: Any = None
) -> Any:
    """Training curves from a CSVLogger's ``metrics.csv``: the training loss with a centred mean and the
    validation loss (left), accuracy (right), and the lr on a second axis of each.

    ``schedule`` (a :class:`~lightning_cyclic.shapes.Schedule`, or any ``step -> (lr, momentum)``) draws the lr
    exactly, at every optimizer step of the logged range; without it the logged ``lr`` column is drawn, one
    point per ``log_every_n_steps``. Every line has a legend entry. Returns the figure (saved at ``path`` if given).
    """
    plt = pyplot()
    m = _read_metrics(metrics_csv)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    train = m.get("train/loss_step") or m.get("train/loss") or []
    if train:
        steps, losses = zip(*train)
        left.plot(steps, losses, color="0.7", linewidth=0.8, label="train loss (as logged)")
        window = max(len(losses) // 10, 1) * 2 + 1
        label = f"train loss, centred mean of {window}"
        left.plot(steps, centred_mean(list(losses), window), color="tab:blue", label=label)
    if m.get("val/loss"):
        left.plot(*zip(*m["val/loss"]), "o-", color="tab:orange", markersize=3, label="val loss")
    left.set_xlabel("optimizer step")
    left.set_ylabel("loss")
    for key, style, colour in (("val/acc", "o-", "tab:orange"), ("train/acc", "s--", "tab:blue")):
        if m.get(key):
            right.plot(*zip(*m[key]), style, color=colour, markersize=3, label=key)
    right.set_xlabel("optimizer step")
    right.set_ylabel("accuracy")
    logged = [step for column in m.values() for step, _ in column]
    if schedule is not None and logged:
        first = 0 if m.get("epoch", [(0, 1)])[0][1] == 0 else int(min(logged))  # step 0, or where a resume began
        xs = list(range(first, int(max(logged)) + 1))
        lr: list[tuple[float, float]] = [(x, schedule(x)[0]) for x in xs]
        lr_label = "lr (the schedule, every step)"
    else:
        lr = m.get("lr") or []
        lr_label = "lr (as logged)"
    for ax, where in ((left, "upper right"), (right, "lower right")):
        ax.grid(alpha=0.3)
        handles = list(ax.get_lines())
        if lr:
            twin = ax.twinx()
            handles += twin.plot(*zip(*lr), color="tab:red", alpha=0.6, linewidth=1, label=lr_label)
            twin.set_ylabel("lr", color="tab:red")
        if handles:
            ax.legend(handles=handles, fontsize=8, loc=where)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig
