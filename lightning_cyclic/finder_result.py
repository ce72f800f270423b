"""What a range test sweeps and what it found: :class:`RangeTestConfig` and :class:`RangeTestResult`, in plain Python.

The result is data: the curve, the suggestion read off it, the fallback where there is none, and the short
trials' choice; it reads the curve again with another rule (:meth:`RangeTestResult.suggest`), saves itself as JSON
and draws itself. :func:`~lightning_cyclic.finder.run_range_test` makes one.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from lightning_cyclic._deprecation import renamed_keywords
from lightning_cyclic.shapes import RangeTestSweep
from lightning_cyclic.shapes._checks import check_choice, check_number
from lightning_cyclic.suggest import RULES, Suggestion, ema, finite_prefix, minimum, read_edge, suggest, unreadable

EVALUATE = ("auto", "train", "val")
# found: the rule read the configured sweep; extended: it read the sweep extended past max_lr; fallback: it
# read nothing and ``fallback`` holds what "auto" takes; skipped: no test ran; none: no reading, no fallback
OUTCOMES = ("found", "extended", "fallback", "skipped", "none")


@dataclass(frozen=True)
class RangeTestConfig:
    """What to sweep and how to read it. See :class:`~lightning_cyclic.LRFinder` for the arguments."""

    min_lr: float = 1e-7
    max_lr: float = 10.0
    num_steps: int = 100
    mode: str = "exponential"
    smooth: float = 0.9
    diverge: float = 4.0
    suggestion: str = "edge"
    evaluate: str = "auto"
    val_batches: int = 4
    extend: float = 100.0
    trials: bool = True
    trial_steps: int | None = None

    def __post_init__(self) -> None:
        _ = self.sweep  # the sweep checks min_lr, max_lr, num_steps and mode
        check_number("smooth", self.smooth, 0, 1, high_open=True)
        check_number("diverge", self.diverge, 1, low_open=True)
        check_choice("suggestion", self.suggestion, tuple(RULES))
        check_choice("evaluate", self.evaluate, EVALUATE)
        check_number("val_batches", self.val_batches, 1, integer=True)
        check_number("extend", self.extend, 1)
        check_choice("trials", self.trials, (True, False))
        if self.trial_steps is not None:
            check_number("trial_steps", self.trial_steps, 2, integer=True)

    @property
    def sweep(self) -> RangeTestSweep:
        """The sweep as a schedule: ``min_lr`` to ``max_lr`` in ``num_steps`` steps."""
        return RangeTestSweep(min_lr=self.min_lr, max_lr=self.max_lr, num_steps=self.num_steps, mode=self.mode)

    def lr(self, k: int) -> float:
        """The lr of sweep step ``k``; past ``num_steps - 1`` the sweep goes on with the same spacing
        (:meth:`RangeTestSweep.extended_lr <lightning_cyclic.shapes.RangeTestSweep.extended_lr>`)."""
        return self.sweep.extended_lr(k)

    @property
    def extra_steps(self) -> int:
        """How many steps an extension may add: up to ``extend * max_lr``, and never more than ``num_steps``."""
        if self.extend <= 1:
            return 0
        if self.mode == "exponential":
            steps = math.log(self.extend) / math.log(self.max_lr / self.min_lr) * (self.num_steps - 1)
        else:
            steps = (self.extend - 1) * self.max_lr / (self.max_lr - self.min_lr) * (self.num_steps - 1)
        return min(math.floor(steps + 1e-9), self.num_steps)


@dataclass
class RangeTestResult:
    """The curve of a range test and its reading. ``suggestion.lr`` is the suggested lr (or ``None``).

    ``suggestion.confidence`` says how far to trust it. Where the rule found nothing, ``fallback``
    holds what ``"auto"`` arguments take instead (see :func:`fallback`); :attr:`chosen` is whichever
    of the two they take, ``outcome`` one of ``OUTCOMES``, and ``extra["extended_to"]`` the highest
    lr of a sweep that went on past ``max_lr``.
    """

    lrs: list[float]
    losses: list[float]
    config: RangeTestConfig
    suggestion: Suggestion
    stop_reason: str = ""
    seconds: float = 0.0
    optimizer_steps: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    outcome: str = ""  # one of OUTCOMES; "" works it out from the rest
    fallback: Suggestion | None = None

    def __post_init__(self) -> None:
        if not self.outcome:
            if self.extra.get("skipped"):
                self.outcome = "skipped"
            elif self.suggestion:
                self.outcome = "extended" if "extended_to" in self.extra else "found"
            else:
                self.outcome = "fallback" if self.fallback else "none"
        check_choice("outcome", self.outcome, OUTCOMES)

    @property
    def chosen(self) -> Suggestion:
        """What ``"auto"`` arguments take: the suggestion as the short trials moved it (``extra["trials"]``,
        where they ran and chose), or where the rule read nothing, the fallback (if any)."""
        if not self.suggestion and self.fallback:
            return self.fallback
        return self._moved(self.suggestion)

    def _moved(self, s: Suggestion) -> Suggestion:
        """``s`` with its lr, and its good range with it, moved to the trials' choice."""
        trial = self.extra.get("trials") or {}
        if not s or self.suggestion.lr is None or trial.get("lr") is None:
            return s
        ratio = trial["lr"] / self.suggestion.lr

        def scaled(x: float | None) -> float | None:
            return None if x is None else x * ratio

        return replace(
            s,
            rule="trials",
            lr=s.lr * ratio,
            low=scaled(s.low),
            high=scaled(s.high),
            index=None,
            reason=f"{trial['reason']} (the {s.rule} rule read {s.lr:.3g}: {s.reason})",
        )

    def warning(self) -> str:
        """The one line to warn with: how the fallback came about, or why the suggestion is not to be
        trusted and what steadies the curve; ``""`` when neither applies."""
        s, c = self.suggestion, self.suggestion.confidence
        if self.outcome == "fallback" and self.fallback is not None:
            went = self.extra.get("extended_to")
            past = f" (the sweep went on past max_lr={self.config.max_lr:g} up to lr {went:.3g})" if went else ""
            return (
                f"LRFinder: the LR range test found no sound suggestion: {s.reason}{past}. 'auto' arguments take the "
                f"fallback lr={self.fallback.lr:.3g} instead ({self.fallback.rule}: {self.fallback.reason}); "
                f"to choose yourself, give them a number."
            )
        if s and c is not None and c.level == "low":
            remedies = [f"more num_steps (now {self.config.num_steps})"]
            if self.config.evaluate == "train" and self.extra.get("val_data"):
                remedies.append("evaluate='val' (the loss of fixed validation batches, not each step's training loss)")
            remedies.append("a larger batch size")
            return (
                f"LRFinder: low confidence in the suggested lr={s.lr:.3g} ({s.rule}): {c.describe()}. "
                f"To steady the curve, try {', '.join(remedies[:-1])} or {remedies[-1]}."
            )
        return ""

    @property
    def smoothed(self) -> list[float]:
        return ema([x if math.isfinite(x) else math.nan for x in self.losses], self.config.smooth)

    @renamed_keywords(warmup="warms_up")
    def suggest(self, rule: str | None = None, smooth: float | None = None, warms_up: bool = True) -> Suggestion:
        """Read the same curve with another rule or smoothing, or for a schedule that does not warm up to the
        suggested lr (``warms_up=False``: see :func:`~lightning_cyclic.suggest.suggest`)."""
        return suggest(
            self.lrs,
            self.losses,
            rule or self.config.suggestion,
            self.config.smooth if smooth is None else smooth,
            warms_up=warms_up,
        )

    @renamed_keywords(warmup="warms_up")
    def chosen_for(self, warms_up: bool = True) -> Suggestion:
        """What ``"auto"`` arguments of a schedule that does (or does not) warm up to its peak take: the
        suggestion read for it, or where there is none, the fallback. ``chosen_for(warms_up=True)`` is
        :attr:`chosen`."""
        if warms_up or not self.suggestion:
            return self.chosen
        return self._moved(self.suggest(warms_up=False))

    # records ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "lrs": list(self.lrs),
            "losses": [x if math.isfinite(x) else None for x in self.losses],
            "config": asdict(self.config),
            "suggestion": self.suggestion.to_dict(),
            "stop_reason": self.stop_reason,
            "seconds": self.seconds,
            "optimizer_steps": self.optimizer_steps,
            "extra": dict(self.extra),
            "outcome": self.outcome,
            "fallback": self.fallback.to_dict() if self.fallback is not None else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RangeTestResult:
        """The inverse of :meth:`to_dict`; keys added since a dict was saved take their defaults."""
        fallback = data.get("fallback")
        return cls(
            lrs=list(data["lrs"]),
            losses=[math.nan if x is None else float(x) for x in data["losses"]],
            config=RangeTestConfig(**data["config"]),
            suggestion=Suggestion.from_dict(data["suggestion"]),
            stop_reason=data.get("stop_reason", ""),
            seconds=data.get("seconds", 0.0),
            optimizer_steps=data.get("optimizer_steps", len(data["lrs"])),
            extra=dict(data.get("extra", {})),
            outcome=data.get("outcome", ""),
            fallback=Suggestion.from_dict(fallback) if fallback else None,
        )

    def save_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load_json(cls, path: str | Path) -> RangeTestResult:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def plot(self, path: str | Path | None = None, ax: Any = None, title: str | None = None) -> Any:
        """The loss against lr (log x axis), smoothed and raw, with the suggestion and its good range marked.

        Returns the matplotlib figure, saved at ``path`` when one is given; without a path nothing is written,
        and in a notebook the figure shows inline (``result.plot()`` as a cell's last line)."""
        from lightning_cyclic.plot import pyplot

        plt = pyplot()
        if ax is None:
            fig, ax = plt.subplots(figsize=(6.4, 3.8))
        else:
            fig = ax.figure
        n = len(self.lrs)
        ax.plot(self.lrs, self.losses[:n], color="0.75", linewidth=0.8, label="loss")
        ax.plot(self.lrs, self.smoothed[:n], color="tab:blue", label=f"smoothed (beta={self.config.smooth})")
        s = self.suggestion if self.suggestion else self.chosen  # the curve's reading (the trials' choice below)
        which = "" if s is self.suggestion else " (fallback)"
        if s.low is not None and s.high is not None:
            ax.axvspan(s.low, s.high, color="tab:green", alpha=0.12, label="good range")
        if s.lr is not None:
            reading = read_edge(*finite_prefix(self.lrs, self.losses[:n])) if s.rule == "edge" else None
            if reading is not None:
                ax.axvline(reading.at, color="tab:orange", linestyle=":", label=f"unstable from {reading.at:.3g}")
                label = f"suggestion{which}: {s.lr:.3g} (that / {reading.at / s.lr:.2g})"
            else:
                label = f"suggestion ({s.rule}{which}): {s.lr:.3g}"
            ax.axvline(s.lr, color="tab:red", linestyle="--", label=label)
        trials = self.extra.get("trials") or {}
        if trials.get("losses"):  # the short trials: each candidate's loss after its trial, and what they chose
            points = [(lr, x) for lr, x in zip(trials["lrs"], trials["losses"]) if x is not None]
            if points:
                ax.plot(*zip(*points), "x", color="tab:purple", markersize=7, label="loss after each short trial")
            if trials.get("lr") is not None:
                ax.axvline(trials["lr"], color="tab:purple", linestyle="-.", label=f"short trials: {trials['lr']:.3g}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        finite = [x for x in self.smoothed[:n] if math.isfinite(x)]
        tried = [x for x in (self.extra.get("trials") or {}).get("losses") or [] if x is not None]
        lowest = min([x for x in self.losses[:n] if math.isfinite(x)] + finite + tried, default=None)
        if finite and lowest is not None:  # keep the divergence from flattening the interesting part
            top = min(max(finite), finite[0] * 1.5) if finite[0] > 0 else max(finite)
            top = max(top, finite[0])
            ax.set_ylim(lowest - 0.05 * abs(top - lowest), top + 0.05 * abs(top - lowest))
        found = self.suggestion
        ax.set_title(title or ("LR range test" + ("" if found else f": no suggestion ({found.reason})")))
        ax.legend(loc="best", fontsize=8)
        ax.grid(alpha=0.3, which="both")
        if path is not None:
            fig.tight_layout()
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=110)
        return fig


FAST_DEV_RUN = "fast_dev_run skips the LR range test"


def skipped_result(config: RangeTestConfig, reason: str) -> RangeTestResult:
    """The result of a range test that did not run: no curve, no suggestion, and why."""
    return RangeTestResult(
        lrs=[],
        losses=[],
        config=config,
        suggestion=Suggestion(rule=config.suggestion, lr=None, reason=reason),
        stop_reason=reason,
        optimizer_steps=0,
        extra={"skipped": reason},
        outcome="skipped",
    )


def fallback(lrs: list[float], losses: list[float], smooth: float, optimizer_lr: float | None) -> Suggestion | None:
    """What ``"auto"`` takes where the rule read nothing, the first of these that exists:

    1. fastai's ``valley`` reading, on a curve of at least ``MIN_POINTS`` finite losses that fell;
    2. a tenth of the lr of the lowest smoothed loss, on a shorter curve whose loss fell;
    3. the optimizer's own lr (the largest of its param groups'), where it is positive.
    """
    if not unreadable(lrs, losses, smooth):
        s = suggest(lrs, losses, "valley", smooth)
        return replace(s, reason=f"fastai's valley rule, {s.reason}")
    lrs, losses = finite_prefix(lrs, losses)
    smoothed = ema(losses, smooth)
    if len(lrs) >= 2 and min(smoothed[1:]) < smoothed[0]:
        return replace(
            minimum(lrs, losses, smoothed),
            reason=f"a tenth of the lr of the lowest smoothed loss, on {len(lrs)} finite points",
        )
    if optimizer_lr is not None and optimizer_lr > 0:
        return Suggestion("optimizer", optimizer_lr, optimizer_lr / 4, optimizer_lr, None, "the optimizer's own lr")
    return None
