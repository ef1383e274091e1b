import tomllib

import pytest

from models import catalog
from models.errors import ConfigError
from simulator.scenario import (
    ALGORITHM_OPTIONS,
    AlgorithmSection,
    default_scenario_path,
    example_scenarios,
    load_scenario,
    parse_override,
    with_overrides,
)


def minimal() -> dict:
    """The smallest valid scenario, with ids present in every catalog checkout."""
    return {
        "workload": {"model": "resnet50", "batch_per_gpu": 64, "precision": "fp32",
                     "target": "top1=0.759"},
        "cluster": {"gpu": "v100-sxm2", "nodes": 2, "gpus_per_node": 8,
                    "intra_link": "nvlink2", "inter_link": "ib-ndr"},
        "algorithm": {"name": "allreduce"},
    }


def changed(path: str, value=None, *, delete: bool = False) -> dict:
    data = minimal()
    *parents, key = path.split(".")
    table = data
    for part in parents:
        table = table.setdefault(part, {})
    if delete:
        del table[key]
    else:
        table[key] = value
    return data


def error_of(data, overrides=()) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_scenario(data, overrides)
    return info.value


# --- defaults and the resolved scenario -------------------------------------------------


def test_minimal_scenario_gets_every_default_of_the_contract():
    resolved = load_scenario(minimal()).to_dict()
    assert resolved == {
        "workload": {"model": "resnet50", "batch_per_gpu": 64, "precision": "fp32",
                     "target": "top1=0.759", "recipe": "auto", "framework": "pytorch"},
        "cluster": {"gpu": "v100-sxm2", "nodes": 2, "gpus_per_node": 8,
                    "intra_link": "nvlink2", "inter_link": "ib-ndr", "nics_per_node": 1,
                    "topology": "single-switch", "oversubscription": 1.0,
                    "nodes_per_leaf": 16},
        "algorithm": {"name": "allreduce", "bucket_mb": 25.0, "overlap": True,
                      "collective": "auto"},
        "stragglers": {"noise": "none", "sigma": 0.1, "alpha": 3.0, "slow_workers": 0,
                       "slow_factor": 1.0, "transient_rate_per_s": 0.0,
                       "transient_duration_s": 0.0, "transient_factor": 1.0,
                       "failure_mtbf_s": 0.0, "restart_s": 0.0},
        "run": {"iterations": 100, "seed": 0},
    }


@pytest.mark.parametrize("name, options", [
    ("ps-sync", {"servers": 1, "server_placement": "colocated", "backup_workers": 0,
                 "aggregation": "gpu"}),
    ("ps-async", {"servers": 1, "server_placement": "colocated", "staleness_bound": -1}),
    ("easgd", {"servers": 1, "server_placement": "colocated", "tau": 1, "moving_rate": 0.9}),
    ("gossip", {"variant": "push"}),
    ("local-sgd", {"local_steps": 8}),
])
def test_algorithm_defaults_match_the_contract(name, options):
    scenario = load_scenario(changed("algorithm.name", name))
    assert scenario.algorithm == AlgorithmSection(name, options)
    assert dict(scenario.algorithm.options) == options


def test_round_trip_through_dict_and_toml_text():
    data = minimal()
    data["cluster"]["price_per_gpu_hour_usd"] = 2.5
    data["stragglers"] = {"noise": "pareto", "alpha": 2.5, "slow_workers": 3}
    data["algorithm"] = {"name": "easgd", "tau": 4, "moving_rate": 1}
    scenario = load_scenario(data)
    assert load_scenario(scenario.to_dict()) == scenario
    assert load_scenario(tomllib.loads(scenario.to_toml())) == scenario
    assert hash(load_scenario(scenario.to_dict())) == hash(scenario)
    # An int where a float is expected is accepted and stored as the float.
    assert scenario.algorithm.options["moving_rate"] == 1.0
    assert isinstance(scenario.algorithm.options["moving_rate"], float)


def test_specs_come_from_the_catalogs():
    data = changed("cluster.price_per_gpu_hour_usd", 3.0)
    scenario = load_scenario(data)
    spec = scenario.cluster_spec()
    assert spec.world_size == 16 == scenario.world_size
    assert spec.gpu.id == "v100-sxm2" and spec.inter_link.id == "ib-ndr"
    assert spec.gpu.price_usd_per_hour == 3.0
    assert scenario.global_batch == 64 * 16
    assert scenario.workload_spec().id == "resnet50"
    entry, recipe = scenario.convergence_recipe()
    assert entry.id == "resnet50" and recipe.target == ("top1", 0.759)


def test_single_node_needs_no_inter_link_and_omits_it_from_the_dict():
    data = minimal()
    data["cluster"] = {"gpu": "h200-sxm", "nodes": 1, "gpus_per_node": 8,
                       "intra_link": "nvlink4"}
    scenario = load_scenario(data)
    assert scenario.cluster.inter_link is None
    assert "inter_link" not in scenario.to_dict()["cluster"]
    assert scenario.cluster_spec().inter_link is None


def test_default_scenario_is_the_one_described():
    path = default_scenario_path()
    assert path.name == "default.toml" and path.parent.name == "scenarios"
    scenario = load_scenario(path)
    assert scenario == load_scenario("default")
    assert scenario.workload.model == "resnet50" and scenario.workload.recipe == "auto"
    assert scenario.workload.target == "top1=0.759"
    assert (scenario.cluster.nodes, scenario.cluster.gpus_per_node) == (2, 8)
    assert scenario.cluster.nics_per_node == 8
    assert scenario.algorithm.name == "allreduce"
    assert scenario.stragglers.noise == "lognormal" and scenario.stragglers.sigma == 0.05
    assert scenario.run.iterations == 100


def _missing_catalog_ids(path) -> list[str]:
    with open(path, "rb") as handle:
        cluster = tomllib.load(handle).get("cluster", {})
    missing = []
    if cluster.get("gpu") not in catalog.gpus():
        missing.append(f"gpu {cluster.get('gpu')}")
    for key in ("intra_link", "inter_link"):
        if key in cluster and cluster[key] not in catalog.links():
            missing.append(f"link {cluster[key]}")
    return missing


EXAMPLES = example_scenarios()


def test_examples_cover_the_algorithms_and_stragglers():
    assert {"default", "jin2016-resnet18", "modern-h100"} <= set(EXAMPLES)
    names = set()
    straggling = False
    for path in EXAMPLES.values():
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
        names.add(data["algorithm"]["name"])
        stragglers = data.get("stragglers", {})
        straggling |= (stragglers.get("failure_mtbf_s", 0) > 0
                       and stragglers.get("slow_workers", 0) > 0)
    assert {"allreduce", "ps-async", "gossip", "easgd"} <= names
    assert straggling


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_example_loads_and_round_trips(name):
    missing = _missing_catalog_ids(EXAMPLES[name])
    if missing:
        pytest.skip(f"{name}.toml uses ids not in this checkout's catalog: "
                    + ", ".join(missing))
    scenario = load_scenario(EXAMPLES[name])
    assert load_scenario(scenario.to_dict()) == scenario
    assert load_scenario(tomllib.loads(scenario.to_toml())) == scenario
    scenario.cluster_spec()


# --- errors: each names the dotted field -----------------------------------------------


@pytest.mark.parametrize("data, field, fragment", [
    # unknown sections and keys, with the nearest valid name
    ({**minimal(), "clusterr": {}}, "clusterr", "did you mean 'cluster'"),
    (changed("cluster.nodez", 4), "cluster.nodez", "did you mean 'nodes'"),
    (changed("run.iteration", 4), "run.iteration", "did you mean 'iterations'"),
    (changed("stragglers.sigmaa", 0.1), "stragglers.sigmaa", "did you mean 'sigma'"),
    (changed("workload", "resnet50"), "workload", "a table"),
    (changed("workload.framework", "mxnet-fused"), "workload.framework",
     "did you mean 'mxnet'"),
    # missing required values
    ({k: v for k, v in minimal().items() if k != "cluster"}, "cluster", "required"),
    (changed("workload.model", delete=True), "workload.model", "required"),
    (changed("algorithm.name", delete=True), "algorithm.name", "allreduce"),
    (changed("cluster.inter_link", delete=True), "cluster.inter_link", "link id"),
    # wrong types: bool is not an int, a float is not an int, a string is not a number
    (changed("cluster.nodes", True), "cluster.nodes", "integer"),
    (changed("cluster.nodes", 2.0), "cluster.nodes", "integer"),
    (changed("workload.batch_per_gpu", "64"), "workload.batch_per_gpu", "integer"),
    (changed("cluster.oversubscription", "2"), "cluster.oversubscription", "number"),
    (changed("algorithm.overlap", 1), "algorithm.overlap", "true or false"),
    (changed("workload.target", 0.759), "workload.target", "string"),
    (changed("run.seed", 1.5), "run.seed", "integer"),
    (changed("run.seed", True), "run.seed", "integer"),
    (changed("stragglers.sigma", float("nan")), "stragglers.sigma", "finite"),
    (changed("algorithm.bucket_mb", float("inf")), "algorithm.bucket_mb", "finite"),
    (changed("cluster.price_per_gpu_hour_usd", 10**400), "cluster.price_per_gpu_hour_usd",
     "magnitude"),
    (changed("run.iterations", 2**64), "run.iterations", "64-bit"),
    # unknown ids
    (changed("cluster.gpu", "v100-sxm"), "cluster.gpu", "did you mean 'v100-sxm2'"),
    (changed("cluster.intra_link", "nvlink"), "cluster.intra_link", "nvlink2"),
    (changed("cluster.inter_link", "ib-nd"), "cluster.inter_link", "did you mean 'ib-ndr'"),
    (changed("cluster.topology", "fattree"), "cluster.topology", "did you mean 'fat-tree'"),
    (changed("workload.model", "resnet-50"), "workload.model", "did you mean 'resnet50'"),
    (changed("workload.precision", "fp8"), "workload.precision", "v100-sxm2 supports"),
    (changed("workload.precision", "fp17"), "workload.precision", "fp16"),
    (changed("algorithm.name", "allreduc"), "algorithm.name", "did you mean 'allreduce'"),
    (changed("algorithm.collective", "rings"), "algorithm.collective", "did you mean 'ring'"),
    (changed("algorithm.tau", 4), "algorithm.tau", "option of easgd"),
    (changed("stragglers.noise", "gauss"), "stragglers.noise", "lognormal"),
    (changed("workload.recipe", "mlperf-lar"), "workload.recipe",
     "did you mean 'mlperf-lars'"),
    (changed("workload.target", "top1=0.76"), "workload.target", "top1=0.759"),
    (changed("workload.target", "top1"), "workload.target", "metric=value"),
    (changed("workload.target", "epochs=0"), "workload.target", "E > 0"),
    # impossible values
    (changed("cluster.nodes", 0), "cluster.nodes", ">= 1"),
    (changed("cluster.gpus_per_node", -8), "cluster.gpus_per_node", ">= 1"),
    (changed("workload.batch_per_gpu", 0), "workload.batch_per_gpu", ">= 1"),
    (changed("cluster.oversubscription", 0.5), "cluster.oversubscription", ">= 1"),
    (changed("cluster.price_per_gpu_hour_usd", 0), "cluster.price_per_gpu_hour_usd", "> 0"),
    (changed("stragglers.slow_workers", 17), "stragglers.slow_workers", "<= 16, the"),
    (changed("stragglers.sigma", -0.1), "stragglers.sigma", ">= 0"),
    (changed("stragglers.alpha", 1.0), "stragglers.alpha", "> 1"),
    (changed("stragglers.transient_rate_per_s", -1.0), "stragglers.transient_rate_per_s",
     ">= 0"),
    (changed("stragglers.transient_rate_per_s", 0.1), "stragglers.transient_duration_s",
     "> 0 when"),
    (changed("stragglers.failure_mtbf_s", -5), "stragglers.failure_mtbf_s", ">= 0"),
    (changed("stragglers.restart_s", -5), "stragglers.restart_s", ">= 0"),
    (changed("run.iterations", 0), "run.iterations", ">= 1"),
    (changed("run.seed", -1), "run.seed", ">= 0"),
])
def test_invalid_scenarios_name_the_field(data, field, fragment):
    message = str(error_of(data))
    assert message.startswith(field + ":"), message
    assert fragment in message, message


@pytest.mark.parametrize("algorithm, field, fragment", [
    ({"name": "ps-sync", "backup_workers": 16}, "algorithm.backup_workers", "< 16, the"),
    ({"name": "ps-sync", "servers": 0}, "algorithm.servers", ">= 1"),
    ({"name": "ps-async", "server_placement": "remote"}, "algorithm.server_placement",
     "dedicated"),
    ({"name": "ps-async", "staleness_bound": -2}, "algorithm.staleness_bound", ">= -1"),
    ({"name": "easgd", "tau": 0}, "algorithm.tau", ">= 1"),
    ({"name": "easgd", "moving_rate": 0.0}, "algorithm.moving_rate", "> 0"),
    ({"name": "easgd", "moving_rate": 1.5}, "algorithm.moving_rate", "<= 1"),
    ({"name": "local-sgd", "local_steps": 0}, "algorithm.local_steps", ">= 1"),
    ({"name": "gossip", "variant": "shout"}, "algorithm.variant", "push"),
    ({"name": "ps-sync", "aggregation": "rack"}, "algorithm.aggregation", "node"),
    ({"name": "ps-sync", "aggregation": "node", "backup_workers": 2},
     "algorithm.backup_workers", "aggregation 'node'"),
    ({"name": "gossip", "bucket_mb": 25.0}, "algorithm.bucket_mb", "option of allreduce"),
])
def test_invalid_algorithm_options_name_the_field(algorithm, field, fragment):
    message = str(error_of({**minimal(), "algorithm": algorithm}))
    assert message.startswith(field + ":"), message
    assert fragment in message, message


def test_limits_are_inclusive_where_the_contract_says_so():
    assert load_scenario(changed("stragglers.slow_workers", 16)).stragglers.slow_workers == 16
    ps = {**minimal(), "algorithm": {"name": "ps-sync", "backup_workers": 15}}
    assert load_scenario(ps).algorithm.options["backup_workers"] == 15
    easgd = {**minimal(), "algorithm": {"name": "easgd", "moving_rate": 1.0}}
    assert load_scenario(easgd).algorithm.options["moving_rate"] == 1.0
    assert load_scenario(changed("stragglers.sigma", 0)).stragglers.sigma == 0.0


def test_targets_depend_on_the_model_and_recipe():
    epochs = load_scenario(changed("workload.target", "epochs=90"))
    assert epochs.workload.target == "epochs=90"
    goyal = changed("workload.recipe", "goyal-sgd")
    message = str(error_of(goyal))  # goyal-sgd was measured at fixed epochs only
    assert message.startswith("workload.target:") and "epochs=<E>" in message
    resnet18 = changed("workload.model", "resnet18")
    assert "epochs=E" in str(error_of(resnet18))
    resnet18["workload"]["target"] = "epochs=90"
    assert load_scenario(resnet18).convergence_recipe() is None
    resnet18["workload"]["recipe"] = "mlperf-lars"
    assert str(error_of(resnet18)).startswith("workload.recipe:")


def test_toml_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('[workload]\nmodel = "resnet50"\nbatch_per_gpu = = 64\n')
    message = str(error_of(path))
    assert str(path) in message and "line 3" in message and "batch_per_gpu" in message


def test_missing_file_suggests_an_example():
    message = str(error_of("defualt"))
    assert message.startswith("scenario:") and "did you mean 'default'" in message
    for name in ("x" * 5000, "a\x00b", ""):
        assert str(error_of(name)).startswith("scenario:")


# --- overrides --------------------------------------------------------------------------


@pytest.mark.parametrize("text, path, value", [
    ("cluster.nodes=16", ("cluster", "nodes"), 16),
    ("stragglers.sigma=0.5", ("stragglers", "sigma"), 0.5),
    ("algorithm.overlap=false", ("algorithm", "overlap"), False),
    ("cluster.gpu=h100-sxm", ("cluster", "gpu"), "h100-sxm"),
    ('cluster.gpu="h200-sxm"', ("cluster", "gpu"), "h200-sxm"),
    ("run.list=[1, 2]", ("run", "list"), [1, 2]),
    ("workload.target=top1=0.759", ("workload", "target"), "top1=0.759"),
    (" cluster.nodes = 4 ", ("cluster", "nodes"), 4),
    ("a.b.c=1e3", ("a", "b", "c"), 1000.0),
    ("run.seed=1\nrun.x = 2", ("run", "seed"), "1\nrun.x = 2"),
])
def test_parse_override_reads_toml_values(text, path, value):
    parsed_path, parsed = parse_override(text)
    assert parsed_path == path
    assert parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize("text", ["cluster.nodes", "=4", "cluster..nodes=4", ".nodes=4",
                                  "cluster.nodes=", "cluster.nodes=  "])
def test_malformed_override_names_set(text):
    with pytest.raises(ConfigError, match="^--set"):
        parse_override(text)


def test_overrides_apply_before_validation():
    scenario = load_scenario(minimal(), ["cluster.nodes=4", "stragglers.noise=pareto",
                                         "stragglers.alpha=2", "algorithm.collective=ring"])
    assert scenario.cluster.nodes == 4 and scenario.world_size == 32
    assert scenario.stragglers.noise == "pareto" and scenario.stragglers.alpha == 2.0
    assert scenario.algorithm.options["collective"] == "ring"
    message = str(error_of(minimal(), ["cluster.nodez=4"]))
    assert message.startswith("cluster.nodez:") and "did you mean 'nodes'" in message
    assert str(error_of(minimal(), ["run.seed=true"])).startswith("run.seed:")
    assert str(error_of(minimal(), ["cluster.nodes.x=1"])).startswith("--set cluster.nodes.x")
    with pytest.raises(ConfigError, match="^--set"):
        load_scenario(minimal(), ["nodes"])


def test_overrides_do_not_touch_the_callers_data():
    data = minimal()
    load_scenario(data, ["cluster.nodes=4", "stragglers.noise=pareto"])
    assert data == minimal()


def test_with_overrides_returns_a_new_validated_scenario():
    base = load_scenario(minimal())
    bigger = with_overrides(base, {"cluster.nodes": 16, "run.seed": 3})
    assert bigger.cluster.nodes == 16 and bigger.run.seed == 3
    assert base.cluster.nodes == 2
    assert bigger == load_scenario(minimal(), ["cluster.nodes=16", "run.seed=3"])
    with pytest.raises(ConfigError, match="^cluster.nodes:"):
        with_overrides(base, {"cluster.nodes": 0})
    with pytest.raises(ConfigError, match="did you mean 'bucket_mb'"):
        with_overrides(base, {"algorithm.bucket_md": 10})


def test_switching_algorithm_drops_the_options_of_the_previous_one():
    data = minimal()
    data["algorithm"] = {"name": "allreduce", "bucket_mb": 50.0}
    base = load_scenario(data)
    gossip = with_overrides(base, {"algorithm.name": "gossip"})
    assert dict(gossip.algorithm.options) == dict(ALGORITHM_OPTIONS["gossip"])
    easgd = with_overrides(base, {"algorithm.tau": 8, "algorithm.name": "easgd"})
    assert easgd.algorithm.options["tau"] == 8
    # Keeping the same algorithm keeps what was written for it.
    same = with_overrides(base, {"algorithm.name": "allreduce"})
    assert same.algorithm.options["bucket_mb"] == 50.0
    sweep = load_scenario(data, ["algorithm.name=local-sgd", "algorithm.local_steps=4"])
    assert dict(sweep.algorithm.options) == {"local_steps": 4}
