"""Pictures: preview a schedule before training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning_cyclic.shapes import Schedule


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("plotting needs matplotlib: pip install 'lightning-cyclic[plot]'") from err
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
    plt = _pyplot()
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
    if any(m is not None for m in moms):
        twin = ax.twinx()
        twin.plot(steps, moms, color="tab:orange", linestyle="--", label="momentum")
        twin.set_ylabel("momentum", color="tab:orange")
    if path is not None:
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    return fig
