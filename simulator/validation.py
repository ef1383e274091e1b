"""Predictions against published measurements: the engine of ``ddlsim validate``.

One row of the input CSV is one published number. Each row is predicted from the
catalogs and models alone (nothing here is fitted to a row); a row that cannot be
modeled is reported as ``unsupported: <reason>`` and the others go on.

Quantities and how they are predicted:

- ``allreduce_busbw``: :func:`models.collectives.predict_allreduce_busbw_Bps`.
- ``throughput`` (samples/s of the whole job) and ``iteration_time`` (s per optimizer
  step): a run of the SimPy engine (:func:`simulator.engine.simulate`) with the row's
  algorithm (``allreduce`` when empty) and its default options: PyTorch DDP's 25 MiB
  buckets, all-reduce overlapped with the backward pass, NCCL's choice of algorithm.
  Multi-GPU runs carry a shared log-normal compute jitter
  (:data:`COMPUTE_JITTER_SIGMA`, the one constant here fitted to multi-GPU rows of the
  file); single-GPU runs are noise-free.
- ``scaling_efficiency``: simulated throughput on the row's N GPUs over N times the
  simulated throughput of one GPU of the same kind, the definition the sources use.
- ``time_to_train``: optimizer steps to the row's target at the global batch
  (:mod:`models.convergence`) times the simulated iteration time, plus the evaluations
  inside the timed region (see :func:`time_to_train_parts`).

Columns beyond :data:`REQUIRED_COLUMNS` that are read when present:
``accumulation_steps`` (micro-batches of ``batch_per_gpu`` accumulated per optimizer
step; empty means 1), ``framework`` (an id of :data:`models.frameworks.FRAMEWORKS`), and
options of the row's algorithm (:data:`ALGORITHM_OPTION_COLUMNS`): ``servers``
(parameter servers of a ``ps-sync``, ``ps-async`` or ``easgd`` row, colocated with the
workers) and ``aggregation`` (``ps-sync``: ``gpu`` or ``node``); empty takes the
algorithm's default. ``phases`` (:data:`PHASES`) says what a one-GPU ``throughput`` or
``iteration_time`` row timed: ``step`` (the default) the whole optimizer step,
``forward+backward`` the forward and backward passes without the optimizer update, as
layer benchmarks time them.
A training-speed row without a framework takes the one its source names (MLPerf,
MXNet, TensorFlow, PyTorch: :func:`models.frameworks.framework_from_source`), else
PyTorch, and lists that among its assumptions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from models import catalog
from models.errors import ConfigError, require_number
from models.hardware import ClusterSpec

QUANTITIES = ("throughput", "iteration_time", "scaling_efficiency", "allreduce_busbw",
              "time_to_train")
REQUIRED_COLUMNS = ("id", "source", "quantity", "value", "model", "batch_per_gpu", "precision",
                    "gpu", "gpus_total", "gpus_per_node", "intra_link", "inter_link",
                    "nics_per_node", "algorithm", "collective", "message_bytes", "target")
#: What a training-speed row timed (its ``phases`` column; empty means ``step``): the
#: whole optimizer step, or only the forward and backward passes (no optimizer update).
PHASES = ("step", "forward+backward")
#: Quantities predicted from a training run, under the row's framework.
TRAINING_QUANTITIES = ("throughput", "iteration_time", "scaling_efficiency", "time_to_train")
#: Units the CSV uses for each quantity, for reports.
UNITS = {"throughput": "samples/s", "iteration_time": "s", "scaling_efficiency": "fraction",
         "allreduce_busbw": "GB/s", "time_to_train": "s"}


class Unsupported(Exception):
    """A row ddlsim cannot model; the message is the reason."""


@dataclass(frozen=True)
class Prediction:
    value: float
    #: Assumptions made where the source left a field empty (documented, never silent).
    assumptions: tuple[str, ...] = ()


def default_data_path() -> Path:
    return catalog.data_dir() / "validation" / "published.csv"


def load_measurements(path: Path | str | None = None) -> pd.DataFrame:
    path = Path(path) if path is not None else default_data_path()
    try:
        table = pd.read_csv(path, dtype={"id": str})
    except FileNotFoundError:
        raise ConfigError("--data", str(path), "an existing CSV file") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ConfigError("--data", str(path), f"a readable CSV file ({exc})") from None
    missing = [column for column in REQUIRED_COLUMNS if column not in table.columns]
    if missing:
        raise ConfigError("--data columns", sorted(table.columns),
                          "a CSV with the columns " + ", ".join(REQUIRED_COLUMNS) +
                          f" (missing: {', '.join(missing)})")
    return table


def _text(row: pd.Series, column: str) -> str | None:
    value = row.get(column)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def _number(row: pd.Series, column: str) -> float | None:
    value = row.get(column)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise Unsupported(f"{column} {value!r} is not a number") from None
    return None if math.isnan(number) else number


def _required_text(row: pd.Series, column: str) -> str:
    value = _text(row, column)
    if value is None:
        raise Unsupported(f"{column} is empty")
    return value


def _required_int(row: pd.Series, column: str) -> int:
    value = _number(row, column)
    if value is None:
        raise Unsupported(f"{column} is empty")
    if value != int(value) or value < 1:
        raise Unsupported(f"{column} {value!r} is not a positive integer")
    return int(value)


def row_cluster(row: pd.Series) -> tuple[ClusterSpec, tuple[str, ...]]:
    """The cluster a row describes, and the assumptions made to complete it.

    A job on fewer GPUs than a node holds runs on one node with that many GPUs.
    """
    assumptions: list[str] = []
    gpus_total = _required_int(row, "gpus_total")
    gpus_per_node = _required_int(row, "gpus_per_node")
    if gpus_total <= gpus_per_node:
        nodes, gpus_per_node = 1, gpus_total
    elif gpus_total % gpus_per_node:
        raise Unsupported(f"gpus_total {gpus_total} is not a multiple of gpus_per_node "
                          f"{gpus_per_node}")
    else:
        nodes = gpus_total // gpus_per_node
    nics = _number(row, "nics_per_node")
    if nics is None:
        nics = 1
        if nodes > 1:
            assumptions.append("nics_per_node empty: 1 NIC per node")
    inter_link = _text(row, "inter_link")
    if nodes > 1 and inter_link is None:
        raise Unsupported("inter_link is empty for a multi-node job")
    try:
        cluster = catalog.cluster(
            _required_text(row, "gpu"), nodes, gpus_per_node,
            _required_text(row, "intra_link"), inter_link if nodes > 1 else None, int(nics),
        )
    except ConfigError as exc:
        raise Unsupported(str(exc)) from None
    return cluster, tuple(assumptions)


Predictor = Callable[[pd.Series], Prediction]


def _predict_allreduce_busbw(row: pd.Series) -> Prediction:
    from models import collectives

    cluster, assumptions = row_cluster(row)
    size_bytes = _number(row, "message_bytes")
    if size_bytes is None:
        raise Unsupported("message_bytes is empty")
    collective = _text(row, "collective")
    if collective in ("all_reduce", "allreduce"):
        algorithm = _text(row, "algorithm") or "auto"
    else:
        # Older rows name the NCCL algorithm in the collective column.
        algorithm = collective or "auto"
    try:
        busbw = collectives.predict_allreduce_busbw_Bps(size_bytes, cluster, algorithm=algorithm)
    except ConfigError as exc:
        raise Unsupported(str(exc)) from None
    return Prediction(busbw / 1e9, assumptions)


#: Iterations of each engine run without noise: every iteration of a synchronous
#: algorithm is then the same length, so a few suffice.
ENGINE_ITERATIONS = 20

#: Sigma of the log-normal compute jitter (mean-1 factor, one draw per worker and
#: compute phase) of every multi-GPU engine run. Shared GPU clusters are not
#: noise-free: clocks, data loading and the OS make each worker's step a little
#: longer or shorter, and a synchronous step waits for the slowest of N workers, so a
#: noise-free run over-predicts scaling. One value for all rows, a property of real
#: clusters rather than of a row; 0 turns the jitter off. Fitted by
#: ``python benchmarks/jitter_fit.py`` (soft-L1 loss on log errors, grid step 0.005)
#: to the multi-GPU rows of data/validation/published.csv that measure scaling:
#: throughput with gpus_total > 1 and scaling_efficiency (160 rows, 20 publications;
#: leave-one-publication-out refits give 0.035-0.045).
COMPUTE_JITTER_SIGMA = 0.040
#: Iterations of a run with jitter: enough for the mean over the noise to settle (on
#: 8 GPUs at sigma 0.1 the mean wait for the slowest worker comes within about 2% of
#: its expectation, :func:`simulator.stragglers.expected_max`; 50 steps miss by 10%).
JITTER_ITERATIONS = 200
#: Seed of the jitter draws (fixed: the same rows get the same predictions).
JITTER_SEED = 0

#: Fields a source left empty that another publication of the same run or benchmark
#: harness states. Matched on text in the row's source (a benchmark harness, an MLPerf
#: result id), never on a row id; each entry carries its citation, and a row that uses
#: one lists it among its assumptions.
DOCUMENTED_DEFAULTS: tuple[tuple[str, str, float, str], ...] = (
    ("Horovod docs benchmarks", "batch_per_gpu", 64,
     "Horovod docs/benchmarks.rst reproduces its benchmark with tf_cnn_benchmarks.py "
     "--batch_size 64 --variable_update horovod"),
    ("Horovod README", "batch_per_gpu", 64,
     "the README's Benchmarks section, later docs/benchmarks.rst, reproduces the benchmark "
     "with tf_cnn_benchmarks.py --batch_size 64 --variable_update horovod"),
    ("MLPerf-ID 3.0-2053", "batch_per_gpu", 400,
     "MLPerf Training v3.0 Dell submission, mlcommons/training_results_v3.0 "
     "Dell/benchmarks/resnet/implementations/mxnet/config_XE9680x8H100-SXM-80GB.sh: "
     "BATCHSIZE=400 (result logs: batch_size=400, 8 GPUs)"),
    ("MLPerf-ID 3.0-2071", "batch_per_gpu", 50,
     "MLPerf Training v3.0 NVIDIA submission, mlcommons/training_results_v3.0 "
     "NVIDIA/results/dgxh100_n8_ngc23.04_mxnet/resnet/result_0.txt: d_batch_size 50, "
     "global_batch_size 3200"),
    ("DGX H100", "nics_per_node", 8,
     "NVIDIA DGX H100 datasheet: eight single-port ConnectX-7 400 Gb/s InfiniBand "
     "adapters for the compute fabric"),
)

#: Evaluation inside the timed region of time-to-train, per convergence workload:
#: (validation samples, epochs between evaluations, source). Each evaluation is one
#: forward pass over the validation set shared by all GPUs.
EVALUATION: dict[str, tuple[int, float, str]] = {
    "resnet50": (50_000, 4.0,
                 "MLPerf Training rules, ResNet-50: evaluation on the 50,000 ImageNet "
                 "validation images every 4 epochs (EVAL_PERIOD=4 in the v3.0 "
                 "submissions' configs; eval_samples 50000 in their result logs)"),
}


@dataclass(frozen=True)
class RowSetup:
    """What the engine needs from a row, with the assumptions made to fill it in."""

    model: str
    batch_per_gpu: int
    precision: str
    #: Micro-batches whose gradients are summed before one all-reduce and update.
    accumulation_steps: int
    cluster: ClusterSpec
    algorithm: str
    assumptions: tuple[str, ...]
    framework: str = "pytorch"
    #: Algorithm options the row states (its ``servers`` and ``aggregation`` columns),
    #: as (option, value) pairs; the rest take the algorithm's defaults.
    algorithm_options: tuple[tuple[str, object], ...] = ()
    #: What the row timed (:data:`PHASES`).
    phases: str = "step"

    @property
    def global_batch(self) -> int:
        return self.cluster.world_size * self.batch_per_gpu * self.accumulation_steps


def _with_documented_defaults(row: pd.Series) -> tuple[pd.Series, tuple[str, ...]]:
    source = _text(row, "source") or ""
    row = row.copy()
    assumptions = []
    for needle, column, value, citation in DOCUMENTED_DEFAULTS:
        if needle in source and _text(row, column) is None:
            row[column] = value
            assumptions.append(f"{column} empty: {value:g} ({citation})")
    return row, tuple(assumptions)


def _positive_int(row: pd.Series, column: str, default: int | None = None) -> int:
    value = _number(row, column)
    if value is None:
        if default is None:
            raise Unsupported(f"{column} is empty")
        return default
    if value != int(value) or value < 1:
        raise Unsupported(f"{column} {value!r} is not a positive integer")
    return int(value)


def row_setup(row: pd.Series) -> RowSetup:
    """Workload, batch, precision, cluster and algorithm of a training-speed row."""
    from models.workloads import workload
    from simulator.algorithms import available

    row, documented = _with_documented_defaults(row)
    cluster, assumptions = row_cluster(row)
    model = _required_text(row, "model")
    try:
        workload(model, "model")
    except ConfigError as exc:
        raise Unsupported(str(exc)) from None
    if _text(row, "batch_per_gpu") is None:
        raise Unsupported("batch_per_gpu is empty: the source does not state it")
    batch = _positive_int(row, "batch_per_gpu")
    precision = _required_text(row, "precision")
    try:
        cluster.gpu.check_precision(precision, "precision")
    except ConfigError as exc:
        raise Unsupported(str(exc)) from None
    algorithm = _text(row, "algorithm") or "allreduce"
    if algorithm not in available():
        raise Unsupported(f"algorithm {algorithm!r} is not in the engine yet "
                          f"(available: {', '.join(available())})")
    framework_id, framework_assumptions = row_framework(row)
    phases = _text(row, "phases") or "step"
    if phases not in PHASES:
        raise Unsupported(f"phases {phases!r} is not one of {', '.join(PHASES)}")
    if phases != "step" and cluster.world_size > 1:
        raise Unsupported(f"phases {phases!r} is for one-GPU rows: a data-parallel step "
                          "on several GPUs exchanges gradients and updates")
    return RowSetup(model, batch, precision, _positive_int(row, "accumulation_steps", 1),
                    cluster, algorithm, documented + assumptions + framework_assumptions,
                    framework_id, _algorithm_options(row, algorithm), phases)


#: Columns that set an option of the row's algorithm, and how to read them.
ALGORITHM_OPTION_COLUMNS = {"servers": "int", "aggregation": "text"}


def _algorithm_options(row: pd.Series, algorithm: str) -> tuple[tuple[str, object], ...]:
    from simulator.scenario import ALGORITHM_OPTIONS

    options = []
    for column, kind in ALGORITHM_OPTION_COLUMNS.items():
        if _text(row, column) is None:
            continue
        if column not in ALGORITHM_OPTIONS[algorithm]:
            raise Unsupported(f"{column} is set but algorithm {algorithm!r} has no such "
                              f"option (its options: {', '.join(ALGORITHM_OPTIONS[algorithm])})")
        value = _positive_int(row, column) if kind == "int" else _text(row, column)
        options.append((column, value))
    return tuple(options)


def row_framework(row: pd.Series) -> tuple[str, tuple[str, ...]]:
    """The row's framework: its ``framework`` column (an id, or text naming one such as
    "MXNet 1.8"), else the one its source names, else PyTorch. Anything but a stated id
    is listed among the row's assumptions."""
    from models.frameworks import DEFAULT_FRAMEWORK, FRAMEWORKS, framework_from_source

    stated = _text(row, "framework")
    if stated is not None and stated.lower() in FRAMEWORKS:
        return stated.lower(), ()
    named = framework_from_source(stated) if stated is not None else None
    if named is not None:
        return named, (f"framework {stated!r} read as {named}",)
    from_source = framework_from_source(_text(row, "source") or "")
    unknown = "" if stated is None else f" ({stated!r} is none of {', '.join(FRAMEWORKS)})"
    if from_source is not None:
        return from_source, (f"framework {from_source}: named in the source{unknown}",)
    return DEFAULT_FRAMEWORK, (f"framework {DEFAULT_FRAMEWORK}: the default{unknown}",)


def single_gpu(cluster: ClusterSpec) -> ClusterSpec:
    """One GPU of the same kind, the reference of scaling efficiency."""
    return ClusterSpec(gpu=cluster.gpu, nodes=1, gpus_per_node=1,
                       intra_link=cluster.intra_link, inter_link=None, nics_per_node=1)


def build_costs(setup: RowSetup, cluster: ClusterSpec | None = None,
                calibration: object = "auto"):
    """Engine costs of a row; gradient accumulation of k micro-batches is one leading
    pseudo-layer holding the k-1 earlier micro-batches' forward and backward passes, so
    only the last micro-batch's backward pass overlaps the all-reduce, as with PyTorch
    DDP's ``no_sync`` or Horovod's ``backward_passes_per_step``."""
    from models.compute import layer_times
    from models.workloads import workload
    from simulator.costs import Costs

    cluster = setup.cluster if cluster is None else cluster
    model = workload(setup.model)
    table = layer_times(model, cluster.gpu, setup.batch_per_gpu, setup.precision, calibration,
                        framework=setup.framework)
    steps = setup.accumulation_steps
    if steps > 1:
        micro_s = float(table[["forward_s", "backward_input_s", "backward_weight_s"]]
                        .to_numpy().sum())
        lead = {"name": "earlier micro-batches", "kind": "accumulation",
                "forward_s": (steps - 1) * micro_s, "backward_input_s": 0.0,
                "backward_weight_s": 0.0, "update_s": 0.0, "gradient_bytes": 0.0}
        table = pd.concat([pd.DataFrame([lead]), table], ignore_index=True)
    if setup.phases == "forward+backward":
        table = table.assign(update_s=0.0)
    return Costs.from_layer_times(table, cluster, setup.batch_per_gpu * steps,
                                  setup.precision, workload_id=model.id)


class Simulations:
    """Engine runs of the rows, each cluster and setup simulated once.

    ``calibration`` is handed to :func:`models.compute.layer_times` (``"auto"``, or
    constants for a refit). ``jitter_sigma``: the log-normal compute jitter of
    multi-GPU runs (:data:`COMPUTE_JITTER_SIGMA`). A single GPU runs noise-free: it
    waits for nobody, so with a mean-1 factor its expected iteration is the nominal
    one exactly, and a noisy run would only add sampling error; scaling efficiency then
    falls only by the wait for the slowest of N workers.
    """

    def __init__(self, calibration: object = "auto", iterations: int = ENGINE_ITERATIONS,
                 jitter_sigma: float | None = None):
        self.calibration = calibration
        self.iterations = iterations
        sigma = COMPUTE_JITTER_SIGMA if jitter_sigma is None else jitter_sigma
        self.jitter_sigma = require_number("jitter_sigma", sigma, minimum=0.0)
        self._runs: dict[tuple, dict] = {}

    def _stragglers(self, cluster: ClusterSpec):
        from simulator.stragglers import LogNormal, StragglerModel

        if self.jitter_sigma == 0.0 or cluster.world_size == 1:
            return None
        return StragglerModel(noise=LogNormal(self.jitter_sigma))

    def summary(self, setup: RowSetup, cluster: ClusterSpec | None = None) -> dict:
        """The run's summary (:func:`simulator.result.summarize`)."""
        from simulator.engine import simulate

        cluster = setup.cluster if cluster is None else cluster
        key = (setup.model, setup.batch_per_gpu, setup.precision, setup.accumulation_steps,
               setup.algorithm, setup.framework, setup.algorithm_options, setup.phases,
               _cluster_key(cluster))
        if key not in self._runs:
            calibration = self.calibration
            if callable(calibration):
                calibration = calibration(cluster.gpu)
            try:
                costs = build_costs(setup, cluster, calibration)
                stragglers = self._stragglers(cluster)
                options = dict(setup.algorithm_options)
                if "servers" in options:
                    # Colocated servers live on worker GPUs: the one-GPU reference of a
                    # scaling efficiency has one.
                    options["servers"] = min(options["servers"], cluster.world_size)
                if stragglers is None:
                    result = simulate(costs, setup.algorithm, iterations=self.iterations,
                                      options=options)
                else:
                    result = simulate(costs, setup.algorithm,
                                      iterations=max(self.iterations, JITTER_ITERATIONS),
                                      options=options, stragglers=stragglers,
                                      seed=JITTER_SEED)
            except ConfigError as exc:
                raise Unsupported(str(exc)) from None
            self._runs[key] = dict(result.summary)
        return self._runs[key]

    def throughput(self, row: pd.Series) -> Prediction:
        setup = row_setup(row)
        return Prediction(self.summary(setup)["throughput_samples_per_s"], setup.assumptions)

    def iteration_time(self, row: pd.Series) -> Prediction:
        setup = row_setup(row)
        return Prediction(self.summary(setup)["iteration_time_mean_s"], setup.assumptions)

    def scaling_efficiency(self, row: pd.Series) -> Prediction:
        setup = self._whole_steps(row)
        many = self.summary(setup)["throughput_samples_per_s"]
        one = self.summary(setup, single_gpu(setup.cluster))["throughput_samples_per_s"]
        return Prediction(many / (setup.cluster.world_size * one), setup.assumptions)

    def time_to_train(self, row: pd.Series) -> Prediction:
        setup = self._whole_steps(row)
        target = _text(row, "target")
        if target is None:
            raise Unsupported("target is empty")
        parts = time_to_train_parts(setup, target, self)
        return Prediction(parts["total_s"], setup.assumptions)

    @staticmethod
    def _whole_steps(row: pd.Series) -> RowSetup:
        setup = row_setup(row)
        if setup.phases != "step":
            raise Unsupported(f"phases {setup.phases!r}: {row.get('quantity')} is made of "
                              "whole optimizer steps")
        return setup

    def predictors(self) -> dict[str, Predictor]:
        return {
            "allreduce_busbw": _predict_allreduce_busbw,
            "throughput": self.throughput,
            "iteration_time": self.iteration_time,
            "scaling_efficiency": self.scaling_efficiency,
            "time_to_train": self.time_to_train,
        }


def time_to_train_parts(setup: RowSetup, target: str, simulations: Simulations
                        ) -> dict[str, float]:
    """Seconds to ``target``: optimizer steps to the target at the global batch
    (:func:`models.convergence.steps_to_target`) times the simulated iteration time,
    plus the evaluations inside the timed region (:data:`EVALUATION`).

    Initialization is not counted: MLPerf's clock starts at ``run_start``, after model
    creation and warm-up (MLPerf Training rules, "Timing"). Nothing else is added; the
    slower first epoch (data caches filling, CUDA graph capture) is left out because
    no model of it exists.
    """
    from models import convergence

    workloads = convergence.convergence_workloads()
    model = setup.model
    if model not in workloads:
        raise Unsupported(f"no convergence model for {model!r} (known: "
                          f"{', '.join(workloads)})")
    try:
        steps = convergence.steps_to_target(model, setup.global_batch, target)
    except ConfigError as exc:
        raise Unsupported(str(exc)) from None
    summary = simulations.summary(setup)
    iteration_s = summary["iteration_time_mean_s"]
    evaluation_s = 0.0
    if model in EVALUATION:
        samples, every_epochs, _ = EVALUATION[model]
        dataset = workloads[model].dataset_samples
        epochs = steps * setup.global_batch / dataset
        one_micro_batch = replace(setup, accumulation_steps=1)
        costs = build_costs(one_micro_batch, None,
                            _calibration_for(simulations, setup.cluster))
        forward_per_sample_s = costs.forward_total_s / costs.batch_per_gpu
        evaluations = math.floor(epochs / every_epochs)
        evaluation_s = (evaluations * samples / setup.cluster.world_size
                        * forward_per_sample_s)
    return {"steps": steps, "iteration_s": iteration_s, "training_s": steps * iteration_s,
            "evaluation_s": evaluation_s, "total_s": steps * iteration_s + evaluation_s}


def _cluster_key(cluster: ClusterSpec) -> tuple:
    return (cluster.gpu.id, cluster.nodes, cluster.gpus_per_node, cluster.intra_link.id,
            None if cluster.inter_link is None else cluster.inter_link.id,
            cluster.nics_per_node, cluster.topology, cluster.oversubscription,
            cluster.nodes_per_leaf)


def _calibration_for(simulations: Simulations, cluster: ClusterSpec) -> object:
    calibration = simulations.calibration
    return calibration(cluster.gpu) if callable(calibration) else calibration


PREDICTORS: dict[str, Predictor] = Simulations().predictors()


def predict_rows(table: pd.DataFrame, predictors: dict[str, Predictor] | None = None
                 ) -> pd.DataFrame:
    """Per row: measured, predicted, signed error in percent and status."""
    predictors = PREDICTORS if predictors is None else predictors
    records = []
    for _, row in table.iterrows():
        quantity = _text(row, "quantity")
        measured = _number(row, "value") if quantity else None
        record = {"id": _text(row, "id"), "source": _text(row, "source"), "quantity": quantity,
                  "measured": measured, "predicted": np.nan, "error_pct": np.nan,
                  "status": "ok", "assumptions": "",
                  "framework": (row_framework(row)[0] if quantity in TRAINING_QUANTITIES
                                else "")}
        try:
            if quantity not in QUANTITIES:
                raise Unsupported(f"quantity {quantity!r} is not one of {', '.join(QUANTITIES)}")
            if quantity not in predictors:
                raise Unsupported(f"no model yet predicts {quantity}")
            if measured is None or measured <= 0:
                raise Unsupported(f"value {measured!r} is not a positive number")
            prediction = predictors[quantity](row)
            record["predicted"] = prediction.value
            record["error_pct"] = 100.0 * (prediction.value - measured) / measured
            record["assumptions"] = "; ".join(prediction.assumptions)
        except Unsupported as exc:
            record["status"] = f"unsupported: {exc}"
        records.append(record)
    return pd.DataFrame.from_records(records)


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """By quantity: rows, median and 90th-percentile absolute error, worst row."""
    ok = rows[rows["status"] == "ok"]
    summary = []
    for quantity in QUANTITIES:
        subset = rows[rows["quantity"] == quantity]
        if subset.empty:
            continue
        scored = ok[ok["quantity"] == quantity]
        absolute = scored["error_pct"].abs()
        worst = scored.loc[absolute.idxmax()] if len(scored) else None
        summary.append({
            "quantity": quantity,
            "rows": len(subset),
            "predicted": len(scored),
            "median_abs_error_pct": absolute.median() if len(scored) else np.nan,
            "p90_abs_error_pct": absolute.quantile(0.9) if len(scored) else np.nan,
            "worst_id": worst["id"] if worst is not None else None,
            "worst_error_pct": worst["error_pct"] if worst is not None else np.nan,
        })
    return pd.DataFrame(summary)


def parity_plot(rows: pd.DataFrame, path: Path) -> Path:
    """Predicted against measured, log-log, one marker per source, one panel per quantity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator

    ok = rows[rows["status"] == "ok"]
    quantities = [q for q in QUANTITIES if (ok["quantity"] == q).any()]
    figure, axes = plt.subplots(1, max(len(quantities), 1),
                                figsize=(4.6 * max(len(quantities), 1), 6.4), squeeze=False)
    markers = "osD^v<>pXh*"
    ok = ok.assign(publication=ok["source"].fillna("unknown source").map(_publication))
    publications = sorted(ok["publication"].unique())
    for axis, quantity in zip(axes[0], quantities, strict=False):
        subset = ok[ok["quantity"] == quantity]
        for index, publication in enumerate(publications):
            points = subset[subset["publication"] == publication]
            if points.empty:
                continue
            axis.scatter(points["measured"], points["predicted"],
                         marker=markers[index % len(markers)], label=publication)
        low = min(subset["measured"].min(), subset["predicted"].min()) / 1.3
        high = max(subset["measured"].max(), subset["predicted"].max()) * 1.3
        axis.plot([low, high], [low, high], color="grey", linewidth=1)
        for factor in (0.9, 1.1):
            axis.plot([low, high], [low * factor, high * factor], color="grey", linewidth=0.6,
                      linestyle=":")
        axis.set_xscale("log")
        axis.set_yscale("log")
        # Label the 2s and 5s only where they fit: across a decade or two.
        few_decades = high / low < 300
        for ticks in (axis.xaxis, axis.yaxis):
            ticks.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
            ticks.set_minor_formatter(FuncFormatter(
                lambda value, _, show=few_decades: f"{value:g}" if show else ""))
            ticks.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.set_xlim(low, high)
        axis.set_ylim(low, high)
        axis.set_title(f"{quantity} (dotted: ±10%)")
        axis.set_xlabel(f"measured ({UNITS[quantity]})")
        axis.set_ylabel(f"predicted ({UNITS[quantity]})")
        axis.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.14))
    if not quantities:
        axes[0][0].text(0.5, 0.5, "no row could be predicted", ha="center", va="center")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=130)
    plt.close(figure)
    return path


def _publication(source: str, width: int = 60) -> str:
    """The publication a row comes from: its source before the row-specific detail
    (the system after a comma: one MLPerf round's result logs are one marker)."""
    head = source.split(" — ")[0].split(" (")[0].split(", ")[0]
    return head if len(head) <= width else head[: width - 1] + "…"
