"""Image-classification CNNs as per-layer workloads, built from their torchvision definitions.

Each builder walks the architecture the way ``forward`` runs it in training mode and
emits one :class:`~models.workloads.Layer` per operation a framework launches as a
kernel: convolution, batch norm, ReLU, pooling, residual add, concatenation, dropout,
fully connected. Shapes are tracked from the input, so parameter and FLOP totals follow
from the architecture alone. Views (``flatten``) launch nothing and are left out; so is
the loss (log-softmax and NLL over 1,000 logits), which torchvision models leave to the
training loop.

FLOP conventions, per sample (one multiply-add is 2 FLOP):

- conv / linear: ``2*m*n*k`` of the GEMM they lower to, plus one add per output element
  when the layer has a bias.
- batch norm (training mode): :data:`NORM_FLOPS_PER_ELEMENT`.
- ReLU: one comparison per element. Residual add: one add per element.
- pooling: one comparison (max) or add (average) per window element per output element.
- dropout (training mode): :data:`DROPOUT_FLOPS_PER_ELEMENT`. Concatenation: a copy,
  0 FLOP, but its bytes count.

``input_elements`` counts every operand read: both tensors of a residual add, every
branch of a concatenation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from models.workloads import Layer, Workload

#: Batch statistics (sum and sum of squares: 3 FLOP) plus the fused per-channel
#: scale and shift ``x * (gamma * rstd) + (beta - mean * gamma * rstd)`` (2 FLOP).
NORM_FLOPS_PER_ELEMENT = 5
#: Compare a uniform draw with the drop probability, then scale what is kept.
DROPOUT_FLOPS_PER_ELEMENT = 2

IMAGENET_DATASET = "imagenet-1k"
#: ILSVRC-2012 training images (Russakovsky et al. 2015, IJCV, Table 2).
IMAGENET_TRAIN_SAMPLES = 1_281_167
IMAGENET_CLASSES = 1000


@dataclass(frozen=True)
class Shape:
    """An activation of one sample: channels x height x width (a vector has 1 x 1)."""

    channels: int
    height: int = 1
    width: int = 1

    @property
    def elements(self) -> int:
        return self.channels * self.height * self.width


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return value if isinstance(value, tuple) else (value, value)


def _window_out(size: int, kernel: int, stride: int, padding: int) -> int:
    # PyTorch's output size for convolution and pooling without dilation or ceil_mode.
    return (size + 2 * padding - kernel) // stride + 1


class Network:
    """Appends layers in forward order while tracking the running activation shape.

    Each method consumes :attr:`shape` and leaves the layer's output shape there, so a
    sequential network is a list of calls. For branches, :meth:`at` rewinds to a saved
    shape; :meth:`concat` and :meth:`add` join them again.
    """

    def __init__(self, input_shape: Shape):
        self.shape = input_shape
        self.layers: list[Layer] = []

    def at(self, shape: Shape) -> Network:
        self.shape = shape
        return self

    def _emit(self, layer: Layer, output: Shape) -> Shape:
        self.layers.append(layer)
        self.shape = output
        return output

    def conv(self, name: str, out_channels: int, kernel: int | tuple[int, int], *,
             stride: int = 1, padding: int | tuple[int, int] = 0,
             bias: bool = False) -> Shape:
        (kh, kw), (ph, pw) = _pair(kernel), _pair(padding)
        x = self.shape
        out = Shape(out_channels, _window_out(x.height, kh, stride, ph),
                    _window_out(x.width, kw, stride, pw))
        m, n, k = out.height * out.width, out_channels, x.channels * kh * kw
        return self._emit(Layer(
            name=name, kind="conv",
            params=n * k + (n if bias else 0),
            forward_flops=2 * m * n * k + (m * n if bias else 0),
            input_elements=x.elements, output_elements=out.elements,
            gemm=(m, n, k), kernel=(kh, kw), stride=stride,
        ), out)

    def linear(self, name: str, out_features: int) -> Shape:
        in_features = self.shape.elements
        return self._emit(Layer(
            name=name, kind="linear",
            params=in_features * out_features + out_features,
            forward_flops=2 * in_features * out_features + out_features,
            input_elements=in_features, output_elements=out_features,
            gemm=(1, out_features, in_features),
        ), Shape(out_features))

    def batch_norm(self, name: str) -> Shape:
        x = self.shape
        return self._emit(Layer(
            name=name, kind="norm",
            params=2 * x.channels,  # gamma and beta; running mean and variance are buffers
            forward_flops=NORM_FLOPS_PER_ELEMENT * x.elements,
            input_elements=x.elements, output_elements=x.elements,
        ), x)

    def relu(self, name: str) -> Shape:
        return self._elementwise(name, "activation", flops_per_element=1)

    def dropout(self, name: str) -> Shape:
        return self._elementwise(name, "elementwise", DROPOUT_FLOPS_PER_ELEMENT)

    def _elementwise(self, name: str, kind: str, flops_per_element: int) -> Shape:
        x = self.shape
        return self._emit(Layer(
            name=name, kind=kind, params=0,
            forward_flops=flops_per_element * x.elements,
            input_elements=x.elements, output_elements=x.elements,
        ), x)

    def pool(self, name: str, kernel: int, stride: int | None = None,
             padding: int = 0) -> Shape:
        """Max or average pooling (the same cost): one operation per window element."""
        x = self.shape
        stride = kernel if stride is None else stride
        out = Shape(x.channels, _window_out(x.height, kernel, stride, padding),
                    _window_out(x.width, kernel, stride, padding))
        return self._emit(Layer(
            name=name, kind="pool", params=0,
            forward_flops=kernel * kernel * out.elements,
            input_elements=x.elements, output_elements=out.elements,
        ), out)

    def adaptive_avg_pool(self, name: str, size: int) -> Shape:
        x = self.shape
        # Every input element lands in one window when the input divides evenly, as in
        # all the networks here; other sizes would overlap windows.
        out = Shape(x.channels, size, size)
        return self._emit(Layer(
            name=name, kind="pool", params=0, forward_flops=x.elements,
            input_elements=x.elements, output_elements=out.elements,
        ), out)

    def add(self, name: str, other: Shape) -> Shape:
        x = self.shape
        if other != x:
            raise ValueError(f"{name}: cannot add {other} to {x}")
        return self._emit(Layer(
            name=name, kind="elementwise", params=0, forward_flops=x.elements,
            input_elements=2 * x.elements, output_elements=x.elements,
        ), x)

    def concat(self, name: str, parts: list[Shape]) -> Shape:
        """Channel concatenation of branches with equal height and width (a copy)."""
        sizes = {(p.height, p.width) for p in parts}
        if len(sizes) != 1:
            raise ValueError(f"{name}: branch sizes differ: {sorted(sizes)}")
        out = Shape(sum(p.channels for p in parts), parts[0].height, parts[0].width)
        return self._emit(Layer(
            name=name, kind="elementwise", params=0, forward_flops=0,
            input_elements=out.elements, output_elements=out.elements,
        ), out)

    def conv_bn_relu(self, name: str, out_channels: int, kernel: int | tuple[int, int], *,
                     stride: int = 1, padding: int | tuple[int, int] = 0,
                     conv: str = "conv", bn: str = "bn", relu: str | None = "relu") -> Shape:
        """Bias-free convolution, batch norm, then ReLU unless ``relu`` is None.

        ``conv``, ``bn`` and ``relu`` are the module names under ``name``, as torchvision
        calls them (``conv1``/``bn1`` in a ResNet block, ``conv``/``bn`` in Inception).
        """
        prefix = f"{name}." if name else ""
        self.conv(prefix + conv, out_channels, kernel, stride=stride, padding=padding)
        self.batch_norm(prefix + bn)
        if relu is not None:
            self.relu(prefix + relu)
        return self.shape


def _workload(workload_id: str, name: str, net: Network, input_shape: Shape,
              source: str) -> Workload:
    return Workload(
        id=workload_id, name=name, task="image-classification", layers=tuple(net.layers),
        sample_shape=(input_shape.channels, input_shape.height, input_shape.width),
        dataset=IMAGENET_DATASET, dataset_samples=IMAGENET_TRAIN_SAMPLES, source=source,
    )


# --- AlexNet ------------------------------------------------------------------------

def alexnet() -> Workload:
    """torchvision's AlexNet: the single-tower "one weird trick" variant (64-192-384-256-256
    channels, no local response normalisation), not the two-GPU 2012 original."""
    image = Shape(3, 224, 224)
    net = Network(image)
    features = [  # (out channels, kernel, stride, padding, max pool after)
        (64, 11, 4, 2, True), (192, 5, 1, 2, True), (384, 3, 1, 1, False),
        (256, 3, 1, 1, False), (256, 3, 1, 1, True),
    ]
    index = 0
    for channels, kernel, stride, padding, pool in features:
        net.conv(f"features.{index}", channels, kernel, stride=stride, padding=padding,
                 bias=True)
        net.relu(f"features.{index + 1}")
        index += 2
        if pool:
            net.pool(f"features.{index}", 3, stride=2)
            index += 1
    net.adaptive_avg_pool("avgpool", 6)
    net.dropout("classifier.0")
    net.linear("classifier.1", 4096)
    net.relu("classifier.2")
    net.dropout("classifier.3")
    net.linear("classifier.4", 4096)
    net.relu("classifier.5")
    net.linear("classifier.6", IMAGENET_CLASSES)
    return _workload(
        "alexnet", "AlexNet", net, image,
        "Krizhevsky 2014, One weird trick for parallelizing convolutional neural networks "
        "(arXiv 1404.5997); torchvision.models.alexnet",
    )


# --- VGG ----------------------------------------------------------------------------

#: Configurations of Simonyan & Zisserman, Table 1: conv widths, "M" for max pool.
VGG_CONFIGS = {
    "vgg11": ("A", (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")),
    "vgg16": ("D", (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                    512, 512, 512, "M", 512, 512, 512, "M")),
    "vgg19": ("E", (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                    512, 512, 512, 512, "M", 512, 512, 512, 512, "M")),
}


def vgg(workload_id: str) -> Workload:
    """torchvision's vgg11/vgg16/vgg19 (configurations A, D, E; no batch norm)."""
    letter, config = VGG_CONFIGS[workload_id]
    image = Shape(3, 224, 224)
    net = Network(image)
    for item, position in _vgg_indices(config):
        if item == "M":
            net.pool(f"features.{position}", 2, stride=2)
        else:
            net.conv(f"features.{position}", item, 3, padding=1, bias=True)
            net.relu(f"features.{position + 1}")
    net.adaptive_avg_pool("avgpool", 7)
    net.linear("classifier.0", 4096)
    net.relu("classifier.1")
    net.dropout("classifier.2")
    net.linear("classifier.3", 4096)
    net.relu("classifier.4")
    net.dropout("classifier.5")
    net.linear("classifier.6", IMAGENET_CLASSES)
    depth = workload_id.removeprefix("vgg")
    return _workload(
        workload_id, f"VGG-{depth}", net, image,
        "Simonyan, Zisserman 2015, Very Deep Convolutional Networks for Large-Scale Image "
        f"Recognition (ICLR, arXiv 1409.1556), configuration {letter}; "
        f"torchvision.models.{workload_id}",
    )


def _vgg_indices(config: tuple) -> list[tuple]:
    """Pair each config item with its index in torchvision's ``features`` Sequential,
    where a conv and its ReLU take two slots."""
    pairs, position = [], 0
    for item in config:
        pairs.append((item, position))
        position += 1 if item == "M" else 2
    return pairs


# --- ResNet -------------------------------------------------------------------------

#: Blocks per stage, He et al. 2016, Table 1.
RESNET_STAGES = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}
_EXPANSION = {"basic": 1, "bottleneck": 4}


def _basic_block(net: Network, name: str, planes: int, stride: int) -> None:
    x = net.shape
    net.conv_bn_relu(name, planes, 3, stride=stride, padding=1, conv="conv1", bn="bn1")
    net.conv_bn_relu(name, planes, 3, padding=1, conv="conv2", bn="bn2", relu=None)
    _residual(net, name, x, planes, stride)


def _bottleneck(net: Network, name: str, planes: int, stride: int) -> None:
    x = net.shape
    net.conv_bn_relu(name, planes, 1, conv="conv1", bn="bn1", relu="relu1")
    # ResNet v1.5: the stride sits on the 3x3 conv, not on the first 1x1.
    net.conv_bn_relu(name, planes, 3, stride=stride, padding=1, conv="conv2", bn="bn2",
                     relu="relu2")
    net.conv_bn_relu(name, planes * 4, 1, conv="conv3", bn="bn3", relu=None)
    _residual(net, name, x, planes * 4, stride)


def _residual(net: Network, name: str, block_input: Shape, out_channels: int,
              stride: int) -> None:
    """Projection shortcut where the shape changes (torchvision's ``downsample``), the
    add, and the ReLU after it, in the order torchvision's forward runs them."""
    main = net.shape
    identity = block_input
    if stride != 1 or block_input.channels != out_channels:
        net.at(block_input)
        identity = net.conv_bn_relu(f"{name}.downsample", out_channels, 1, stride=stride,
                                    conv="0", bn="1", relu=None)
    net.at(main).add(f"{name}.add", identity)
    net.relu(f"{name}.relu")


def resnet(workload_id: str) -> Workload:
    block_kind, stages = RESNET_STAGES[workload_id]
    block = _basic_block if block_kind == "basic" else _bottleneck
    image = Shape(3, 224, 224)
    net = Network(image)
    net.conv_bn_relu("", 64, 7, stride=2, padding=3, conv="conv1", bn="bn1")
    net.pool("maxpool", 3, stride=2, padding=1)
    for stage, (blocks, planes) in enumerate(zip(stages, (64, 128, 256, 512), strict=True)):
        for index in range(blocks):
            stride = 2 if stage > 0 and index == 0 else 1
            block(net, f"layer{stage + 1}.{index}", planes, stride)
    net.adaptive_avg_pool("avgpool", 1)
    net.linear("fc", IMAGENET_CLASSES)
    depth = workload_id.removeprefix("resnet")
    return _workload(
        workload_id, f"ResNet-{depth}", net, image,
        "He, Zhang, Ren, Sun 2016, Deep Residual Learning for Image Recognition (CVPR, "
        "arXiv 1512.03385), Table 1; torchvision.models." + workload_id
        + " (v1.5: stride on the 3x3 conv)",
    )


# --- Inception-v3 -------------------------------------------------------------------

def _inception_a(net: Network, name: str, pool_features: int) -> None:
    x = net.shape
    b1 = net.at(x).conv_bn_relu(f"{name}.branch1x1", 64, 1)
    net.at(x).conv_bn_relu(f"{name}.branch5x5_1", 48, 1)
    b5 = net.conv_bn_relu(f"{name}.branch5x5_2", 64, 5, padding=2)
    net.at(x).conv_bn_relu(f"{name}.branch3x3dbl_1", 64, 1)
    net.conv_bn_relu(f"{name}.branch3x3dbl_2", 96, 3, padding=1)
    b3 = net.conv_bn_relu(f"{name}.branch3x3dbl_3", 96, 3, padding=1)
    net.at(x).pool(f"{name}.avg_pool", 3, stride=1, padding=1)
    bp = net.conv_bn_relu(f"{name}.branch_pool", pool_features, 1)
    net.concat(f"{name}.cat", [b1, b5, b3, bp])


def _inception_b(net: Network, name: str) -> None:
    x = net.shape
    b3 = net.at(x).conv_bn_relu(f"{name}.branch3x3", 384, 3, stride=2)
    net.at(x).conv_bn_relu(f"{name}.branch3x3dbl_1", 64, 1)
    net.conv_bn_relu(f"{name}.branch3x3dbl_2", 96, 3, padding=1)
    bd = net.conv_bn_relu(f"{name}.branch3x3dbl_3", 96, 3, stride=2)
    bp = net.at(x).pool(f"{name}.max_pool", 3, stride=2)
    net.concat(f"{name}.cat", [b3, bd, bp])


def _inception_c(net: Network, name: str, c7: int) -> None:
    x = net.shape
    b1 = net.at(x).conv_bn_relu(f"{name}.branch1x1", 192, 1)
    net.at(x).conv_bn_relu(f"{name}.branch7x7_1", c7, 1)
    net.conv_bn_relu(f"{name}.branch7x7_2", c7, (1, 7), padding=(0, 3))
    b7 = net.conv_bn_relu(f"{name}.branch7x7_3", 192, (7, 1), padding=(3, 0))
    net.at(x).conv_bn_relu(f"{name}.branch7x7dbl_1", c7, 1)
    for index, (channels, kernel, padding) in enumerate(
        [(c7, (7, 1), (3, 0)), (c7, (1, 7), (0, 3)), (c7, (7, 1), (3, 0)),
         (192, (1, 7), (0, 3))], start=2):
        bd = net.conv_bn_relu(f"{name}.branch7x7dbl_{index}", channels, kernel,
                              padding=padding)
    net.at(x).pool(f"{name}.avg_pool", 3, stride=1, padding=1)
    bp = net.conv_bn_relu(f"{name}.branch_pool", 192, 1)
    net.concat(f"{name}.cat", [b1, b7, bd, bp])


def _inception_d(net: Network, name: str) -> None:
    x = net.shape
    net.at(x).conv_bn_relu(f"{name}.branch3x3_1", 192, 1)
    b3 = net.conv_bn_relu(f"{name}.branch3x3_2", 320, 3, stride=2)
    net.at(x).conv_bn_relu(f"{name}.branch7x7x3_1", 192, 1)
    net.conv_bn_relu(f"{name}.branch7x7x3_2", 192, (1, 7), padding=(0, 3))
    net.conv_bn_relu(f"{name}.branch7x7x3_3", 192, (7, 1), padding=(3, 0))
    b7 = net.conv_bn_relu(f"{name}.branch7x7x3_4", 192, 3, stride=2)
    bp = net.at(x).pool(f"{name}.max_pool", 3, stride=2)
    net.concat(f"{name}.cat", [b3, b7, bp])


def _split_1x3_3x1(net: Network, name: str) -> Shape:
    """The parallel 1x3 and 3x1 convs of Inception-E, joined by their own concat."""
    x = net.shape
    a = net.at(x).conv_bn_relu(f"{name}a", 384, (1, 3), padding=(0, 1))
    b = net.at(x).conv_bn_relu(f"{name}b", 384, (3, 1), padding=(1, 0))
    return net.concat(f"{name}.cat", [a, b])


def _inception_e(net: Network, name: str) -> None:
    x = net.shape
    b1 = net.at(x).conv_bn_relu(f"{name}.branch1x1", 320, 1)
    net.at(x).conv_bn_relu(f"{name}.branch3x3_1", 384, 1)
    b3 = _split_1x3_3x1(net, f"{name}.branch3x3_2")
    net.at(x).conv_bn_relu(f"{name}.branch3x3dbl_1", 448, 1)
    net.conv_bn_relu(f"{name}.branch3x3dbl_2", 384, 3, padding=1)
    bd = _split_1x3_3x1(net, f"{name}.branch3x3dbl_3")
    net.at(x).pool(f"{name}.avg_pool", 3, stride=1, padding=1)
    bp = net.conv_bn_relu(f"{name}.branch_pool", 192, 1)
    net.concat(f"{name}.cat", [b1, b3, bd, bp])


def _inception_aux(net: Network, name: str) -> None:
    """The auxiliary classifier on Mixed_6e, which torchvision runs in training mode."""
    x = net.shape
    net.pool(f"{name}.avg_pool", 5, stride=3)
    net.conv_bn_relu(f"{name}.conv0", 128, 1)
    net.conv_bn_relu(f"{name}.conv1", 768, 5)
    net.adaptive_avg_pool(f"{name}.adaptive_avg_pool", 1)
    net.linear(f"{name}.fc", IMAGENET_CLASSES)
    net.at(x)


def inception_v3() -> Workload:
    """torchvision's inception_v3 with its auxiliary classifier (``aux_logits=True``, the
    default and the setting its published parameter count describes); the aux head adds
    3.33 M parameters and 0.1 % of the FLOPs. The optional input re-normalisation
    (``transform_input``) is left out."""
    image = Shape(3, 299, 299)
    net = Network(image)
    net.conv_bn_relu("Conv2d_1a_3x3", 32, 3, stride=2)
    net.conv_bn_relu("Conv2d_2a_3x3", 32, 3)
    net.conv_bn_relu("Conv2d_2b_3x3", 64, 3, padding=1)
    net.pool("maxpool1", 3, stride=2)
    net.conv_bn_relu("Conv2d_3b_1x1", 80, 1)
    net.conv_bn_relu("Conv2d_4a_3x3", 192, 3)
    net.pool("maxpool2", 3, stride=2)
    for name, pool_features in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
        _inception_a(net, name, pool_features)
    _inception_b(net, "Mixed_6a")
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160),
                     ("Mixed_6e", 192)):
        _inception_c(net, name, c7)
    _inception_aux(net, "AuxLogits")
    _inception_d(net, "Mixed_7a")
    _inception_e(net, "Mixed_7b")
    _inception_e(net, "Mixed_7c")
    net.adaptive_avg_pool("avgpool", 1)
    net.dropout("dropout")
    net.linear("fc", IMAGENET_CLASSES)
    return _workload(
        "inception-v3", "Inception-v3", net, image,
        "Szegedy, Vanhoucke, Ioffe, Shlens, Wojna 2016, Rethinking the Inception "
        "Architecture for Computer Vision (CVPR, arXiv 1512.00567); "
        "torchvision.models.inception_v3 with aux_logits=True",
    )


BUILDERS: dict[str, Callable[[], Workload]] = {
    "alexnet": alexnet,
    **{workload_id: partial(vgg, workload_id) for workload_id in VGG_CONFIGS},
    **{workload_id: partial(resnet, workload_id) for workload_id in RESNET_STAGES},
    "inception-v3": inception_v3,
}
