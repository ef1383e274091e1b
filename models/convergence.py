"""Statistical efficiency of the global batch: how much training reaches a target.

The critical-batch-size law of McCandlish et al. 2018 ("An Empirical Model of
Large-Batch Training", arXiv 1812.06162, eq. 2.11) links the optimizer steps ``S`` and
the training samples ``E`` needed to reach a fixed target at global batch ``B``::

    S(B) = S_min (1 + B_noise / B)        E(B) = E_min (1 + B / B_noise)

with ``E_min = S_min * B_noise``. Below ``B_noise`` doubling the batch nearly halves the
steps (perfect scaling); above it the steps barely fall and the samples grow linearly.
Samples and epochs differ by the dataset size, so the same law holds in epochs.

The constants of each workload and training recipe are fitted (:func:`fit_critical_batch`)
to published points in ``data/convergence_points.csv`` and stored with their provenance
in ``data/convergence.toml``; ``benchmarks/fit_convergence.py`` redoes the fit. Recipes
(optimizer and schedule) are kept apart: a LARS recipe tuned per batch size and a plain
momentum-SGD recipe follow different curves, and one curve through both would be wrong.

A target is ``"metric=value"`` for the metric a recipe was measured at (for instance
``"top1=0.759"``) or ``"epochs=E"``, a fixed schedule of E passes over the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import curve_fit

from models.catalog import data_dir, read_toml
from models.errors import ConfigError, nearest, require_choice, require_number

#: How a recipe's fitted minimum is counted.
QUANTITIES = ("epochs", "samples")

_WORKLOAD_KEYS = {"name", "dataset", "dataset_samples", "dataset_source", "default_recipe",
                  "recipes"}
_RECIPE_KEYS = {"optimizer", "target", "quantity", "minimum", "noise_batch", "batch_min",
                "batch_max", "fit", "source", "notes"}


@dataclass(frozen=True)
class CriticalBatchFit:
    """``minimum`` (E_min, in the points' quantity) and ``noise_batch`` (B_noise)."""

    minimum: float
    noise_batch: float
    rms_relative_residual: float
    points: int

    def amount(self, global_batch):
        """Training (epochs or samples, as the points) to target at ``global_batch``."""
        return self.minimum * (1.0 + np.asarray(global_batch, dtype=float) / self.noise_batch)


@dataclass(frozen=True)
class Recipe:
    id: str
    optimizer: str
    #: The metric target the recipe was measured at, e.g. ("top1", 0.759); None when
    #: only fixed-epoch schedules are known for it.
    target: tuple[str, float] | None
    quantity: str
    minimum: float
    noise_batch: float
    batch_min: int
    batch_max: int
    fit: str
    source: str


@dataclass(frozen=True)
class ConvergenceWorkload:
    id: str
    name: str
    dataset: str
    #: Training-set size in samples; None where the published counts start from a
    #: checkpoint (MLPerf BERT, GPT-3), so epochs are not defined.
    dataset_samples: int | None
    default_recipe: str
    recipes: dict[str, Recipe]


def parse_target(target: Any, field_name: str = "target") -> tuple[str, float]:
    """``"top1=0.759"`` -> ``("top1", 0.759)``."""
    if not isinstance(target, str) or target.count("=") != 1:
        raise ConfigError(field_name, target, "'metric=value', e.g. 'top1=0.759' or 'epochs=90'")
    metric, _, text = target.partition("=")
    metric = metric.strip()
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(field_name, target, "'metric=value' with a numeric value") from None
    if not metric or not math.isfinite(value):
        raise ConfigError(field_name, target, "'metric=value' with a metric name and a "
                                              "finite value")
    return metric, value


def fit_critical_batch(points: pd.DataFrame) -> CriticalBatchFit:
    """Least-squares fit of ``E(B) = E_min (1 + B / B_noise)`` to published points.

    ``points`` has columns ``global_batch`` and ``value`` (epochs or samples to the
    target). Residuals are relative, so a point at 80 epochs weighs as much as one at
    35; the runs behind a published mean differ by a few percent at every batch size.
    """
    for column in ("global_batch", "value"):
        if column not in points:
            raise ConfigError("points", list(points.columns), f"a table with column {column!r}")
    batch = points["global_batch"].to_numpy(dtype=float)
    value = points["value"].to_numpy(dtype=float)
    if len(batch) < 2 or len(np.unique(batch)) < 2:
        raise ConfigError("points", len(batch), "at least two distinct batch sizes")
    if np.any(batch <= 0) or np.any(value <= 0):
        raise ConfigError("points", "non-positive batch or value", "positive numbers")

    def law(b, minimum, noise_batch):
        return minimum * (1.0 + b / noise_batch)

    # A straight line E = a + c B gives the starting point: E_min = a, B_noise = a / c.
    slope, intercept = np.polyfit(batch, value, 1)
    if intercept <= 0 or slope <= 0:
        raise ConfigError("points", "no batch-size penalty in the data",
                          "points whose training to target grows with the batch size")
    (minimum, noise_batch), _ = curve_fit(law, batch, value, p0=(intercept, intercept / slope),
                                          sigma=value, bounds=(0.0, np.inf))
    residual = (law(batch, minimum, noise_batch) - value) / value
    return CriticalBatchFit(float(minimum), float(noise_batch),
                            float(np.sqrt(np.mean(residual**2))), len(batch))


def _parse_recipe(where: str, recipe_id: str, entry: dict[str, Any]) -> Recipe:
    for key in entry:
        if key not in _RECIPE_KEYS:
            raise ConfigError(f"{where}.{key}", entry[key], "a known key: " +
                              ", ".join(sorted(_RECIPE_KEYS)), nearest(key, _RECIPE_KEYS))
    for key in ("optimizer", "quantity", "minimum", "noise_batch", "batch_max", "source"):
        if key not in entry:
            raise ConfigError(f"{where}.{key}", None, "a value (the field is required)")
    target = entry.get("target")
    noise_batch = entry["noise_batch"]
    if not (isinstance(noise_batch, float) and math.isinf(noise_batch)):
        noise_batch = require_number(f"{where}.noise_batch", noise_batch, minimum=0.0,
                                     exclusive_minimum=True)
    return Recipe(
        id=recipe_id,
        optimizer=entry["optimizer"],
        target=None if target is None else parse_target(target, f"{where}.target"),
        quantity=require_choice(f"{where}.quantity", entry["quantity"], QUANTITIES),
        minimum=require_number(f"{where}.minimum", entry["minimum"], minimum=0.0,
                               exclusive_minimum=True),
        noise_batch=float(noise_batch),
        batch_min=int(require_number(f"{where}.batch_min", entry.get("batch_min", 1),
                                     minimum=1)),
        batch_max=int(require_number(f"{where}.batch_max", entry["batch_max"], minimum=1)),
        fit=entry.get("fit", ""),
        source=entry["source"],
    )


def _parse_workload(workload_id: str, entry: dict[str, Any]) -> ConvergenceWorkload:
    where = f"convergence.{workload_id}"
    for key in entry:
        if key not in _WORKLOAD_KEYS:
            raise ConfigError(f"{where}.{key}", entry[key], "a known key: " +
                              ", ".join(sorted(_WORKLOAD_KEYS)), nearest(key, _WORKLOAD_KEYS))
    recipes = {recipe_id: _parse_recipe(f"{where}.recipes.{recipe_id}", recipe_id, recipe)
               for recipe_id, recipe in entry.get("recipes", {}).items()}
    if not recipes:
        raise ConfigError(f"{where}.recipes", None, "at least one recipe")
    samples = entry.get("dataset_samples")
    return ConvergenceWorkload(
        id=workload_id,
        name=entry.get("name", workload_id),
        dataset=entry.get("dataset", ""),
        dataset_samples=None if samples is None else int(
            require_number(f"{where}.dataset_samples", samples, minimum=1)),
        default_recipe=require_choice(f"{where}.default_recipe", entry.get("default_recipe"),
                                      recipes),
        recipes=recipes,
    )


@cache
def convergence_workloads() -> dict[str, ConvergenceWorkload]:
    """Every workload of ``data/convergence.toml``."""
    table = read_toml(data_dir() / "convergence.toml")
    return {workload_id: _parse_workload(workload_id, entry)
            for workload_id, entry in table.items()}


def convergence_points() -> pd.DataFrame:
    """The published points the constants were fitted to (``data/convergence_points.csv``)."""
    return pd.read_csv(data_dir() / "convergence_points.csv")


def find_recipe(workload_id: str,
                recipe_id: str | None = None) -> tuple[ConvergenceWorkload, Recipe]:
    """A workload and one of its recipes (its default one when ``recipe_id`` is None)."""
    entries = convergence_workloads()
    entry = entries[require_choice("workload", workload_id, entries)]
    chosen = entry.default_recipe if recipe_id is None else recipe_id
    return entry, entry.recipes[require_choice(f"recipe (of {workload_id})", chosen,
                                               entry.recipes)]


def samples_to_target(workload_id: str, global_batch: float, target: str,
                      recipe: str | None = None) -> float:
    """Training samples to reach ``target`` at ``global_batch`` (E(B) of the law).

    Batches above the largest one a recipe was measured at are refused rather than
    extrapolated: beyond it the published recipes lose accuracy or were never tuned.
    Smaller batches follow the law's small-batch limit, perfect scaling of the steps.
    """
    workload, chosen = find_recipe(workload_id, recipe)
    batch = require_number("global_batch", global_batch, minimum=1.0)
    if batch > chosen.batch_max:
        raise ConfigError("global_batch", global_batch,
                          f"<= {chosen.batch_max}, the largest batch recipe {chosen.id!r} of "
                          f"{workload_id!r} was measured at")
    metric, value = parse_target(target)
    if metric == "epochs":
        require_number("target epochs", value, minimum=0.0, exclusive_minimum=True)
        return value * _dataset_samples(workload)
    known = [] if chosen.target is None else [f"{chosen.target[0]}={chosen.target[1]:g}"]
    if chosen.target is None or (metric, value) != chosen.target:
        valid = "one of " + ", ".join(known + ["epochs=<E>"])
        raise ConfigError("target", target, f"{valid} for recipe {chosen.id!r} of "
                                            f"{workload_id!r}", nearest(target, known))
    amount = chosen.minimum * (1.0 + batch / chosen.noise_batch)
    if chosen.quantity == "epochs":
        return amount * _dataset_samples(workload)
    return amount


def steps_to_target(workload_id: str, global_batch: float, target: str,
                    recipe: str | None = None) -> float:
    """Optimizer steps to ``target``: S(B) = S_min (1 + B_noise / B)."""
    return samples_to_target(workload_id, global_batch, target, recipe) / global_batch


def epochs_to_target(workload_id: str, global_batch: float, target: str,
                     recipe: str | None = None) -> float:
    """Passes over the training set to ``target``: E(B) / dataset size."""
    workload, _ = find_recipe(workload_id, recipe)
    samples = samples_to_target(workload_id, global_batch, target, recipe)
    return samples / _dataset_samples(workload)


def _dataset_samples(workload: ConvergenceWorkload) -> int:
    if workload.dataset_samples is None:
        raise ConfigError(f"convergence.{workload.id}.dataset_samples", None,
                          "a training-set size; its published counts start from a "
                          "checkpoint, so ask for samples or steps to a metric target")
    return workload.dataset_samples
