"""Time a real PyTorch ResNet-50 training step on one GPU and write the times to a CSV.

The measured counterpart of what ddlsim's compute model predicts for ``resnet50`` on one
GPU: forward, cross-entropy loss, backward and an SGD-with-momentum update (the rule the
calibration harness's fused kernel implements), on synthetic inputs that live on the GPU
(no input pipeline, as in the "synthetic data" benchmarks of data/validation/).

Run on a machine with an NVIDIA GPU and PyTorch built with CUDA::

    python benchmarks/torch_step.py --out data/measurements/torch_step_<gpu>.csv

Each row: one (precision, batch size) with the median, mean and minimum step time over
``--steps`` timed steps after ``--warmup`` untimed ones, images/s, the versions, and the
command that produced the file. Needs only PyTorch (torchvision's ResNet-50 is used when
importable; otherwise the same network, defined below in plain torch.nn).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import platform
import shlex
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

PRECISIONS = ("fp32", "tf32", "fp16", "bf16")

COLUMNS = ("model", "model_source", "precision", "batch_size", "image_size", "channels_last",
           "warmup_steps", "timed_steps", "step_s_median", "step_s_mean", "step_s_min",
           "images_per_s", "params", "optimizer", "cudnn_benchmark", "device_name",
           "torch_version", "cuda_version", "cudnn_version", "date_utc", "host", "command")


def resnet50(num_classes: int = 1000):
    """ResNet-50 v1.5 (stride on the 3x3 convolution of each bottleneck, as torchvision).

    torchvision's own when it is installed, so the numbers are comparable with published
    PyTorch results; otherwise an equivalent definition with the same 25,557,032
    parameters.
    """
    try:
        from torchvision.models import resnet50 as torchvision_resnet50

        return torchvision_resnet50(num_classes=num_classes), "torchvision"
    except ImportError:
        return _plain_resnet50(num_classes), "torch.nn"


def _plain_resnet50(num_classes: int):
    import torch

    nn = torch.nn

    class Bottleneck(nn.Module):
        expansion = 4

        def __init__(self, inplanes: int, planes: int, stride: int):
            super().__init__()
            width, out = planes, planes * self.expansion
            self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(width)
            self.conv3 = nn.Conv2d(width, out, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(out)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = None
            if stride != 1 or inplanes != out:
                self.downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride,
                                                          bias=False), nn.BatchNorm2d(out))

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            y = self.relu(self.bn1(self.conv1(x)))
            y = self.relu(self.bn2(self.conv2(y)))
            y = self.bn3(self.conv3(y))
            return self.relu(y + identity)

    layers, inplanes = [], 64
    for planes, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for index in range(blocks):
            layers.append(Bottleneck(inplanes, planes, stride if index == 0 else 1))
            inplanes = planes * Bottleneck.expansion
    model = nn.Sequential(
        nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(64),
        nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2, padding=1), *layers,
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512 * Bottleneck.expansion, num_classes))
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return model


def set_precision(torch, precision: str) -> None:
    """fp32 is true fp32 (TF32 off); tf32 lets cuBLAS and cuDNN use TF32 tensor cores;
    fp16 and bf16 are autocast with fp32 master weights, TF32 off for what stays fp32."""
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


def make_step(torch, model, optimizer, precision: str, device_type: str):
    """One training step as a closure over the model: returns the loss tensor."""
    autocast_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    # fp16 needs loss scaling to keep small gradients; bf16 has fp32's exponent range.
    scaler = torch.amp.GradScaler(device_type) if precision == "fp16" else None
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(images, labels):
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type, dtype=autocast_dtype or torch.float32,
                            enabled=autocast_dtype is not None):
            loss = loss_fn(model(images), labels)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        return loss

    return step


def check_step(torch, model, step, images, labels) -> None:
    """Before timing: the loss is finite and the update moved the weights."""
    before = [p.detach().clone() for p in model.parameters()]
    loss = step(images, labels)
    if not torch.isfinite(loss).item():
        raise RuntimeError(f"training step produced a non-finite loss: {loss.item()}")
    moved = sum(not torch.equal(a, p.detach()) for a, p in zip(before, model.parameters(),
                                                               strict=True))
    if moved == 0:
        raise RuntimeError("training step left every parameter unchanged")


def time_steps(torch, step, images, labels, warmup: int, steps: int) -> list[float]:
    """Seconds of each timed step, by CUDA events around the step."""
    for _ in range(warmup):
        step(images, labels)
    torch.cuda.synchronize()
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
              for _ in range(steps)]
    for start, stop in events:
        start.record()
        step(images, labels)
        stop.record()
    torch.cuda.synchronize()
    return [start.elapsed_time(stop) * 1e-3 for start, stop in events]


def measure(torch, precision: str, batch_size: int, args, command: str) -> dict | None:
    device = torch.device("cuda")
    set_precision(torch, precision)
    torch.manual_seed(args.seed)
    model, source = resnet50(args.num_classes)
    params = sum(p.numel() for p in model.parameters())
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    images = torch.randn(batch_size, 3, args.image_size, args.image_size, device=device,
                         generator=generator).contiguous(memory_format=memory_format)
    labels = torch.randint(0, args.num_classes, (batch_size,), device=device,
                           generator=generator)
    step = make_step(torch, model, optimizer, precision, "cuda")
    try:
        check_step(torch, model, step, images, labels)
        seconds = time_steps(torch, step, images, labels, args.warmup, args.steps)
    except torch.cuda.OutOfMemoryError:
        print(f"torch_step: {precision} batch {batch_size}: out of GPU memory, skipped",
              file=sys.stderr)
        return None
    finally:
        del model, optimizer, images, labels, step
        torch.cuda.empty_cache()
    median = statistics.median(seconds)
    return {
        "model": "resnet50", "model_source": source, "precision": precision,
        "batch_size": batch_size, "image_size": args.image_size,
        "channels_last": args.channels_last, "warmup_steps": args.warmup,
        "timed_steps": args.steps, "step_s_median": median,
        "step_s_mean": statistics.fmean(seconds), "step_s_min": min(seconds),
        "images_per_s": batch_size / median,
        "params": params,
        "optimizer": "torch.optim.SGD(lr=0.1, momentum=0.9, weight_decay=1e-4)",
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "device_name": torch.cuda.get_device_name(device),
        "torch_version": torch.__version__, "cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version(),
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(), "command": command,
    }


def write_csv(rows: list[dict], path: Path) -> None:
    """Whole or not at all: a temporary file beside the target, then a rename."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            stream.write(buffer.getvalue())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="CSV file to write")
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=["fp32", "bf16"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[32, 64, 128, 256])
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps (default 10)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps (default 30)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--channels-last", action="store_true",
                        help="NHWC activations (what tensor-core convolutions read natively)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if any(b < 1 for b in args.batch_sizes):
        parser.error(f"--batch-sizes {args.batch_sizes}: each must be >= 1")
    if args.warmup < 0 or args.steps < 1:
        parser.error(f"--warmup {args.warmup} must be >= 0 and --steps {args.steps} >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(["python", "benchmarks/torch_step.py",
                          *(sys.argv[1:] if argv is None else argv)])
    try:
        import torch
    except ImportError as exc:
        print(f"torch_step: PyTorch is not importable ({exc}); install a CUDA build of torch",
              file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print(f"torch_step: CUDA is not available (torch {torch.__version__}, built for CUDA "
              f"{torch.version.cuda}); run this on a machine with an NVIDIA GPU",
              file=sys.stderr)
        return 2
    # Fixed shapes: let cuDNN pick its fastest algorithms, as training scripts do.
    torch.backends.cudnn.benchmark = True
    rows = []
    for precision in args.precisions:
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            print("torch_step: this GPU has no bf16 support, skipped", file=sys.stderr)
            continue
        for batch_size in args.batch_sizes:
            row = measure(torch, precision, batch_size, args, command)
            if row is not None:
                rows.append(row)
                print(f"{precision:5s} batch {batch_size:4d}: {row['step_s_median'] * 1e3:8.2f} "
                      f"ms/step, {row['images_per_s']:8.1f} images/s", flush=True)
    if not rows:
        print("torch_step: nothing was measured", file=sys.stderr)
        return 1
    write_csv(rows, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
