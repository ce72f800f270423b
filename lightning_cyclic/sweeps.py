"""Sweeps: every job records its result, every multirun ends with a leaderboard.

Each job of ``python train.py -m ...`` writes ``result.json`` (its overrides,
the optimized metric and the other final metrics) into its own folder;
:class:`Leaderboard`, a Hydra callback, reads them all when the multirun ends
(whatever the launcher: in-process, joblib, submitit) and writes
``leaderboard.csv`` into the sweep folder, best first, and prints it as a table.
:func:`best_of` reads a leaderboard back, for the coarse-then-fine search.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lightning_cyclic._extras import needs

with needs("app", __name__):
    from hydra.experimental.callback import Callback as HydraCallback
    from omegaconf import DictConfig

from lightning_cyclic.files import write_atomically
from lightning_cyclic.shapes._checks import check_choice

RESULT = "result.json"
LEADERBOARD = "leaderboard.csv"


def job_overrides() -> list[str]:
    """The overrides that make this job differ (empty outside a Hydra run)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except ValueError:  # HydraConfig not set: train(cfg) called directly
        return []


def this_multirun() -> Any:
    """Hydra's config of this run where it is a job of a multirun; ``None`` in a single run, and outside
    ``@hydra.main`` (``train(cfg)`` called directly)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
    except (ImportError, ValueError):  # not under @hydra.main
        return None
    return hydra_cfg if hydra_cfg.mode == RunMode.MULTIRUN else None


def override_value(overrides: Iterable[str], key: str) -> str | None:
    """The value that ``overrides`` (``key=value``, Hydra's form; ``+key`` and ``~key`` too) give ``key``, or
    ``None`` where none names it."""
    for override in overrides:
        name, _, value = override.partition("=")
        if name.lstrip("+~") == key:
            return value
    return None


def swept_in_this_job(key: str) -> bool:
    """Whether this run is a job of a multirun whose own overrides set ``key`` (a value the sweep varies)."""
    hydra_cfg = this_multirun()
    return hydra_cfg is not None and override_value(hydra_cfg.overrides.task, key) is not None


STATUSES = ("finished", "terminated", "pruned", "failed")


def write_result(
    folder: str | Path,
    metric: str,
    metrics: dict[str, float],
    overrides: list[str],
    status: str = "finished",
    reason: str = "",
) -> Path:
    """Record a job for the leaderboard: ``status`` is ``finished``, ``terminated``, ``pruned`` (an Optuna trial its
    pruner stopped: the value is the best it reached) or ``failed`` (with ``reason``)."""
    check_choice("status", status, STATUSES)
    path = Path(folder) / RESULT
    path.parent.mkdir(parents=True, exist_ok=True)
    value = metrics.get(metric) if status != "failed" else None
    record = {
        "overrides": overrides,
        "metric": metric,
        "value": value,
        "metrics": metrics,
        "status": status,
        "reason": reason,
    }
    write_atomically(path, json.dumps(record, indent=1))
    return path


def _read_result(path: Path) -> dict[str, Any]:
    """A job's record; a damaged file is a row that says so, never an error that loses the others."""
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict) or not isinstance(record.get("overrides", []), list):
            raise ValueError(f"expected a JSON object with a list of overrides, got {type(record).__name__}")
    except (OSError, ValueError) as err:
        return {"overrides": [], "value": None, "status": "damaged", "reason": f"{path.name}: {err}"}
    record.setdefault("status", "finished")
    record.setdefault("reason", "")
    return record


def failure_reason(error: BaseException) -> str:
    """One line for a leaderboard: the innermost cause (Hydra wraps a target's error in its own)."""
    while error.__cause__ is not None:
        error = error.__cause__
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]


def leaderboard(sweep_dir: str | Path, mode: str = "max") -> list[dict[str, Any]]:
    """Every job's record under ``sweep_dir``, best first; pruned trials after the others (a value reached in a
    part of the run only), jobs without a value (failed, damaged) last."""
    check_choice("mode", mode, ("min", "max"))
    rows = []
    for path in sorted(Path(sweep_dir).glob(f"*/{RESULT}"), key=lambda p: (len(p.parent.name), p.parent.name)):
        record = _read_result(path)
        record["job"] = path.parent.name
        rows.append(record)

    def key(row: dict[str, Any]) -> tuple[int, float]:
        value = row.get("value")
        if not isinstance(value, (int, float)) or not math.isfinite(value) or row.get("status") == "damaged":
            return (2, 0.0)
        return (int(row.get("status") == "pruned"), -value if mode == "max" else value)

    return sorted(rows, key=key)


def _short(override: str) -> str:
    """``key=value`` with a float value at 4 significant digits (``0.123456789`` -> ``0.1235``)."""
    key, sep, value = override.partition("=")
    try:
        number = float(value)
    except ValueError:
        return override
    if not sep or value.lstrip("+-").isdigit() or not math.isfinite(number):
        return override
    return f"{key}={number:.4g}"


def format_table(rows: list[dict[str, Any]], metric: str) -> str:
    """The leaderboard as a markdown table: the overrides that differ between jobs, floats shortened;
    the ones every job shares on a line above it."""
    everyone = set.intersection(*(set(r["overrides"]) for r in rows)) if len(rows) > 1 else set()
    lines = [f"shared by every job: {' '.join(sorted(everyone))}"] if everyone else []
    lines += [f"| rank | job | {metric} | overrides |", "|---|---|---|---|"]
    for i, row in enumerate(rows, 1):
        value, status = row.get("value"), row.get("status", "finished")
        shown = f"{value:.4f}" if isinstance(value, (int, float)) else status if status != "finished" else "failed"
        if status not in ("finished",) and isinstance(value, (int, float)):
            shown += f" ({status})"
        own = " ".join(_short(o) for o in row["overrides"] if o not in everyone)
        why = f" — {row['reason']}" if row.get("reason") else ""
        lines.append(f"| {i} | {row['job']} | {shown} | {own or '(defaults)'}{why} |")
    return "\n".join(lines)


def write_leaderboard(sweep_dir: str | Path, metric: str, mode: str = "max") -> tuple[Path, str]:
    """``leaderboard.csv`` in ``sweep_dir``, and the table to print.

    Several processes may share a sweep folder (workers of one Optuna study): each writes it after each of its
    jobs, and one that ends while another writes could leave the other's older picture. So a writer reads the
    jobs again after writing, and writes again while they changed: the last file written lists every job that
    had ended by then.
    """
    path = Path(sweep_dir) / LEADERBOARD
    for _ in range(5):
        rows = leaderboard(sweep_dir, mode)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["rank", "job", metric, "overrides", "status", "reason"])
        for i, row in enumerate(rows, 1):
            writer.writerow([i, row["job"], row.get("value"), " ".join(row["overrides"]), row["status"], row["reason"]])
        write_atomically(path, out.getvalue())
        if _jobs(sweep_dir) == {(r["job"], r.get("status")) for r in rows}:
            break
    return path, format_table(rows, metric)


def _jobs(sweep_dir: str | Path) -> set[tuple[str, Any]]:
    return {(p.parent.name, _read_result(p).get("status")) for p in Path(sweep_dir).glob(f"*/{RESULT}")}


def best_of(path: str | Path, key: str) -> float:
    """The value of override ``key`` in the best row of a leaderboard CSV (for ``hparams_search=fine``)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"the leaderboard {path} has no rows")
    columns = ("rank", "job", "overrides", "status", "reason")
    for row in rows:  # best first; skip jobs without a value (failed, damaged)
        if row[next(iter(k for k in row if k not in columns))] in ("", "None"):
            continue
        value = override_value(row["overrides"].split(), key)
        if value is not None:
            return float(value)
        raise ValueError(f"the best job of {path} has no override {key!r}: {row['overrides']!r}")
    raise ValueError(f"every job of {path} failed")


def write_leaderboard_of_this_multirun(metric: str, mode: str) -> Path | None:
    """In a multirun, rewrite its leaderboard now (a job that ends the sweep early calls this); else nothing."""
    hydra_cfg = this_multirun()
    if hydra_cfg is None or not Path(hydra_cfg.sweep.dir).exists():
        return None
    return write_leaderboard(hydra_cfg.sweep.dir, metric, mode)[0]


class Leaderboard(HydraCallback):
    """Hydra callback: at the end of a multirun, ``leaderboard.csv`` in the sweep folder and a printed table."""

    def __init__(self, metric: str = "val/acc", mode: str = "max") -> None:
        # the app sets it from optimized_mode (conf/hydra): the message names the key a user set
        check_choice("optimized_mode (the leaderboard's mode)", mode, ("min", "max"))
        self.metric, self.mode = metric, mode

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        """A job that raised is recorded as failed, with its reason; the leaderboard is rewritten after every job,
        so it exists even when a failure ends the multirun before ``on_multirun_end``."""
        from hydra.core.utils import JobStatus
        from lightning.pytorch.utilities.rank_zero import rank_zero_only

        if getattr(rank_zero_only, "rank", 0) != 0:
            # a job's other DDP ranks, where the cluster started each as the job (hydra/launcher=slurm or local):
            # rank 0 writes the job's row (rank 1's TrialPruned, say, would race it with a "failed" one)
            return
        folder = Path(config.hydra.runtime.output_dir)
        if job_return.status == JobStatus.FAILED and not (folder / RESULT).exists():
            from lightning_cyclic._compat import hydra_job_error

            reason = failure_reason(hydra_job_error(job_return))
            write_result(folder, self.metric, {}, list(config.hydra.overrides.task), status="failed", reason=reason)
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.exists():
            write_leaderboard(sweep_dir, self.metric, self.mode)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        study = stored_study(config)
        if study is not None:
            print(
                f"[lightning_cyclic] Optuna study {study[0]!r} in {study[1]}: the same command with "
                f"hydra.sweep.dir={config.hydra.sweep.dir} resumes it"
            )

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.exists():
            return
        path, table = write_leaderboard(sweep_dir, self.metric, self.mode)
        print(f"\n[lightning_cyclic] leaderboard ({self.metric}, {self.mode} first): {path}\n{table}")
        study = stored_study(config)
        if study is not None:
            print(f"  the Optuna study: optuna-dashboard {storage_shown(study[1])}")


def stored_study(config: DictConfig) -> tuple[str, str] | None:
    """``(study name, storage URL)`` of a multirun whose Optuna sweeper stores its study, else None."""
    sweeper = config.hydra.get("sweeper") or {}
    url = storage_url(sweeper, config.hydra.runtime.cwd)
    if url is None:
        return None
    return str(sweeper.get("study_name")), url


SQLITE = "sqlite:///"


def storage_url(sweeper: Any, cwd: str | Path) -> str | None:
    """The storage of an Optuna sweeper's config, its file (if it has one) made absolute from ``cwd``, the folder
    the sweep was started in, so that every job and worker opens the same one: ``journal: <file>`` as
    ``journal:///<file>``, else ``storage`` (``sqlite:///<file>``, ``journal:///<file>``, any URL Optuna
    accepts; ``None``: the study lives in the sweeper's memory only)."""
    from lightning_cyclic.callbacks.pruning import JOURNAL

    journal, storage = sweeper.get("journal"), sweeper.get("storage")
    if journal:
        storage = JOURNAL + str(journal)
    if not isinstance(storage, str) or not storage:
        return None
    for scheme in (SQLITE, JOURNAL):
        file = storage[len(scheme) :] if storage.startswith(scheme) else ""
        if file and file != ":memory:":
            return scheme + str(Path(cwd, file).resolve())
    return storage


def storage_shown(url: str) -> str:
    """What ``optuna-dashboard`` takes for a storage URL: a journal's file path, or the URL."""
    from lightning_cyclic.callbacks.pruning import JOURNAL

    return url[len(JOURNAL) :] if url.startswith(JOURNAL) else url


TRIAL_ENV = "LIGHTNING_CYCLIC_OPTUNA_PRUNING"  # a DDP job's trial, for the ranks Lightning starts (JSON)
TRIAL_NUMBER, STUDY_NAME = "LIGHTNING_CYCLIC_OPTUNA_TRIAL", "LIGHTNING_CYCLIC_OPTUNA_STUDY"  # set by the sweeper


def optuna_trial_of_this_job() -> dict[str, Any] | None:
    """The arguments of :class:`~lightning_cyclic.callbacks.pruning.OptunaPruning` for a job that is a trial of
    the app's Optuna sweeper with a pruner: the sweeper sets the trial's number in the job's environment
    (``hydra.job.env_set``); the study's storage, name and pruner are the job's ``hydra.sweeper`` config. In a
    DDP rank that Lightning started, all of it comes from the environment the job's rank 0 set
    (``TRIAL_ENV``). ``None`` for any other run.
    """
    import os

    if os.environ.get(TRIAL_ENV):
        found = json.loads(os.environ[TRIAL_ENV])
        return found if isinstance(found, dict) else None
    number = os.environ.get(TRIAL_NUMBER)
    if not number:
        return None
    try:
        from hydra.core.hydra_config import HydraConfig
        from omegaconf import OmegaConf

        hydra_cfg = HydraConfig.get()
    except (ImportError, ValueError):  # not under @hydra.main
        return None
    sweeper: Any = hydra_cfg.sweeper  # (DictConfig; typed as Hydra's schema, which has no pruner)
    if sweeper.get("pruner", "none") in ("none", None):
        return None
    url = storage_url(sweeper, hydra_cfg.runtime.cwd)
    if url is None:  # the sweeper warned: a study in memory cannot be reached from a job
        return None
    args = sweeper.get("pruner_args")
    return {
        "trial": int(number),
        "storage": url,
        "study_name": os.environ.get(STUDY_NAME) or str(sweeper.study_name),
        "pruner": str(sweeper.pruner),
        "pruner_args": OmegaConf.to_container(args) if args is not None else {},
        "warmup": sweeper.get("pruner_warmup", "auto"),
    }


UNUSABLE = "lc.around: "  # marks a range that cannot be built, and says why


def unusable_range(params: Any) -> str:
    """Why a sweeper's ``params`` cannot be used (an ``lc.around`` range without its leaderboard), or ``""``."""
    for value in (params or {}).values():
        if isinstance(value, str) and value.startswith(UNUSABLE):
            return value[len(UNUSABLE) :]
    return ""


def around(leaderboard_csv: str | None, key: str, factor: str | float | int) -> str:
    """An Optuna sweeper range, log-uniform from best/factor to best*factor, centred on ``key``'s best value."""
    if leaderboard_csv is None or not Path(leaderboard_csv).is_file():
        # not raised here: OmegaConf would wrap it in pages of its own frames. The sweeper, which receives the
        # ranges, refuses this one with the message alone (see ``unusable_range``).
        given = "not given" if leaderboard_csv is None else f"{leaderboard_csv!r} is not a file"
        return (
            f"{UNUSABLE}hparams_search=fine needs fine_from=<the coarse sweep's leaderboard.csv> ({given}): run "
            f"python train.py -m hparams_search=coarse first, then hparams_search=fine "
            f"fine_from=multirun/YYYY-MM-DD/HH-MM-SS-XXXXXX/leaderboard.csv"
        )
    best = best_of(leaderboard_csv, key)
    factor = float(factor)
    return f"tag(log, interval({best / factor:.6g}, {best * factor:.6g}))"


def unique_id() -> str:
    """Six hex digits, new for every run: with the time, the name of a run's or a sweep's folder."""
    import secrets

    return secrets.token_hex(3)


def tasks_per_node(devices: Any) -> int:
    """``${lc.tasks:${trainer.devices}}``: a cluster launcher's tasks per node, one per device (each task one DDP
    rank, as Lightning expects on SLURM): ``trainer.devices`` as a count. ``-1``, ``auto`` or a list name no count
    that the launcher could know before the job starts on its node."""
    if isinstance(devices, int) and not isinstance(devices, bool) and devices > 0:
        return devices
    raise ValueError(
        f"hydra/launcher=local and slurm start one task per device, and trainer.devices={devices!r} names no count: "
        "give trainer.devices as a number (e.g. trainer.devices=2; on SLURM, the GPUs per node)"
    )


def times(value: Any, factor: Any) -> float:
    """``${lc.times:${optimizer.lr},0.05}``: ``value * factor``, for a config value that follows another."""
    for name, x in (("value", value), ("factor", factor)):
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise ValueError(f"lc.times takes two numbers, got {name}={x!r}")
    return float(value) * float(factor)


def register_resolvers() -> None:
    """``${lc.around:<leaderboard.csv>,<key>,<factor>}`` for ``hparams_search=fine``, ``${lc.unique:}``, and
    ``${lc.times:<number>,<factor>}`` (a product: ``Cyclical``'s ``base_lr`` is a share of the optimizer's lr), and
    ``${lc.tasks:${trainer.devices}}`` (a cluster launcher's tasks per node).

    ``lc.unique`` is cached like Hydra's ``now``: one value per run, the same in every job of a sweep
    (Hydra copies the cache into each job's config) and in DDP ranks (Lightning passes them the run's
    folder). Two runs or sweeps started in the same second get two folders.
    """
    import inspect

    from omegaconf import OmegaConf

    # OmegaConf 2.4 takes resolvers with register_resolver (its register_new_resolver is deprecated); before it,
    # register_resolver is the legacy form (no use_cache) and register_new_resolver the one
    register: Any = OmegaConf.register_new_resolver
    if "use_cache" in inspect.signature(OmegaConf.register_resolver).parameters:
        register = OmegaConf.register_resolver
    for name, resolver, cached in (
        ("lc.around", around, False),
        ("lc.unique", unique_id, True),
        ("lc.times", times, False),
        ("lc.tasks", tasks_per_node, False),
    ):
        if not OmegaConf.has_resolver(name):
            register(name, resolver, use_cache=cached)
