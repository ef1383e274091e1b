"""The hardware catalog (data/hardware/gpus.toml, links.toml) against its sources.

Spot checks hold entries to the datasheet figures quoted next to them; consistency checks
hold the catalog to relations the hardware obeys (a tensor core is never slower than the
vector units, an fp8 tensor rate is twice the fp16 one, PCIe doubles per generation), so
a sparse figure entered as dense, a per-board figure entered per die, or a typo fails.
"""

import dataclasses
import datetime
import math

import pytest

from models import catalog
from models import workloads as workload_catalog
from models.errors import ConfigError
from models.frameworks import FRAMEWORKS
from simulator.cli import main
from simulator.tables import catalog_table

TF = 1e12
GBps = 1e9
Gbps = 1e9 / 8

GPUS = catalog.gpus()
LINKS = catalog.links()

REQUIRED_GPUS = (
    "k40", "k80", "m40", "m60", "titan-x-maxwell", "titan-x-pascal", "gtx-1080", "gtx-1080-ti",
    "p40",
    "p100-pcie", "p100-sxm2", "v100-pcie", "v100s-pcie", "v100-sxm2", "titan-v", "t4",
    "rtx-2080-ti", "titan-rtx", "a10g", "rtx-3090", "rtx-a6000", "a40", "a30", "l4", "l40s",
    "rtx-4090", "a100-pcie", "a100-sxm4-40gb", "a100-sxm4-80gb", "h100-pcie", "h100-sxm",
    "h200-sxm", "b200", "mi250x", "mi300x",
)
REQUIRED_LINKS = (
    "pcie3", "pcie4", "pcie5", "nvlink1", "nvlink2", "nvlink3", "nvlink4", "nvlink5",
    "ib-qdr", "ib-fdr", "ib-edr", "ib-hdr", "ib-ndr",
    "eth-1g", "eth-10g", "eth-25g", "eth-40g", "eth-50g", "eth-100g", "eth-200g", "eth-400g",
    "roce-25g", "roce-100g", "roce-200g", "roce-400g",
)

#: Architectures with matrix units that run half precision faster than fp32.
TENSOR_ARCHITECTURES = {"volta", "turing", "ampere", "ada", "hopper", "blackwell", "cdna2",
                        "cdna3"}
#: bf16 and tf32 came with Ampere (NVIDIA) and CDNA3 (tf32, AMD); fp8 with Ada/Hopper/CDNA3.
BEFORE_AMPERE = {"kepler", "maxwell", "pascal", "volta", "turing"}
FP8_ARCHITECTURES = {"ada", "hopper", "blackwell", "cdna3"}
#: Pascal GP102/GP104 boards: fp16 arithmetic at 1/64 of fp32 (CUDA C++ Programming Guide,
#: compute capability 6.1), so no fp16 training.
SLOW_FP16_PASCAL = {"titan-x-pascal", "gtx-1080", "gtx-1080-ti", "p40"}


def matrix(gpu_id, precision):
    return GPUS[gpu_id].matrix_flops_per_s[precision]


def vector(gpu_id, precision):
    return GPUS[gpu_id].vector_flops_per_s[precision]


# ---------------------------------------------------------------- coverage and sources


def test_every_required_gpu_and_link_is_in_the_catalog():
    assert set(REQUIRED_GPUS) <= set(GPUS)
    assert set(REQUIRED_LINKS) <= set(LINKS)


@pytest.mark.parametrize("spec", [*GPUS.values(), *LINKS.values()], ids=lambda s: s.id)
def test_every_entry_cites_a_source(spec):
    # A citation names a document and a figure, not just a word.
    assert len(spec.source) >= 40
    assert any(ch.isdigit() for ch in spec.source)


@pytest.mark.parametrize("parse, entry, field", [
    (catalog.parse_gpu, {"source": ""}, "gpus.x.source"),
    (catalog.parse_link, {"source": "  "}, "links.x.source"),
])
def test_an_empty_source_is_refused(parse, entry, field):
    base = ({"name": "X", "vendor": "v", "architecture": "a", "memory_bandwidth_GBps": 1,
             "memory_GB": 1, "vector_tflops": {"fp32": 1}, "matrix_tflops": {"fp32": 1}}
            if parse is catalog.parse_gpu else
            {"name": "X", "transport": "tcp", "bandwidth_Gbps": 1, "latency_us": 1,
             "efficiency": 0.5})
    with pytest.raises(ConfigError, match=field):
        parse("x", {**base, **entry})


# ---------------------------------------------------------------- GPU consistency


@pytest.mark.parametrize("gpu", GPUS.values(), ids=lambda g: g.id)
def test_matrix_peak_is_never_below_the_vector_peak(gpu):
    for precision, rate in gpu.vector_flops_per_s.items():
        if precision in gpu.matrix_flops_per_s:
            assert gpu.matrix_flops_per_s[precision] >= rate, precision


@pytest.mark.parametrize("gpu", GPUS.values(), ids=lambda g: g.id)
def test_fp32_and_fp64_are_listed_for_both_units(gpu):
    for table in (gpu.vector_flops_per_s, gpu.matrix_flops_per_s):
        assert {"fp32", "fp64"} <= set(table)
        assert table["fp64"] <= table["fp32"]


@pytest.mark.parametrize("gpu", [g for g in GPUS.values()
                                 if g.architecture in TENSOR_ARCHITECTURES],
                         ids=lambda g: g.id)
def test_tensor_cores_run_fp16_at_least_twice_the_fp32_matrix_rate(gpu):
    assert gpu.matrix_flops_per_s["fp16"] >= 2 * gpu.matrix_flops_per_s["fp32"]
    if "bf16" in gpu.matrix_flops_per_s:
        assert gpu.matrix_flops_per_s["bf16"] == gpu.matrix_flops_per_s["fp16"]


@pytest.mark.parametrize("gpu", GPUS.values(), ids=lambda g: g.id)
def test_precisions_follow_the_architecture_generation(gpu):
    trainable = set(gpu.precisions)
    if gpu.architecture in BEFORE_AMPERE or gpu.architecture == "cdna2":
        assert "tf32" not in trainable
    if gpu.architecture in BEFORE_AMPERE:
        assert "bf16" not in trainable
    assert ("fp8" in trainable) == (gpu.architecture in FP8_ARCHITECTURES)
    # fp16 training needs fast half math: none on Kepler/Maxwell, nor on GP102/GP104
    # (1/64 rate).
    assert ("fp16" in trainable) == (gpu.architecture not in {"kepler", "maxwell"}
                                     and gpu.id not in SLOW_FP16_PASCAL)


@pytest.mark.parametrize("gpu_id", sorted(SLOW_FP16_PASCAL))
def test_gp102_and_gp104_run_fp16_at_a_64th_of_fp32(gpu_id):
    assert vector(gpu_id, "fp16") == pytest.approx(vector(gpu_id, "fp32") / 64, rel=0.02)
    assert vector(gpu_id, "fp64") == pytest.approx(vector(gpu_id, "fp32") / 32, rel=0.02)


# (GeForce board, board of the same chip that runs fp32 accumulate at full rate): GeForce
# tensor cores run fp16 with fp32 accumulate, what mixed-precision training uses, at half
# the fp16-accumulate rate (Turing, GA102 and Ada whitepapers; Tom's Hardware's TITAN RTX
# review), so per fp32 FLOP they deliver half the sibling's tensor rate.
GEFORCE_HALF_RATE = [("rtx-2080-ti", "titan-rtx"), ("rtx-3090", "rtx-a6000"),
                     ("rtx-3090", "a40"), ("rtx-4090", "l40s")]


@pytest.mark.parametrize("geforce, sibling", GEFORCE_HALF_RATE,
                         ids=[f"{g}-vs-{s}" for g, s in GEFORCE_HALF_RATE])
def test_geforce_tensor_rate_is_the_fp32_accumulate_half_rate(geforce, sibling):
    assert GPUS[geforce].architecture == GPUS[sibling].architecture
    for precision in ("fp16", "bf16", "fp8"):
        if precision not in GPUS[geforce].matrix_flops_per_s:
            continue
        per_fp32 = {g: matrix(g, precision) / vector(g, "fp32") for g in (geforce, sibling)}
        assert per_fp32[geforce] == pytest.approx(per_fp32[sibling] / 2, rel=0.02), precision


@pytest.mark.parametrize("gpu", [g for g in GPUS.values() if "fp8" in g.matrix_flops_per_s],
                         ids=lambda g: g.id)
def test_fp8_is_twice_fp16_so_both_are_dense(gpu):
    # Every fp8 tensor unit runs twice the fp16 rate; a sparse figure entered as dense for
    # one of them shows up as a factor of 1 or 4.
    ratio = gpu.matrix_flops_per_s["fp8"] / gpu.matrix_flops_per_s["fp16"]
    assert ratio == pytest.approx(2.0, rel=0.02)


@pytest.mark.parametrize("gpu", [g for g in GPUS.values() if "tf32" in g.matrix_flops_per_s],
                         ids=lambda g: g.id)
def test_tf32_is_half_of_fp16(gpu):
    ratio = gpu.matrix_flops_per_s["tf32"] / gpu.matrix_flops_per_s["fp16"]
    assert ratio == pytest.approx(0.5, rel=0.03)


def test_dual_die_boards_are_listed_per_die():
    # Tesla K80 datasheet, board: 8.74 TF fp32, 2.91 TF fp64 (GPU Boost), 24 GB, 480 GB/s.
    assert 2 * vector("k80", "fp32") == pytest.approx(8.74 * TF, rel=0.005)
    assert 2 * vector("k80", "fp64") == pytest.approx(2.91 * TF, rel=0.005)
    assert 2 * GPUS["k80"].memory_bytes == pytest.approx(24e9)
    assert 2 * GPUS["k80"].memory_bandwidth_Bps == pytest.approx(480 * GBps)
    # AMD MI250X, module: 383 TF fp16, 95.7 TF fp64 matrix, 128 GB HBM2e, 3.2768 TB/s.
    assert 2 * matrix("mi250x", "fp16") == pytest.approx(383 * TF, rel=0.001)
    assert 2 * matrix("mi250x", "fp64") == pytest.approx(95.7 * TF, rel=0.001)
    assert 2 * GPUS["mi250x"].memory_bytes == pytest.approx(128e9)
    assert 2 * GPUS["mi250x"].memory_bandwidth_Bps == pytest.approx(3276.8 * GBps)


def test_variants_of_one_chip_differ_only_where_the_datasheets_say():
    # A100 40GB/80GB and PCIe/SXM share GA100 peaks; H200 is an H100 with more memory.
    for a, b in (("a100-pcie", "a100-sxm4-40gb"), ("a100-sxm4-40gb", "a100-sxm4-80gb"),
                 ("h100-sxm", "h200-sxm")):
        assert dict(GPUS[a].matrix_flops_per_s) == dict(GPUS[b].matrix_flops_per_s)
    assert GPUS["h200-sxm"].memory_bandwidth_Bps > GPUS["h100-sxm"].memory_bandwidth_Bps
    assert GPUS["a100-sxm4-80gb"].memory_bandwidth_Bps > \
        GPUS["a100-sxm4-40gb"].memory_bandwidth_Bps
    # PCIe cards run lower clocks than their SXM siblings.
    for pcie, sxm in (("p100-pcie", "p100-sxm2"), ("v100-pcie", "v100-sxm2"),
                      ("h100-pcie", "h100-sxm")):
        assert matrix(pcie, "fp32") < matrix(sxm, "fp32")
    # V100S is a V100 PCIe with higher clocks, 32 GB and faster HBM2.
    for precision in ("fp64", "fp32", "fp16"):
        assert matrix("v100s-pcie", precision) > matrix("v100-pcie", precision)
    assert GPUS["v100s-pcie"].memory_bandwidth_Bps > GPUS["v100-pcie"].memory_bandwidth_Bps


# ---------------------------------------------------------------- GPU spot checks

# (gpu, table, precision, TFLOP/s as the source prints it, source)
SPOT_FLOPS = [
    ("a100-sxm4-80gb", "matrix", "bf16", 312, "NVIDIA A100 datasheet: 312 TF bf16 dense"),
    ("a100-sxm4-40gb", "matrix", "tf32", 156, "NVIDIA A100 datasheet: 156 TF tf32 dense"),
    ("a100-pcie", "matrix", "fp64", 19.5, "NVIDIA A100 datasheet: 19.5 TF fp64 tensor"),
    ("h100-sxm", "matrix", "bf16", 989.4,
     "NVIDIA H100 datasheet: 1979 TF bf16 with sparsity; Hopper whitepaper 989.4 dense"),
    ("h100-sxm", "matrix", "fp8", 1978.9, "NVIDIA H100 datasheet: 3958 TF fp8 sparse"),
    ("h100-pcie", "matrix", "fp16", 756, "NVIDIA H100 datasheet, PCIe: 1513 TF sparse"),
    ("v100-sxm2", "matrix", "fp16", 125, "NVIDIA V100 datasheet: 125 TF tensor"),
    ("v100-sxm2", "vector", "fp32", 15.7, "NVIDIA V100 datasheet: 15.7 TF fp32"),
    ("v100-pcie", "matrix", "fp16", 112, "NVIDIA V100 datasheet, PCIe: 112 TF tensor"),
    ("p100-sxm2", "vector", "fp16", 21.2, "NVIDIA P100 datasheet: 21.2 TF fp16"),
    ("t4", "matrix", "fp16", 65, "NVIDIA T4 datasheet: 65 TF mixed precision"),
    ("l4", "matrix", "fp8", 242.5, "NVIDIA L4 datasheet: 485 TF fp8 with sparsity"),
    ("l40s", "vector", "fp32", 91.6, "NVIDIA L40S datasheet: 91.6 TF fp32"),
    ("b200", "matrix", "fp8", 4500, "NVIDIA Blackwell brief, HGX B200: 9 PF fp8 sparse"),
    ("mi300x", "matrix", "bf16", 1307.4, "AMD MI300X data sheet: 1307.4 TF bf16 dense"),
    ("mi300x", "vector", "fp64", 81.7, "AMD MI300X data sheet: 81.7 TF fp64 vector"),
    ("k40", "vector", "fp32", 4.29, "NVIDIA Tesla K40 datasheet: 4.29 TF fp32"),
    ("m40", "vector", "fp32", 7.0, "NVIDIA Tesla M40 datasheet: 7 TF fp32"),
    ("gtx-1080", "vector", "fp32", 8.873, "NVIDIA GTX 1080 whitepaper: 8873 GFLOPS"),
    ("v100s-pcie", "matrix", "fp16", 130, "NVIDIA V100 datasheet, V100S PCIe: 130 TF tensor"),
    ("v100s-pcie", "vector", "fp64", 8.2, "NVIDIA V100 datasheet, V100S PCIe: 8.2 TF fp64"),
    ("titan-v", "matrix", "fp16", 119.2,
     "Tom's Hardware Titan RTX review: TITAN V 119.2 TF fp16 with fp32 accumulate"),
    ("rtx-2080-ti", "matrix", "fp16", 53.8,
     "Turing whitepaper, RTX 2080 Ti reference: 53.8 TF with fp32 accumulate"),
    ("titan-rtx", "matrix", "fp16", 130.5, "Tom's Hardware Titan RTX review: 130.5 TF"),
    ("rtx-3090", "matrix", "tf32", 35.6, "GA102 whitepaper, RTX 3090: 35.6 TF tf32 dense"),
    ("rtx-a6000", "matrix", "bf16", 154.8, "GA102 whitepaper, RTX A6000: 309.7 TF sparse"),
    ("a40", "matrix", "tf32", 74.8, "NVIDIA A40 datasheet: 74.8 TF tf32 dense"),
    ("a30", "matrix", "fp64", 10.3, "NVIDIA A30 datasheet: 10.3 TF fp64 tensor"),
    ("a30", "matrix", "bf16", 165, "NVIDIA A30 datasheet: 330 TF bf16 with sparsity"),
    ("rtx-4090", "matrix", "fp16", 165.2,
     "Ada whitepaper, RTX 4090: 165.2 TF fp16 with fp32 accumulate dense"),
    ("rtx-4090", "matrix", "fp8", 330.3,
     "Ada whitepaper, RTX 4090: 330.3 TF fp8 with fp32 accumulate dense"),
]


@pytest.mark.parametrize("gpu_id, table, precision, tflops, source", SPOT_FLOPS,
                         ids=[f"{r[0]}-{r[2]}" for r in SPOT_FLOPS])
def test_flops_match_the_datasheet(gpu_id, table, precision, tflops, source):
    rate = (matrix if table == "matrix" else vector)(gpu_id, precision)
    assert rate == pytest.approx(tflops * TF, rel=1e-3), source


# (gpu, GB/s, GB): vendor datasheets.
SPOT_MEMORY = [
    ("v100-sxm2", 900, 16), ("p100-sxm2", 732, 16), ("a100-sxm4-80gb", 2039, 80),
    ("a100-sxm4-40gb", 1555, 40), ("h100-sxm", 3350, 80), ("h100-pcie", 2000, 80),
    ("h200-sxm", 4800, 141), ("l4", 300, 24), ("l40s", 864, 48), ("t4", 320, 16),
    ("a10g", 600, 24), ("mi300x", 5300, 192), ("k40", 288, 12), ("titan-x-pascal", 480, 12),
    ("gtx-1080", 320, 8), ("gtx-1080-ti", 484, 11), ("p40", 346, 24), ("titan-v", 652.8, 12),
    ("v100s-pcie", 1134, 32), ("rtx-2080-ti", 616, 11), ("titan-rtx", 672, 24),
    ("rtx-3090", 936, 24), ("rtx-a6000", 768, 48), ("a40", 696, 48), ("a30", 933, 24),
    ("rtx-4090", 1008, 24),
]


@pytest.mark.parametrize("gpu_id, bandwidth_GBps, capacity_GB", SPOT_MEMORY,
                         ids=[r[0] for r in SPOT_MEMORY])
def test_memory_matches_the_datasheet(gpu_id, bandwidth_GBps, capacity_GB):
    assert GPUS[gpu_id].memory_bandwidth_Bps == pytest.approx(bandwidth_GBps * GBps)
    assert GPUS[gpu_id].memory_bytes == pytest.approx(capacity_GB * 1e9)


# (gpu, CUDA cores, boost MHz, memory bus bits, Gbit/s per pin), as the entries' sources
# state them: fp32 = cores x 2 FLOP (one FMA) x boost clock, and memory bandwidth = bus
# width x data rate, so a rate entered at another clock or a mistyped digit fails.
CORES_AND_CLOCKS = [
    ("m60", 2048, 1178, 256, 5),
    ("gtx-1080", 2560, 1733, 256, 10), ("gtx-1080-ti", 3584, 1582, 352, 11),
    ("p40", 3840, 1531, 384, 7.2), ("titan-v", 5120, 1455, 3072, 1.7),
    ("v100s-pcie", 5120, 1601, 4096, 2.214), ("rtx-2080-ti", 4352, 1545, 352, 14),
    ("titan-rtx", 4608, 1770, 384, 14), ("rtx-3090", 10496, 1695, 384, 19.5),
    ("rtx-a6000", 10752, 1800, 384, 16), ("a40", 10752, 1740, 384, 14.5),
    ("a30", 3584, 1440, 3072, 2.43), ("rtx-4090", 16384, 2520, 384, 21),
]


@pytest.mark.parametrize("gpu_id, cores, boost_MHz, bus_bits, gbps_per_pin", CORES_AND_CLOCKS,
                         ids=[r[0] for r in CORES_AND_CLOCKS])
def test_fp32_and_bandwidth_follow_from_cores_clock_and_bus(gpu_id, cores, boost_MHz,
                                                            bus_bits, gbps_per_pin):
    assert vector(gpu_id, "fp32") == pytest.approx(cores * 2 * boost_MHz * 1e6, rel=3e-3)
    assert GPUS[gpu_id].memory_bandwidth_Bps == pytest.approx(bus_bits * gbps_per_pin * Gbps,
                                                              rel=2e-3)


# ---------------------------------------------------------------- prices

# (gpu, on-demand instance price USD/h, GPUs in the instance): the list prices the
# catalog cites (AWS us-east-1, Lambda).
INSTANCE_PRICES = [
    ("a100-sxm4-40gb", 32.7726, 8), ("a100-sxm4-80gb", 40.9657, 8), ("h100-sxm", 98.32, 8),
    ("v100-sxm2", 3.06, 1), ("a10g", 1.006, 1), ("l4", 0.8048, 1), ("k80", 0.90, 1),
]


@pytest.mark.parametrize("gpu_id, instance_usd, gpus", INSTANCE_PRICES,
                         ids=[r[0] for r in INSTANCE_PRICES])
def test_price_per_gpu_is_the_instance_price_over_its_gpus(gpu_id, instance_usd, gpus):
    assert GPUS[gpu_id].price_usd_per_hour == pytest.approx(instance_usd / gpus, abs=1e-4)


@pytest.mark.parametrize("gpu", [g for g in GPUS.values() if g.price_usd_per_hour is not None],
                         ids=lambda g: g.id)
def test_every_price_names_its_instance_and_date(gpu):
    assert gpu.price_usd_per_hour > 0
    assert "on-demand" in gpu.price_source
    year = int(gpu.price_date[:4])
    assert 2016 <= year <= datetime.date.today().year


def _gpu_entry(**price):
    return {"name": "X", "vendor": "v", "architecture": "a", "memory_bandwidth_GBps": 1,
            "memory_GB": 1, "source": "a datasheet, 2024", "vector_tflops": {"fp32": 1},
            "matrix_tflops": {"fp32": 1},
            **({"price": price} if price else {})}


def test_a_price_table_becomes_the_spec_price():
    gpu = catalog.parse_gpu("x", _gpu_entry(usd_per_hour=2.5, source="cloud X on-demand",
                                            date="2024-06"))
    assert (gpu.price_usd_per_hour, gpu.price_source, gpu.price_date) == \
        (2.5, "cloud X on-demand", "2024-06")
    assert catalog.parse_gpu("x", _gpu_entry()).price_usd_per_hour is None


def test_an_unquoted_toml_date_is_accepted():
    gpu = catalog.parse_gpu("x", _gpu_entry(usd_per_hour=1, source="s",
                                            date=datetime.date(2024, 6, 1)))
    assert gpu.price_date == "2024-06-01"


@pytest.mark.parametrize("price, field", [
    ({"usd_per_hour": 0, "source": "s", "date": "2024-06"}, "gpus.x.price.usd_per_hour"),
    ({"usd_per_hour": -1.0, "source": "s", "date": "2024-06"}, "gpus.x.price.usd_per_hour"),
    ({"usd_per_hour": "3", "source": "s", "date": "2024-06"}, "gpus.x.price.usd_per_hour"),
    ({"usd_per_hour": math.inf, "source": "s", "date": "2024-06"},
     "gpus.x.price.usd_per_hour"),
    ({"usd_per_hour": 1, "source": "s"}, "gpus.x.price.date"),
    ({"usd_per_hour": 1, "date": "2024-06"}, "gpus.x.price.source"),
    ({"usd_per_hour": 1, "source": "", "date": "2024-06"}, "gpus.x.price.source"),
    ({"usd_per_hour": 1, "source": "s", "date": "June 2024"}, "gpus.x.price.date"),
    ({"usd_per_hour": 1, "source": "s", "date": "2024-13"}, "gpus.x.price.date"),
    ({"usd_per_hour": 1, "source": "s", "date": "2024-06", "currency": "EUR"},
     "gpus.x.price.currency"),
])
def test_a_bad_price_names_the_field(price, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        catalog.parse_gpu("x", _gpu_entry(**price))


def test_a_price_that_is_not_a_table_is_refused():
    entry = _gpu_entry()
    entry["price"] = 3.0
    with pytest.raises(ConfigError, match=r"gpus\.x\.price"):
        catalog.parse_gpu("x", entry)


def test_a_spec_refuses_a_non_positive_price():
    with pytest.raises(ConfigError, match="price_usd_per_hour"):
        dataclasses.replace(GPUS["t4"], price_usd_per_hour=0.0)


# ---------------------------------------------------------------- links

# NVLink per-GPU aggregate per direction = links x GB/s per link per direction, as the
# architecture whitepapers state them (P100 2016, V100 2017, A100 2020, H100 2022,
# Blackwell 2024).
NVLINK_LINKS = {"nvlink1": (4, 20), "nvlink2": (6, 25), "nvlink3": (12, 25),
                "nvlink4": (18, 25), "nvlink5": (18, 50)}


@pytest.mark.parametrize("link_id, links, per_link_GBps",
                         [(k, *v) for k, v in NVLINK_LINKS.items()])
def test_nvlink_aggregate_is_links_times_per_link_bandwidth(link_id, links, per_link_GBps):
    link = LINKS[link_id]
    assert link.transport == "nvlink"
    assert link.bandwidth_Bps == pytest.approx(links * per_link_GBps * GBps)
    assert f"{links} links x {per_link_GBps} GB/s" in link.name


def test_mi300x_infinity_fabric_is_seven_links_at_the_rate_amd_quotes():
    link = LINKS["xgmi-mi300x"]
    assert link.transport == "infinity-fabric"
    assert link.bandwidth_Bps == pytest.approx(7 * 64 * GBps)  # 896 GB/s bidirectional
    assert link.efficiency == pytest.approx(48 / 64)  # ROCm/rccl issue 1210


def test_pcie_generations_double_from_the_lane_rate():
    # x16 lanes x GT/s x 128b/130b coding / 8 bits.
    for link_id, gt_per_s in (("pcie3", 8), ("pcie4", 16), ("pcie5", 32)):
        assert LINKS[link_id].bandwidth_Bps == pytest.approx(16 * gt_per_s * 128 / 130 / 8 * GBps,
                                                             rel=2e-3)
        assert LINKS[link_id].transport == "pcie"
    assert LINKS["pcie3"].bandwidth_Bps < LINKS["pcie4"].bandwidth_Bps < \
        LINKS["pcie5"].bandwidth_Bps


def test_nvlink_generations_increase_and_beat_pcie_of_their_time():
    rates = [LINKS[f"nvlink{n}"].bandwidth_Bps for n in range(1, 6)]
    assert rates == sorted(rates) and len(set(rates)) == 5
    assert LINKS["nvlink1"].bandwidth_Bps > 4 * LINKS["pcie3"].bandwidth_Bps


def test_infiniband_generations_increase_from_their_lane_rates():
    # 4 lanes x Gbaud x coding: QDR 10 x 8/10, FDR 14.0625 x 64/66, EDR 25.78125 x 64/66.
    expected_Gbps = {"ib-qdr": 4 * 10 * 8 / 10, "ib-fdr": 4 * 14.0625 * 64 / 66,
                     "ib-edr": 4 * 25.78125 * 64 / 66, "ib-hdr": 200, "ib-ndr": 400}
    for link_id, gbps in expected_Gbps.items():
        assert LINKS[link_id].bandwidth_Bps == pytest.approx(gbps * Gbps, rel=2e-3)
        assert LINKS[link_id].transport == "rdma"
    rates = [LINKS[k].bandwidth_Bps for k in expected_Gbps]
    assert rates == sorted(rates) and len(set(rates)) == len(rates)


ETHERNET_SPEEDS = {"1g": 1, "10g": 10, "25g": 25, "40g": 40, "50g": 50, "100g": 100, "200g": 200,
                   "400g": 400}


@pytest.mark.parametrize("speed, gbps", ETHERNET_SPEEDS.items())
def test_ethernet_entries_run_at_their_named_speed(speed, gbps):
    tcp = LINKS[f"eth-{speed}"]
    assert tcp.transport == "tcp" and not tcp.is_rdma
    assert tcp.bandwidth_Bps == pytest.approx(gbps * Gbps)
    if f"roce-{speed}" in LINKS:
        roce = LINKS[f"roce-{speed}"]
        assert roce.transport == "rdma" and roce.is_rdma
        assert roce.bandwidth_Bps == tcp.bandwidth_Bps


# (TCP link, RDMA link of the same speed)
SAME_SPEED = [("eth-25g", "roce-25g"), ("eth-100g", "roce-100g"), ("eth-100g", "ib-edr"),
              ("eth-200g", "roce-200g"), ("eth-200g", "ib-hdr"), ("eth-400g", "roce-400g"),
              ("eth-400g", "ib-ndr")]


@pytest.mark.parametrize("tcp_id, rdma_id", SAME_SPEED)
def test_tcp_is_slower_to_start_and_delivers_less_than_rdma(tcp_id, rdma_id):
    tcp, rdma = LINKS[tcp_id], LINKS[rdma_id]
    assert tcp.bandwidth_Bps == rdma.bandwidth_Bps
    assert tcp.latency_s > 4 * rdma.latency_s
    assert tcp.efficiency < rdma.efficiency
    assert tcp.achievable_bandwidth_Bps < rdma.achievable_bandwidth_Bps


def test_latencies_are_tens_of_us_for_tcp_and_a_few_us_for_rdma_and_gpu_links():
    for link in LINKS.values():
        if link.transport == "tcp":
            assert 10e-6 <= link.latency_s <= 100e-6, link.id
        else:
            assert 0.5e-6 <= link.latency_s <= 5e-6, link.id


def test_tcp_never_beats_ethernet_framing_and_faster_nics_never_deliver_less():
    ordered = [LINKS[f"eth-{s}"] for s in ETHERNET_SPEEDS]
    for link in ordered:
        assert link.efficiency <= 1448 / 1538 + 1e-9  # TCP payload per 1500 B MTU frame
    achieved = [link.achievable_bandwidth_Bps for link in ordered]
    assert achieved == sorted(achieved)


def test_tcp_at_100g_matches_the_nccl_socket_measurement():
    # github.com/NVIDIA/nccl issue 450: nccl-tests allreduce busbw 4.1-5.2 GB/s on 100 Gbit/s
    # TCP (iperf3 with 8 flows: 86.6 Gbit/s).
    assert 4.0 * GBps <= LINKS["eth-100g"].achievable_bandwidth_Bps <= 5.5 * GBps


def test_nvlink4_efficiency_stays_where_collective_tests_assume_it():
    # tests/test_collectives.py holds the H200 busbw predictions at efficiencies 0.85 and
    # 0.9; github.com/NVIDIA/nccl issue 1264 measures 0.83 (one way) to 0.87 (both ways).
    assert 0.85 <= LINKS["nvlink4"].efficiency <= 0.9


# ---------------------------------------------------------------- ddlsim catalog


def _listed_ids(output: str) -> set[str]:
    return {line.split()[0] for line in output.strip().splitlines()[1:]}


@pytest.mark.parametrize("what, expected", [
    ("gpus", lambda: set(catalog.gpus())),
    ("links", lambda: set(catalog.links())),
    ("workloads", lambda: set(workload_catalog.workloads())),
    ("frameworks", lambda: set(FRAMEWORKS)),
])
def test_catalog_command_lists_every_id(what, expected, capsys):
    assert main(["catalog", what]) == 0
    assert _listed_ids(capsys.readouterr().out) == expected()


def test_catalog_command_lists_gpus_by_default(capsys):
    assert main(["catalog"]) == 0
    assert _listed_ids(capsys.readouterr().out) == set(GPUS)


def test_catalog_command_names_the_valid_catalogs(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["catalog", "gpu"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'gpu'" in err
    for name in ("gpus", "links", "workloads"):
        assert name in err


def test_catalog_table_refuses_an_unknown_catalog_with_the_choices():
    with pytest.raises(ConfigError, match="one of frameworks, gpus, links, workloads.*'gpus'"):
        catalog_table("gpu")


def test_gpu_table_shows_dated_prices():
    table = catalog_table("gpus").set_index("id")
    assert table.loc["a100-sxm4-40gb", "usd_per_hour"] == pytest.approx(32.7726 / 8, abs=1e-4)
    assert table.loc["a100-sxm4-40gb", "price_date"] == "2024-06"
    assert math.isnan(table.loc["k40", "usd_per_hour"])


def test_frameworks_table_shows_each_iteration_overhead():
    from models import compute
    from simulator.tables import catalog_table

    table = catalog_table("frameworks").set_index("id")
    overheads_ms = compute.defaults_table()["iteration_overhead_ms"]
    for framework_id in FRAMEWORKS:
        assert table.loc[framework_id, "iteration_overhead_ms"] == pytest.approx(
            overheads_ms.get(framework_id, 0.0))
