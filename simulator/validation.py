"""Predictions against published measurements: the engine of ``ddlsim validate``.

One row of the input CSV is one published number. Each row is predicted from the
catalogs and models alone (nothing here is fitted to a row); a row that cannot be
modeled is reported as ``unsupported: <reason>`` and the others go on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from models import catalog
from models.errors import ConfigError
from models.hardware import ClusterSpec

QUANTITIES = ("throughput", "iteration_time", "scaling_efficiency", "allreduce_busbw",
              "time_to_train")
REQUIRED_COLUMNS = ("id", "source", "quantity", "value", "model", "batch_per_gpu", "precision",
                    "gpu", "gpus_total", "gpus_per_node", "intra_link", "inter_link",
                    "nics_per_node", "algorithm", "collective", "message_bytes", "target")
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


def _workload_setup(row: pd.Series) -> tuple[object, int, str]:
    from models.workloads import workload

    try:
        model = workload(_required_text(row, "model"), "model")
    except ConfigError as exc:
        raise Unsupported(str(exc)) from None
    batch = _number(row, "batch_per_gpu")
    if batch is None:
        raise Unsupported("batch_per_gpu is empty")
    if batch != int(batch) or batch < 1:
        raise Unsupported(f"batch_per_gpu {batch!r} is not a positive integer")
    return model, int(batch), _required_text(row, "precision")


def _predict_throughput(row: pd.Series) -> Prediction:
    from models import compute

    cluster, assumptions = row_cluster(row)
    model, batch, precision = _workload_setup(row)
    if cluster.world_size != 1:
        raise Unsupported("multi-GPU throughput needs the simulation engine")
    try:
        value = compute.training_throughput_samples_per_s(model, cluster.gpu, batch, precision)
    except ConfigError as exc:
        raise Unsupported(str(exc)) from None
    return Prediction(value, assumptions)


PREDICTORS: dict[str, Predictor] = {
    "allreduce_busbw": _predict_allreduce_busbw,
    "throughput": _predict_throughput,
}


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
                  "status": "ok", "assumptions": ""}
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
                                figsize=(4.6 * max(len(quantities), 1), 4.6), squeeze=False)
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
        for ticks in (axis.xaxis, axis.yaxis):
            ticks.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
            ticks.set_minor_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
            ticks.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.set_xlim(low, high)
        axis.set_ylim(low, high)
        axis.set_title(f"{quantity} (dotted: ±10%)")
        axis.set_xlabel(f"measured ({UNITS[quantity]})")
        axis.set_ylabel(f"predicted ({UNITS[quantity]})")
        axis.legend(fontsize=6, loc="upper left")
    if not quantities:
        axes[0][0].text(0.5, 0.5, "no row could be predicted", ha="center", va="center")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=130)
    plt.close(figure)
    return path


def _publication(source: str, width: int = 60) -> str:
    """The publication a row comes from: its source before the row-specific detail."""
    head = source.split(" — ")[0].split(" (")[0]
    return head if len(head) <= width else head[: width - 1] + "…"
