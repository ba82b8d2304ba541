"""alphaprune: α-schedule channel pruning of convolutional networks (any graph torch.fx traces).

Quick start::

    import alphaprune as ap
    model = ap.build_autoencoder("relu3_1")
    ap.attach_gates(model, keep=0.5, target="encoder")
    ap.set_alpha(model, 0.0)
    small = ap.shrink(model)          # same function, fewer channels
    ap.export(model, torch.zeros(1, 3, 128, 128), "small.onnx")   # shrunk, exported, verified

A trained run's model, at the α its checkpoint stored (``ap.load_model(path)`` is just the
module)::

    loaded = ap.load_checkpoint("runs/decay/checkpoints/last.pt")
    loaded.model, loaded.alpha, loaded.epoch, loaded.kind

A latency budget instead of a keep fraction (docs/deploy.md)::

    plan = ap.attach_gates(model, budget={"latency": 0.5}, device="cpu",
                           example_inputs=torch.zeros(8, 3, 128, 128))
    print(plan.budget)                # predicted and measured latency ratio
"""

from alphaprune.core.criteria import register_criterion
from alphaprune.core.gates import (
    AlphaGate,
    GatingPlan,
    attach_gates,
    explain,
    gates,
    get_alpha,
    restore_gates,
    set_alpha,
)
from alphaprune.core.graph import UnsupportedModelError, analyze
from alphaprune.core.layer_rules import (
    ChannelwiseRule,
    ConvRule,
    ConvTransposeRule,
    ElementwiseRule,
    HeadsRule,
    LayerRule,
    LinearRule,
    MixingRule,
    register_heads,
    register_layer,
)
from alphaprune.core.schedules import Schedule, make_schedule, schedule_from_dict
from alphaprune.core.shrink import count, shrink
from alphaprune.engine.checkpoint import LoadedModel, load_checkpoint, load_model
from alphaprune.engine.export import export
from alphaprune.engine.models import AutoEncoder, build_autoencoder, build_unet, load_vgg_weights
from alphaprune.errors import PruningError
from alphaprune.version import __version__

__all__ = [
    "AlphaGate",
    "AutoEncoder",
    "ChannelwiseRule",
    "ConvRule",
    "ConvTransposeRule",
    "ElementwiseRule",
    "HeadsRule",
    "LayerRule",
    "LinearRule",
    "MixingRule",
    "register_heads",
    "register_layer",
    "GatingPlan",
    "PruningError",
    "UnsupportedModelError",
    "analyze",
    "explain",
    "export",
    "Schedule",
    "attach_gates",
    "build_autoencoder",
    "build_unet",
    "count",
    "gates",
    "get_alpha",
    "LoadedModel",
    "load_checkpoint",
    "load_model",
    "load_vgg_weights",
    "make_schedule",
    "register_criterion",
    "restore_gates",
    "schedule_from_dict",
    "set_alpha",
    "shrink",
    "__version__",
]
