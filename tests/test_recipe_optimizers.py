"""The optimizers recipe runs end to end in its small form."""

from __future__ import annotations

import json

from tests.test_recipes import run_recipe


def test_optimizers_quick_run(tmp_path):
    done = run_recipe("optimizers/run.py", "--quick", "--jobs", "1", "--out", str(tmp_path))
    for name in ("SGD", "Adam"):
        assert f"| digits | {name} |" in done.stdout
    (run,) = json.loads((tmp_path / "results.json").read_text())
    assert set(run["constant"]) == set(run["onecycle"]) == {"SGD", "Adam"}
    assert all(r["lr"] > 0 and len(r["curve"]) == 1 for r in run["onecycle"].values())
    assert (tmp_path / "optimizers.png").stat().st_size > 10_000
