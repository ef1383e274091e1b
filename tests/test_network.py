"""Flow-level network: fair sharing against closed forms and the max-min definition."""

import random

import numpy as np
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from models import catalog
from models.errors import ConfigError
from simulator import network as network_module
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
    rates = max_min_rates([(a,), (a, b), (b,)], [1, 1, 1], [10.0, 4.0])
    np.testing.assert_allclose(rates, [8.0, 2.0, 2.0])
    # Two flows on route (a, b) count twice on both links: 4/3 each on B.
    rates = max_min_rates([(a,), (a, b), (b,)], [1, 2, 1], [10.0, 4.0])
    np.testing.assert_allclose(rates, [10.0 - 8.0 / 3.0, 4.0 / 3.0, 4.0 / 3.0])
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


def _progressive_filling(routes, counts, capacity):
    """Textbook progressive filling: all unfrozen flows grow by the same step until some
    link is full; the flows crossing full links freeze."""
    capacity = np.asarray(capacity, dtype=float)
    left = capacity.copy()
    rates = np.zeros(len(routes))
    unfrozen = {i for i, route in enumerate(routes) if counts[i] > 0 and route}
    while unfrozen:
        load = np.zeros(len(capacity))
        for i in unfrozen:
            for link in routes[i]:
                load[link] += counts[i]
        used = load > 0
        step = np.min(left[used] / load[used])
        for i in unfrozen:
            rates[i] += step
        left -= step * load
        full = used & (left <= 1e-12 * capacity)
        unfrozen = {i for i in unfrozen if not any(full[link] for link in routes[i])}
    return rates


def _random_routes(rng, links, routes, max_hops):
    return [tuple(rng.sample(range(links), rng.randint(1, min(max_hops, links))))
            for _ in range(routes)]


@pytest.mark.parametrize("seed", range(12))
def test_max_min_equals_progressive_filling_on_random_route_sets(seed):
    rng = random.Random(seed)
    links = rng.choice([3, 8, 40])
    # Capacities spread over two decades, and some equal ones: ties between links.
    capacity = [rng.choice([1.0, 10.0, rng.uniform(0.5, 100.0)]) for _ in range(links)]
    routes = _random_routes(rng, links, rng.choice([5, 30, 150]), rng.choice([1, 2, 4]))
    counts = [rng.choice([0, 1, 1, 2, 5]) for _ in routes]
    expected = _progressive_filling(routes, counts, capacity)
    rates = max_min_rates(routes, counts, capacity)
    np.testing.assert_allclose(rates, expected, rtol=1e-9)
    # Multi-bottleneck: the allocation must not collapse to a single level.
    if seed == 0:
        assert len({round(rate, 9) for rate in expected if rate > 0}) > 2


def test_max_min_chain_of_bottlenecks():
    # Links of capacity 1, 3, 6, 10; route i crosses links i..3, so link i carries i + 1
    # flows. Link 0 is the first bottleneck (share 1) and freezes route 0 at 1; that
    # leaves link 1 2 for route 1, then link 2 3 for route 2, and link 3 4 for route 3.
    routes = [(0, 1, 2, 3), (1, 2, 3), (2, 3), (3,)]
    rates = max_min_rates(routes, [1, 1, 1, 1], [1.0, 3.0, 6.0, 10.0])
    np.testing.assert_allclose(rates, [1.0, 2.0, 3.0, 4.0])


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_max_min_definition(data):
    links = data.draw(st.integers(1, 5))
    capacity = np.array(data.draw(st.lists(st.floats(0.5, 100.0), min_size=links,
                                           max_size=links)))
    flows = data.draw(st.integers(1, 8))
    routes = [tuple(data.draw(st.lists(st.integers(0, links - 1), min_size=1, max_size=3,
                                       unique=True))) for _ in range(flows)]
    counts = data.draw(st.lists(st.integers(1, 3), min_size=flows, max_size=flows))
    rates = max_min_rates(routes, counts, list(capacity))
    np.testing.assert_allclose(rates, _progressive_filling(routes, counts, capacity),
                               rtol=1e-9)
    load = np.zeros(links)
    for route, count, rate in zip(routes, counts, rates, strict=True):
        for link in route:
            load[link] += rate * count
    assert np.all(load <= capacity * (1 + 1e-9))
    # Each flow has a bottleneck: a full link on which no flow gets more than it.
    for route, rate in zip(routes, rates, strict=True):
        assert any(
            load[link] >= capacity[link] * (1 - 1e-9)
            and all(other <= rate * (1 + 1e-9)
                    for r, other in zip(routes, rates, strict=True) if link in r)
            for link in route)


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
    with pytest.raises(ConfigError, match="size_bytes"):
        network.transfer((0,), -1.0)
    with pytest.raises(ConfigError, match="capacity"):
        network.add_link("zero", 0.0)


@pytest.mark.parametrize("whole_network_routes", [0, 1000])
@pytest.mark.parametrize("seed", range(3))
def test_network_shares_equal_progressive_filling_while_flows_come_and_go(
        seed, whole_network_routes, monkeypatch):
    # Shares are recomputed over the routes connected to a change (or all of them in a
    # small network), and a route keeps its finish time when its share does not move: at
    # any instant all flows in flight must still hold the max-min shares of the whole
    # network.
    monkeypatch.setattr(network_module, "_WHOLE_NETWORK_ROUTES", whole_network_routes)
    rng = random.Random(seed)
    env = simpy.Environment()
    network = Network(env)
    capacity = [rng.choice([1.0, 2.0, rng.uniform(0.5, 4.0)]) for _ in range(12)]
    for i, c in enumerate(capacity):
        network.add_link(f"l{i}", c)
    routes = _random_routes(rng, len(capacity), 60, 3)
    started = []

    def flow(route, start_s, size):
        yield env.timeout(start_s)
        started.append(route)
        yield network.transfer(route, size)

    for route in routes:
        env.process(flow(route, rng.uniform(0.0, 5.0), rng.uniform(0.2, 3.0)))
    checks = 0
    for t in np.linspace(0.05, 6.0, 40):
        env.run(until=t)
        active = network.active_rates()
        if not active:
            continue
        flows = {sequence: started[sequence] for sequence in active}
        busy = sorted(set(flows.values()))
        counts = [sum(1 for r in flows.values() if r == route) for route in busy]
        expected = dict(zip(busy, _progressive_filling(busy, counts, capacity), strict=True))
        for sequence, rate in active.items():
            assert rate == pytest.approx(expected[flows[sequence]], rel=1e-9)
        checks += 1
    assert checks > 20
