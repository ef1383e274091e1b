"""Flow-level network: fair sharing against closed forms and the max-min definition."""

import numpy as np
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from models import catalog
from models.errors import ConfigError
from simulator.network import ClusterNetwork, Network, max_min_rates


def _finish_times(network, env, flows):
    times = {}

    def flow(name, route, size, latency):
        yield network.transfer(route, size, latency)
        times[name] = env.now

    for name, (route, size, latency) in flows.items():
        env.process(flow(name, route, size, latency))
    env.run()
    return times


@pytest.mark.parametrize("k", [1, 2, 3, 7])
def test_k_equal_flows_each_take_k_times_the_single_flow_time(k):
    env = simpy.Environment()
    network = Network(env)
    link = network.add_link("link", 1e9)
    size, latency = 5e8, 1e-3
    single = latency + size / 1e9
    times = _finish_times(network, env, {i: ((link,), size, latency) for i in range(k)})
    for t in times.values():
        assert t == pytest.approx(latency + k * (single - latency), rel=1e-12)


def test_two_link_max_min_closed_form():
    # A (10 B/s) carries flows 1 and 2, B (4 B/s) flows 2 and 3. B is the first
    # bottleneck: 2 B/s each for flows 2 and 3; flow 1 takes A's remaining 8 B/s.
    env = simpy.Environment()
    network = Network(env)
    a = network.add_link("A", 10.0)
    b = network.add_link("B", 4.0)
    flows = {"f1": ((a,), 8.0, 0.0), "f2": ((a, b), 8.0, 0.0), "f3": ((b,), 4.0, 0.0)}
    rates = max_min_rates(np.array([[a, -1], [a, b], [b, -1]]), np.array([10.0, 4.0]))
    np.testing.assert_allclose(rates, [8.0, 2.0, 2.0])
    times = _finish_times(network, env, flows)
    # t=1: f1 done (8 B at 8 B/s); f2, f3 have 6 and 2 B left at 2 B/s each.
    # t=2: f3 done; f2 alone is limited by B: 4 B left at 4 B/s.
    assert times["f1"] == pytest.approx(1.0)
    assert times["f3"] == pytest.approx(2.0)
    assert times["f2"] == pytest.approx(3.0)


def test_a_late_flow_slows_an_early_one():
    env = simpy.Environment()
    network = Network(env)
    link = network.add_link("link", 1.0)
    times = _finish_times(network, env, {"early": ((link,), 2.0, 0.0),
                                         "late": ((link,), 1.0, 1.0)})
    # early: 1 B alone in [0, 1], then 0.5 B/s. late finishes 1 B at t=3, early too.
    assert times["early"] == pytest.approx(3.0)
    assert times["late"] == pytest.approx(3.0)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_max_min_definition(data):
    links = data.draw(st.integers(1, 5))
    capacity = np.array(data.draw(st.lists(st.floats(0.5, 100.0), min_size=links,
                                           max_size=links)))
    flows = data.draw(st.integers(1, 8))
    routes = np.full((flows, 3), -1)
    for f in range(flows):
        chosen = data.draw(st.lists(st.integers(0, links - 1), min_size=1, max_size=3,
                                    unique=True))
        routes[f, :len(chosen)] = chosen
    rates = max_min_rates(routes, capacity)
    load = np.zeros(links)
    for f in range(flows):
        for link in routes[f][routes[f] >= 0]:
            load[link] += rates[f]
    assert np.all(load <= capacity * (1 + 1e-9))
    # Each flow has a bottleneck: a full link on which no flow gets more than it.
    for f in range(flows):
        path = routes[f][routes[f] >= 0]
        ok = False
        for link in path:
            on_link = [g for g in range(flows) if link in routes[g]]
            full = load[link] >= capacity[link] * (1 - 1e-9)
            if full and all(rates[g] <= rates[f] * (1 + 1e-9) for g in on_link):
                ok = True
        assert ok


def test_cluster_routes():
    env = simpy.Environment()
    cluster = catalog.cluster("a100-sxm4-80gb", 4, 8, "nvlink4", "ib-ndr",
                              topology="fat-tree", nodes_per_leaf=2, oversubscription=2.0)
    net = ClusterNetwork(env, cluster, extra_nodes=1)
    assert net.route((0, 1), (0, 1)) == ((), 0.0)
    links, latency = net.route((0, 1), (0, 2))
    assert [net.network.link_name(x) for x in links] == ["gpu1.out", "gpu2.in"]
    assert latency == cluster.intra_link.latency_s
    links, latency = net.route((0, 1), (1, 0))
    assert [net.network.link_name(x) for x in links] == ["node0.nic.out", "node1.nic.in"]
    links, _ = net.route((0, 1), (4, None))
    assert [net.network.link_name(x) for x in links] == [
        "node0.nic.out", "leaf0.up", "leaf2.down", "node4.nic.in"]
    assert latency == cluster.inter_link.latency_s


def test_bad_route_is_a_config_error():
    env = simpy.Environment()
    network = Network(env)
    network.add_link("only", 1.0)
    with pytest.raises(ConfigError, match="route"):
        network.transfer((3,), 1.0)
    with pytest.raises(ConfigError, match="capacity"):
        network.add_link("zero", 0.0)
