"""The recipes' pictures, redrawn from their stored results: labelled axes, and a legend entry for every line."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from tests.conftest import ROOT
from tests.helpers import assert_legible

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


def _cyclical(out):
    return _recipe("cyclical", "run").plot(out)


def _sgdr(out):
    runs = _saved("sgdr_snapshot_ensemble")
    shown = next((r for r in runs if r["dataset"] == "mnist1d"), runs[0])  # the run the recipe's README shows
    return _recipe("sgdr_snapshot_ensemble", "run").plot(shown, out)


def _regression(out):
    return _recipe("regression", "run").plot(_saved("regression"), out)


def _sweep(out):
    saved = _saved("sweep")
    return _recipe("sweep", "run").plot(saved["runs"], out, saved["settings"]["startup"])


def _preview(out):
    return _recipe("schedule_preview", "preview").draw(out)


def _wsd(out):
    return _recipe("wsd", "run").plot(_saved("wsd")["runs"], out)


def _guard(out):
    return _recipe("guard", "run").plot(_saved("guard"), out)


def _corpus(out):
    saved = _saved("range_test_corpus")
    module = _recipe("range_test_corpus", "run")
    _table, derived = module.report(saved)
    return module.plot(saved, derived, out)


PICTURES = [
    _benchmark, _range_test, _optimizers, _onecycle, _corpus, _cyclical, _sgdr, _regression, _sweep, _preview, _wsd,
    _guard,
]  # fmt: skip


@pytest.mark.parametrize("draw", PICTURES, ids=lambda f: f.__name__)
def test_recipe_picture_redrawn_from_its_results_is_labelled(draw, tmp_path):
    if draw is _onecycle and not (ROOT / "recipes" / "onecycle_vs_constant" / "results.json").exists():
        pytest.fail("results.json missing")
    out = tmp_path / "picture.png"
    fig = draw(out)
    assert out.stat().st_size > 20_000
    assert_legible(fig)
