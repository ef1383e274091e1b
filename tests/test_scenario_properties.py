"""Any scenario data either loads or fails with a ConfigError, and what loads round-trips."""

import tomllib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.errors import ConfigError
from simulator.scenario import (
    _CLUSTER_KEYS,
    _STRAGGLER_KEYS,
    _WORKLOAD_KEYS,
    ALGORITHM_OPTIONS,
    ALGORITHMS,
    SECTIONS,
    dumps_toml,
    load_scenario,
    parse_override,
    with_overrides,
)

SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
#: For the cheaper-to-break inputs, where fewer examples already cover the shapes.
LIGHT = settings(SETTINGS, max_examples=100)

KEYS = {
    "workload": _WORKLOAD_KEYS,
    "cluster": _CLUSTER_KEYS,
    "algorithm": ("name", *{key for options in ALGORITHM_OPTIONS.values() for key in options}),
    "stragglers": _STRAGGLER_KEYS,
    "run": ("iterations", "seed"),
}

BASE = {
    "workload": {"model": "resnet50", "batch_per_gpu": 32, "precision": "fp16",
                 "target": "top1=0.759"},
    "cluster": {"gpu": "v100-sxm2", "nodes": 2, "gpus_per_node": 4, "intra_link": "nvlink2",
                "inter_link": "ib-ndr"},
    "algorithm": {"name": "allreduce"},
    "stragglers": {"noise": "lognormal"},
    "run": {"iterations": 10, "seed": 1},
}

# Values near the valid ones (ids, small numbers, boundaries) and far from them, drawn in
# fixed proportions: hypothesis alone would favour the structured (list, dict) values.
ids = st.sampled_from(["resnet50", "resnet18", "v100-sxm2", "h200-sxm", "nvlink2", "nvlink4",
                       "ib-ndr", "fp32", "fp16", "fp8", "auto", "epochs=90", " epochs = 9_0",
                       "top1=0.759", "top1=nan", "epochs=-1", "goyal-sgd", "mlperf-lars",
                       "fat-tree", "single-switch", "lognormal", "pareto", "exponential",
                       "none", "push", "pull", "ring", "rhd", "dedicated", "colocated",
                       *ALGORITHMS])
small_numbers = st.one_of(st.integers(min_value=-3, max_value=40),
                          st.sampled_from([0.0, 0.5, 1.0, 1.5, 3.0, -0.0, 1e-300, 1e300]))
# Past the float range, past TOML's 64-bit integers, not finite.
extreme = st.sampled_from([10**400, -(10**400), 2**63, -(2**63) - 1, float("nan"),
                           float("inf"), float("-inf")])
wild = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
_KINDS = (ids, ids, ids, small_numbers, small_numbers, small_numbers, extreme, wild, wild)
values = st.integers(min_value=0, max_value=len(_KINDS) - 1).flatmap(lambda i: _KINDS[i])
keys = st.one_of(st.sampled_from(sorted({k for ks in KEYS.values() for k in ks})),
                 st.text(max_size=8))
sections = st.one_of(st.sampled_from(SECTIONS), st.text(max_size=8))


def check(data, overrides=()):
    try:
        scenario = load_scenario(data, overrides)
    except ConfigError:
        return None
    resolved = scenario.to_dict()
    assert load_scenario(resolved) == scenario
    assert load_scenario(tomllib.loads(scenario.to_toml())) == scenario
    return scenario


@st.composite
def mutated(draw):
    """The valid base with a few keys, sections or values broken."""
    data = {section: dict(table) for section, table in BASE.items()}
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        action = draw(st.sampled_from(["set", "set", "set", "delete", "section", "drop"]))
        section = draw(st.sampled_from(SECTIONS))
        if action == "set":
            table = data.setdefault(section, {})
            if isinstance(table, dict):
                key = draw(st.one_of(st.sampled_from(KEYS[section]), keys))
                table[key] = draw(values)
        elif action == "delete" and isinstance(data.get(section), dict) and data[section]:
            del data[section][draw(st.sampled_from(sorted(data[section])))]
        elif action == "section":
            data[draw(sections)] = draw(st.one_of(values, st.dictionaries(keys, values,
                                                                          max_size=3)))
        elif action == "drop":
            data.pop(section, None)
    return data


@st.composite
def well_formed(draw):
    """Scenarios of mostly valid values, so that many load and are round-tripped."""
    small = st.integers(min_value=0, max_value=20)
    positive = st.floats(min_value=0.0, max_value=1e6)
    data = {
        "workload": {"model": draw(st.sampled_from(["resnet50", "resnet18"])),
                     "batch_per_gpu": draw(st.integers(min_value=1, max_value=512)),
                     "precision": draw(st.sampled_from(["fp32", "fp16", "bf16"])),
                     "target": draw(st.sampled_from(["top1=0.759", "epochs=90",
                                                     " epochs = 1e1", "epochs=0.5"]))},
        "cluster": {"gpu": draw(st.sampled_from(["v100-sxm2", "h200-sxm", "a100-sxm4-80gb"])),
                    "nodes": draw(st.integers(min_value=1, max_value=64)),
                    "gpus_per_node": draw(st.integers(min_value=1, max_value=8)),
                    "intra_link": draw(st.sampled_from(["nvlink2", "nvlink4"])),
                    "inter_link": "ib-ndr"},
        "algorithm": {"name": draw(st.sampled_from(ALGORITHMS))},
        "stragglers": {},
        "run": {"iterations": draw(st.integers(min_value=1, max_value=2**63 - 1)),
                "seed": draw(st.integers(min_value=0, max_value=2**63 - 1))},
    }
    if draw(st.booleans()):
        data["workload"]["recipe"] = draw(st.sampled_from(["auto", "mlperf-lars",
                                                           "goyal-sgd"]))
    cluster_extra = {"nics_per_node": st.integers(min_value=1, max_value=8),
                     "topology": st.sampled_from(["single-switch", "fat-tree"]),
                     "oversubscription": st.one_of(st.integers(1, 4),
                                                   st.floats(1.0, 8.0)),
                     "nodes_per_leaf": st.integers(min_value=1, max_value=32),
                     "price_per_gpu_hour_usd": st.floats(0.01, 100.0)}
    option_values = {"bucket_mb": st.floats(0.001, 1e4), "overlap": st.booleans(),
                     "collective": st.sampled_from(["auto", "ring", "tree", "rhd",
                                                    "hierarchical", "nvls"]),
                     "servers": st.integers(1, 16),
                     "server_placement": st.sampled_from(["colocated", "dedicated"]),
                     "backup_workers": small, "staleness_bound": st.integers(-1, 10),
                     "aggregation": st.sampled_from(["gpu", "node"]),
                     "tau": st.integers(1, 64), "moving_rate": st.floats(0.01, 1.0),
                     "variant": st.sampled_from(["push", "pull"]),
                     "local_steps": st.integers(1, 64)}
    straggler_values = {"noise": st.sampled_from(["none", "lognormal", "pareto",
                                                  "exponential"]),
                        "sigma": positive, "alpha": st.floats(1.01, 10.0),
                        "slow_workers": small, "slow_factor": st.floats(1.0, 10.0),
                        "transient_rate_per_s": positive,
                        "transient_duration_s": st.floats(0.001, 1e3),
                        "transient_factor": st.floats(1.0, 10.0),
                        "failure_mtbf_s": positive, "restart_s": positive}
    for table, pool in ((data["cluster"], cluster_extra),
                        (data["algorithm"], {k: option_values[k] for k in
                                             ALGORITHM_OPTIONS[data["algorithm"]["name"]]}),
                        (data["stragglers"], straggler_values)):
        for key in draw(st.lists(st.sampled_from(sorted(pool)), unique=True)):
            table[key] = draw(pool[key])
    return data


random_scenarios = st.dictionaries(
    sections,
    st.one_of(st.dictionaries(keys, values, max_size=6), values),
    max_size=6,
)


FIELDS = [(section, key) for section, section_keys in KEYS.items() for key in section_keys]


@SETTINGS
@given(st.sampled_from(FIELDS), values)
def test_any_value_in_any_field_loads_or_raises_config_error(field, value):
    section, key = field
    data = {name: dict(table) for name, table in BASE.items()}
    owners = [name for name, options in ALGORITHM_OPTIONS.items() if key in options]
    if section == "algorithm" and owners:
        data["algorithm"]["name"] = owners[0]
    data[section][key] = value
    check(data)


@LIGHT
@given(well_formed())
def test_well_formed_scenarios_load_or_raise_config_error(data):
    check(data)


@LIGHT
@given(mutated())
def test_mutated_scenarios_load_or_raise_config_error(data):
    check(data)


@LIGHT
@given(random_scenarios)
def test_random_mappings_load_or_raise_config_error(data):
    check(data)


@LIGHT
@given(st.lists(st.text(max_size=30), max_size=3))
def test_random_override_strings_load_or_raise_config_error(overrides):
    check(BASE, overrides)


@LIGHT
@given(st.dictionaries(
    st.one_of(st.sampled_from([f"{s}.{k}" for s, ks in KEYS.items() for k in ks]),
              st.text(max_size=12)),
    values, max_size=3))
def test_with_overrides_loads_or_raises_config_error(overrides):
    base = load_scenario(BASE)
    try:
        scenario = with_overrides(base, overrides)
    except ConfigError:
        return
    assert load_scenario(scenario.to_dict()) == scenario


@LIGHT
@given(st.text(max_size=40))
def test_parse_override_returns_a_path_or_raises_config_error(text):
    try:
        path, _ = parse_override(text)
    except ConfigError:
        return
    assert path and all(isinstance(part, str) and part for part in path)


@LIGHT
@given(st.text(), st.one_of(st.integers(min_value=-(2**63), max_value=2**63 - 1),
                            st.floats(), st.booleans(), st.text()))
def test_dumped_toml_reads_back_to_the_same_data(text, number):
    data = {"section": {"key": text, text: number, "list": [number, text]}}
    read = tomllib.loads(dumps_toml(data))
    if isinstance(number, float) and number != number:
        assert read["section"]["key"] == text and read["section"][text] != read["section"][text]
    else:
        assert read == data
