"""Scenario files: one TOML file describes one prediction, validated once, at the edge.

A scenario has five sections::

    [workload]   model, batch_per_gpu, precision, target, recipe = "auto",
                 framework = "pytorch"
    [cluster]    gpu, nodes, gpus_per_node, intra_link, inter_link (needed when nodes > 1),
                 nics_per_node = 1, topology = "single-switch", oversubscription = 1.0,
                 nodes_per_leaf = 16, price_per_gpu_hour_usd (optional)
    [algorithm]  name, and that algorithm's options only (see ALGORITHM_OPTIONS)
    [stragglers] noise = "none", sigma, alpha, slow_workers, slow_factor, transient_*,
                 failure_mtbf_s, restart_s (all defaulted)
    [run]        iterations = 100, seed = 0

``load_scenario`` reads a file (or a mapping), applies ``--set`` overrides, checks every
key, type, catalog id and cross-field constraint, and returns a frozen :class:`Scenario`
with every default filled in. Any problem is a :class:`ConfigError` naming the dotted
field (``cluster.nodes``), the value and what would be valid. Nothing is dropped or
clamped on the way; an integer where a float is expected is read as that float.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from models import catalog, convergence
from models.errors import ConfigError, nearest, require_choice, require_int, require_number
from models.frameworks import DEFAULT_FRAMEWORK, FRAMEWORKS
from models.hardware import PRECISIONS, TOPOLOGIES, ClusterSpec
from models.workloads import Workload, workload, workloads

SECTIONS = ("workload", "cluster", "algorithm", "stragglers", "run")

ALGORITHMS = ("allreduce", "ps-sync", "ps-async", "easgd", "gossip", "local-sgd")
#: ``rhd`` is recursive halving-doubling (Thakur et al. 2005).
COLLECTIVES = ("auto", "ring", "tree", "rhd", "hierarchical", "nvls")
SERVER_PLACEMENTS = ("colocated", "dedicated")
#: Who pushes to a parameter server: every GPU, or each node once for its GPUs.
PS_AGGREGATIONS = ("gpu", "node")
GOSSIP_VARIANTS = ("push", "pull")
NOISES = ("none", "lognormal", "pareto", "exponential")

#: Options each algorithm accepts, with their defaults; an option of another algorithm
#: is an error, not ignored.
ALGORITHM_OPTIONS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "allreduce": MappingProxyType({"bucket_mb": 25.0, "overlap": True, "collective": "auto"}),
    "ps-sync": MappingProxyType({"servers": 1, "server_placement": "colocated",
                                 "backup_workers": 0, "aggregation": "gpu"}),
    "ps-async": MappingProxyType({"servers": 1, "server_placement": "colocated",
                                  "staleness_bound": -1}),
    "easgd": MappingProxyType({"servers": 1, "server_placement": "colocated", "tau": 1,
                               "moving_rate": 0.9}),
    "gossip": MappingProxyType({"variant": "push"}),
    "local-sgd": MappingProxyType({"local_steps": 8}),
})

#: TOML integers are signed 64-bit; a larger one could not be written back.
_INT_MAX = 2**63 - 1
_REQUIRED = object()


# ---------------------------------------------------------------------------------------
# Sections


@dataclass(frozen=True)
class WorkloadSection:
    model: str
    batch_per_gpu: int
    precision: str
    #: ``"metric=value"`` of the model's convergence recipe, or ``"epochs=E"``.
    target: str
    #: A recipe id of ``data/convergence.toml``, or ``"auto"`` for the model's default.
    recipe: str = "auto"
    #: An id of :data:`models.frameworks.FRAMEWORKS`: which kernels are fused.
    framework: str = DEFAULT_FRAMEWORK


@dataclass(frozen=True)
class ClusterSection:
    gpu: str
    nodes: int
    gpus_per_node: int
    intra_link: str
    inter_link: str | None = None
    nics_per_node: int = 1
    topology: str = "single-switch"
    oversubscription: float = 1.0
    nodes_per_leaf: int = 16
    #: Replaces the catalog price of the GPU when set.
    price_per_gpu_hour_usd: float | None = None

    @property
    def world_size(self) -> int:
        return self.nodes * self.gpus_per_node


class Options(Mapping[str, Any]):
    """A read-only, hashable mapping of resolved algorithm options."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Any] = MappingProxyType({})):
        self._items = dict(items)

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._items.items())))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._items == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"Options({self._items!r})"


@dataclass(frozen=True)
class AlgorithmSection:
    name: str
    #: Every option of the algorithm, defaults included.
    options: Mapping[str, Any] = field(default_factory=Options)

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", Options(self.options))


@dataclass(frozen=True)
class StragglersSection:
    noise: str = "none"
    #: Log-normal noise only: sigma of the underlying normal (mean-1 log-normal).
    sigma: float = 0.1
    #: Pareto noise only: tail index (> 1 so the mean exists).
    alpha: float = 3.0
    #: The first ``slow_workers`` workers run ``slow_factor`` times slower throughout.
    slow_workers: int = 0
    slow_factor: float = 1.0
    transient_rate_per_s: float = 0.0
    transient_duration_s: float = 0.0
    transient_factor: float = 1.0
    #: Mean time between failures of one worker; 0 means no failures.
    failure_mtbf_s: float = 0.0
    restart_s: float = 0.0


@dataclass(frozen=True)
class RunSection:
    iterations: int = 100
    seed: int = 0


@dataclass(frozen=True)
class Scenario:
    workload: WorkloadSection
    cluster: ClusterSection
    algorithm: AlgorithmSection
    stragglers: StragglersSection = StragglersSection()
    run: RunSection = RunSection()
    #: The file it was read from, if any.
    path: Path | None = field(default=None, compare=False)
    #: The data as written (overrides applied, no defaults added); ``with_overrides``
    #: starts from it, so switching algorithm does not carry resolved options across.
    written: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def world_size(self) -> int:
        return self.cluster.world_size

    @property
    def global_batch(self) -> int:
        return self.workload.batch_per_gpu * self.cluster.world_size

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The fully resolved scenario, defaults included, as plain TOML-able data."""
        cluster = {key: value for key, value in _section_items(self.cluster)
                   if value is not None}
        return {
            "workload": dict(_section_items(self.workload)),
            "cluster": cluster,
            "algorithm": {"name": self.algorithm.name, **self.algorithm.options},
            "stragglers": dict(_section_items(self.stragglers)),
            "run": dict(_section_items(self.run)),
        }

    def to_toml(self) -> str:
        """:meth:`to_dict` as TOML text; ``load_scenario`` reads it back to an equal scenario."""
        return dumps_toml(self.to_dict())

    def cluster_spec(self) -> ClusterSpec:
        return _cluster_spec(self.cluster)

    def workload_spec(self) -> Workload:
        return workload(self.workload.model)

    def convergence_recipe(self) -> tuple[convergence.ConvergenceWorkload,
                                          convergence.Recipe] | None:
        """The convergence entry and recipe the target is read against, or None for a
        model without one (its target is then a fixed ``epochs=E`` schedule)."""
        return _recipe_for(self.workload.model, self.workload.recipe)


def _section_items(section: Any) -> list[tuple[str, Any]]:
    return [(f.name, getattr(section, f.name)) for f in dataclasses.fields(section)]


# ---------------------------------------------------------------------------------------
# Loading


def scenarios_dir() -> Path:
    """``data/scenarios/`` (follows ``$DDLSIM_DATA`` like the catalogs)."""
    return catalog.data_dir() / "scenarios"


def default_scenario_path() -> Path:
    """The scenario ``ddlsim predict`` runs when given none."""
    return scenarios_dir() / "default.toml"


def example_scenarios() -> dict[str, Path]:
    """The example scenarios shipped under ``data/scenarios/``, by name."""
    return {path.stem: path for path in sorted(scenarios_dir().glob("*.toml"))}


def load_scenario(source: str | Path | Mapping[str, Any],
                  overrides: Sequence[str] = ()) -> Scenario:
    """A validated scenario from a TOML file, an example name or a mapping.

    ``source`` as a string or path is a file; a bare name such as ``"default"`` that is
    not a file names an example under ``data/scenarios/``. ``overrides`` are ``--set``
    strings (``"cluster.nodes=16"``), applied before validation.
    """
    if isinstance(overrides, str):
        raise ConfigError("--set", overrides, "a sequence of 'section.key=value' strings")
    path: Path | None = None
    if isinstance(source, Mapping):
        data = source
    elif isinstance(source, str | Path):
        path = _resolve_path(source)
        data = _read_scenario_file(path)
    else:
        raise ConfigError("scenario", source, "a TOML file path, an example name or a mapping")
    data = apply_overrides(data, [parse_override(text) for text in overrides])
    return _build(data, path)


def with_overrides(scenario: Scenario, overrides: Mapping[str, Any]) -> Scenario:
    """A new validated scenario with ``{"cluster.nodes": 16, ...}`` applied.

    Values are Python values (as :func:`parse_override` would produce); keys are dotted
    paths. The same rules as ``--set`` apply, including the reset of algorithm options
    when ``algorithm.name`` changes.
    """
    if not isinstance(overrides, Mapping):
        raise ConfigError("overrides", overrides, "a mapping of 'section.key' to a value")
    pairs = [(_split_path(dotted, dotted), value) for dotted, value in overrides.items()]
    base = scenario.written if scenario.written is not None else scenario.to_dict()
    return _build(apply_overrides(base, pairs), scenario.path)


def _resolve_path(source: str | Path) -> Path:
    path = Path(source)
    try:
        if path.is_file():
            return path
    except (OSError, ValueError):  # a name too long for the OS, or with a NUL byte
        pass
    examples = example_scenarios()
    if isinstance(source, str) and source in examples:
        return examples[source]
    raise ConfigError("scenario", str(source),
                      "an existing TOML file or an example: " + ", ".join(examples),
                      nearest(path.stem, examples))


def _read_scenario_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError("scenario", str(path), f"a readable file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}", f"byte {exc.start}", "UTF-8 text") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"at line (\d+), column (\d+)", str(exc))
        reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        if match is None:
            raise ConfigError(f"{path}", None, f"valid TOML ({reason})") from None
        line = int(match.group(1))
        lines = text.splitlines()
        shown = lines[line - 1] if 0 < line <= len(lines) else ""
        raise ConfigError(f"{path}, line {line}", shown,
                          f"valid TOML ({reason} at column {match.group(2)})") from None


# ---------------------------------------------------------------------------------------
# Overrides


def parse_override(text: str) -> tuple[tuple[str, ...], Any]:
    """``"cluster.nodes=16"`` -> ``(("cluster", "nodes"), 16)``.

    The value is read as a TOML value (``16``, ``0.5``, ``true``, ``"quoted"``,
    ``[1, 2]``); anything that is not one, such as a bare ``h100-sxm`` or
    ``top1=0.759``, is taken as a string.
    """
    if not isinstance(text, str) or "=" not in text:
        raise ConfigError("--set", text, "'section.key=value', e.g. 'cluster.nodes=16'")
    dotted, _, value_text = text.partition("=")
    path = _split_path(dotted.strip(), text)
    value_text = value_text.strip()
    if not value_text:
        raise ConfigError("--set", text, "a value after '=', e.g. 'cluster.nodes=16'")
    return path, _parse_value(value_text)


def _split_path(dotted: Any, shown: Any) -> tuple[str, ...]:
    if not isinstance(dotted, str):
        raise ConfigError("--set", shown, "a dotted key such as 'cluster.nodes'")
    parts = tuple(part.strip() for part in dotted.split("."))
    if not dotted.strip() or any(not part for part in parts):
        raise ConfigError("--set", shown, "a dotted key such as 'cluster.nodes' (no empty "
                                          "parts)")
    return parts


def _parse_value(text: str) -> Any:
    try:
        document = tomllib.loads(f"value = {text}")
    except tomllib.TOMLDecodeError:
        return text
    if set(document) != {"value"}:
        return text
    return document["value"]


def apply_overrides(data: Mapping[str, Any],
                    pairs: Sequence[tuple[tuple[str, ...], Any]]) -> dict[str, Any]:
    """A deep copy of ``data`` with each ``(path, value)`` set.

    Setting ``algorithm.name`` to another algorithm drops the options written for the
    previous one (they would be errors for the new one); options set in the same batch of
    overrides still apply, whatever their order.
    """
    result = _plain_copy(data)
    ordered = sorted(pairs, key=lambda pair: pair[0] != ("algorithm", "name"))
    for path, value in ordered:
        dotted = ".".join(path)
        if path == ("algorithm", "name"):
            table = result.get("algorithm")
            if isinstance(table, dict) and table.get("name") != value:
                result["algorithm"] = {}
        target = result
        for depth, key in enumerate(path[:-1]):
            node = target.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {dotted}", node,
                                  f"a table at {'.'.join(path[:depth + 1])} to set a key in")
            target = node
        target[path[-1]] = _plain_copy(value)
    return result


def _plain_copy(value: Any) -> Any:
    """Mappings to dicts and lists to lists, recursively, so overrides never touch the
    caller's data; anything else is left for validation to judge."""
    if isinstance(value, Mapping):
        return {key: _plain_copy(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain_copy(item) for item in value]
    return value


# ---------------------------------------------------------------------------------------
# Validation


def _build(data: Any, path: Path | None) -> Scenario:
    if not isinstance(data, Mapping):
        raise ConfigError("scenario", data, "a table of sections: " + ", ".join(SECTIONS))
    for key in data:
        if key not in SECTIONS:
            raise ConfigError(_name(key), _short(data[key]),
                              "a section: " + ", ".join(SECTIONS), nearest(key, SECTIONS))
    tables = {name: _table(name, data.get(name, _REQUIRED if name in
                                          ("workload", "cluster", "algorithm") else {}))
              for name in SECTIONS}

    cluster = _cluster_section(tables["cluster"])
    spec = _cluster_spec(cluster)
    workload_section = _workload_section(tables["workload"], spec)
    algorithm = _algorithm_section(tables["algorithm"], cluster.world_size)
    stragglers = _stragglers_section(tables["stragglers"], cluster.world_size)
    run = _run_section(tables["run"])
    return Scenario(workload_section, cluster, algorithm, stragglers, run, path=path,
                    written=MappingProxyType(_plain_copy(data)))


def _name(key: Any) -> str:
    return key if isinstance(key, str) else repr(key)


def _short(value: Any) -> Any:
    """A table's keys rather than its whole contents, to keep messages readable."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(_name(key) for key in value) + "}"
    return value


def _table(section: str, value: Any) -> Mapping[str, Any]:
    if value is _REQUIRED:
        raise ConfigError(section, None, "a [" + section + "] table (the section is required)")
    if not isinstance(value, Mapping):
        raise ConfigError(section, value, "a table of keys")
    return value


def _check_keys(section: str, table: Mapping[str, Any], allowed: Sequence[str],
                required: Sequence[str] = ()) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{section}.{_name(key)}", _short(table[key]),
                              "a key of [" + section + "]: " + ", ".join(allowed),
                              nearest(key, allowed))
    for key in required:
        if key not in table:
            raise ConfigError(f"{section}.{key}", None, "a value (the key is required)")


def _str(field_name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(field_name, value, "a string")
    return value


def _bool(field_name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(field_name, value, "true or false")
    return value


def _int(field_name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    value = require_int(field_name, value, minimum=minimum, maximum=maximum)
    if value > _INT_MAX:
        raise ConfigError(field_name, value, f"an integer <= {_INT_MAX} (TOML's 64-bit range)")
    return value


def _float(field_name: str, value: Any, minimum: float | None = None,
           maximum: float | None = None, exclusive_minimum: bool = False) -> float:
    # A huge int would overflow the float conversion inside the finiteness check.
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _INT_MAX:
        raise ConfigError(field_name, value, f"a number of magnitude <= {_INT_MAX}")
    return require_number(field_name, value, minimum=minimum, maximum=maximum,
                          exclusive_minimum=exclusive_minimum)


def _choice(field_name: str, value: Any, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(field_name, value, "one of " + ", ".join(choices),
                          nearest(value, choices) if isinstance(value, str) else None)
    return value


_CLUSTER_KEYS = ("gpu", "nodes", "gpus_per_node", "intra_link", "inter_link", "nics_per_node",
                 "topology", "oversubscription", "nodes_per_leaf", "price_per_gpu_hour_usd")


def _cluster_section(table: Mapping[str, Any]) -> ClusterSection:
    _check_keys("cluster", table, _CLUSTER_KEYS,
                required=("gpu", "nodes", "gpus_per_node", "intra_link"))
    gpus = catalog.gpus()
    links = catalog.links()
    gpu = require_choice("cluster.gpu", table["gpu"], gpus)
    nodes = _int("cluster.nodes", table["nodes"], 1)
    gpus_per_node = _int("cluster.gpus_per_node", table["gpus_per_node"], 1)
    intra_link = require_choice("cluster.intra_link", table["intra_link"], links)
    inter_link = table.get("inter_link")
    if inter_link is not None:
        inter_link = require_choice("cluster.inter_link", inter_link, links)
    elif "inter_link" in table:
        raise ConfigError("cluster.inter_link", None, "a link id")
    elif nodes > 1:
        raise ConfigError("cluster.inter_link", None,
                          f"a link id between nodes (cluster.nodes = {nodes}): one of "
                          + ", ".join(sorted(links)))
    price = table.get("price_per_gpu_hour_usd")
    if price is not None or "price_per_gpu_hour_usd" in table:
        price = _float("cluster.price_per_gpu_hour_usd", price, minimum=0.0,
                       exclusive_minimum=True)
    return ClusterSection(
        gpu=gpu,
        nodes=nodes,
        gpus_per_node=gpus_per_node,
        intra_link=intra_link,
        inter_link=inter_link,
        nics_per_node=_int("cluster.nics_per_node", table.get("nics_per_node", 1), 1),
        topology=_choice("cluster.topology", table.get("topology", "single-switch"),
                         TOPOLOGIES),
        oversubscription=_float("cluster.oversubscription",
                                table.get("oversubscription", 1.0), minimum=1.0),
        nodes_per_leaf=_int("cluster.nodes_per_leaf", table.get("nodes_per_leaf", 16), 1),
        price_per_gpu_hour_usd=price,
    )


def _cluster_spec(c: ClusterSection) -> ClusterSpec:
    spec = catalog.cluster(c.gpu, c.nodes, c.gpus_per_node, c.intra_link, c.inter_link,
                           nics_per_node=c.nics_per_node, topology=c.topology,
                           oversubscription=c.oversubscription, nodes_per_leaf=c.nodes_per_leaf)
    if c.price_per_gpu_hour_usd is None:
        return spec
    gpu = dataclasses.replace(spec.gpu, price_usd_per_hour=c.price_per_gpu_hour_usd,
                              price_source="scenario cluster.price_per_gpu_hour_usd",
                              price_date=None)
    return dataclasses.replace(spec, gpu=gpu)


_WORKLOAD_KEYS = ("model", "batch_per_gpu", "precision", "target", "recipe", "framework")


def _workload_section(table: Mapping[str, Any], spec: ClusterSpec) -> WorkloadSection:
    _check_keys("workload", table, _WORKLOAD_KEYS,
                required=("model", "batch_per_gpu", "precision", "target"))
    model = require_choice("workload.model", table["model"], workloads())
    batch = _int("workload.batch_per_gpu", table["batch_per_gpu"], 1)
    precision = _choice("workload.precision", table["precision"], PRECISIONS)
    spec.gpu.check_precision(precision, "workload.precision")
    recipe = _str("workload.recipe", table.get("recipe", "auto"))
    target = _str("workload.target", table["target"])
    _check_recipe_and_target(model, recipe, target)
    framework = _choice("workload.framework", table.get("framework", DEFAULT_FRAMEWORK),
                        tuple(FRAMEWORKS))
    return WorkloadSection(model, batch, precision, target, recipe, framework)


def _recipe_for(model: str, recipe: str) -> tuple[convergence.ConvergenceWorkload,
                                                  convergence.Recipe] | None:
    entries = convergence.convergence_workloads()
    if model not in entries:
        return None
    entry = entries[model]
    chosen = entry.default_recipe if recipe == "auto" else recipe
    return entry, entry.recipes[chosen]


def _check_recipe_and_target(model: str, recipe: str, target: str) -> None:
    entries = convergence.convergence_workloads()
    entry = entries.get(model)
    if entry is None:
        if recipe != "auto":
            raise ConfigError("workload.recipe", recipe,
                              f"'auto' ({model} has no convergence recipe in "
                              "data/convergence.toml)")
    elif recipe != "auto" and recipe not in entry.recipes:
        choices = ["auto", *entry.recipes]
        raise ConfigError("workload.recipe", recipe,
                          f"a recipe of {model}: " + ", ".join(choices),
                          nearest(recipe, choices))
    metric, value = convergence.parse_target(target, "workload.target")
    if metric == "epochs":
        if value <= 0:
            raise ConfigError("workload.target", target, "'epochs=E' with E > 0")
        if entry is not None and entry.dataset_samples is None:
            raise ConfigError("workload.target", target,
                              f"a metric target: {model}'s published counts start from a "
                              "checkpoint, so epochs are not defined"
                              + _known_targets(entry, recipe))
        return
    if entry is None:
        raise ConfigError("workload.target", target,
                          f"'epochs=E' ({model} has no convergence recipe in "
                          "data/convergence.toml, so only a fixed schedule is known)")
    chosen = entry.recipes[entry.default_recipe if recipe == "auto" else recipe]
    if chosen.target != (metric, value):
        known = [] if chosen.target is None else [f"{chosen.target[0]}={chosen.target[1]:g}"]
        valid = "one of " + ", ".join(known + ["epochs=<E>"])
        if entry.dataset_samples is None:
            valid = "one of " + ", ".join(known) if known else "no target"
        raise ConfigError("workload.target", target,
                          f"{valid} for recipe {chosen.id!r} of {model}",
                          nearest(target, known))


def _known_targets(entry: convergence.ConvergenceWorkload, recipe: str) -> str:
    chosen = entry.recipes[entry.default_recipe if recipe == "auto" else recipe]
    if chosen.target is None:
        return ""
    return f", e.g. '{chosen.target[0]}={chosen.target[1]:g}'"


def _algorithm_section(table: Mapping[str, Any], world_size: int) -> AlgorithmSection:
    if "name" not in table:
        raise ConfigError("algorithm.name", None,
                          "a value (the key is required): one of " + ", ".join(ALGORITHMS))
    name = _choice("algorithm.name", table["name"], ALGORITHMS)
    defaults = ALGORITHM_OPTIONS[name]
    allowed = ["name", *defaults]
    for key in table:
        if key in allowed:
            continue
        owners = [other for other, options in ALGORITHM_OPTIONS.items() if key in options]
        valid = f"an option of {name}: " + (", ".join(defaults) if defaults else "none")
        if owners:
            valid += f" ('{key}' is an option of {', '.join(owners)})"
        raise ConfigError(f"algorithm.{_name(key)}", _short(table[key]), valid,
                          nearest(key, allowed))
    options = {key: _option(name, key, table.get(key, default), world_size)
               for key, default in defaults.items()}
    if "aggregation" in options:
        from simulator.algorithms.ps_sync import check_backup_with_aggregation

        check_backup_with_aggregation(options["backup_workers"], options["aggregation"])
    return AlgorithmSection(name, options)


def _option(algorithm: str, key: str, value: Any, world_size: int) -> Any:
    where = f"algorithm.{key}"
    if key == "bucket_mb":
        return _float(where, value, minimum=0.0, exclusive_minimum=True)
    if key == "overlap":
        return _bool(where, value)
    if key == "collective":
        return _choice(where, value, COLLECTIVES)
    if key == "servers":
        return _int(where, value, 1)
    if key == "server_placement":
        return _choice(where, value, SERVER_PLACEMENTS)
    if key == "aggregation":
        return _choice(where, value, PS_AGGREGATIONS)
    if key == "backup_workers":
        backup = _int(where, value, 0)
        if backup >= world_size:
            raise ConfigError(where, backup, f"an integer >= 0 and < {world_size}, the cluster's "
                                             "worker count (at least one gradient must be "
                                             "waited for)")
        return backup
    if key == "staleness_bound":
        return _int(where, value, -1)
    if key == "tau":
        return _int(where, value, 1)
    if key == "moving_rate":
        return _float(where, value, minimum=0.0, maximum=1.0, exclusive_minimum=True)
    if key == "variant":
        return _choice(where, value, GOSSIP_VARIANTS)
    if key == "local_steps":
        return _int(where, value, 1)
    raise ConfigError(where, value, f"an option of {algorithm}")  # unreachable by design


_STRAGGLER_KEYS = tuple(f.name for f in dataclasses.fields(StragglersSection))


def _stragglers_section(table: Mapping[str, Any], world_size: int) -> StragglersSection:
    _check_keys("stragglers", table, _STRAGGLER_KEYS)
    d = StragglersSection()

    def get(key: str) -> Any:
        return table.get(key, getattr(d, key))

    slow_workers = _int("stragglers.slow_workers", get("slow_workers"), 0)
    if slow_workers > world_size:
        raise ConfigError("stragglers.slow_workers", slow_workers,
                          f"an integer >= 0 and <= {world_size}, the cluster's "
                          "worker count")
    rate = _float("stragglers.transient_rate_per_s", get("transient_rate_per_s"), minimum=0.0)
    duration = _float("stragglers.transient_duration_s", get("transient_duration_s"),
                      minimum=0.0)
    if rate > 0 and duration <= 0:
        raise ConfigError("stragglers.transient_duration_s", duration,
                          "a number > 0 when stragglers.transient_rate_per_s > 0")
    return StragglersSection(
        noise=_choice("stragglers.noise", get("noise"), NOISES),
        sigma=_float("stragglers.sigma", get("sigma"), minimum=0.0),
        alpha=_float("stragglers.alpha", get("alpha"), minimum=1.0, exclusive_minimum=True),
        slow_workers=slow_workers,
        slow_factor=_float("stragglers.slow_factor", get("slow_factor"), minimum=1.0),
        transient_rate_per_s=rate,
        transient_duration_s=duration,
        transient_factor=_float("stragglers.transient_factor", get("transient_factor"),
                                minimum=1.0),
        failure_mtbf_s=_float("stragglers.failure_mtbf_s", get("failure_mtbf_s"),
                              minimum=0.0),
        restart_s=_float("stragglers.restart_s", get("restart_s"), minimum=0.0),
    )


def _run_section(table: Mapping[str, Any]) -> RunSection:
    _check_keys("run", table, ("iterations", "seed"))
    return RunSection(
        iterations=_int("run.iterations", table.get("iterations", 100), 1),
        seed=_int("run.seed", table.get("seed", 0), 0),
    )


# ---------------------------------------------------------------------------------------
# Writing


def dumps_toml(data: Mapping[str, Mapping[str, Any]]) -> str:
    """Sections of scalars and lists as TOML text (what :meth:`Scenario.to_dict` holds)."""
    blocks = []
    for section, table in data.items():
        lines = [f"[{_toml_key(section)}]"]
        lines += [f"{_toml_key(key)} = {_toml_value(value)}" for key, value in table.items()]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_string(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise ConfigError("scenario value", value, "a string, number, boolean or list")


def _toml_string(text: str) -> str:
    escaped = []
    for char in text:
        if char == '"':
            escaped.append('\\"')
        elif char == "\\":
            escaped.append("\\\\")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'
