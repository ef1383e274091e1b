"""One prediction: a scenario played out by the engine and turned into time to accuracy.

:func:`predict` builds the costs of the scenario's workload on its cluster
(:mod:`models`), simulates its algorithm with its stragglers (:mod:`simulator.engine`),
then converts the simulated throughput and update schedule into time to accuracy,
GPU-hours and cost (:mod:`simulator.accuracy`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models import convergence
from models.errors import ConfigError
from simulator.accuracy import TimeToAccuracy, time_to_accuracy
from simulator.costs import Costs
from simulator.engine import simulate
from simulator.output import atomic_write_text
from simulator.result import RunResult, ddlsim_version, to_json
from simulator.scenario import Scenario, load_scenario
from simulator.stragglers import StragglerModel

#: Fields of :meth:`Prediction.summary` that ``ddlsim predict --json`` always prints.
SUMMARY_FIELDS = (
    "throughput_samples_per_s", "iteration_time_s", "iteration_time_breakdown_s",
    "scaling_efficiency", "time_to_accuracy_s", "gpu_hours", "cost_usd",
)


@dataclass(frozen=True)
class Prediction:
    scenario: Scenario
    run: RunResult
    #: None when time to accuracy cannot be predicted; ``accuracy_note`` says why.
    accuracy: TimeToAccuracy | None
    accuracy_note: str | None = None

    def summary(self) -> dict[str, Any]:
        """Plain data (JSON-ready): the headline figures and what they rest on."""
        s = self.run.summary
        acc = self.accuracy
        cluster = self.scenario.cluster_spec()
        price = cluster.gpu.price_usd_per_hour
        return {
            "workload": self.scenario.workload.model,
            "precision": self.scenario.workload.precision,
            "framework": self.scenario.workload.framework,
            "gpu": self.scenario.cluster.gpu,
            "gpus": self.scenario.world_size,
            "algorithm": self.scenario.algorithm.name,
            "throughput_samples_per_s": s["throughput_samples_per_s"],
            "iteration_time_s": s["iteration_time_mean_s"],
            "iteration_time_p50_s": s["iteration_time_p50_s"],
            "iteration_time_p90_s": s["iteration_time_p90_s"],
            "iteration_time_p99_s": s["iteration_time_p99_s"],
            "iteration_time_breakdown_s": {
                "compute": s["compute_s"],
                "communication": s["communication_s"],
                "waiting": s["waiting_s"],
            },
            # Inside "compute": the framework's host time per step, GPU idle.
            "host_overhead_s": self.run.meta.get("costs", {}).get("host_overhead_s", 0.0),
            "scaling_efficiency": s["scaling_efficiency"],
            "staleness_mean": s["staleness_mean"],
            "staleness_p90": s["staleness_p90"],
            "failures": s.get("failures", 0),
            "global_batch": s["global_batch"],
            "target": self.scenario.workload.target,
            "samples_per_update": None if acc is None else acc.samples_per_update,
            "schedule_factor": None if acc is None else acc.schedule_factor,
            "samples_to_target": None if acc is None else acc.samples_to_target,
            "time_to_accuracy_s": None if acc is None else acc.time_to_accuracy_s,
            "gpu_hours": None if acc is None else acc.gpu_hours,
            "cost_usd": None if acc is None else acc.cost_usd,
            "price_per_gpu_hour_usd": price,
            "time_to_accuracy_note": self.accuracy_note,
            "seed": self.scenario.run.seed,
            "iterations": self.scenario.run.iterations,
            "ddlsim_version": ddlsim_version(),
        }

    def write(self, directory: Path | str) -> Path:
        """The run's DataFrames and summary, the progress curve, the prediction summary
        and the fully resolved scenario, each file written whole or not at all."""
        directory = Path(directory)
        self.run.write(directory)
        atomic_write_text(directory / "scenario.toml", self.scenario.to_toml())
        atomic_write_text(directory / "prediction.json", to_json(self.summary()))
        if self.accuracy is not None:
            atomic_write_text(directory / "accuracy_curve.csv",
                              self.accuracy.curve.to_csv(index=False))
        return directory


def straggler_model(scenario: Scenario) -> StragglerModel:
    section = scenario.stragglers
    return StragglerModel.from_section({
        name: getattr(section, name) for name in section.__dataclass_fields__})


def samples_at_batch(scenario: Scenario):
    """Samples to the scenario's target as a function of the batch behind one update."""
    entry = scenario.convergence_recipe()
    target = scenario.workload.target
    if entry is None:
        # No fitted law: the target is a fixed epoch budget (enforced at load).
        _, epochs = convergence.parse_target(target, "workload.target")
        dataset_samples = scenario.workload_spec().dataset_samples
        return lambda batch: epochs * dataset_samples
    _, recipe = entry
    return lambda batch: convergence.samples_to_target(
        scenario.workload.model, batch, target, recipe.id)


def predict(scenario: Scenario | str | Path) -> Prediction:
    """Simulate ``scenario`` (a Scenario, a file or an example name) and predict its time
    to accuracy."""
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    costs = Costs.from_models(scenario.workload_spec(), scenario.cluster_spec(),
                              scenario.workload.batch_per_gpu, scenario.workload.precision,
                              framework=scenario.workload.framework)
    run = simulate(costs, scenario.algorithm.name, iterations=scenario.run.iterations,
                   options=dict(scenario.algorithm.options),
                   stragglers=straggler_model(scenario), seed=scenario.run.seed)
    s = run.summary
    throughput = s["throughput_samples_per_s"]
    if not (throughput > 0 and math.isfinite(throughput)):
        return Prediction(scenario, run, None, "the run applied no gradients")
    steps = scenario.run.iterations
    try:
        accuracy = time_to_accuracy(
            samples_at_batch=samples_at_batch(scenario),
            algorithm=scenario.algorithm.name, update_log=run.update_log,
            workers=s["workers"], batch_per_worker=scenario.workload.batch_per_gpu,
            # Samples one synchronous step applies (backup workers' gradients dropped).
            global_batch=s["samples_processed"] / steps,
            throughput_samples_per_s=throughput, simulated_time_s=s["simulated_time_s"],
            gpus=scenario.world_size,
            price_per_gpu_hour_usd=scenario.cluster_spec().gpu.price_usd_per_hour,
            options=dict(scenario.algorithm.options))
    except ConfigError as error:
        return Prediction(scenario, run, None, str(error))
    note = None
    if not math.isfinite(accuracy.schedule_factor):
        note = ("the replayed update schedule did not reach the proxy target within "
                "its budget: the algorithm does not converge at this scale")
    return Prediction(scenario, run, accuracy, note)
