"""A zoo of tiny hand-written models, one per channel structure of issue 8 (not a test file).

Every entry is small (≤ 32 channels, 16–32 px inputs) so that ``tests/test_zoo.py`` stays fast
on two shared cores. :data:`ZOO` maps a name to a :class:`ZooEntry`: a factory, the input size
and the layers whose channel group must be pruned with ``target="all"`` (the structure the entry
exists to exercise — a test that prunes nothing there proves nothing).

:func:`randomise` gives every norm random statistics and affine parameters (and PReLUs random
slopes) so that a channel cut from the wrong place, or a gate in front of a norm, changes the
output visibly instead of hiding behind identity statistics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ZOO", "ZooEntry", "randomise", "RandomNet", "build"]


@dataclass(frozen=True)
class ZooEntry:
    factory: Callable[[], nn.Module]
    input_size: tuple[int, ...]
    must_prune: tuple[str, ...]


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random running statistics / affine parameters for every norm, random PReLU slopes."""
    g = torch.Generator().manual_seed(seed)

    def rand(t: Tensor, low: float, high: float) -> Tensor:
        return low + (high - low) * torch.rand(t.shape, generator=g, dtype=t.dtype)

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)):
                if getattr(m, "running_mean", None) is not None:
                    m.running_mean.copy_(rand(m.running_mean, -0.5, 0.5))
                    m.running_var.copy_(rand(m.running_var, 0.5, 2.0))
                if getattr(m, "weight", None) is not None:
                    m.weight.copy_(rand(m.weight, 0.5, 1.5) * torch.sign(rand(m.weight, -1, 3)))
                    m.bias.copy_(rand(m.bias, -0.5, 0.5))
            elif isinstance(m, nn.PReLU):
                m.weight.copy_(rand(m.weight, -0.5, 0.5))
    return model


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()
    )


# -- residual ------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """ResNet basic block; a 1×1 conv + BN shortcut when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.relu(out + identity)


class ResidualIdentity(nn.Module):
    """Two identity-shortcut blocks on one stream: stem, block1, block2 and head are coupled."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn_relu(3, 16)
        self.block1 = BasicBlock(16, 16)
        self.block2 = BasicBlock(16, 16)
        self.head = nn.Conv2d(16, 3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.block2(self.block1(self.stem(x))))


class ResidualShortcut(nn.Module):
    """A stride-2 block with a 1×1 conv + BN shortcut, then an identity block."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn_relu(3, 8)
        self.down = BasicBlock(8, 16, stride=2)
        self.block = BasicBlock(16, 16)
        self.head = nn.Conv2d(16, 3, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.block(self.down(self.stem(x))))


# -- U-Net -----------------------------------------------------------------------------------------


class TinyUNet(nn.Module):
    """Two levels, ``torch.cat`` skips, ConvTranspose2d upsampling."""

    def __init__(self) -> None:
        super().__init__()
        self.enc1 = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()
        )
        self.enc2 = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.bottom = nn.Sequential(nn.Conv2d(16, 24, 3, padding=1), nn.ReLU())
        self.up2 = nn.ConvTranspose2d(24, 16, 2, stride=2)
        self.dec2 = nn.Sequential(nn.Conv2d(32, 16, 3, padding=1), nn.ReLU())
        self.up1 = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.dec1 = nn.Sequential(nn.Conv2d(16, 8, 3, padding=1), nn.ReLU())
        self.out = nn.Conv2d(8, 3, 1)

    def forward(self, x: Tensor) -> Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        b = self.bottom(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([self.up2(b), e2], dim=1))
        d1 = self.dec1(torch.cat([e1, self.up1(d2)], dim=1))
        return self.out(d1)


# -- MobileNet-style ---------------------------------------------------------------------------------


class InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = c_in * expand
        self.use_res = stride == 1 and c_in == c_out
        self.conv = nn.Sequential(
            nn.Conv2d(c_in, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class TinyMobileNet(nn.Module):
    """Stem, inverted residuals (depthwise conv + ReLU6, residual add), pooled Linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Sequential(
                nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6(inplace=True)
            ),
            InvertedResidual(8, 8, 1, 3),
            InvertedResidual(8, 12, 2, 2),
            InvertedResidual(12, 12, 1, 2),
            nn.Sequential(
                nn.Conv2d(12, 32, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6(inplace=True)
            ),
        )
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(32, 10))

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        x = F.adaptive_avg_pool2d(x, (1, 1))
        return self.classifier(torch.flatten(x, 1))


# -- grouped ConvTranspose2d ------------------------------------------------------------------------


class GroupedDeconv(nn.Module):
    """Grouped and depthwise ConvTranspose2d (groups couple input and output channel blocks)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, 2, 1)
        self.act = nn.ReLU()
        self.up = nn.ConvTranspose2d(16, 24, 4, stride=2, padding=1, groups=4)
        self.bn = nn.BatchNorm2d(24)
        self.dw = nn.ConvTranspose2d(24, 24, 3, padding=1, groups=24)
        self.grouped = nn.Conv2d(24, 16, 3, padding=1, groups=2)
        self.out = nn.Conv2d(16, 3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.conv(x))
        x = self.act(self.bn(self.up(x)))
        x = F.silu(self.dw(x))
        x = self.act(self.grouped(x))
        return self.out(x)


# -- activations ----------------------------------------------------------------------------------


class Activations(nn.Module):
    """Conv chain through SiLU, GELU, Mish, PReLU (per channel and shared), LeakyReLU, Hardswish,
    Tanh, Sigmoid, ELU."""

    def __init__(self) -> None:
        super().__init__()
        w = 12
        self.c0 = nn.Conv2d(3, w, 3, padding=1)
        self.a0 = nn.SiLU()
        self.c1 = nn.Conv2d(w, w, 3, padding=1)
        self.a1 = nn.GELU()
        self.c2 = nn.Conv2d(w, w, 3, padding=1)
        self.a2 = nn.Mish()
        self.c3 = nn.Conv2d(w, w, 3, padding=1)
        self.a3 = nn.PReLU(w)
        self.c4 = nn.Conv2d(w, w, 3, padding=1)
        self.a4 = nn.PReLU()
        self.c5 = nn.Conv2d(w, w, 3, padding=1)
        self.a5 = nn.Sequential(nn.LeakyReLU(0.1), nn.Hardswish())
        self.c6 = nn.Conv2d(w, w, 3, padding=1)
        self.a6 = nn.Sequential(nn.Tanh(), nn.ELU())
        self.c7 = nn.Conv2d(w, w, 3, padding=1)
        self.a7 = nn.Sigmoid()
        self.out = nn.Conv2d(w, 3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        for i in range(8):
            x = getattr(self, f"a{i}")(getattr(self, f"c{i}")(x))
        return self.out(x)


class Functional(nn.Module):
    """Activations, pooling and resizing called functionally between convs (no modules)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.conv3 = nn.Conv2d(16, 16, 3, padding=1)
        self.conv4 = nn.Conv2d(16, 16, 3, padding=1)
        self.conv5 = nn.Conv2d(16, 3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.gelu(self.conv2(x)), 2)
        x = torch.sigmoid(self.conv3(x)) * 2.0 - 0.5
        x = F.interpolate(self.conv4(x).relu(), scale_factor=2, mode="nearest")
        x = F.leaky_relu(x, 0.2) + 1.0
        return self.conv5(F.silu(x))


class InplaceReluNoBN(nn.Module):
    """``Conv → ReLU(inplace=True) → Conv`` without BatchNorm (Torch-Pruning's blind spot)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, 8, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        y = self.body(x)
        return F.relu(y, inplace=True)


# -- Linear heads -------------------------------------------------------------------------------


class FlattenHead(nn.Module):
    """``nn.Flatten`` of a 4×4 map into a Linear (each channel is 16 features), a hidden Linear
    with BatchNorm1d, and an output Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 12, 3, padding=1),
            nn.BatchNorm2d(12),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(12 * 4 * 4, 24), nn.BatchNorm1d(24), nn.ReLU(), nn.Linear(24, 5)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class PooledHead(nn.Module):
    """``AdaptiveAvgPool2d((2, 2))`` then ``x.view(x.size(0), -1)`` into a Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 2, 1)
        self.conv2 = nn.Conv2d(16, 16, 3, 2, 1)
        self.pool = nn.AdaptiveAvgPool2d((2, 2))
        self.fc1 = nn.Linear(16 * 4, 20)
        self.fc2 = nn.Linear(20, 4)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.conv1(x))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.view(x.size(0), -1)
        return self.fc2(F.relu(self.fc1(x)))


# -- containers with a custom forward --------------------------------------------------------------


class DictAndList(nn.Module):
    """``ModuleDict`` looked up by key and ``ModuleList`` iterated in forward."""

    def __init__(self) -> None:
        super().__init__()
        self.stages = nn.ModuleDict(
            {
                "stem": nn.Conv2d(3, 12, 3, padding=1),
                "mid": nn.Conv2d(12, 16, 3, padding=1),
                "out": nn.Conv2d(16, 3, 3, padding=1),
            }
        )
        self.norms = nn.ModuleDict({"stem": nn.BatchNorm2d(12), "mid": nn.BatchNorm2d(16)})
        self.blocks = nn.ModuleList([nn.Conv2d(16, 16, 3, padding=1) for _ in range(2)])

    def forward(self, x: Tensor) -> Tensor:
        for key in ("stem", "mid"):
            x = F.relu(self.norms[key](self.stages[key](x)))
        for block in self.blocks:
            x = F.relu(block(x))
        return self.stages["out"](x)


# -- norms ------------------------------------------------------------------------------------------


class GroupNormNet(nn.Module):
    """GroupNorm (blocks of channels are pruned whole), also inside a residual."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.gn1 = nn.GroupNorm(4, 16)
        self.conv2 = nn.Conv2d(16, 24, 3, padding=1)
        self.gn2 = nn.GroupNorm(6, 24)
        self.conv3 = nn.Conv2d(24, 24, 3, padding=1)
        self.gn3 = nn.GroupNorm(3, 24)
        self.out = nn.Conv2d(24, 3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.silu(self.gn1(self.conv1(x)))
        x = F.silu(self.gn2(self.conv2(x)))
        x = x + F.silu(self.gn3(self.conv3(x)))
        return self.out(x)


class InstanceNormNet(nn.Module):
    """InstanceNorm2d: plain, affine, and tracking running statistics."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.in1 = nn.InstanceNorm2d(16)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.in2 = nn.InstanceNorm2d(16, affine=True)
        self.conv3 = nn.Conv2d(16, 12, 3, padding=1)
        self.in3 = nn.InstanceNorm2d(12, affine=True, track_running_stats=True)
        self.out = nn.Conv2d(12, 3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.in1(self.conv1(x)))
        x = F.relu(self.in2(self.conv2(x)))
        x = F.relu(self.in3(self.conv3(x)))
        return self.out(x)


# -- attention, reuse, self-concatenation -------------------------------------------------------------


class SqueezeExcite(nn.Module):
    """``x * sigmoid(fc2(relu(fc1(pool(x))))).view(b, c, 1, 1)``."""

    def __init__(self, c: int, r: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Linear(c, max(1, c // r))
        self.fc2 = nn.Linear(max(1, c // r), c)

    def forward(self, x: Tensor) -> Tensor:
        b, c, _, _ = x.shape
        s = F.adaptive_avg_pool2d(x, 1).view(b, c)
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(s)))).view(b, c, 1, 1)
        return x * s


class SENet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = conv_bn_relu(3, 16)
        self.se1 = SqueezeExcite(16)
        self.conv2 = conv_bn_relu(16, 24)
        self.se2 = SqueezeExcite(24)
        self.out = nn.Conv2d(24, 3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.se1(self.conv1(x))
        x = self.se2(self.conv2(x))
        return self.out(x)


class ReusedModule(nn.Module):
    """One conv (and one BatchNorm and one ReLU object) called twice in forward."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.shared = nn.Conv2d(16, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.act = nn.ReLU()
        self.mid = nn.Conv2d(16, 12, 3, padding=1)
        self.out = nn.Conv2d(12, 3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.stem(x))
        x = self.act(self.bn(self.shared(x)))
        x = self.act(self.bn(self.shared(x)))
        return self.out(self.act(self.mid(x)))


class SelfConcat(nn.Module):
    """``torch.cat([y, y])``: the same channels twice in the consumer's input."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 12, 3, padding=1)
        self.conv3 = nn.Conv2d(12 * 3, 3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.conv1(x))
        z = F.relu(self.conv2(torch.cat([y, y], dim=1)))
        return self.conv3(torch.cat([z, z, z], 1))


class Mixed(nn.Module):
    """Residual, concat, SE and a depthwise conv together, with a Linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn_relu(3, 16)
        self.branch = nn.Sequential(nn.Conv2d(16, 8, 1), nn.BatchNorm2d(8), nn.SiLU())
        self.dw = nn.Conv2d(24, 24, 3, padding=1, groups=24)
        self.se = SqueezeExcite(24)
        self.fuse = nn.Conv2d(24, 16, 1)
        self.head = nn.Linear(16, 6)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        y = torch.cat([x, self.branch(x)], dim=1)
        y = self.se(F.relu6(self.dw(y)))
        x = x + self.fuse(y)
        return self.head(x.mean((2, 3)))


# -- issue 18: the structures of downloaded models ------------------------------------------------


class BatchNormAct(nn.BatchNorm2d):
    """timm's ``BatchNormAct2d``: a BatchNorm subclass whose forward calls ``F.batch_norm`` and
    its activation itself (traced through, not a leaf)."""

    def __init__(self, c: int) -> None:
        super().__init__(c)
        self.act = nn.SiLU()

    def forward(self, x: Tensor) -> Tensor:
        x = F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
        )
        return self.act(x)


class GroupNormOne(nn.GroupNorm):
    """timm's ``GroupNorm1``: ``F.group_norm`` with one group (all channels one block)."""

    def __init__(self, c: int) -> None:
        super().__init__(1, c)

    def forward(self, x: Tensor) -> Tensor:
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)


class GroupNormFunctional(nn.GroupNorm):
    """A GroupNorm subclass calling ``F.group_norm`` with its own (several) groups."""

    def forward(self, x: Tensor) -> Tensor:
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)


class FunctionalNorms(nn.Module):
    """BatchNormAct, GroupNorm1 and a functional GroupNorm(4) between convs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.bn1 = BatchNormAct(16)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.gn2 = GroupNormFunctional(4, 16)
        self.conv3 = nn.Conv2d(16, 12, 3, padding=1)
        self.gn3 = GroupNormOne(12)
        self.out = nn.Conv2d(12, 3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.bn1(self.conv1(x))
        x = F.relu(self.gn2(self.conv2(x)))
        x = F.relu(self.gn3(self.conv3(x)))
        return self.out(x)


class LayerScale(nn.Module):
    """``gamma * x`` with ``gamma`` of shape ``(C, 1, 1)`` (torchvision ConvNeXt)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.rand(c, 1, 1) + 0.5)

    def forward(self, x: Tensor) -> Tensor:
        return self.gamma * x


class ChannelsLastBlock(nn.Module):
    """ConvNeXt-style: depthwise conv, ``permute(0, 2, 3, 1)``, Linear → GELU → Linear on the
    last axis, ``permute`` back, LayerScale (``x * gamma.reshape(1, -1, 1, 1)``), drop path,
    residual. ``norm`` puts a LayerNorm on the channels (which mixes them: the stream stays)."""

    def __init__(self, c: int, hidden: int, norm: bool) -> None:
        super().__init__()
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c) if norm else nn.Identity()
        self.fc1 = nn.Linear(c, hidden)
        self.fc2 = nn.Linear(hidden, c)
        self.gamma = nn.Parameter(torch.rand(c) + 0.5)
        self.drop_path = DropPath(0.1)

    def forward(self, x: Tensor) -> Tensor:
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.fc2(F.gelu(self.fc1(self.norm(y)))).permute(0, 3, 1, 2)
        y = y.mul(self.gamma.reshape(1, -1, 1, 1))
        return x + self.drop_path(y)


class DropPath(nn.Module):
    """timm's ``DropPath``: identity in eval; a per-sample random scale in training."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        keep = x.new_empty(shape).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class ConvNeXtish(nn.Module):
    """Stem conv + LayerScale, two channels-last blocks, head conv. With ``norm`` the blocks
    have their LayerNorm, which keeps the residual stream whole (the hidden widths prune)."""

    def __init__(self, norm: bool = False) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.scale = LayerScale(16)
        self.block1 = ChannelsLastBlock(16, 32, norm=norm)
        self.block2 = ChannelsLastBlock(16, 24, norm=norm)
        self.head = nn.Conv2d(16, 3, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.scale(F.relu(self.stem(x)))
        return self.head(self.block2(self.block1(x)))


class SplitCat(nn.Module):
    """Res2Net's ``split(width)`` (fixed sizes: only the last piece may shrink), CSP's
    ``chunk(2)`` halves (pruned in pairs), GhostNet's ``cat([x1, cheap(x1)])[:, :oup]``."""

    def __init__(self) -> None:
        super().__init__()
        self.width = 4
        self.stem = nn.Conv2d(3, 12, 3, padding=1)
        self.convs = nn.ModuleList([nn.Conv2d(4, 4, 3, padding=1) for _ in range(2)])
        self.mix = nn.Conv2d(12, 16, 1)
        self.halves = nn.Conv2d(8, 8, 3, padding=1)
        self.primary = nn.Conv2d(16, 8, 1)
        self.cheap = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.out = nn.Conv2d(16, 3, 1)

    def forward(self, x: Tensor) -> Tensor:
        spx = torch.split(F.relu(self.stem(x)), self.width, 1)
        sp, spo = spx[0], []
        for i, conv in enumerate(self.convs):
            sp = F.relu(conv(sp if i == 0 else sp + spx[i]))
            spo.append(sp)
        x = F.relu(self.mix(torch.cat(spo + [spx[-1]], 1)))
        a, b = x.chunk(2, dim=1)
        x = torch.cat([F.relu(self.halves(a)), b], dim=1)
        x1 = F.relu(self.primary(x))
        x = torch.cat([x1, F.relu(self.cheap(x1))], dim=1)[:, :16]
        return self.out(x)


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """torchvision's ShuffleNetV2 channel shuffle."""
    b, c, h, w = x.size()
    x = x.view(b, groups, c // groups, h, w)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(b, -1, h, w)


class ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit: ``chunk(2)``, one branch convolved, ``cat``, channel shuffle."""

    def __init__(self, c: int) -> None:
        super().__init__()
        half = c // 2
        self.branch = nn.Sequential(
            nn.Conv2d(half, half, 1, bias=False),
            nn.BatchNorm2d(half),
            nn.ReLU(),
            nn.Conv2d(half, half, 3, padding=1, groups=half, bias=False),
            nn.BatchNorm2d(half),
            nn.Conv2d(half, half, 1, bias=False),
            nn.BatchNorm2d(half),
            nn.ReLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = x.chunk(2, dim=1)
        return channel_shuffle(torch.cat((x1, self.branch(x2)), dim=1), 2)


class ShuffleNetish(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn_relu(3, 16)
        self.unit1 = ShuffleUnit(16)
        self.unit2 = ShuffleUnit(16)
        self.head = nn.Conv2d(16, 3, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.unit2(self.unit1(self.stem(x))))


class Tokens(nn.Module):
    """ViT-style: patch conv, ``flatten(2).transpose(1, 2)``, a token MLP (Linear on 3-d
    tensors), attention whose scores contract q and k (pinned), then back to a map."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 16, 4, stride=4)
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 16)
        self.qkv = nn.Linear(16, 48)
        self.proj = nn.Linear(16, 16)
        self.head = nn.Conv2d(16, 3, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch(x)
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)
        t = t + self.fc2(F.gelu(self.fc1(t)))
        q, k, v = self.qkv(t).reshape(b, h * w, 3, 2, c // 2).permute(2, 0, 3, 1, 4).unbind(0)
        a = F.scaled_dot_product_attention(q, k, v)
        t = t + self.proj(a.transpose(1, 2).reshape(b, h * w, c))
        return self.head(t.transpose(1, 2).reshape(b, c, h, w))


class Attention(nn.Module):
    """timm's ``Attention``: fused ``qkv``, ``reshape(B, N, 3, num_heads, head_dim)``, the fused
    ``scaled_dot_product_attention`` or the manual ``softmax(q @ kᵀ · scale) @ v``, and back with
    ``reshape(B, N, attn_dim)`` into ``proj``. Whole heads are pruned: ``num_heads`` shrinks."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, fused: bool = True) -> None:
        super().__init__()
        self.num_heads, self.head_dim, self.fused = num_heads, head_dim, fused
        self.attn_dim = num_heads * head_dim
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * self.attn_dim)
        self.proj = nn.Linear(self.attn_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if self.fused:
            x = F.scaled_dot_product_attention(q, k, v)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            x = attn.softmax(dim=-1) @ v
        return self.proj(x.transpose(1, 2).reshape(b, n, self.attn_dim))


class TinyViT(nn.Module):
    """Patch conv, tokens, a pre-norm attention block with an MLP, a pooled Linear head."""

    def __init__(self, fused: bool = True) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 16, 4, stride=4)
        self.norm1, self.norm2 = nn.LayerNorm(16), nn.LayerNorm(16)
        self.attn = Attention(16, num_heads=4, head_dim=6, fused=fused)
        self.fc1, self.fc2 = nn.Linear(16, 24), nn.Linear(24, 16)
        self.head = nn.Linear(16, 5)

    def forward(self, x: Tensor) -> Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = t + self.attn(self.norm1(t))
        t = t + self.fc2(F.gelu(self.fc1(self.norm2(t))))
        return self.head(t.mean(1))


class PositionEmbedding(nn.Module):
    """ViT's token stream: patch conv, a class token concatenated (``(1, 1, C)``), a position
    embedding added (``(1, N, C)``: channels on the last axis, tokens on the other), a
    residual token MLP without a norm, the class token's Linear head. The stream is pruned and
    both tensors are cut with it."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 16, 4, stride=4)
        self.cls_token = nn.Parameter(torch.randn(1, 1, 16))
        self.pos_embed = nn.Parameter(torch.randn(1, 17, 16))
        self.fc1, self.fc2 = nn.Linear(16, 24), nn.Linear(24, 16)
        self.head = nn.Linear(16, 5)

    def forward(self, x: Tensor) -> Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls_token.expand(t.shape[0], -1, -1), t], dim=1) + self.pos_embed
        t = t + self.fc2(F.gelu(self.fc1(t)))
        return self.head(t[:, 0])


class ShapeBranches(nn.Module):
    """Code ``torch.fx.symbolic_trace`` cannot trace: branches on shapes (smp's divisibility
    check, diffusers' ``assert len(t.shape) == 1``, MobileViT's ``if new_h != h``)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.out = nn.Conv2d(16, 3, 1)

    def forward(self, x: Tensor) -> Tensor:
        assert len(x.shape) == 4
        h, w = x.shape[-2:]
        if h % 8 or w % 8:
            raise ValueError("size must be divisible by 8")
        y = F.relu(self.conv1(x))
        new_h = (h // 4) * 4
        if new_h != h:
            y = F.interpolate(y, size=(new_h, w))
        for _ in range(x.shape[0] // x.shape[0]):
            y = F.relu(self.conv2(y))
        return self.out(y)


class SubclassLinear(nn.Linear):
    """timm's ``Linear``: a subclass whose forward calls ``F.linear`` on its own weight."""

    def forward(self, input: Tensor) -> Tensor:
        return F.linear(input, self.weight, self.bias)


class SubclassHead(nn.Module):
    """A conv head read by a ``Linear`` subclass: the head's channels are pruned through it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.head = nn.Conv2d(16, 24, 1)
        self.hidden = SubclassLinear(24, 20)
        self.classifier = SubclassLinear(20, 5)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.head(F.relu(self.conv(x))))
        x = F.relu(self.hidden(x.mean((2, 3))))
        return self.classifier(x)


class Signal1d(nn.Module):
    """1-d signals: Conv1d, BatchNorm1d, a depthwise Conv1d, ConvTranspose1d, pooled Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(2, 16, 5, padding=2)
        self.bn1 = nn.BatchNorm1d(16)
        self.dw = nn.Conv1d(16, 16, 3, padding=1, groups=16)
        self.conv2 = nn.Conv1d(16, 24, 3, stride=2, padding=1)
        self.bn2 = nn.BatchNorm1d(24)
        self.up = nn.ConvTranspose1d(24, 12, 4, stride=2, padding=1)
        self.fc = nn.Linear(12, 4)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(F.relu(self.dw(x)))))
        x = F.relu(self.up(x))
        return self.fc(F.adaptive_avg_pool1d(x, 1).flatten(1))


class ChannelAssert(nn.Module):
    """diffusers' ``assert x.shape[1] == self.channels``: the checked channels stay, the rest
    prune."""

    def __init__(self) -> None:
        super().__init__()
        self.channels = 16
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 12, 3, padding=1)
        self.out = nn.Conv2d(12, 3, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.conv1(x))
        assert y.shape[1] == self.channels
        return self.out(F.relu(self.conv2(y)))


ZOO: dict[str, ZooEntry] = {
    "residual_identity": ZooEntry(ResidualIdentity, (2, 3, 16, 16), ("stem.0", "block1.conv1")),
    "residual_shortcut": ZooEntry(
        ResidualShortcut, (2, 3, 16, 16), ("stem.0", "down.conv1", "down.shortcut.0")
    ),
    "unet": ZooEntry(TinyUNet, (2, 3, 16, 16), ("enc1.0", "enc1.2", "enc2.0", "up2", "up1")),
    "mobilenet": ZooEntry(
        TinyMobileNet, (2, 3, 32, 32), ("features.1.conv.0", "features.2.conv.0", "features.4.0")
    ),
    "grouped_deconv": ZooEntry(GroupedDeconv, (2, 3, 16, 16), ("conv", "up", "grouped")),
    "activations": ZooEntry(Activations, (2, 3, 16, 16), tuple(f"c{i}" for i in range(8))),
    "functional": ZooEntry(Functional, (2, 3, 16, 16), ("conv1", "conv2", "conv3", "conv4")),
    "inplace_relu_no_bn": ZooEntry(InplaceReluNoBN, (2, 3, 16, 16), ("body.0", "body.2")),
    "flatten_head": ZooEntry(
        FlattenHead, (2, 3, 16, 16), ("features.0", "features.3", "classifier.1")
    ),
    "pooled_head": ZooEntry(PooledHead, (2, 3, 16, 16), ("conv1", "conv2", "fc1")),
    "module_dict_list": ZooEntry(
        DictAndList, (2, 3, 16, 16), ("stages.stem", "stages.mid", "blocks.0", "blocks.1")
    ),
    "groupnorm": ZooEntry(GroupNormNet, (2, 3, 16, 16), ("conv1", "conv2")),
    "instancenorm": ZooEntry(InstanceNormNet, (2, 3, 16, 16), ("conv1", "conv2", "conv3")),
    "squeeze_excite": ZooEntry(SENet, (2, 3, 16, 16), ("conv1.0", "conv2.0", "se1.fc1")),
    "reused_module": ZooEntry(ReusedModule, (2, 3, 16, 16), ("stem", "mid")),
    "self_concat": ZooEntry(SelfConcat, (2, 3, 16, 16), ("conv1", "conv2")),
    "mixed": ZooEntry(Mixed, (2, 3, 16, 16), ("stem.0", "branch.0", "se.fc1")),
    "functional_norms": ZooEntry(FunctionalNorms, (2, 3, 16, 16), ("conv1", "conv2")),
    "convnext_like": ZooEntry(ConvNeXtish, (2, 3, 16, 16), ("stem", "block1.fc1", "block2.fc1")),
    "convnext_like_layernorm": ZooEntry(
        lambda: ConvNeXtish(norm=True), (2, 3, 16, 16), ("block1.fc1", "block2.fc1")
    ),
    "split_cat": ZooEntry(SplitCat, (2, 3, 16, 16), ("stem", "convs.1", "mix", "primary")),
    "shufflenet_like": ZooEntry(
        ShuffleNetish, (2, 3, 16, 16), ("stem.0", "unit1.branch.0", "unit2.branch.0")
    ),
    "tokens": ZooEntry(Tokens, (2, 3, 16, 16), ("fc1",)),
    "attention_heads": ZooEntry(TinyViT, (2, 3, 16, 16), ("attn.qkv", "fc1")),
    "attention_heads_manual": ZooEntry(
        lambda: TinyViT(fused=False), (2, 3, 16, 16), ("attn.qkv", "fc1")
    ),
    "position_embedding": ZooEntry(PositionEmbedding, (2, 3, 16, 16), ("patch", "fc1")),
    "shape_branches": ZooEntry(ShapeBranches, (2, 3, 16, 16), ("conv1", "conv2")),
    "subclass_head": ZooEntry(SubclassHead, (2, 3, 16, 16), ("conv", "head", "hidden")),
    "signal_1d": ZooEntry(Signal1d, (2, 2, 32), ("conv1", "conv2", "up")),
    "channel_assert": ZooEntry(ChannelAssert, (2, 3, 16, 16), ("conv2",)),
}


def build(name: str, seed: int = 0) -> nn.Module:
    """The zoo model ``name`` with seeded weights, randomised norms, in eval mode."""
    torch.manual_seed(seed)
    return randomise(ZOO[name].factory(), seed).eval()


# -- random graphs (for hypothesis) -------------------------------------------------------------------


class ScaleOp(nn.Module):
    """LayerScale: a per-channel parameter ``(C, 1, 1)`` times the tensor."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.rand(c, 1, 1) + 0.5)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class PositionBiasOp(nn.Module):
    """A learned position embedding on the map: ``x + pos`` with ``pos`` of shape
    ``(1, C, H, W)`` (channels on one axis, positions on the others)."""

    def __init__(self, c: int, size: int = 8) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch.randn(1, c, size, size) * 0.5)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.pos


class ChunkOp(nn.Module):
    """CSP/ShuffleNet: ``chunk(2)``, convolve one half, concatenate."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c // 2, c // 2, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        a, b = x.chunk(2, dim=1)
        return torch.cat([F.relu(self.conv(a)), b], dim=1)


class SplitOp(nn.Module):
    """Res2Net: ``split(k)`` with ``k`` fixed in the code, the first piece convolved."""

    def __init__(self, c: int, k: int) -> None:
        super().__init__()
        self.k = k
        self.conv = nn.Conv2d(k, k, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        pieces = torch.split(x, self.k, 1)
        return torch.cat([F.relu(self.conv(pieces[0])), *pieces[1:]], dim=1)


class ShuffleOp(nn.Module):
    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: Tensor) -> Tensor:
        return channel_shuffle(x, self.groups)


class ChannelsLastOp(nn.Module):
    """``permute(0, 2, 3, 1)`` → Linear → GELU → Linear → ``permute(0, 3, 1, 2)``."""

    def __init__(self, c: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(c, hidden), nn.Linear(hidden, c)

    def forward(self, x: Tensor) -> Tensor:
        y = x.permute(0, 2, 3, 1)
        return self.fc2(F.gelu(self.fc1(y))).permute(0, 3, 1, 2)


class TailOp(nn.Module):
    """``x[:, k:]``: a slice with a fixed start (the first ``k`` channels stay in place)."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def forward(self, x: Tensor) -> Tensor:
        return x[:, self.k :]


class AttentionOp(nn.Module):
    """Multi-head attention over the pixels of a map: tokens, :class:`Attention`, a map again."""

    def __init__(self, c: int, heads: int, head_dim: int, fused: bool) -> None:
        super().__init__()
        self.attn = Attention(c, heads, head_dim, fused)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        t = self.attn(x.flatten(2).transpose(1, 2))
        return t.transpose(1, 2).reshape(b, c, h, w)


class RandomNet(nn.Module):
    """A model built from a spec: a list of ops over a growing list of tensors.

    Tensor 0 is the stem's output. Each op appends one tensor:

    - ``("conv", src, width, kernel, norm, act)``: conv of tensor ``src``, optional norm
      (``"bn"``, ``"gn"``, ``"in"`` or ``None``), activation (name or ``None``);
    - ``("dw", src, norm, act)``: depthwise 3×3 conv;
    - ``("group", src, width, groups, act)``: grouped 3×3 conv;
    - ``("deconv", src, width, groups, act)``: (grouped) 3×3 ConvTranspose2d;
    - ``("se", src)``: squeeze-and-excitation (two Linears, sigmoid, channel scaling);
    - ``("add", a, b)``: ``t[a] + t[b]`` (same width);
    - ``("cat", a, b)``: ``torch.cat([t[a], t[b]], 1)``;
    - ``("scale", src)``: LayerScale ``t * gamma``;
    - ``("posbias", src)``: a position embedding ``t + pos`` (``pos`` of shape
      ``(1, C, 8, 8)``: the random graphs' input is 8×8 and no op resizes);
    - ``("chunk", src)``: ``chunk(2)``, one half convolved, ``cat`` (even width);
    - ``("split", src, k)``: ``split(k)``, the first piece convolved, ``cat``;
    - ``("shuffle", src, g)``: ShuffleNet's channel shuffle in ``g`` groups;
    - ``("chlast", src, hidden)``: channels-last Linear → GELU → Linear;
    - ``("droppath", a, b)``: ``t[a] + t[b] * s`` with ``s`` one number per sample (from the
      model's input, like a drop-path mask);
    - ``("tail", src, k)``: ``t[:, k:]``;
    - ``("attn", src, heads, head_dim, fused)``: multi-head attention over the pixels.

    The last tensor goes into a 3-channel conv head, or (``linear_head``) global pooling and a
    Linear.
    """

    ACTS: dict[str, Callable[[], nn.Module]] = {
        "relu": lambda: nn.ReLU(inplace=True),
        "relu6": nn.ReLU6,
        "silu": nn.SiLU,
        "gelu": nn.GELU,
        "leaky": lambda: nn.LeakyReLU(0.1),
        "tanh": nn.Tanh,
    }

    def __init__(self, stem: int, spec: list[tuple], linear_head: bool = False) -> None:
        super().__init__()
        self.spec = [tuple(op) for op in spec]
        self.linear_head = linear_head
        self.stem = nn.Conv2d(3, stem, 3, padding=1)
        widths = [stem]
        self.ops = nn.ModuleList()
        for op in self.spec:
            layers, width = self._build(op, widths)
            self.ops.append(nn.Sequential(*layers))
            widths.append(width)
        self.widths = widths
        if linear_head:
            self.head = nn.Linear(widths[-1], 5)
        else:
            self.head = nn.Conv2d(widths[-1], 3, 3, padding=1)

    def _build(self, op: tuple, widths: list[int]) -> tuple[list[nn.Module], int]:
        """The modules of one op and the width of the tensor it appends."""
        kind, w = op[0], widths[op[1]]
        if kind == "conv":
            _, _, width, kernel, norm, act = op
            conv = nn.Conv2d(w, width, kernel, padding=kernel // 2)
            return [conv, *self._norm(norm, width), *self._act(act)], width
        if kind == "dw":
            conv = nn.Conv2d(w, w, 3, padding=1, groups=w)
            return [conv, *self._norm(op[2], w), *self._act(op[3])], w
        if kind in ("group", "deconv"):
            _, _, width, groups, act = op
            cls = nn.Conv2d if kind == "group" else nn.ConvTranspose2d
            return [cls(w, width, 3, padding=1, groups=groups), *self._act(act)], width
        simple = {
            "se": lambda: ([SqueezeExcite(w, r=2)], w),
            "add": lambda: ([], w),
            "droppath": lambda: ([], w),
            "cat": lambda: ([], w + widths[op[2]]),
            "scale": lambda: ([ScaleOp(w)], w),
            "posbias": lambda: ([PositionBiasOp(w)], w),
            "chunk": lambda: ([ChunkOp(w)], w),
            "split": lambda: ([SplitOp(w, op[2])], w),
            "shuffle": lambda: ([ShuffleOp(op[2])], w),
            "chlast": lambda: ([ChannelsLastOp(w, op[2])], w),
            "tail": lambda: ([TailOp(op[2])], w - op[2]),
            "attn": lambda: ([AttentionOp(w, *op[2:])], w),
        }
        return simple[kind]()

    @staticmethod
    def _norm(norm: str | None, width: int) -> list[nn.Module]:
        if norm == "bn":
            return [nn.BatchNorm2d(width)]
        if norm == "gn":
            groups = next(g for g in (4, 3, 2, 1) if width % g == 0)
            return [nn.GroupNorm(groups, width)]
        if norm == "in":
            return [nn.InstanceNorm2d(width, affine=True)]
        return []

    def _act(self, act: str | None) -> list[nn.Module]:
        return [] if act is None else [self.ACTS[act]()]

    def forward(self, x: Tensor) -> Tensor:
        tensors = [F.relu(self.stem(x))]
        per_sample = 1 + 0.1 * x.mean((1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
        for op, module in zip(self.spec, self.ops, strict=True):
            kind = op[0]
            if kind == "add":
                tensors.append(tensors[op[1]] + tensors[op[2]])
            elif kind == "droppath":
                tensors.append(tensors[op[1]] + tensors[op[2]] * per_sample)
            elif kind == "cat":
                tensors.append(torch.cat([tensors[op[1]], tensors[op[2]]], dim=1))
            else:
                tensors.append(module(tensors[op[1]]))
        y = tensors[-1]
        if self.linear_head:
            return self.head(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1))
        return self.head(y)
