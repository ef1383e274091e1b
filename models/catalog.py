"""The one catalog loader: reads the human-edited TOML files under ``data/``.

Files use the units people quote (TFLOP/s, GB/s, Gbit/s, GB, microseconds); this module
converts them to SI once, at the edge, and builds the frozen specs of
:mod:`models.hardware`.
"""

from __future__ import annotations

import datetime
import os
import re
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

from models.errors import (
    ConfigError,
    nearest,
    require_choice,
    require_number,
    require_positive,
)
from models.hardware import ClusterSpec, GPUSpec, LinkSpec

_GPU_KEYS = {"name", "vendor", "architecture", "memory_bandwidth_GBps", "memory_GB", "source",
             "vector_tflops", "matrix_tflops", "price"}
_PRICE_KEYS = {"usd_per_hour", "source", "date"}
_LINK_KEYS = {"name", "transport", "bandwidth_GBps", "bandwidth_Gbps", "latency_us",
              "efficiency", "source"}


def data_dir() -> Path:
    """``data/`` of the checkout, or ``$DDLSIM_DATA`` when set."""
    override = os.environ.get("DDLSIM_DATA")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent.parent / "data"


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError("catalog file", str(path), "an existing TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("catalog file", str(path), f"valid TOML ({exc})") from None


def _check_keys(where: str, entry: dict[str, Any], allowed: set[str], required: set[str]) -> None:
    if not isinstance(entry, dict):
        raise ConfigError(where, entry, "a table of " + ", ".join(sorted(allowed)))
    for key in entry:
        if key not in allowed:
            raise ConfigError(f"{where}.{key}", entry[key], "a known key: " +
                              ", ".join(sorted(allowed)), nearest(key, allowed))
    for key in sorted(required - entry.keys()):
        raise ConfigError(f"{where}.{key}", None, "a value (the field is required)")


def _tflops(where: str, table: Any) -> dict[str, float]:
    if not isinstance(table, dict):
        raise ConfigError(where, table, "a table of precision = TFLOP/s")
    return {precision: require_number(f"{where}.{precision}", value, minimum=0.0,
                                      exclusive_minimum=True) * 1e12
            for precision, value in table.items()}


def _text(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(where, value, "a non-empty string")
    return value


#: A price is dated to the month or the day it was listed.
_DATE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?$")


def _price(where: str, entry: dict[str, Any]) -> tuple[float | None, str | None, str | None]:
    """(usd_per_hour, source, date) of an optional ``price`` table; all three or none."""
    if "price" not in entry:
        return None, None, None
    price = entry["price"]
    if not isinstance(price, dict):
        raise ConfigError(where, price, "a table { usd_per_hour, source, date }")
    _check_keys(where, price, _PRICE_KEYS, _PRICE_KEYS)
    date = price["date"]
    if isinstance(date, datetime.date):  # an unquoted TOML date
        date = date.isoformat()
    if not isinstance(date, str) or not _DATE.match(date):
        raise ConfigError(f"{where}.date", price["date"], "a date YYYY-MM or YYYY-MM-DD")
    return (require_positive(f"{where}.usd_per_hour", price["usd_per_hour"]),
            _text(f"{where}.source", price["source"]), date)


def parse_gpu(gpu_id: str, entry: dict[str, Any]) -> GPUSpec:
    where = f"gpus.{gpu_id}"
    _check_keys(where, entry, _GPU_KEYS, _GPU_KEYS - {"price"})
    usd_per_hour, price_source, price_date = _price(f"{where}.price", entry)
    return GPUSpec(
        id=gpu_id,
        name=_text(f"{where}.name", entry["name"]),
        vendor=_text(f"{where}.vendor", entry["vendor"]),
        architecture=_text(f"{where}.architecture", entry["architecture"]),
        vector_flops_per_s=_tflops(f"{where}.vector_tflops", entry["vector_tflops"]),
        matrix_flops_per_s=_tflops(f"{where}.matrix_tflops", entry["matrix_tflops"]),
        memory_bandwidth_Bps=require_number(f"{where}.memory_bandwidth_GBps",
                                            entry["memory_bandwidth_GBps"], minimum=0.0,
                                            exclusive_minimum=True) * 1e9,
        memory_bytes=require_number(f"{where}.memory_GB", entry["memory_GB"], minimum=0.0,
                                    exclusive_minimum=True) * 1e9,
        source=_text(f"{where}.source", entry["source"]),
        price_usd_per_hour=usd_per_hour,
        price_source=price_source,
        price_date=price_date,
    )


def parse_link(link_id: str, entry: dict[str, Any]) -> LinkSpec:
    where = f"links.{link_id}"
    _check_keys(where, entry, _LINK_KEYS,
                _LINK_KEYS - {"bandwidth_GBps", "bandwidth_Gbps"})
    units = [key for key in ("bandwidth_GBps", "bandwidth_Gbps") if key in entry]
    if len(units) != 1:
        raise ConfigError(f"{where}.bandwidth", units,
                          "exactly one of bandwidth_GBps or bandwidth_Gbps")
    scale = 1e9 if units[0] == "bandwidth_GBps" else 1e9 / 8
    return LinkSpec(
        id=link_id,
        name=_text(f"{where}.name", entry["name"]),
        transport=entry["transport"],
        bandwidth_Bps=require_number(f"{where}.{units[0]}", entry[units[0]], minimum=0.0,
                                     exclusive_minimum=True) * scale,
        latency_s=require_number(f"{where}.latency_us", entry["latency_us"], minimum=0.0) * 1e-6,
        efficiency=entry["efficiency"],
        source=_text(f"{where}.source", entry["source"]),
    )


@cache
def gpus() -> dict[str, GPUSpec]:
    table = read_toml(data_dir() / "hardware" / "gpus.toml").get("gpus", {})
    return {gpu_id: parse_gpu(gpu_id, entry) for gpu_id, entry in table.items()}


@cache
def links() -> dict[str, LinkSpec]:
    table = read_toml(data_dir() / "hardware" / "links.toml").get("links", {})
    return {link_id: parse_link(link_id, entry) for link_id, entry in table.items()}


def gpu(gpu_id: str, field_name: str = "gpu") -> GPUSpec:
    return gpus()[require_choice(field_name, gpu_id, gpus())]


def link(link_id: str, field_name: str = "link") -> LinkSpec:
    return links()[require_choice(field_name, link_id, links())]


def cluster(
    gpu_id: str,
    nodes: int,
    gpus_per_node: int,
    intra_link_id: str,
    inter_link_id: str | None = None,
    nics_per_node: int = 1,
    topology: str = "single-switch",
    oversubscription: float = 1.0,
    nodes_per_leaf: int = 16,
) -> ClusterSpec:
    """A cluster from catalog ids; errors name the ``cluster.*`` field at fault."""
    return ClusterSpec(
        gpu=gpu(gpu_id, "cluster.gpu"),
        nodes=nodes,
        gpus_per_node=gpus_per_node,
        intra_link=link(intra_link_id, "cluster.intra_link"),
        inter_link=None if inter_link_id is None else link(inter_link_id, "cluster.inter_link"),
        nics_per_node=nics_per_node,
        topology=topology,
        oversubscription=oversubscription,
        nodes_per_leaf=nodes_per_leaf,
    )
