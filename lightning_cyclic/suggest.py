"""Reading a good lr off a range-test curve: the suggestion rules, in plain Python.

Every rule takes the lrs and the raw losses of a range test and returns a
:class:`Suggestion`: the lr, the range of lrs the rule considers good, and a
reason. Where no sound suggestion exists (too few points, the loss never
falls, everything NaN) ``lr`` is ``None`` and ``reason`` says why; no rule raises.

    edge       (default) the lr where training becomes unstable (the loss turns
               back up towards its start), read robustly from the curve, divided
               by 1.5 to 3 (more, the further the loss fell before it); good
               range: from where the loss starts to fall up to that.
    valley     fastai's rule: the longest stretch of falling smoothed loss, taken
               between a third and a half of the way down it.
    steepest   steepest descent of the smoothed loss per unit of log(lr).
    minimum    the lr at the smoothed loss's minimum, divided by 10 (Geron).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from lightning_cyclic.shapes._checks import check_choice, check_number

MIN_POINTS = 10


@dataclass(frozen=True)
class Suggestion:
    """A rule's reading of a range-test curve."""

    rule: str
    lr: float | None
    low: float | None = None  # the good range, as that rule sees it
    high: float | None = None
    index: int | None = None  # position of ``lr`` on the curve, where it is a point of it
    reason: str = ""

    def __bool__(self) -> bool:
        return self.lr is not None

    def to_dict(self) -> dict:
        return asdict(self)


def ema(losses: Sequence[float], beta: float) -> list[float]:
    """Debiased exponential moving average (as Adam debiases its moments): ``beta=0`` is no smoothing."""
    out, avg = [], 0.0
    for i, loss in enumerate(losses):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta ** (i + 1)))
    return out


def finite_prefix(lrs: Sequence[float], losses: Sequence[float]) -> tuple[list[float], list[float]]:
    """The curve up to (not including) the first NaN/inf loss."""
    n = 0
    for loss in losses:
        if not math.isfinite(loss):
            break
        n += 1
    return list(lrs[:n]), list(losses[:n])


def _log_slope(lrs: Sequence[float], values: Sequence[float]) -> list[float]:
    """d value / d log(lr), central differences inside, one-sided at the ends."""
    x = [math.log(lr) for lr in lrs]
    n = len(values)
    slope = []
    for i in range(n):
        lo, hi = max(i - 1, 0), min(i + 1, n - 1)
        slope.append((values[hi] - values[lo]) / (x[hi] - x[lo]) if x[hi] != x[lo] else 0.0)
    return slope


def valley(lrs: Sequence[float], raw: Sequence[float], smoothed: Sequence[float]) -> Suggestion:
    """fastai's ``valley``: longest strictly falling subsequence; its point between 1/3 and 1/2 down."""
    n = len(smoothed)
    run = [1] * n
    start = end = 0
    for i in range(1, n):
        for j in range(i):
            if smoothed[i] < smoothed[j] and run[i] < run[j] + 1:
                run[i] = run[j] + 1
        if run[end] < run[i]:
            end = i
            start = end - run[end]
    sections = (end - start) / 3
    idx = start + int(sections) + int(sections / 2)
    start = max(start, 0)
    return Suggestion("valley", lrs[idx], lrs[start], lrs[end], idx, f"longest valley: points {start}..{end}")


def steepest(lrs: Sequence[float], raw: Sequence[float], smoothed: Sequence[float]) -> Suggestion:
    """Steepest descent of the smoothed loss in log-lr space; good range: slope within half of the steepest."""
    slope = _log_slope(lrs, smoothed)
    idx = min(range(len(slope)), key=slope.__getitem__)
    if slope[idx] >= 0:
        return Suggestion("steepest", None, reason="the smoothed loss never falls")
    lo = hi = idx
    while lo > 0 and slope[lo - 1] <= slope[idx] / 2:
        lo -= 1
    while hi < len(slope) - 1 and slope[hi + 1] <= slope[idx] / 2:
        hi += 1
    return Suggestion("steepest", lrs[idx], lrs[lo], lrs[hi], idx, f"slope {slope[idx]:.3g} per unit log(lr)")


def minimum(lrs: Sequence[float], raw: Sequence[float], smoothed: Sequence[float]) -> Suggestion:
    """The lr at the minimum of the smoothed loss, divided by 10; good range: one to two decades below it."""
    idx = min(range(len(smoothed)), key=smoothed.__getitem__)
    at = lrs[idx]
    return Suggestion("minimum", at / 10, at / 100, at / 10, None, f"minimum {smoothed[idx]:.4g} at lr {at:.3g}")


def running_median(values: Sequence[float], window: int = 5) -> list[float]:
    """Centred running median: removes single-step spikes without the lag of a moving average."""
    half = window // 2
    out = []
    for i in range(len(values)):
        part = sorted(values[max(i - half, 0) : i + half + 1])
        m = len(part)
        out.append(part[m // 2] if m % 2 else (part[m // 2 - 1] + part[m // 2]) / 2)
    return out


def _crossing(lrs: Sequence[float], values: Sequence[float], i: int, level: float) -> float:
    """The lr between points ``i - 1`` and ``i`` where ``values`` crosses ``level``, interpolated in log lr."""
    if i == 0 or values[i] == values[i - 1]:
        return lrs[i]
    t = min(max((level - values[i - 1]) / (values[i] - values[i - 1]), 0.0), 1.0)
    return math.exp(math.log(lrs[i - 1]) + t * (math.log(lrs[i]) - math.log(lrs[i - 1])))


EDGE_LEVELS = (0.25, 0.5, 1.0)  # how far the loss has climbed back from its minimum towards its start
EDGE_WINDOW = 0.5  # decades of lr in the running median
# How far below the edge one-cycle should peak (recipes/lr_range_test/calibrate.py): a divisor that
# moves geometrically from EDGE_DIV[0] to EDGE_DIV[1] as the fall of the log loss before the edge
# grows from EDGE_DEPTH[0] to EDGE_DEPTH[1] nats.
EDGE_DIV = (1.5, 3.0)
EDGE_DEPTH = (0.1, 0.3)


@dataclass(frozen=True)
class EdgeReading:
    """Where a range-test curve becomes unstable, before any division."""

    at: float  # the edge: geometric mean of the climb-back crossings
    depth: float  # how far the loss fell before it, in nats of log loss (``inf`` where losses are not positive)
    low: float  # where the loss had fallen a tenth of the way to its minimum
    levels: int  # how many of ``EDGE_LEVELS`` the curve reached


def edge_divisor(depth: float) -> float:
    """``EDGE_DIV[0]`` for a curve whose log loss fell at most ``EDGE_DEPTH[0]`` before the edge,
    ``EDGE_DIV[1]`` from ``EDGE_DEPTH[1]`` on, geometric in between."""
    t = min(max((depth - EDGE_DEPTH[0]) / (EDGE_DEPTH[1] - EDGE_DEPTH[0]), 0.0), 1.0)
    return EDGE_DIV[0] * (EDGE_DIV[1] / EDGE_DIV[0]) ** t


def read_edge(lrs: Sequence[float], raw: Sequence[float]) -> EdgeReading | None:
    """The edge of a curve of finite losses (see :func:`edge`), or ``None`` where the loss never turns back up."""
    positive = min(raw) > 0
    values = [math.log(x) for x in raw] if positive else list(raw)
    decades = math.log10(lrs[-1] / lrs[0]) if lrs[-1] > lrs[0] > 0 else 1.0
    window = max(3, round(EDGE_WINDOW * (len(lrs) - 1) / decades) // 2 * 2 + 1)
    f = running_median(values, window)
    i_min = min(range(len(f)), key=f.__getitem__)
    head = max(len(f) // 10, 3)
    start = sum(f[:head]) / head
    low_loss = f[i_min]
    crossings = []
    for q in EDGE_LEVELS:
        level = low_loss + q * (start - low_loss)
        i = next((i for i in range(i_min + 1, len(f)) if f[i] >= level), None)
        if i is not None:
            crossings.append(_crossing(lrs, f, i, level))
    if not crossings:
        return None
    at = math.exp(sum(math.log(x) for x in crossings) / len(crossings))
    fall = start - 0.1 * (start - low_loss)
    i_low = next((i for i in range(len(f)) if f[i] <= fall), i_min)
    depth = start - low_loss if positive else math.inf
    return EdgeReading(at, depth, _crossing(lrs, f, i_low, fall), len(crossings))


def edge(
    lrs: Sequence[float], raw: Sequence[float], smoothed: Sequence[float], edge_div: float | None = None
) -> Suggestion:
    """The lr where training becomes unstable, divided by ``edge_div`` (default: :func:`edge_divisor`).

    Past the loss's minimum, the lrs where the loss has climbed back a
    quarter, half and all of the way to its starting value are read off the
    curve, each interpolated in log lr between the two points around it; the
    *edge* is their geometric mean. The curve is first cleaned with a centred
    running median over half a decade of lr (no lag, spikes removed), on log
    losses where all losses are positive. The loss turns up steeply there, so
    the edge moves far less from seed to seed than the minimum or the
    steepest point of a noisy curve; one-cycle's peak lr belongs close below
    it. How far below depends on how much the loss fell before the edge: on a
    curve that fell by less than ``EDGE_DEPTH[0]`` nats (a model that had
    barely started to learn) the climb-back levels are a fraction of a small
    fall, crossed by rises that come before the loss runs away, so the edge
    is read early and is divided by ``EDGE_DIV[0]``; a curve that fell by
    ``EDGE_DEPTH[1]`` nats or more turns up where training truly runs away,
    and is divided by ``EDGE_DIV[1]``. Good range: from where the loss has
    fallen a tenth of the way to its minimum, up to the suggestion.
    """
    reading = read_edge(lrs, raw)
    if reading is None:
        return Suggestion(
            "edge",
            None,
            reason="the loss never turned back up after its minimum: raise max_lr (or num_steps) so the test "
            "reaches the lr where training becomes unstable",
        )
    div = edge_divisor(reading.depth) if edge_div is None else edge_div
    lr = reading.at / div
    levels = "" if reading.levels == len(EDGE_LEVELS) else f" ({reading.levels} of {len(EDGE_LEVELS)} levels reached)"
    fell = f", after a fall of {reading.depth:.2f} nats" if math.isfinite(reading.depth) else ""
    reason = f"unstable from lr {reading.at:.3g}{levels}{fell}, divided by {div:.3g}"
    return Suggestion("edge", lr, min(reading.low, lr), lr, None, reason)


RULES: dict[str, Callable[[Sequence[float], Sequence[float], Sequence[float]], Suggestion]] = {
    "edge": edge,
    "valley": valley,
    "steepest": steepest,
    "minimum": minimum,
}


def suggest(
    lrs: Sequence[float],
    losses: Sequence[float],
    rule: str = "edge",
    smooth: float = 0.9,
) -> Suggestion:
    """Apply ``rule`` to a range-test curve of raw ``losses`` at ``lrs``; never raises on bad curves."""
    check_choice("rule", rule, tuple(RULES))
    check_number("smooth", smooth, 0, 1, high_open=True)
    if len(lrs) != len(losses):
        raise ValueError(f"lrs and losses must have the same length, got {len(lrs)} and {len(losses)}")
    lrs, losses = finite_prefix(lrs, losses)
    if len(lrs) < MIN_POINTS:
        why = "every loss was NaN/inf" if not lrs else f"only {len(lrs)} finite points before the loss diverged"
        return Suggestion(rule, None, reason=f"{why}; need {MIN_POINTS}: lower min_lr or raise num_steps")
    smoothed = ema(losses, smooth)
    if min(smoothed[1:]) >= smoothed[0]:
        return Suggestion(rule, None, reason="the loss never fell below its starting value: lower min_lr")
    return RULES[rule](lrs, losses, smoothed)
