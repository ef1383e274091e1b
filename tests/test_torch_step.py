"""benchmarks/torch_step.py: the network is ResNet-50 and a step trains; GPU timing itself
runs only on a GPU machine (see the script's docstring)."""

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "torch_step.py"


@pytest.fixture(scope="module")
def torch_step():
    spec = importlib.util.spec_from_file_location("torch_step", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_torch_exits_2_with_a_message(torch_step, monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)
    assert torch_step.main(["--out", str(tmp_path / "x.csv")]) == 2
    assert "PyTorch is not importable" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_plain_resnet50_has_torchvisions_parameter_count(torch_step):
    pytest.importorskip("torch")
    model = torch_step._plain_resnet50(1000)
    # torchvision.models.resnet50 (ResNet50_Weights docs): num_params 25,557,032.
    assert sum(p.numel() for p in model.parameters()) == 25_557_032


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_one_step_trains_on_the_cpu(torch_step, precision):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch_step._plain_resnet50(10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    step = torch_step.make_step(torch, model, optimizer, precision, "cpu")
    images, labels = torch.randn(2, 3, 32, 32), torch.tensor([1, 7])
    torch_step.check_step(torch, model, step, images, labels)


def test_without_cuda_exits_2(torch_step, capsys, tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert torch_step.main(["--out", str(tmp_path / "x.csv")]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
