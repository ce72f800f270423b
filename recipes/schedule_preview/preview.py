"""Preview every schedule over the same run: ``python recipes/schedule_preview/preview.py``.

Writes ``docs/schedules.png``: 10 epochs of 50 optimizer steps, lr (solid) and momentum (dashed).
"""

from pathlib import Path

from lightning_cyclic import (
    CustomSchedule,
    Cyclical,
    OneCycle,
    Sequential,
    WarmRestarts,
    WarmupDecay,
    WarmupStableDecay,
    plot_schedule,
)
from lightning_cyclic.plot import pyplot
from lightning_cyclic.shapes import LambdaSchedule

EPOCHS, STEPS_PER_EPOCH = 10, 50
SCHEDULES = {
    "OneCycle(max_lr=0.1)": OneCycle(max_lr=0.1),
    "OneCycle(three_phase=True, anneal='linear')": OneCycle(max_lr=0.1, three_phase=True, anneal="linear"),
    "Cyclical(mode='triangular2', step_size_up=1 epoch)": Cyclical(
        base_lr=0.01, max_lr=0.1, step_size_up=1, mode="triangular2", interval="epoch"
    ),
    "Cyclical(mode='exp_range', gamma=0.998)": Cyclical(
        base_lr=0.01, max_lr=0.1, step_size_up=1, mode="exp_range", gamma=0.998, interval="epoch"
    ),
    "WarmRestarts(cycle_len=1, cycle_mult=2)": WarmRestarts(
        max_lr=0.1, cycle_len=1, cycle_mult=2, min_lr=1e-3, moms=(0.95, 0.85), interval="epoch"
    ),
    "WarmRestarts(cycle_decay=0.7, warmup=0.5)": WarmRestarts(
        max_lr=0.1, cycle_len=2, cycle_decay=0.7, warmup=0.5, interval="epoch"
    ),
    "WarmupDecay(warmup=1, decay='cosine')": WarmupDecay(max_lr=0.1, warmup=1, decay="cosine", interval="epoch"),
    "WarmupDecay(warmup=1, decay='multistep')": WarmupDecay(
        max_lr=0.1, warmup=1, decay="multistep", milestones=[4, 7], interval="epoch"
    ),
    "WarmRestarts(restart_warmup=0.3, k_decay=2)": WarmRestarts(
        max_lr=0.1, cycle_len=2.5, restart_warmup=0.3, k_decay=2, interval="epoch"
    ),
    "WarmRestarts(cycle_mult=0.6, cycle_limit=4)": WarmRestarts(
        max_lr=0.1, cycle_len=4, cycle_mult=0.6, cycle_limit=4, interval="epoch"
    ),
    "WarmupStableDecay(warmup=1, decay_pct=0.2)": WarmupStableDecay(max_lr=0.1, warmup=1, interval="epoch"),
    "WarmupStableDecay(anneal='linear', min_lr=0.01)": WarmupStableDecay(
        max_lr=0.1, warmup=0.5, decay_len=3, anneal="linear", min_lr=0.01, interval="epoch"
    ),
    "Sequential: constant, then OneCycle from epoch 3": Sequential(
        [WarmupDecay(max_lr=0.02, decay="constant"), OneCycle(max_lr=0.1)], boundaries=[3], interval="epoch"
    ),
    "LambdaSchedule: fn(p) = (1 - p) ** 2": CustomSchedule(LambdaSchedule, max_lr=0.1, fn=lambda p: (1 - p) ** 2),
}


OUT = Path(__file__).resolve().parents[2] / "docs" / "schedules.png"


def draw(path: Path = OUT):
    """Every schedule of ``SCHEDULES`` in one figure, saved at ``path``; returns the figure."""
    plt = pyplot()
    rows = (len(SCHEDULES) + 1) // 2
    fig, axes = plt.subplots(rows, 2, figsize=(11, 2.75 * rows))
    for ax, (title, callback) in zip(axes.flat, SCHEDULES.items()):
        plot_schedule(callback, EPOCHS * STEPS_PER_EPOCH, steps_per_epoch=STEPS_PER_EPOCH, title=title, ax=ax)
    fig.suptitle(f"lr (solid) and momentum (dashed) over {EPOCHS} epochs of {STEPS_PER_EPOCH} steps")
    fig.tight_layout(rect=(0, 0, 1, 0.985))  # room for the suptitle
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return fig


def main(path: Path = OUT) -> Path:
    draw(path)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
