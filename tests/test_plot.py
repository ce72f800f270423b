"""plot_schedule draws the schedule it is given and saves a PNG."""

from __future__ import annotations

import pytest

from lightning_cyclic import OneCycle, WarmRestarts, plot_schedule
from lightning_cyclic.plot import schedule_curve
from lightning_cyclic.shapes import OneCycleSchedule


def test_plot_schedule_saves_a_png_of_lr_and_momentum(tmp_path):
    path = tmp_path / "onecycle.png"
    fig = plot_schedule(OneCycle(max_lr=0.1), total_steps=200, path=path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    lr_axis, mom_axis = fig.axes
    lr_line = lr_axis.lines[0].get_ydata()
    assert max(lr_line) == pytest.approx(0.1, rel=1e-3)
    assert list(lr_line) == [OneCycleSchedule(max_lr=0.1, total_steps=200).lr(k) for k in range(200)]
    assert min(mom_axis.lines[0].get_ydata()) == pytest.approx(0.85, abs=1e-3)


def test_epoch_lengths_use_steps_per_epoch_and_no_momentum_means_one_axis(tmp_path):
    callback = WarmRestarts(max_lr=0.1, cycle_len=1, interval="epoch")
    steps, lrs, moms = schedule_curve(callback, total_steps=40, steps_per_epoch=10)
    assert [k for k in steps if lrs[k] == pytest.approx(0.1)] == [0, 10, 20, 30]
    assert set(moms) == {None}
    assert len(plot_schedule(callback, 40, steps_per_epoch=10).axes) == 1


def test_plot_schedule_rejects_other_objects():
    with pytest.raises(TypeError, match="schedule must be a Schedule or a schedule callback, got int"):
        plot_schedule(3, 10)


def test_training_curves_from_a_real_run(tmp_path):
    import csv

    from lightning.pytorch.loggers import CSVLogger

    from lightning_cyclic.plot import _read_metrics, plot_training_curves
    from tests.helpers import tiny_loader, tiny_trainer
    from tests.models.test_classifier import make

    logger = CSVLogger(tmp_path, name="", version="")
    trainer = tiny_trainer(tmp_path, [OneCycle(max_lr=0.3)], max_epochs=3, logger=logger, log_every_n_steps=1)
    trainer.fit(make(), tiny_loader(), tiny_loader(n=16, seed=2))
    metrics = _read_metrics(tmp_path / "metrics.csv")
    assert len(metrics["lr"]) == 24 and len(metrics["val/acc"]) == 3
    fig = plot_training_curves(tmp_path / "metrics.csv", tmp_path / "curves.png")
    left, _right = fig.axes[:2]
    assert len(left.lines[0].get_xdata()) == len(metrics["train/loss_step"])
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    assert list(csv.DictReader(open(tmp_path / "metrics.csv")))


def test_range_test_plot_labels_every_line_and_says_what_the_suggestion_is(tmp_path):
    from lightning_cyclic import lr_find
    from tests.helpers import RichModule, tiny_loader, tiny_trainer

    result = lr_find(
        tiny_trainer(tmp_path),
        RichModule(scheduler=False),
        train_dataloaders=tiny_loader(learnable=True),
        verbose=False,
    )
    assert result.suggestion.rule == "edge" and result.suggestion.lr is not None
    fig = result.plot(tmp_path / "lr_find.png")
    (ax,) = fig.axes
    assert ax.get_xlabel() == "learning rate" and ax.get_ylabel() == "loss" and ax.get_xscale() == "log"
    drawn = [a.get_label() for a in [*ax.lines, *ax.patches]]
    shown = [t.get_text() for t in ax.get_legend().get_texts()]
    # a legend entry for every line
    assert sorted(drawn) == sorted(shown) and not any(label.startswith("_") for label in drawn)
    edge = next(label for label in shown if label.startswith("unstable from"))
    suggestion = next(label for label in shown if label.startswith("suggestion"))
    at = float(edge.split()[-1])
    assert f"{result.suggestion.lr:.3g}" in suggestion and f"/ {at / result.suggestion.lr:.2g})" in suggestion
    assert (tmp_path / "lr_find.png").stat().st_size > 10_000


def test_every_plot_of_the_package_labels_its_axes_and_every_line(tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    from lightning_cyclic.plot import plot_training_curves
    from tests.helpers import assert_legible, tiny_loader, tiny_trainer
    from tests.models.test_classifier import make

    assert_legible(plot_schedule(OneCycle(max_lr=0.1), total_steps=50))
    assert_legible(plot_schedule(WarmRestarts(max_lr=0.1, cycle_len=10, interval="step"), total_steps=50))
    logger = CSVLogger(tmp_path, name="", version="")
    trainer = tiny_trainer(tmp_path, [cb := OneCycle(max_lr=0.3)], max_epochs=3, logger=logger, log_every_n_steps=4)
    trainer.fit(make(), tiny_loader(), tiny_loader(n=16, seed=2))
    for schedule in (None, cb.schedule):
        fig = plot_training_curves(tmp_path / "metrics.csv", schedule=schedule)
        assert_legible(fig)
        assert all(ax.get_legend() is not None for ax in fig.axes[:2])


def test_training_curves_draw_the_lr_of_every_step_from_the_schedule_not_the_sparse_log(tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    from lightning_cyclic.plot import _read_metrics, plot_training_curves
    from tests.helpers import tiny_loader, tiny_trainer
    from tests.models.test_classifier import make

    logger = CSVLogger(tmp_path, name="", version="")
    trainer = tiny_trainer(tmp_path, [cb := OneCycle(max_lr=0.3)], max_epochs=3, logger=logger, log_every_n_steps=5)
    trainer.fit(make(), tiny_loader(), tiny_loader(n=16, seed=2))
    logged = _read_metrics(tmp_path / "metrics.csv")["lr"]
    assert len(logged) < 24 / 4  # one point per 5 steps: a cyclical trough falls between them
    fig = plot_training_curves(tmp_path / "metrics.csv", schedule=cb.schedule)
    (lr_line,) = [line for ax in fig.axes for line in ax.get_lines() if line.get_label().startswith("lr")][:1]
    xs, ys = list(lr_line.get_xdata()), list(lr_line.get_ydata())
    assert xs == list(range(int(xs[0]), int(xs[-1]) + 1))  # every step
    assert ys == [cb.schedule(int(x))[0] for x in xs]
    assert max(ys) == pytest.approx(0.3, rel=0.05)


def test_centred_mean_does_not_lag():
    from lightning_cyclic.plot import centred_mean

    ramp = [float(i) for i in range(10)]
    assert centred_mean(ramp, 3)[1:-1] == ramp[1:-1]  # a trailing mean would sit one step behind
    assert centred_mean([1.0, 5.0, 3.0], 5) == [3.0, 3.0, 3.0]


def test_plots_keep_the_users_backend_and_a_result_plots_without_a_path(tmp_path):
    import subprocess
    import sys

    code = (
        "import matplotlib.pyplot as plt, matplotlib\n"
        "from lightning_cyclic.finder import RangeTestConfig, RangeTestResult\n"
        "from lightning_cyclic.suggest import suggest\n"
        "lrs = [10 ** (-4 + k / 10) for k in range(40)]\n"
        "losses = [2.0 - 0.01 * k if k < 30 else 2.0 + (k - 30) for k in range(40)]\n"
        "r = RangeTestResult(lrs=lrs, losses=losses, suggestion=suggest(lrs, losses),"
        " config=RangeTestConfig())\n"
        "fig = r.plot()\n"
        "print(matplotlib.get_backend(), type(fig).__name__, len(fig.axes[0].lines) > 1)\n"
    )
    import os

    from tests.conftest import ROOT

    env = {**os.environ, "MPLBACKEND": "svg", "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["svg", "Figure", "True"]  # not switched to Agg; a figure, nothing written
    assert not list(tmp_path.iterdir())
