"""Training algorithms, one module each, found by name.

An algorithm module is a plain Python module with four names:

``OPTIONS``
    a mapping of option name to default value; scenario files and
    ``simulate(options=...)`` use exactly these names (unknown names are refused by the
    engine with a ``ConfigError`` naming ``algorithm.<name>``).
``SYNCHRONOUS``
    ``True`` when every update is one step of all workers (the summary then reports no
    staleness).
``validate(options, costs) -> dict``
    receives the defaults overlaid with the user's options and a
    :class:`simulator.costs.Costs`; returns the resolved options (the result's meta
    records them) or raises :class:`models.errors.ConfigError` whose field is
    ``algorithm.<option>``.
``run(ctx) -> simpy.Event``
    starts the algorithm's SimPy processes on ``ctx.env`` and returns the event that
    fires when the run is complete (a process, or an event it triggers). ``ctx`` is a
    :class:`simulator.engine.Context`: ``env``, ``costs``, ``options`` (resolved),
    ``iterations``, ``workers``, ``seed``, ``recorder`` (report every finished
    iteration with ``recorder.iteration(...)`` and every model update with
    ``recorder.update(...)``), ``compute(worker, base_s)`` (a failure- and
    straggler-aware compute phase to ``yield from``), ``plan_compute(...)`` (the same,
    computed without waiting), ``cluster_network(extra_nodes)`` (flow-level links of the
    cluster) and ``gradients_applied`` (to be counted by the algorithm).

Register a new module in :data:`ALGORITHMS`; a name whose module is not present yet is
reported as unknown.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from models.errors import ConfigError, nearest

#: Algorithm name -> module implementing it.
ALGORITHMS = {
    "allreduce": "simulator.algorithms.allreduce",
    "ps-sync": "simulator.algorithms.ps_sync",
    "ps-async": "simulator.algorithms.ps_async",
    "easgd": "simulator.algorithms.easgd",
    "gossip": "simulator.algorithms.gossip",
    "local-sgd": "simulator.algorithms.local_sgd",
}


def available() -> tuple[str, ...]:
    """Names whose module is present."""
    return tuple(name for name, path in ALGORITHMS.items()
                 if importlib.util.find_spec(path) is not None)


def algorithm_module(name: str) -> ModuleType:
    names = available()
    if not isinstance(name, str) or name not in names:
        raise ConfigError("algorithm.name", name, "one of " + ", ".join(names),
                          nearest(name, names))
    return importlib.import_module(ALGORITHMS[name])
