"""The networks of the course: three for 1x28x28 images and 10 classes, and one for text.

* :class:`LeNet300100` - the fully connected network of the pruning papers
  (Han et al. 2015; Frankle & Carbin 2019): 784-300-100-10, 266 610 parameters.
* :class:`LeNet5` - a LeNet-5-size CNN: two 5x5 convolutions with max-pooling
  and three fully connected layers.
* :class:`SmallVGG` - a VGG-style CNN with BatchNorm after every convolution,
  the shape that filter pruning and network slimming need (chapters 2 and 5).
* :class:`CharTransformer` - a small decoder-only transformer over characters,
  the language model that chapter 9 prunes in one shot.

Every model is a plain ``nn.Sequential`` under ``self.net`` whose layers are
named by kind and number, as a paper would: ``conv1``, ``bn1``, ``relu1``,
``pool1``, ..., ``flatten``, ``fc1``, ``fc2``, ``fc3``. Parameters are then
called ``net.fc1.weight``, and that is the name the pruning tools, masks
and cost tables print (``model.net.fc1`` is the layer itself).

Every model says what one input looks like, without the batch dimension:
``model.input_shape`` is ``(1, 28, 28)`` here. Tools that run a model on a
made-up input (cost tables, latency, pruning at initialisation) read it
through :func:`input_shape_of`, so a model for other data brings its own.
"""

from __future__ import annotations

from typing import Any

from collections import Counter, OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from course_lib.profiles import shifted_seed

IMAGE_SHAPE = (1, 28, 28)  # one Fashion-MNIST image: channels, height, width

# The name of each kind of layer; layers of a kind are numbered in order: conv1, conv2, ...
LAYER_KINDS: dict[type[nn.Module], str] = {
    nn.Conv2d: "conv", nn.BatchNorm2d: "bn", nn.ReLU: "relu", nn.MaxPool2d: "pool",
    nn.Flatten: "flatten", nn.Linear: "fc",
}


def named_layers(layers: Sequence[nn.Module]) -> OrderedDict[str, nn.Module]:
    """Name each layer by its kind and its number among the layers of that kind.

    ``[Conv2d, ReLU, Flatten, Linear, ReLU, Linear]`` becomes ``conv1, relu1,
    flatten, fc1, relu2, fc2``. A kind that occurs only once gets no number
    (``flatten``; the single classifier ``fc`` of :class:`SmallVGG`).
    ``nn.Sequential(named_layers(layers))`` runs the layers in this order.
    """
    kinds = [LAYER_KINDS[type(layer)] for layer in layers]
    total, seen = Counter(kinds), Counter()
    named: OrderedDict[str, nn.Module] = OrderedDict()
    for kind, layer in zip(kinds, layers):
        seen[kind] += 1
        named[kind if total[kind] == 1 else f"{kind}{seen[kind]}"] = layer
    return named


def fully_connected(in_features: int, hidden: Sequence[int], num_classes: int) -> list[nn.Module]:
    """``Linear - ReLU`` for each hidden width, then the output ``Linear`` (no softmax:
    ``nn.CrossEntropyLoss`` takes the raw scores)."""
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, num_classes))
    return layers


def input_shape_of(model: nn.Module, input_shape: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """The shape of one input of ``model``, without the batch dimension.

    ``input_shape`` when you give it, else the model's own ``model.input_shape``
    (every course model has one, e.g. ``(1, 28, 28)``).

    Raises:
        ValueError: neither is there; the message says what to pass.
    """
    if input_shape is not None:
        return tuple(input_shape)
    own = getattr(model, "input_shape", None)
    if own is None:
        raise ValueError(
            f"{type(model).__name__} has no input_shape attribute, so the shape of one input must be given: pass "
            "input_shape=(...) without the batch dimension, e.g. input_shape=(1, 28, 28) for one Fashion-MNIST "
            "image or input_shape=(784,) for a flat one (or set model.input_shape).")
    return tuple(own)


class CourseNet(nn.Module):
    """Base of the course's models: all layers live in one ``nn.Sequential`` called ``net``.

    ``input_shape`` is the shape of one input, without the batch dimension.
    """

    net: nn.Sequential
    input_shape: tuple[int, ...] = IMAGE_SHAPE

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class LeNet300100(CourseNet):
    """784 -> 300 -> 100 -> 10 with ReLU, the classic pruning benchmark."""

    def __init__(self, hidden: Sequence[int] = (300, 100), num_classes: int = 10) -> None:
        super().__init__()
        self.net = nn.Sequential(named_layers([nn.Flatten(), *fully_connected(28 * 28, hidden, num_classes)]))


class LeNet5(CourseNet):
    """conv5x5(6) - pool - conv5x5(16) - pool - 120 - 84 - 10 (LeCun et al. 1998).

    The first convolution pads by 2 so that 28x28 inputs give the original
    32x32 geometry: 28 -> 14 -> 10 -> 5, i.e. 16*5*5 = 400 flattened features.
    """

    def __init__(self, channels: Sequence[int] = (6, 16), hidden: Sequence[int] = (120, 84),
                 num_classes: int = 10) -> None:
        super().__init__()
        c1, c2 = channels
        self.net = nn.Sequential(named_layers([
            nn.Conv2d(1, c1, kernel_size=5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, kernel_size=5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            *fully_connected(c2 * 5 * 5, hidden, num_classes),
        ]))


class SmallVGG(CourseNet):
    """VGG-style: [conv3x3 - BN - ReLU] blocks, max-pool after each stage.

    ``stages=(8, 16, 32)`` gives 28 -> 14 -> 7 -> 3 and a classifier that
    reads 32*3*3 = 288 flattened features. The widths are small so that one
    Fashion-MNIST epoch takes seconds on a laptop CPU. Convolutions have no bias (the
    BatchNorm that follows has one), as in most modern CNNs; the BN scale
    factors gamma are what network slimming ranks.
    """

    def __init__(self, stages: Sequence[int] = (8, 16, 32), convs_per_stage: int = 1,
                 num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        size = 28
        for width in stages:
            for _ in range(convs_per_stage):
                layers += [nn.Conv2d(channels, width, kernel_size=3, padding=1, bias=False),
                           nn.BatchNorm2d(width), nn.ReLU()]
                channels = width
            layers.append(nn.MaxPool2d(2))
            size //= 2
        layers += [nn.Flatten(), nn.Linear(channels * size * size, num_classes)]
        self.net = nn.Sequential(named_layers(layers))


def lenet300_of_size(parameters: int, seed: int = 0, min_width: int = 10) -> LeNet300100:
    """A *small-dense* LeNet-300-100: the narrower dense network whose parameter count is closest to ``parameters``.

    The fair dense rival of a sparse network: the same depth and about the same number of parameters in use
    (e.g. 10 % of the weights plus the biases). Both hidden widths shrink by one factor (300 : 100), but no hidden
    layer is made narrower than ``min_width`` (default: the 10 classes): a layer of 2 units in front of a
    10-class output is a bottleneck that no amount of training repairs, and a comparison with it would measure that
    bottleneck, not the value of sparsity. Once the second width is at the floor only the first shrinks; a
    target below the smallest allowed network (two layers of ``min_width``: 8,070 parameters for 784 inputs) gets
    that network, with *more* parameters than asked for — compare its count with the target's.
    Seeded like :func:`build_model`.
    """
    if parameters < 1:
        raise ValueError(f"parameters must be at least 1, got {parameters}.")
    if min_width < 1:
        raise ValueError(f"min_width must be at least 1, got {min_width}.")

    def count(hidden: tuple[int, int]) -> int:
        widths = (28 * 28, *hidden, 10)
        return sum(a * b + b for a, b in zip(widths, widths[1:]))

    shapes = [(first, max(min_width, round(first / 3))) for first in range(min_width, 301)]  # 300 : 100, floored
    best = min(shapes, key=lambda hidden: abs(count(hidden) - parameters))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(shifted_seed(seed))
        return LeNet300100(hidden=best)


# The classifier layers that chapters 7 and 8 leave dense for every method: LeNet-300-100's net.fc3 holds 1,000 of
# 266,200 weights, and at 95 % a per-layer rule would leave each class 5 inputs - a comparison would measure that
# starvation, not the choice of mask. Pass them as ``exclude=`` to any mask function or updater.
LENET_CLASSIFIER = ("net.fc3",)
VGG_CLASSIFIER = ("net.fc",)

MODELS: dict[str, type[nn.Module]] = {
    "lenet300": LeNet300100,
    "lenet5": LeNet5,
    "vgg": SmallVGG,
}


def build_model(name: str, seed: int = 0, **options: Any) -> nn.Module:
    """Create a freshly initialised model by its course name, seeded.

    The same name and seed always give the same initial weights, which is
    what the lottery-ticket chapter rewinds to. ``options`` go to the model's
    constructor, e.g. ``build_model("vgg", stages=(4, 8, 16))`` for a SmallVGG
    at half width.
    """
    known = {**MODELS, **LANGUAGE_MODELS}
    if name not in known:
        raise ValueError(f"Unknown model {name!r}; choose one of {sorted(known)}.")
    with torch.random.fork_rng(devices=[]):  # leave the caller's random state untouched
        torch.manual_seed(shifted_seed(seed))
        return known[name](**options)


class ResidualBlock(nn.Module):
    """conv3x3 - BN - ReLU - conv3x3 - BN, plus a shortcut, then ReLU (He et al. 2016).

    The shortcut is the identity when the widths match, else a 1x1 convolution
    with its BatchNorm. The addition ties channel c of the block's output to
    channel c of its input: pruning one without the other breaks the sum.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity() if in_channels == out_channels else nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class SmallResNet(nn.Module):
    """A small residual network: stem conv(8) - pool - block(8) - pool - block(16) - pool - fc.

    28 -> 14 -> 7 -> 3, and a classifier that reads 16*3*3 = 144 features, as
    SmallVGG's does; about 0.46 M MACs per image (SmallVGG: 0.51 M). Not a ``CourseNet``: the residual
    additions make it a graph, not a chain, so the course's ``shrink`` (which
    follows one ``nn.Sequential``) refuses it; chapter 2 prunes it with
    Torch-Pruning's dependency graph instead.
    """

    input_shape: tuple[int, ...] = IMAGE_SHAPE

    def __init__(self, widths: Sequence[int] = (8, 16), num_classes: int = 10) -> None:
        super().__init__()
        first, second = widths
        self.conv1 = nn.Conv2d(1, first, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(first)
        self.block1 = ResidualBlock(first, first)
        self.block2 = ResidualBlock(first, second)
        self.fc = nn.Linear(second * 3 * 3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        x = nn.functional.max_pool2d(self.block1(x), 2)
        x = nn.functional.max_pool2d(self.block2(x), 2)
        return self.fc(x.flatten(1))


MODELS["resnet"] = SmallResNet


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position t sees positions 0..t only.

    Its two linear layers are ordinary ``nn.Linear`` modules (``qkv`` makes the queries, keys and values at once;
    ``proj`` mixes the heads' outputs), so the course's masks and one-shot pruners treat them as any other layer.
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"the width ({width}) must split evenly into {heads} heads.")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = (t.view(batch, length, self.heads, width // self.heads).transpose(1, 2)
                   for t in self.qkv(x).split(width, dim=2))
        y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(batch, length, width))


class TransformerBlock(nn.Module):
    """Pre-LayerNorm block: ``x + attention(LN(x))``, then ``x + fc2(GELU(fc1(LN(x))))``."""

    def __init__(self, width: int, heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(width), CausalSelfAttention(width, heads)
        self.ln2 = nn.LayerNorm(width)
        self.fc1, self.fc2 = nn.Linear(width, mlp_ratio * width), nn.Linear(mlp_ratio * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.fc2(nn.functional.gelu(self.fc1(self.ln2(x))))


class CharTransformer(nn.Module):
    """A small decoder-only (GPT-style) transformer over characters: chapter 9's language model.

    Token and position embeddings, ``depth`` pre-LayerNorm blocks, a final LayerNorm and a linear head that gives
    one score (logit) per character of the vocabulary at every position: ``[B, T]`` ids -> ``[B, T, vocab]``. With
    the defaults (width 128, 4 blocks) the blocks hold about 0.8 M weights. :meth:`block_linears` names the layers
    one-shot pruning prunes: every linear layer of the blocks, not the embeddings or the head (as the papers do).
    """

    def __init__(self, vocab_size: int, context: int = 128, width: int = 128, depth: int = 4, heads: int = 4) -> None:
        super().__init__()
        if min(vocab_size, context, width, depth, heads) < 1:
            raise ValueError("vocab_size, context, width, depth and heads must all be positive.")
        self.context, self.input_shape = context, (context,)  # one input: a sequence of `context` token ids
        self.embed, self.position = nn.Embedding(vocab_size, width), nn.Embedding(context, width)
        self.blocks = nn.ModuleList(TransformerBlock(width, heads) for _ in range(depth))
        self.ln, self.head = nn.LayerNorm(width), nn.Linear(width, vocab_size)
        for module in self.modules():  # GPT-2's initialisation: small normal weights, zero biases
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.dim() != 2 or ids.is_floating_point():
            raise ValueError(f"the model reads integer token ids of shape [batch, length]; got {ids.dtype} of shape "
                             f"{list(ids.shape)}.")
        if ids.shape[1] > self.context:
            raise ValueError(f"the model reads at most {self.context} tokens at once (its context), got "
                             f"{ids.shape[1]}: cut the input to its last {self.context} tokens.")
        x = self.embed(ids) + self.position(torch.arange(ids.shape[1], device=ids.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))

    def block_linears(self) -> list[str]:
        """The blocks' linear layers, from input to output: ``blocks.0.attn.qkv``, ..., ``blocks.3.fc2``."""
        return [name for name, module in self.named_modules()
                if isinstance(module, nn.Linear) and name.startswith("blocks.")]


LANGUAGE_MODELS: dict[str, type[nn.Module]] = {"char-transformer": CharTransformer}  # build_model knows these too
