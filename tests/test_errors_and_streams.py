import numpy as np
import pytest

from models.errors import ConfigError, require_choice, require_int, require_number
from models.random_streams import stream


def test_choice_error_names_field_value_valid_and_suggestion():
    with pytest.raises(ConfigError) as info:
        require_choice("cluster.gpu", "h100-sx", ["h100-sxm", "a100-pcie"])
    message = str(info.value)
    assert "cluster.gpu" in message and "'h100-sx'" in message
    assert "a100-pcie, h100-sxm" in message and "did you mean 'h100-sxm'" in message


@pytest.mark.parametrize("value", [True, "3", float("nan"), float("inf"), -1])
def test_require_number_refuses_non_numbers_and_out_of_range(value):
    with pytest.raises(ConfigError, match="size"):
        require_number("size", value, minimum=0)


def test_require_int_refuses_floats_and_small_values():
    with pytest.raises(ConfigError, match="nodes"):
        require_int("nodes", 2.0, minimum=1)
    with pytest.raises(ConfigError, match=">= 1"):
        require_int("nodes", 0, minimum=1)
    assert require_int("nodes", 3, minimum=1) == 3


def test_streams_are_reproducible_and_independent_of_other_names():
    a1 = stream(7, "worker-0").random(5)
    stream(7, "worker-1").random(100)
    a2 = stream(7, "worker-0").random(5)
    assert np.array_equal(a1, a2)
    assert not np.array_equal(a1, stream(7, "worker-1").random(5))
    assert not np.array_equal(a1, stream(8, "worker-0").random(5))
