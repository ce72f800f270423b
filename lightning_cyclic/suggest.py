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

Each suggestion with an lr also says how far to trust it (:class:`Confidence`, from
:func:`confidence`): how noisy the curve is next to how far it fell, how deep the fall
was, and, for ``edge``, how well its climb-back levels agree on where the edge is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, NamedTuple

from lightning_cyclic._deprecation import renamed_keywords
from lightning_cyclic.shapes._checks import check_choice, check_number

MIN_POINTS = 10


@dataclass(frozen=True)
class Confidence:
    """How far to trust a suggestion, from the curve it was read off (see :func:`confidence`)."""

    level: str  # "high", "medium" or "low"
    score: float  # in [0, 1]: the lowest of the scores of the parts below that were measured
    noise: float  # scatter of the (log) loss around its running median, as a fraction of the fall
    depth: float | None  # the fall in nats of log loss (None where the losses are not all positive)
    spread: float | None  # decades of lr between the climb-back crossings (None: not measured)
    weakest: str  # the part that set the score: "noise", "depth" or "spread"

    def describe(self) -> str:
        """``"low (0.12: noise 41% of the fall, fall 0.03 nats, climb-back levels within 1.2 decades)"``."""
        parts = [f"noise {self.noise:.0%} of the fall" if math.isfinite(self.noise) else "no fall to measure noise by"]
        if self.depth is not None:
            parts.append(f"fall {self.depth:.2f} nats")
        if self.spread is not None:
            parts.append(f"climb-back levels within {self.spread:.2f} decades")
        return f"{self.level} ({self.score:.2f}: {', '.join(parts)})"


@dataclass(frozen=True)
class Suggestion:
    """A rule's reading of a range-test curve."""

    rule: str
    lr: float | None
    low: float | None = None  # the good range, as that rule sees it
    high: float | None = None
    index: int | None = None  # position of ``lr`` on the curve, where it is a point of it
    reason: str = ""
    confidence: Confidence | None = None  # where ``lr`` was read off the curve

    def __bool__(self) -> bool:
        return self.lr is not None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Suggestion:
        """The inverse of :meth:`to_dict`; a dict saved before a field existed gets that field's default."""
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        if kwargs.get("confidence") is not None:
            kwargs["confidence"] = Confidence(**kwargs["confidence"])
        return cls(**kwargs)


class EMA:
    """Debiased exponential moving average (as Adam debiases its moments), one value at a time: ``beta=0`` is no
    smoothing. The range test smooths its curve as it goes, to stop where it diverges; :func:`ema` after it."""

    def __init__(self, beta: float):
        self.beta = beta
        self.avg = 0.0
        self.count = 0

    def add(self, value: float) -> float:
        """The average with ``value`` added."""
        self.avg = self.beta * self.avg + (1 - self.beta) * value
        self.count += 1
        return self.avg / (1 - self.beta**self.count)


def ema(losses: Sequence[float], beta: float) -> list[float]:
    """The :class:`EMA` after each of ``losses``."""
    average = EMA(beta)
    return [average.add(loss) for loss in losses]


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
    crossings: tuple[float, ...] = ()  # the lr of each level reached, in the order of ``EDGE_LEVELS``


def edge_divisor(depth: float) -> float:
    """``EDGE_DIV[0]`` for a curve whose log loss fell at most ``EDGE_DEPTH[0]`` before the edge,
    ``EDGE_DIV[1]`` from ``EDGE_DEPTH[1]`` on, geometric in between."""
    t = min(max((depth - EDGE_DEPTH[0]) / (EDGE_DEPTH[1] - EDGE_DEPTH[0]), 0.0), 1.0)
    return EDGE_DIV[0] * (EDGE_DIV[1] / EDGE_DIV[0]) ** t


class _Cleaned(NamedTuple):
    """A curve of finite losses as :func:`read_edge` sees it."""

    positive: bool  # all losses > 0: ``values`` are log losses
    values: list[float]
    f: list[float]  # ``values`` through the running median
    i_min: int  # where ``f`` is lowest
    start: float  # mean of ``f`` over the first tenth of the curve (at least 3 points)
    crossings: list[tuple[int, float]]  # (index, lr) where ``f`` climbed back to each level reached


def _clean(lrs: Sequence[float], raw: Sequence[float]) -> _Cleaned:
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
            crossings.append((i, _crossing(lrs, f, i, level)))
    return _Cleaned(positive, values, f, i_min, start, crossings)


def read_edge(lrs: Sequence[float], raw: Sequence[float]) -> EdgeReading | None:
    """The edge of a curve of finite losses (see :func:`edge`), or ``None`` where the loss never turns back up."""
    c = _clean(lrs, raw)
    if not c.crossings:
        return None
    crossings = tuple(lr for _, lr in c.crossings)
    at = math.exp(sum(math.log(x) for x in crossings) / len(crossings))
    low_loss = c.f[c.i_min]
    fall = c.start - 0.1 * (c.start - low_loss)
    i_low = next((i for i in range(len(c.f)) if c.f[i] <= fall), c.i_min)
    depth = c.start - low_loss if c.positive else math.inf
    return EdgeReading(at, depth, _crossing(lrs, c.f, i_low, fall), len(crossings), crossings)


# The parts of a confidence (see :func:`confidence`): each scores 1 at its first value and 0 at its second,
# linearly in between; the score is the lowest part's: "high" from CONFIDENCE_LEVELS[1] on, "low" under [0].
CONFIDENCE_NOISE = (0.05, 0.25)  # scatter of the log loss around its running median, per unit of the fall
CONFIDENCE_DEPTH = (0.1, 0.04)  # the fall, in nats (EDGE_DEPTH[0] and under: a model that barely learned)
CONFIDENCE_SPREAD = (0.4, 1.2)  # decades between the first and the last climb-back crossing
CONFIDENCE_ONE_LEVEL = 0.5  # the spread's score where only one level was reached: nothing to compare
CONFIDENCE_LEVELS = (1 / 3, 2 / 3)


def _part(value: float, good: float, bad: float) -> float:
    return min(max((value - bad) / (good - bad), 0.0), 1.0)


def confidence(lrs: Sequence[float], raw: Sequence[float], rule: str = "edge") -> Confidence:
    """How far to trust a reading of a curve of finite losses, from three parts, each scored in [0, 1]:

    noise
        the scatter of the loss around its running median (as :func:`read_edge` cleans it, in log
        loss where all losses are positive: 1.4826 times the median absolute residual), up to where
        the loss starts to climb back, as a fraction of the fall from the start to the minimum;
    depth
        the fall itself, in nats of log loss (not scored where a loss is <= 0): a curve that fell
        a few hundredths of a nat says little about where the model learns best;
    spread
        for ``rule="edge"`` only: the decades of lr between the first and the last of the
        climb-back crossings the edge is the mean of; levels that agree give a sharp edge, a noisy
        or gradual climb gives a wide one.

    The score is the lowest part's, so the ``weakest`` part says what to fix.
    """
    c = _clean(lrs, raw)
    fall = c.start - c.f[c.i_min]
    end = c.crossings[0][0] if c.crossings else len(c.values)
    residuals = sorted(abs(v - m) for v, m in zip(c.values[:end], c.f[:end]))
    k = len(residuals)
    scatter = 1.4826 * (residuals[k // 2] if k % 2 else (residuals[k // 2 - 1] + residuals[k // 2]) / 2) if k else 0.0
    noise = scatter / fall if fall > 0 else math.inf
    scores = {"noise": _part(noise, *CONFIDENCE_NOISE) if math.isfinite(noise) else 0.0}
    depth = fall if c.positive else None
    if depth is not None:
        scores["depth"] = _part(depth, *CONFIDENCE_DEPTH)
    spread = None
    if rule == "edge" and c.crossings:
        at = [lr for _, lr in c.crossings]
        if len(at) > 1:
            spread = math.log10(max(at) / min(at))
            scores["spread"] = _part(spread, *CONFIDENCE_SPREAD)
        else:
            scores["spread"] = CONFIDENCE_ONE_LEVEL
    weakest = min(scores, key=scores.__getitem__)
    score = scores[weakest]
    level = "high" if score >= CONFIDENCE_LEVELS[1] else "medium" if score >= CONFIDENCE_LEVELS[0] else "low"
    return Confidence(level, score, noise, depth, spread, weakest)


@renamed_keywords(warmup="warms_up")
def edge(
    lrs: Sequence[float],
    raw: Sequence[float],
    smoothed: Sequence[float],
    edge_div: float | None = None,
    warms_up: bool = True,
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

    ``warms_up=False`` is for a schedule that jumps to the suggested lr in one step, on weights that have
    trained (a warm restart) rather than warming up to it as one-cycle does: the divisor is then at least
    ``EDGE_DIV[1]`` whatever the depth (measured on MNIST-1D, where a restart to edge/1.5 undid a third of
    the training: ``recipes/sgdr_snapshot_ensemble``).
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
    if not warms_up:
        div = max(div, EDGE_DIV[1])
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


@renamed_keywords(warmup="warms_up")
def suggest(
    lrs: Sequence[float],
    losses: Sequence[float],
    rule: str = "edge",
    smooth: float = 0.9,
    warms_up: bool = True,
) -> Suggestion:
    """Apply ``rule`` to a range-test curve of raw ``losses`` at ``lrs``; never raises on bad curves.

    ``warms_up``: whether the schedule warms up to the suggested lr (one-cycle, warmup + decay: the default) or
    jumps to it in one step (warm restarts); read by ``edge``, the rule whose divisor depends on it."""
    check_choice("rule", rule, tuple(RULES))
    check_number("smooth", smooth, 0, 1, high_open=True)
    if len(lrs) != len(losses):
        raise ValueError(f"lrs and losses must have the same length, got {len(lrs)} and {len(losses)}")
    lrs, losses = finite_prefix(lrs, losses)
    why = unreadable(lrs, losses, smooth)
    if why:
        return Suggestion(rule, None, reason=why)
    smoothed = ema(losses, smooth)
    s = edge(lrs, losses, smoothed, warms_up=warms_up) if rule == "edge" else RULES[rule](lrs, losses, smoothed)
    return replace(s, confidence=confidence(lrs, losses, rule)) if s else s


def unreadable(lrs: Sequence[float], losses: Sequence[float], smooth: float = 0.9) -> str:
    """Why no rule can read this curve (too few finite points, the loss never fell), or ``""``."""
    lrs, losses = finite_prefix(lrs, losses)
    if len(lrs) < MIN_POINTS:
        why = "every loss was NaN/inf" if not lrs else f"only {len(lrs)} finite points before the loss diverged"
        return f"{why}; need {MIN_POINTS}: lower min_lr or raise num_steps"
    smoothed = ema(losses, smooth)
    if min(smoothed[1:]) >= smoothed[0]:
        return "the loss never fell below its starting value: lower min_lr"
    return ""
