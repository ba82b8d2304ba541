"""Walk a model made of (nested) sequential chains as one flat, ordered list of leaf layers.

Gating and shrinking both need to know, for each convolution, which layers follow it up to the
next convolution. Models here are chains: ``nn.Sequential`` containers (nested freely) and modules
that declare themselves sequential with ``_alphaprune_sequential = True`` (the autoencoder, whose
``forward`` is ``decoder(encoder(x))``). Anything else with children is refused with its name, so
a model whose data flow we cannot see is never pruned silently wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

CONVS = (nn.Conv2d, nn.ConvTranspose2d)
NORMS = (nn.BatchNorm2d,)
ACTIVATIONS = (nn.ReLU, nn.LeakyReLU)
#: Layers that commute with a non-negative per-channel scale: s·f(x) == f(s·x) for s >= 0.
SCALE_COMMUTING = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.Upsample,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
)
SUPPORTED_LEAVES = CONVS + NORMS + SCALE_COMMUTING


class UnsupportedModelError(ValueError):
    """The model has a structure that gating or shrinking cannot handle exactly."""


@dataclass(frozen=True)
class Leaf:
    """A leaf layer, where it lives (``parent`` container, ``key`` in it) and its dotted name."""

    name: str
    module: nn.Module
    parent: nn.Module
    key: str


def is_sequential(module: nn.Module) -> bool:
    """True for containers whose forward applies their children in registration order."""
    return isinstance(module, nn.Sequential) or getattr(module, "_alphaprune_sequential", False)


def flatten(model: nn.Module, leaf_types: tuple[type, ...] = ()) -> list[Leaf]:
    """Return the leaf layers of ``model`` in execution order.

    ``leaf_types`` are extra module types treated as leaves (e.g. ``AlphaGate``). Raises
    :class:`UnsupportedModelError` naming the first layer that is neither a supported leaf nor a
    sequential container, and for a module object that appears twice (shared weights).
    """
    leaves: list[Leaf] = []
    seen: dict[int, str] = {}

    def visit(module: nn.Module, prefix: str) -> None:
        # Not ``named_children()``: it silently skips a module registered twice in one container,
        # which would hide exactly the reuse refused below.
        for key, child in module._modules.items():
            if child is None:
                continue
            name = f"{prefix}.{key}" if prefix else key
            if id(child) in seen:
                raise UnsupportedModelError(
                    f"layer '{name}' is the same module object as '{seen[id(child)]}': "
                    "a layer used twice (one producer feeding two consumers) cannot be pruned"
                )
            seen[id(child)] = name
            if isinstance(child, SUPPORTED_LEAVES + leaf_types):
                leaves.append(Leaf(name, child, module, key))
            elif is_sequential(child):
                visit(child, name)
            else:
                raise UnsupportedModelError(
                    f"layer '{name}' ({type(child).__name__}) is not supported: models must be "
                    "(nested) nn.Sequential chains of Conv2d, ConvTranspose2d, BatchNorm2d, "
                    "ReLU/LeakyReLU, MaxPool2d/AvgPool2d, Upsample"
                )

    if not is_sequential(model):
        raise UnsupportedModelError(
            f"{type(model).__name__} is not a sequential chain (nn.Sequential or a module with "
            "_alphaprune_sequential = True)"
        )
    visit(model, "")
    return leaves


def conv_channels_out(conv: nn.Module) -> int:
    """Number of output channels of a Conv2d or ConvTranspose2d."""
    return conv.out_channels


def check_groups(leaf: Leaf) -> None:
    """Refuse grouped / depthwise convolutions, whose channel coupling we do not model."""
    if leaf.module.groups != 1:
        raise UnsupportedModelError(
            f"layer '{leaf.name}' has groups={leaf.module.groups}; only groups=1 is supported"
        )
