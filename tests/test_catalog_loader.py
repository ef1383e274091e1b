import pytest

from models import catalog
from models.errors import ConfigError


def test_unknown_ids_suggest_the_nearest():
    with pytest.raises(ConfigError, match="did you mean 'v100-sxm2'"):
        catalog.cluster("v100-sxm", 1, 8, "nvlink2")


def test_multi_node_cluster_needs_an_inter_node_link():
    with pytest.raises(ConfigError, match="cluster.inter_link"):
        catalog.cluster("v100-sxm2", 2, 8, "nvlink2")


def test_zero_gpus_is_refused():
    with pytest.raises(ConfigError, match="cluster.gpus_per_node"):
        catalog.cluster("v100-sxm2", 1, 0, "nvlink2")


def test_precision_a_gpu_lacks_is_refused():
    with pytest.raises(ConfigError, match="precision: 'tf32'.*v100-sxm2 supports"):
        catalog.gpu("v100-sxm2").matrix_peak_flops_per_s("tf32")


def test_unknown_catalog_key_is_refused():
    with pytest.raises(ConfigError, match="gpus.x.memory_bandwith_GBps"):
        catalog.parse_gpu("x", {"memory_bandwith_GBps": 1})
