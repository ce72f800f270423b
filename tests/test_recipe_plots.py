"""The recipes' pictures, redrawn from their stored results: labelled axes, and a legend entry for every line."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from tests.conftest import ROOT

matplotlib = pytest.importorskip("matplotlib")


def _recipe(folder: str, name: str):
    path = ROOT / "recipes" / folder / f"{name}.py"
    sys.path[:0] = [str(path.parent), str(path.parent.parent)]
    try:
        spec = importlib.util.spec_from_file_location(f"recipe_{folder}_{name}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    finally:
        del sys.path[:2]
    return module


def _saved(folder: str):
    return json.loads((ROOT / "recipes" / folder / "results.json").read_text())


def _benchmark(out):
    saved = _saved("benchmark")
    return _recipe("benchmark", "benchmark").plot(saved["runs"], saved["summary"], out)


def _range_test(out):
    runs = _saved("lr_range_test")
    return _recipe("lr_range_test", "benchmark").plot_curves(runs, sorted({r["dataset"] for r in runs}), out)


def _optimizers(out):
    runs = _saved("optimizers")
    module = _recipe("optimizers", "run")
    names = [n for n in module.OPTIMIZERS if n in runs[0]["onecycle"]]
    return module.plot(runs, list(dict.fromkeys(r["dataset"] for r in runs)), names, out)


def _onecycle(out):
    saved = _saved("onecycle_vs_constant")
    module = _recipe("onecycle_vs_constant", "run")
    return module.plot(out, saved["runs"], saved["summary"], saved["settings"]["best_lr"])


def _corpus(out):
    saved = _saved("range_test_corpus")
    module = _recipe("range_test_corpus", "run")
    _table, derived = module.report(saved)
    return module.plot(saved, derived, out)


def assert_legible(fig) -> None:
    """Every axes with data says what its axes are (its own labels, or a neighbour's in the same column or row
    of a grid); every labelled line is in a legend; an unlabelled line looks like a labelled one (an error bar's
    caps, an inset's copy), so the legend names it too."""
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)]
    for sub in getattr(fig, "subfigs", []):
        legends += list(sub.legends)
    shown = {t.get_text() for legend in legends for t in legend.get_texts()}
    assert shown, "no legend"
    lines = [line for ax in fig.axes for line in ax.get_lines()]
    labelled = {line.get_label(): line for line in lines if not line.get_label().startswith("_")}
    assert set(labelled) <= shown, set(labelled) - shown
    looks = {(line.get_color(), line.get_linestyle()) for line in labelled.values()}
    for line in lines:
        if line.get_label().startswith("_") and line.get_gid() != "separator":  # a rule between rows is no data
            assert (line.get_color(), line.get_linestyle()) in looks or line.get_linestyle() == "None", line
    main = [ax for ax in fig.axes if ax.get_lines() or ax.collections or ax.patches]
    assert any(ax.get_xlabel() for ax in main) and any(ax.get_ylabel() for ax in main)
    for ax in main:
        assert ax.get_xlabel() or ax.get_title() or ax.get_ylabel(), ax


@pytest.mark.parametrize("draw", [_benchmark, _range_test, _optimizers, _onecycle, _corpus], ids=lambda f: f.__name__)
def test_recipe_picture_redrawn_from_its_results_is_labelled(draw, tmp_path):
    if draw is _onecycle and not (ROOT / "recipes" / "onecycle_vs_constant" / "results.json").exists():
        pytest.fail("results.json missing")
    out = tmp_path / "picture.png"
    fig = draw(out)
    assert out.stat().st_size > 20_000
    assert_legible(fig)
