"""Sweeps: one scenario predicted over a grid of overrides, each point in its own process.

A sweep is the cartesian product of ``--vary FIELD=V1,V2,...`` lists applied to one
scenario (with its ``--set`` overrides). Each point is one :func:`simulator.predict.predict`
run, on local processes (:class:`concurrent.futures.ProcessPoolExecutor`) or on a
``dask.distributed`` cluster. Workers compute and return plain data; the process that
runs the sweep writes every file, so Dask workers need no shared file system.

Layout of a sweep directory::

    sweep.json                     the definition (base scenario, --set, --vary, points)
    sweep.csv                      one row per point: varied fields, status, summary
    points/<key>.json              one point: overrides, resolved scenario, summary,
                                   status (ok / error with type and message), wall seconds
    points/<key>.accuracy_curve.csv   proxy accuracy against simulated wall-clock
    points/<key>.iteration_times.csv  iteration and compute time distribution (quantiles)
    points/<key>.staleness.csv        staleness of updates: value, count

A point's JSON is written last and whole, so its presence means the point is finished;
``resume`` runs only the points without one (and, if asked, those that failed).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import multiprocessing
import os
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.errors import ConfigError
from simulator.output import atomic_write_text
from simulator.result import ddlsim_version, json_safe, to_json
from simulator.scenario import (
    apply_overrides,
    default_scenario_path,
    load_scenario,
    parse_override,
)

POINTS_DIR = "points"
#: Iteration-time distributions are kept as this many evenly spaced order statistics,
#: enough for histograms and box plots without storing every (iteration, worker) record.
DISTRIBUTION_SAMPLES = 1000
#: Columns of sweep.csv besides the varied fields and the summary: the first two lead,
#: the other three close each row.
LEAD_COLUMNS = ("key", "status", "error_type", "error_message", "wall_s")
#: Tables each successful point keeps beside its JSON, by file suffix.
POINT_TABLES = ("accuracy_curve", "iteration_times", "staleness")

Progress = Callable[[str], None]


# ---------------------------------------------------------------------------------------
# The grid


@dataclass(frozen=True)
class Point:
    """One grid point: the varied fields' values, in --vary order."""

    overrides: tuple[tuple[str, Any], ...]

    @property
    def key(self) -> str:
        return point_key(dict(self.overrides))

    def label(self) -> str:
        return " ".join(f"{name}={_value_text(value)}" for name, value in self.overrides)


def parse_vary(text: str) -> tuple[str, tuple[Any, ...]]:
    """``"cluster.nodes=1,2,4"`` -> ``("cluster.nodes", (1, 2, 4))``; each value read as
    TOML like ``--set`` (so ``1`` is an integer, ``h100-sxm`` a string)."""
    if not isinstance(text, str) or "=" not in text:
        raise ConfigError("--vary", text, "'section.key=V1,V2,...', e.g. "
                                          "'cluster.nodes=1,2,4,8'")
    dotted, _, values_text = text.partition("=")
    dotted = dotted.strip()
    parts = dotted.split(".")
    if len(parts) < 2 or any(not part.strip() for part in parts):
        raise ConfigError("--vary", text, "a dotted field such as 'cluster.nodes' before '='")
    pieces = [piece.strip() for piece in _split_values(values_text)]
    if not values_text.strip() or any(not piece for piece in pieces):
        raise ConfigError("--vary", text, "a comma-separated list of values after '=' with "
                                          "no empty entries, e.g. 'cluster.nodes=1,2,4'")
    try:
        values = tuple(parse_override(f"{dotted}={piece}")[1] for piece in pieces)
    except ConfigError as error:
        raise ConfigError("--vary", text, error.valid) from None
    seen: list[Any] = []
    for value in values:
        if any(_same(value, other) for other in seen):
            raise ConfigError("--vary", text, f"distinct values ({_value_text(value)!s} is "
                                              "listed twice)")
        seen.append(value)
    return dotted, values


def _split_values(text: str) -> list[str]:
    """Split on commas outside brackets and quotes, so a TOML list or a quoted string
    with a comma stays one value."""
    pieces, depth, quote, current = [], 0, None, []
    for char in text:
        if quote:
            if char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            pieces.append("".join(current))
            current = []
            continue
        current.append(char)
    pieces.append("".join(current))
    return pieces


def _plain_data(value: Any) -> Any:
    """Mappings as dicts, recursively: picklable for worker processes and Dask."""
    if isinstance(value, Mapping):
        return {key: _plain_data(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain_data(item) for item in value]
    return value


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _value_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(json_safe(value))


def point_key(overrides: Mapping[str, Any]) -> str:
    """A file name that is stable across runs and platforms: the readable overrides,
    then a digest of their exact values (types included, so ``1`` and ``"1"`` differ)."""
    readable = "_".join(f"{name.split('.')[-1]}-{_value_text(value)}"
                        for name, value in overrides.items()) or "base"
    readable = re.sub(r"[^A-Za-z0-9_.+-]+", "-", readable).strip("-.")[:80] or "point"
    exact = json.dumps([[name, type(value).__name__, json_safe(value)]
                        for name, value in overrides.items()], sort_keys=True)
    return f"{readable}-{hashlib.sha1(exact.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class Sweep:
    """A scenario (as written, ``--set`` applied by each point) and the fields to vary."""

    #: The scenario as given: a file path or a built-in example name.
    scenario: str
    #: The scenario's data as written (no defaults added); sent to every worker, so they
    #: need neither the file nor the same working directory.
    base: Mapping[str, Any]
    sets: tuple[str, ...] = ()
    vary: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    def points(self) -> list[Point]:
        names = [name for name, _ in self.vary]
        return [Point(tuple(zip(names, combo, strict=True)))
                for combo in itertools.product(*(values for _, values in self.vary))]

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "base_scenario": json_safe(self.base),
            "set": list(self.sets),
            "vary": [{"field": name, "values": json_safe(list(values))}
                     for name, values in self.vary],
            "points": [{"key": point.key, "overrides": json_safe(dict(point.overrides))}
                       for point in self.points()],
            "ddlsim_version": ddlsim_version(),
        }


def make_sweep(scenario: str | Path | None, vary: Sequence[str],
               sets: Sequence[str] = ()) -> Sweep:
    """Parse and check a sweep definition; every problem is a ConfigError naming the
    option (``--vary``, ``--set``) or the scenario field."""
    source = str(scenario) if scenario is not None else str(default_scenario_path())
    # The scenario file alone must be valid; --set and --vary are checked per point, so a
    # --set option of one varied algorithm does not sink the others.
    base = _plain_data(load_scenario(source).written)
    for text in sets:
        parse_override(text)
    set_fields = {".".join(part.strip() for part in text.partition("=")[0].split("."))
                  for text in sets}
    if not vary:
        raise ConfigError("--vary", None, "at least one 'section.key=V1,V2,...'")
    parsed: list[tuple[str, tuple[Any, ...]]] = []
    for text in vary:
        name, values = parse_vary(text)
        if any(name == other for other, _ in parsed):
            raise ConfigError("--vary", text, f"each field varied once ({name} is given twice)")
        if name in set_fields:
            raise ConfigError("--vary", text, f"a field not also fixed by --set ({name})")
        parsed.append((name, values))
    sweep = Sweep(source, base, tuple(sets), tuple(parsed))
    _check_some_point_loads(sweep)
    return sweep


def _check_some_point_loads(sweep: Sweep) -> None:
    """A mistake that spoils every point (a misspelt --set field) is an error now, not
    a sweep of failures; a point that alone is invalid is recorded when it runs."""
    first: ConfigError | None = None
    for point in sweep.points():
        try:
            _point_scenario(sweep.base, sweep.sets, point.overrides)
            return
        except ConfigError as error:
            first = first or error
    if first is not None:
        raise first


def _point_scenario(base: Mapping[str, Any], sets: Sequence[str],
                    overrides: Sequence[tuple[str, Any]]):
    pairs = [parse_override(text) for text in sets]
    pairs += [(tuple(name.split(".")), value) for name, value in overrides]
    return load_scenario(apply_overrides(base, pairs))


# ---------------------------------------------------------------------------------------
# One point (runs in a worker process or on a Dask worker)


@dataclass(frozen=True)
class PointTask:
    key: str
    base: Mapping[str, Any]
    sets: tuple[str, ...]
    overrides: tuple[tuple[str, Any], ...]


@dataclass
class PointResult:
    record: dict[str, Any]
    #: File suffix -> CSV text, written beside the record.
    tables: dict[str, str] = field(default_factory=dict)


def evaluate_point(task: PointTask) -> PointResult:
    """Predict one point; any exception becomes an error record, never a crash."""
    from simulator.predict import predict

    started = time.perf_counter()
    record: dict[str, Any] = {"key": task.key, "overrides": dict(task.overrides),
                              "set": list(task.sets), "status": "ok", "error": None,
                              "scenario": None, "summary": None}
    tables: dict[str, str] = {}
    try:
        scenario = _point_scenario(task.base, task.sets, task.overrides)
        record["scenario"] = scenario.to_dict()
        prediction = predict(scenario)
        record["summary"] = prediction.summary()
        tables = point_tables(prediction)
    except Exception as error:  # a point's failure is its result; the sweep goes on
        record["status"] = "error"
        record["error"] = {"type": type(error).__name__, "message": str(error)}
        if not isinstance(error, ConfigError):
            record["error"]["traceback"] = traceback.format_exc()
        tables = {}
    record["wall_s"] = time.perf_counter() - started
    return PointResult(record, tables)


def point_tables(prediction) -> dict[str, str]:
    """The small tables the sweep plots need, as CSV text."""
    tables = {}
    if prediction.accuracy is not None:
        tables["accuracy_curve"] = prediction.accuracy.curve.to_csv(index=False)
    iterations = prediction.run.iterations
    duration = np.sort((iterations["end_s"] - iterations["start_s"]).to_numpy())
    compute = np.sort(iterations["compute_s"].to_numpy())
    if duration.size:
        take = np.unique(np.round(np.linspace(0, duration.size - 1,
                                              min(duration.size, DISTRIBUTION_SAMPLES)))
                         ).astype(int)
        tables["iteration_times"] = pd.DataFrame({
            "quantile": (take + 0.5) / duration.size,
            "iteration_time_s": duration[take],
            "compute_s": compute[take],
        }).to_csv(index=False)
    staleness = prediction.run.staleness
    counts = staleness.value_counts().sort_index()
    tables["staleness"] = pd.DataFrame({"staleness": counts.index.astype(int),
                                        "updates": counts.to_numpy()}).to_csv(index=False)
    return tables


# ---------------------------------------------------------------------------------------
# Running


def run_sweep(sweep: Sweep, out: Path | str, *, workers: int | None = None,
              start_method: str | None = None, scheduler: str | None = None,
              client: Any = None, resume: bool = False, retry_errors: bool = False,
              progress: Progress | None = None) -> pd.DataFrame:
    """Run the sweep's points into ``out`` and return sweep.csv's table.

    Local processes by default (``workers``, default ``os.cpu_count()``, started by
    ``start_method``: see :func:`process_context`); a Dask cluster with ``scheduler``
    (its address) or ``client`` (a ``distributed.Client``). ``resume`` keeps the points
    already written (and ``retry_errors`` re-runs the failed ones among them); it refuses
    a directory that holds another sweep.
    """
    out = Path(out)
    context = process_context(start_method)
    on_dask = scheduler is not None or client is not None
    if workers is not None and on_dask:
        raise ConfigError("--workers", workers, "no --workers with --scheduler (the Dask "
                                                "cluster's workers run the points)")
    if start_method is not None and on_dask:
        raise ConfigError("--start-method", start_method, "no --start-method with "
                                                          "--scheduler (Dask starts its "
                                                          "own workers)")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise ConfigError("--workers", workers, "an integer >= 1")
    if retry_errors and not resume:
        raise ConfigError("--retry-errors", True, "--resume as well (it selects which of "
                                                  "the written points to run again)")
    definition = sweep.to_dict()
    if resume:
        _check_resumable(out, definition)
    atomic_write_text(out / "sweep.json", to_json(definition))

    points = sweep.points()
    todo = [point for point in points
            if not (resume and _finished(out, point.key, retry_errors))]
    report = progress or (lambda line: None)
    if resume:
        report(f"resuming: {len(points) - len(todo)} of {len(points)} points already "
               "written")
    tasks = [PointTask(point.key, sweep.base, sweep.sets, point.overrides) for point in todo]
    labels = {point.key: point.label() for point in todo}
    done = 0

    def finish(result: PointResult) -> None:
        nonlocal done
        done += 1
        write_point(out, result)
        record = result.record
        status = record["status"]
        if status == "error":
            message = record["error"]["message"].splitlines()[0] if record["error"][
                "message"] else ""
            status = f"error {record['error']['type']}: {message[:160]}"
        report(f"[{done}/{len(tasks)}] {labels[record['key']]} {status} "
               f"{record['wall_s']:.1f} s")

    try:
        if tasks and (scheduler is not None or client is not None):
            _run_dask(tasks, finish, scheduler, client)
        elif tasks:
            _run_local(tasks, finish, workers, context)
    finally:
        # Also when interrupted: the table then marks the unfinished points "missing".
        table = sweep_table(out, sweep)
        atomic_write_text(out / "sweep.csv", table.to_csv(index=False))
    return table


def _run_local(tasks: list[PointTask], finish: Callable[[PointResult], None],
               workers: int | None, context) -> None:
    if context.get_start_method() == "fork":
        # Forked workers inherit what the parent has loaded; load the proxy reference
        # every prediction's accuracy curve replays once here, not once per worker.
        from simulator.accuracy import reference_trace

        reference_trace()
    count = min(workers or os.cpu_count() or 1, len(tasks))
    executor = ProcessPoolExecutor(max_workers=count, mp_context=context)
    futures: dict[Future, PointTask] = {}
    try:
        futures = {executor.submit(evaluate_point, task): task for task in tasks}
        for future in as_completed(futures):
            finish(_result_of(future, futures[future]))
    except BaseException:
        _stop(executor)
        raise
    executor.shutdown()


def _stop(executor: ProcessPoolExecutor) -> None:
    """Stop at once (Ctrl-C): running points are abandoned, not waited for; --resume
    runs them again."""
    terminate = getattr(executor, "terminate_workers", None)  # Python 3.14+
    if terminate is not None:
        terminate()
        return
    processes = list((getattr(executor, "_processes", None) or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()


START_METHODS = ("fork", "forkserver", "spawn")


def process_context(start_method: str | None = None):
    """The multiprocessing context local workers start from.

    Default: ``fork`` where the platform has it and this process runs no other Python
    thread (forking a threaded process can deadlock the child), so workers start with
    ddlsim already imported; otherwise ``forkserver`` (its server imports ddlsim once)
    or, where neither exists, ``spawn``.
    """
    methods = multiprocessing.get_all_start_methods()
    if start_method is not None:
        if start_method not in methods:
            raise ConfigError("--start-method", start_method,
                              "one of " + ", ".join(m for m in START_METHODS if m in methods))
        method = start_method
    elif "fork" in methods and sys.platform.startswith("linux") \
            and threading.active_count() == 1:
        method = "fork"
    else:
        method = "forkserver" if "forkserver" in methods else "spawn"
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(["simulator.predict"])
    return context


def _result_of(future: Any, task: PointTask) -> PointResult:
    """The point's result, or an error record when its worker died (killed, out of
    memory) rather than returned."""
    try:
        return future.result()
    except Exception as error:
        return PointResult({"key": task.key, "overrides": dict(task.overrides),
                            "set": list(task.sets), "status": "error",
                            "error": {"type": type(error).__name__,
                                      "message": str(error) or repr(error)},
                            "scenario": None, "summary": None, "wall_s": math.nan})


def _run_dask(tasks: list[PointTask], finish: Callable[[PointResult], None],
              scheduler: str | None, client: Any) -> None:
    try:
        from distributed import Client
        from distributed import as_completed as dask_as_completed
    except ImportError:
        raise ConfigError("--scheduler", scheduler, "a Dask scheduler address, with "
                          "dask.distributed installed (pip install 'ddlsim[dask]')") from None
    own = client is None
    if own:
        try:
            client = Client(scheduler, timeout="20s")
        except OSError as error:
            raise ConfigError("--scheduler", scheduler,
                              f"the address of a running Dask scheduler ({error})") from None
    try:
        # pure=False: two sweeps of the same point are two runs, not one cached result.
        futures = {client.submit(evaluate_point, task, pure=False): task for task in tasks}
        for future in dask_as_completed(list(futures)):
            finish(_result_of(future, futures[future]))
    finally:
        if own:
            client.close()


def write_point(out: Path, result: PointResult) -> Path:
    """The point's tables, then its JSON (last, so the JSON marks a finished point)."""
    key = result.record["key"]
    directory = out / POINTS_DIR
    for suffix in POINT_TABLES:
        path = directory / f"{key}.{suffix}.csv"
        if suffix in result.tables:
            atomic_write_text(path, result.tables[suffix])
        else:
            path.unlink(missing_ok=True)
    record = dict(result.record)
    record["files"] = {suffix: f"{POINTS_DIR}/{key}.{suffix}.csv"
                       for suffix in POINT_TABLES if suffix in result.tables}
    return atomic_write_text(directory / f"{key}.json", to_json(record))


def read_point(out: Path | str, key: str) -> dict[str, Any] | None:
    path = Path(out) / POINTS_DIR / f"{key}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _finished(out: Path, key: str, retry_errors: bool) -> bool:
    record = read_point(out, key)
    if record is None:
        return False
    return not (retry_errors and record.get("status") != "ok")


def _check_resumable(out: Path, definition: Mapping[str, Any]) -> None:
    path = out / "sweep.json"
    if not path.is_file():
        return
    try:
        written = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ConfigError("--resume", str(out), "a directory whose sweep.json is readable "
                          "JSON") from None
    same = ("base_scenario", "set", "vary")
    for name in same:
        if json_safe(written.get(name)) != json_safe(definition[name]):
            raise ConfigError("--resume", str(out),
                              f"a directory of the same sweep (its sweep.json has another "
                              f"{name}); use another --out, or drop --resume to overwrite")


def sweep_table(out: Path | str, sweep: Sweep) -> pd.DataFrame:
    """One row per point of the grid (in grid order): key, status, error, wall seconds,
    the varied fields, then the summary flattened with dots
    (``iteration_time_breakdown_s.compute``). Points not written yet have status
    ``missing``."""
    rows = []
    for point in sweep.points():
        record = read_point(out, point.key)
        row: dict[str, Any] = {"key": point.key}
        if record is None:
            row.update(status="missing", error_type=None, error_message=None, wall_s=None)
        else:
            error = record.get("error") or {}
            row.update(status=record.get("status"), error_type=error.get("type"),
                       error_message=error.get("message"), wall_s=record.get("wall_s"))
        for name, value in point.overrides:
            row[name] = _value_text(value) if isinstance(value, list | dict) else value
        summary = (record or {}).get("summary") or {}
        row.update(_flatten(summary))
        rows.append(row)
    table = pd.DataFrame(rows)
    for column in table.columns:
        values = [row[column] for row in rows if row.get(column) is not None]
        # Integer fields stay integers (8, not 8.0) where failed points leave gaps.
        if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            table[column] = table[column].astype("Int64")
    varied = [name for name, _ in sweep.vary]
    rest = [column for column in table.columns
            if column not in LEAD_COLUMNS and column not in varied]
    return table[[*LEAD_COLUMNS[:2], *varied, *rest, *LEAD_COLUMNS[2:]]]


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def stderr_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def load_sweep_dir(directory: Path | str) -> tuple[dict[str, Any], pd.DataFrame]:
    """sweep.json and sweep.csv of a sweep directory."""
    directory = Path(directory)
    definition = json.loads((directory / "sweep.json").read_text(encoding="utf-8"))
    return definition, pd.read_csv(directory / "sweep.csv")


def point_table(directory: Path | str, key: str, suffix: str) -> pd.DataFrame | None:
    """One of a point's tables (POINT_TABLES), or None when the point has none."""
    path = Path(directory) / POINTS_DIR / f"{key}.{suffix}.csv"
    if not path.is_file():
        return None
    return pd.read_csv(path)
