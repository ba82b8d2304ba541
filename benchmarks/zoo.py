"""The 18-architecture zoo of issue 8: alphaprune vs Torch-Pruning 1.6.1, plus ResNet-18 timings.

Every architecture is written here by hand after torchvision's / the PyTorch tutorials'
definitions (torchvision is not installable here), with the same layer names where it matters.
For each model:

- **alphaprune**: ``attach_gates(keep=0.5, target="all")``, ``set_alpha(0)``, ``shrink``; the
  shrunk model is compared with the gated one on a random input other than the traced one
  (``max|a-b| <= 1e-5·max|b| + 1e-6``). Status: ``pruned exactly``, ``nothing pruned``,
  ``refused: <reason>`` (an ``UnsupportedModelError`` or ``ValueError`` from alphaprune),
  ``wrong: <diff>`` (shrunk ≠ gated) or ``raw error: <type>`` (any other exception).
- **Torch-Pruning**: ``tp.pruner.MagnitudePruner`` (L1 magnitude, ``pruning_ratio=0.5``, the
  final output layer ignored), ``step()``, then a forward pass that must keep the output shape.
  Status ``pruned``, ``nothing pruned``, ``broken forward: …`` or ``raw error: …``. Its output is
  not comparable (different channels, no gates), so "wrong" is not defined for it.

Params ratio = params after / params before; ``same_ratio`` says whether both give the same
ratio; ``ap_s`` / ``tp_s`` are the wall seconds of each pass (build, prune, check). Then ResNet-18 (11.7 M params): seconds for tracing +
gating (``attach_gates``) and for ``shrink`` (which includes its own verification pass), median
of ``--repeats`` runs, for a 224² and a 64² example input.

    nice .venv/bin/python benchmarks/zoo.py            # writes benchmarks/results/zoo.csv
    .venv/bin/python benchmarks/zoo.py --only resnet18 unet --repeats 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from zoo_common import exactness, markdown, n_params, randomise_norms, short, tp_version

import alphaprune as ap
from alphaprune.bench import torch_pruning_pruner, write_csv

# -- architectures ----------------------------------------------------------------------------------

VGG_CFGS = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


def vgg_features(cfg: str, batch_norm: bool = False) -> nn.Sequential:
    """torchvision ``vgg*.features`` (``make_layers``)."""
    layers: list[nn.Module] = []
    c = 3
    for v in VGG_CFGS[cfg]:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers.append(nn.Conv2d(c, v, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU(inplace=True))
        c = v
    return nn.Sequential(*layers)


def alexnet_features() -> nn.Sequential:
    """torchvision ``alexnet().features``."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )


class Conv2dNormActivation(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """torchvision MobileNetV2 block."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(Conv2dNormActivation(inp, hidden, kernel=1))
        layers += [
            Conv2dNormActivation(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision ``mobilenet_v2()`` (width 1.0, 1000 classes)."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        settings = [
            [1, 16, 1, 1],
            [6, 24, 2, 2],
            [6, 32, 3, 2],
            [6, 64, 4, 2],
            [6, 96, 3, 1],
            [6, 160, 3, 2],
            [6, 320, 1, 1],
        ]
        c = 32
        features: list[nn.Module] = [Conv2dNormActivation(3, c, stride=2)]
        for t, ch, n, s in settings:
            for i in range(n):
                features.append(InvertedResidual(c, ch, s if i == 0 else 1, t))
                c = ch
        features.append(Conv2dNormActivation(c, 1280, kernel=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=0.2), nn.Linear(1280, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        x = F.adaptive_avg_pool2d(x, (1, 1))
        x = torch.flatten(x, 1)
        return self.classifier(x)


class BasicBlock(nn.Module):
    """torchvision ResNet ``BasicBlock``."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample=None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet18(nn.Module):
    """torchvision ``resnet18()`` (11.7 M params)."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(64, 2)
        self.layer2 = self._make_layer(128, 2, stride=2)
        self.layer3 = self._make_layer(256, 2, stride=2)
        self.layer4 = self._make_layer(512, 2, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


# -- ResNet-50 (torchvision's ``resnet50()``: Bottleneck v1.5, stride on the 3×3) ------------------


class Bottleneck(nn.Module):
    """torchvision's ResNet bottleneck (v1.5: the stride on the 3×3)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample=None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet50(nn.Module):
    """torchvision ``resnet50()`` (25.6 M params)."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(64, 3)
        self.layer2 = self._make_layer(128, 4, stride=2)
        self.layer3 = self._make_layer(256, 6, stride=2)
        self.layer4 = self._make_layer(512, 3, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(2048, num_classes)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * 4, 1, stride, bias=False),
                nn.BatchNorm2d(planes * 4),
            )
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * 4
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class Fire(nn.Module):
    """torchvision SqueezeNet ``Fire``: squeeze 1×1, then 1×1 and 3×3 expands concatenated."""

    def __init__(self, inplanes: int, squeeze: int, e1: int, e3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(inplanes, squeeze, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, e1, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, e3, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat(
            [
                self.expand1x1_activation(self.expand1x1(x)),
                self.expand3x3_activation(self.expand3x3(x)),
            ],
            1,
        )


class SqueezeNet11(nn.Module):
    """torchvision ``squeezenet1_1()``."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=3, stride=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(64, 16, 64, 64),
            Fire(128, 16, 64, 64),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(128, 32, 128, 128),
            Fire(256, 32, 128, 128),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(256, 48, 192, 192),
            Fire(384, 48, 192, 192),
            Fire(384, 64, 256, 256),
            Fire(512, 64, 256, 256),
        )
        final_conv = nn.Conv2d(512, num_classes, kernel_size=1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=0.5), final_conv, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1))
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


class DoubleConv(nn.Sequential):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """The classic U-Net (milesial/Pytorch-UNet layout, base width 32): max-pool down,
    ConvTranspose2d up, ``torch.cat([skip, up])``."""

    def __init__(self, c_in: int = 3, n_classes: int = 2, base: int = 32) -> None:
        super().__init__()
        w = [base * 2**i for i in range(5)]
        self.inc = DoubleConv(c_in, w[0])
        self.downs = nn.ModuleList(DoubleConv(w[i], w[i + 1]) for i in range(4))
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(w[i + 1], w[i], 2, stride=2) for i in reversed(range(4))
        )
        self.dec = nn.ModuleList(DoubleConv(2 * w[i], w[i]) for i in reversed(range(4)))
        self.outc = nn.Conv2d(w[0], n_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(F.max_pool2d(skips[-1], 2)))
        x = skips.pop()
        for up, dec in zip(self.ups, self.dec, strict=True):
            x = dec(torch.cat([skips.pop(), up(x)], dim=1))
        return self.outc(x)


class TutorialConvAutoencoder(nn.Module):
    """The strided-conv / ConvTranspose2d MNIST autoencoder of the PyTorch tutorials."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 7),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(64, 32, 7),
            nn.ReLU(),
            nn.ConvTranspose2d(32, 16, 3, stride=2, padding=1, output_padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(16, 1, 3, stride=2, padding=1, output_padding=1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))


class TutorialPoolAutoencoder(nn.Module):
    """The max-pool / stride-2 ConvTranspose2d (denoising) autoencoder of the tutorials,
    written with a functional forward."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 16, 3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.t_conv1 = nn.ConvTranspose2d(16, 32, 2, stride=2)
        self.t_conv2 = nn.ConvTranspose2d(32, 1, 2, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = F.relu(self.t_conv1(x))
        return torch.sigmoid(self.t_conv2(x))


def chain(
    act: Callable[[int], nn.Module], norm: Callable[[int], nn.Module] | None
) -> nn.Sequential:
    """Conv(3→32) [norm] act, Conv(32→64) [norm] act, Conv(64→64, stride 2) [norm] act,
    Conv(64→32) [norm] act, Conv(32→3)."""
    widths = [3, 32, 64, 64, 32]
    layers: list[nn.Module] = []
    for i in range(4):
        layers.append(nn.Conv2d(widths[i], widths[i + 1], 3, 2 if i == 2 else 1, 1))
        if norm is not None:
            layers.append(norm(widths[i + 1]))
        layers.append(act(widths[i + 1]))
    layers.append(nn.Conv2d(32, 3, 3, padding=1))
    return nn.Sequential(*layers)


class DictModel(nn.Module):
    """``ModuleDict`` stages with a custom forward calling ``F.relu`` between the convs."""

    def __init__(self) -> None:
        super().__init__()
        self.stages = nn.ModuleDict(
            {
                "conv1": nn.Conv2d(3, 32, 3, padding=1),
                "conv2": nn.Conv2d(32, 64, 3, padding=1),
                "conv3": nn.Conv2d(64, 64, 3, padding=1),
                "conv4": nn.Conv2d(64, 3, 3, padding=1),
            }
        )

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.stages["conv1"](x))
        x = F.relu(self.stages["conv2"](x))
        x = F.relu(self.stages["conv3"](x))
        return self.stages["conv4"](x)


class ListModel(nn.Module):
    """``ModuleList`` iterated in forward; one block concatenates ``[y, y]``."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            [
                nn.Conv2d(3, 32, 3, padding=1),
                nn.Conv2d(64, 48, 3, padding=1),
                nn.Conv2d(48, 48, 3, padding=1),
            ]
        )
        self.head = nn.Conv2d(48, 3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.blocks[0](x))
        x = torch.cat([y, y], dim=1)
        for block in self.blocks[1:]:
            x = F.relu(block(x))
        return self.head(x)


class GroupedDeconvDecoder(nn.Module):
    """A decoder of grouped and depthwise ConvTranspose2d (Torch-Pruning's IndexError case)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 64, 3, stride=2, padding=1)
        self.bn0 = nn.BatchNorm2d(64)
        self.up1 = nn.ConvTranspose2d(64, 64, 4, stride=2, padding=1, groups=4)
        self.bn1 = nn.BatchNorm2d(64)
        self.mix = nn.Conv2d(64, 32, 1)
        self.up2 = nn.ConvTranspose2d(32, 32, 3, padding=1, groups=32)
        self.out = nn.Conv2d(32, 3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn0(self.stem(x)))
        x = F.relu(self.bn1(self.up1(x)))
        x = F.relu(self.up2(F.relu(self.mix(x))))
        return self.out(x)


@dataclass(frozen=True)
class Arch:
    name: str
    factory: Callable[[], nn.Module]
    input_size: tuple[int, ...]


def _act(cls: type[nn.Module]) -> Callable[[int], nn.Module]:
    return lambda c: cls(c) if cls is nn.PReLU else cls()


ARCHS: list[Arch] = [
    Arch("vgg11_features", lambda: vgg_features("A"), (1, 3, 64, 64)),
    Arch("vgg16_features", lambda: vgg_features("D"), (1, 3, 64, 64)),
    Arch("vgg11_bn_features", lambda: vgg_features("A", batch_norm=True), (1, 3, 64, 64)),
    Arch("alexnet_features", alexnet_features, (1, 3, 128, 128)),
    Arch("mobilenet_v2", MobileNetV2, (1, 3, 64, 64)),
    Arch("resnet18", ResNet18, (1, 3, 64, 64)),
    Arch("squeezenet1_1", SqueezeNet11, (1, 3, 64, 64)),
    Arch("unet", UNet, (1, 3, 64, 64)),
    Arch("tutorial_conv_autoencoder", TutorialConvAutoencoder, (1, 1, 28, 28)),
    Arch("tutorial_pool_autoencoder", TutorialPoolAutoencoder, (1, 1, 28, 28)),
    Arch("silu_bn_chain", lambda: chain(_act(nn.SiLU), nn.BatchNorm2d), (1, 3, 32, 32)),
    Arch("relu6_bn_chain", lambda: chain(_act(nn.ReLU6), nn.BatchNorm2d), (1, 3, 32, 32)),
    Arch("prelu_chain", lambda: chain(_act(nn.PReLU), None), (1, 3, 32, 32)),
    Arch(
        "groupnorm_silu_chain",
        lambda: chain(_act(nn.SiLU), lambda c: nn.GroupNorm(8, c)),
        (1, 3, 32, 32),
    ),
    Arch(
        "instancenorm_relu_chain",
        lambda: chain(_act(nn.ReLU), lambda c: nn.InstanceNorm2d(c, affine=True)),
        (1, 3, 32, 32),
    ),
    Arch("moduledict_functional", DictModel, (1, 3, 32, 32)),
    Arch("modulelist_self_concat", ListModel, (1, 3, 32, 32)),
    Arch("grouped_deconv_decoder", GroupedDeconvDecoder, (1, 3, 32, 32)),
]


# -- helpers ---------------------------------------------------------------------------------------


def build(arch: Arch, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return randomise_norms(arch.factory(), seed).eval()


def output_layer(model: nn.Module) -> nn.Module:
    """The last registered Conv/ConvTranspose/Linear: every zoo model ends with it."""
    layers = [
        m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))
    ]
    return layers[-1]


def run_alphaprune(arch: Arch) -> dict:
    model = build(arch)
    before = n_params(model)
    gen = torch.Generator().manual_seed(1)
    example = torch.randn(arch.input_size, generator=gen)
    test = torch.randn(arch.input_size, generator=gen)
    stage = "attach_gates"
    try:
        with torch.no_grad():
            reference = model(test.clone())
        plan = ap.attach_gates(model, keep=0.5, target="all", example_inputs=example)
        groups = len(plan)
        skipped = sum(
            1 for g in plan.groups if g.skip and g.layers and "model output" not in g.skip
        )
        stage = "shrink"
        ap.set_alpha(model, 0.0)
        small = ap.shrink(model, example_inputs=example)
        with torch.no_grad():
            gated = model(test.clone())
            got = small(test.clone())
    except (ap.UnsupportedModelError, ValueError) as exc:
        return {"ap_status": f"refused ({stage}): {short(exc)}", "ap_params_ratio": None}
    except Exception as exc:  # noqa: BLE001 - the point is to see every raw error
        traceback.print_exc(file=sys.stderr)
        return {
            "ap_status": f"raw error ({stage}): {type(exc).__name__}: {short(exc, 80)}",
            "ap_params_ratio": None,
        }
    ratio = n_params(small) / before
    row = {"ap_groups": groups, "ap_skipped": skipped, "ap_params_ratio": round(ratio, 4)}
    problem, rel = exactness(got, gated, reference)
    row["ap_max_rel_diff"] = rel
    if problem is not None:
        return row | {"ap_status": problem}
    if ratio >= 1.0:
        return row | {"ap_status": "nothing pruned"}
    return row | {"ap_status": "pruned exactly"}


def run_torch_pruning(arch: Arch) -> dict:
    try:
        import torch_pruning  # noqa: F401 - only whether it is installed
    except ImportError:
        return {"tp_status": "torch_pruning not installed", "tp_params_ratio": None}
    model = build(arch)
    before = n_params(model)
    example = torch.randn(arch.input_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = model(example.clone())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch_pruning_pruner(model, example, 0.5, [output_layer(model)]).step()
    except Exception as exc:  # noqa: BLE001
        return {
            "tp_status": f"raw error: {type(exc).__name__}: {short(exc, 80)}",
            "tp_params_ratio": None,
        }
    ratio = n_params(model) / before
    try:
        with torch.no_grad():
            out = model(example.clone())
    except Exception as exc:  # noqa: BLE001
        return {
            "tp_status": f"broken forward: {type(exc).__name__}: {short(exc, 80)}",
            "tp_params_ratio": round(ratio, 4),
        }
    if out.shape != reference.shape:
        return {
            "tp_status": f"wrong output shape {tuple(out.shape)}",
            "tp_params_ratio": round(ratio, 4),
        }
    status = "pruned" if ratio < 1.0 else "nothing pruned"
    return {"tp_status": status, "tp_params_ratio": round(ratio, 4)}


def time_resnet18(size: int, repeats: int) -> dict:
    """Median wall and CPU seconds of attach_gates (trace + gate) and shrink (with its
    verification pass) on ResNet-18, and of one plain forward pass as a yardstick: on a shared
    machine wall times swing several-fold, the ratios to a forward pass much less."""
    times: dict[str, list[float]] = {k: [] for k in ("forward", "gate", "shrink")}
    cpu: dict[str, list[float]] = {k: [] for k in times}
    example = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))

    def timed(key: str, fn: Callable[[], object]) -> None:
        wall, proc = time.perf_counter(), time.process_time()
        fn()
        times[key].append(time.perf_counter() - wall)
        cpu[key].append(time.process_time() - proc)

    for _ in range(repeats):
        model = build(Arch("resnet18", ResNet18, (1, 3, size, size)))
        with torch.no_grad():
            timed("forward", lambda m=model: m(example))
        timed(
            "gate",
            lambda m=model: ap.attach_gates(m, keep=0.5, target="all", example_inputs=example),
        )
        ap.set_alpha(model, 0.0)
        timed("shrink", lambda m=model: ap.shrink(m, example_inputs=example))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "params": n_params(ResNet18()),
        "input": f"1x3x{size}x{size}",
        "trace_gate_s": round(med["gate"], 3),
        "shrink_s": round(med["shrink"], 3),
        "forward_s": round(med["forward"], 3),
        "trace_gate_cpu_s": round(statistics.median(cpu["gate"]), 3),
        "shrink_cpu_s": round(statistics.median(cpu["shrink"]), 3),
        "forward_cpu_s": round(statistics.median(cpu["forward"]), 3),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "zoo.csv"))
    parser.add_argument("--only", nargs="*", help="architecture names (default: all 18)")
    parser.add_argument("--repeats", type=int, default=3, help="ResNet-18 timing runs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-timing", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    archs = [a for a in ARCHS if not args.only or a.name in args.only]
    rows = []
    for arch in archs:
        start = time.perf_counter()
        row = {"model": arch.name, "params": n_params(arch.factory())}
        t0 = time.perf_counter()
        row |= run_alphaprune(arch)
        t1 = time.perf_counter()
        row |= run_torch_pruning(arch)
        row["ap_s"], row["tp_s"] = round(t1 - t0, 2), round(time.perf_counter() - t1, 2)
        rows.append(row)
        print(
            f"{arch.name}: {row['ap_status']} | {row['tp_status']} ({time.perf_counter() - start:.1f} s)",
            file=sys.stderr,
        )
    table = pd.DataFrame(rows)
    same = table["ap_params_ratio"].notna() & table["tp_params_ratio"].notna()
    table["same_ratio"] = None
    table.loc[same, "same_ratio"] = (
        table.loc[same, "ap_params_ratio"] - table.loc[same, "tp_params_ratio"]
    ).abs() < 5e-4
    shown = [
        "model",
        "params",
        "ap_status",
        "ap_params_ratio",
        "tp_status",
        "tp_params_ratio",
        "same_ratio",
        "ap_s",
        "tp_s",
    ]
    print(markdown(table[shown]))
    ap_ok = int((table["ap_status"] == "pruned exactly").sum())
    ap_wrong = int(table["ap_status"].str.startswith("wrong").sum())
    ap_raw = int(table["ap_status"].str.startswith("raw error").sum())
    tp_ok = int((table["tp_status"] == "pruned").sum())
    tp_raw = int(table["tp_status"].str.startswith(("raw error", "broken")).sum())
    print(
        f"\nalphaprune: {ap_ok}/{len(table)} pruned exactly, {ap_wrong} wrong, {ap_raw} raw errors; "
        f"Torch-Pruning {tp_version()}: {tp_ok}/{len(table)} pruned, {tp_raw} raw errors / broken"
    )
    write_csv(table, args.out)
    if not args.no_timing:
        timings = pd.DataFrame([time_resnet18(s, args.repeats) for s in (224, 64)])
        print(f"\nResNet-18 (median of {args.repeats}, {args.threads} threads):")
        print(markdown(timings))
        write_csv(timings, Path(args.out).with_name("zoo_resnet18_timing.csv"))


if __name__ == "__main__":
    main()
