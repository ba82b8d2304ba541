"""Whole attention heads as pruning units (issue 18, item 6).

A timm-like ``Attention`` (fused ``qkv``, ``reshape(B, N, 3, num_heads, head_dim)``, fused or
manual attention, ``reshape(B, N, attn_dim)`` into ``proj``) loses whole heads: ``num_heads`` and
``attn_dim`` shrink, ``head_dim`` and ``scale`` stay, the shrunk model equals the gated one. A
block whose head count is not an attribute stays whole and says why.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from zoo import Attention, TinyViT, randomise

import alphaprune as ap
from alphaprune.core.criteria import unit_importance
from alphaprune.core.graph import analyze

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = (2, 3, 16, 16)


def seeded(seed: int) -> Tensor:
    return torch.randn(SIZE, generator=torch.Generator().manual_seed(seed))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def assert_same(actual: Tensor, expected: Tensor) -> None:
    error = (actual - expected).abs().max().item()
    assert error <= 1e-5 * expected.abs().max().item() + 1e-6, error


def vit(fused: bool = True) -> TinyViT:
    torch.manual_seed(0)
    return randomise(TinyViT(fused)).eval()


@pytest.mark.parametrize("fused", [True, False], ids=["sdpa", "manual"])
def test_whole_heads_go_and_num_heads_shrinks(fused):
    model = vit(fused)
    example, x = seeded(0), seeded(1)
    plan = ap.attach_gates(model, keep=0.5, example_inputs=example)
    group = plan["attn.qkv"]
    assert (group.units, group.kept, group.channels) == (4, 2, 3 * 4 * 6)  # a unit is a head
    kept = group.mask.view(3, 4, 6)  # (q/k/v, head, width)
    assert torch.equal(kept, kept[:1, :, :1].expand_as(kept)), "a head is cut whole, in q, k, v"
    ap.set_alpha(model, 0.0)
    with torch.no_grad():
        gated = model(x)
    small = ap.shrink(model, example_inputs=example)
    attn = small.attn
    assert (attn.num_heads, attn.head_dim, attn.attn_dim) == (2, 6, 12)
    assert attn.scale == 6**-0.5
    assert (attn.qkv.out_features, attn.proj.in_features) == (36, 12)
    assert n_params(small) < n_params(model)
    with torch.no_grad():
        assert_same(small(x), gated)


def test_heads_at_a_random_alpha_fold_exactly():
    model = vit()
    example, x = seeded(0), seeded(1)
    ap.attach_gates(model, keep=0.5, example_inputs=example)
    ap.set_alpha(model, 0.37)
    small = ap.shrink(model, example_inputs=example)
    assert small.attn.num_heads == 4  # 0 < α: folded, nothing removed
    with torch.no_grad():
        assert_same(small(x), model(x))


def test_l1_scores_a_head_by_its_q_k_v_rows():
    model = vit()
    with torch.no_grad():
        weight = model.attn.qkv.weight.view(3, 4, 6, -1)
        weight[:, 1] *= 10  # heads 1 and 3 are the strongest
        weight[:, 3] *= 5
    graph = analyze(model, seeded(0))
    group = graph.group("attn.qkv")
    scores = unit_importance(graph, group, "l1")
    rows = model.attn.qkv.weight.detach().abs().view(3, 4, 6, -1).sum(dim=(0, 2, 3))
    assert torch.allclose(scores, rows.double(), rtol=1e-5)
    plan = ap.attach_gates(model, keep=0.5, example_inputs=seeded(0))
    assert plan["attn.qkv"].mask.view(3, 4, 6)[0, :, 0].tolist() == [False, True, False, True]


class HeadsElsewhere(nn.Module):
    """Attention whose head count is not an int attribute ``num_heads``: its reshape fixes the
    channel count, so the heads stay whole (and the plan says how to make them prunable)."""

    def __init__(self) -> None:
        super().__init__()
        self.heads = 4  # not ``num_heads``
        self.patch = nn.Conv2d(3, 16, 4, stride=4)
        self.qkv, self.proj = nn.Linear(16, 48), nn.Linear(16, 16)
        self.head = nn.Linear(16, 5)

    def forward(self, x: Tensor) -> Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)
        b, n, _ = t.shape
        q, k, v = self.qkv(t).reshape(b, n, 3, self.heads, 4).permute(2, 0, 3, 1, 4).unbind(0)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, 16)
        return self.head((t + self.proj(a)).mean(1))


def test_heads_without_num_heads_stay_whole_with_the_reason():
    model = HeadsElsewhere().eval()
    graph = analyze(model, seeded(0))
    group = graph.group("qkv")
    assert not group.prunable
    assert "num_heads" in group.skip and "head_dim" in group.skip, group.skip
    plan = ap.attach_gates(model, keep=0.5, example_inputs=seeded(0))
    assert "qkv" not in plan and "patch" in plan


class NamedHeads(nn.Module):
    """Heads counted by attributes of other names, taught with ``ap.register_heads``."""

    def __init__(self) -> None:
        super().__init__()
        self.n_head, self.d_head = 4, 3
        self.c_attn, self.c_proj = nn.Linear(16, 36), nn.Linear(12, 16)

    def forward(self, t: Tensor) -> Tensor:
        b, n, _ = t.shape
        q, k, v = self.c_attn(t).view(b, n, 3, self.n_head, self.d_head).unbind(2)
        q, k, v = (y.transpose(1, 2) for y in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v)
        return self.c_proj(a.transpose(1, 2).reshape(b, n, self.n_head * self.d_head))


class NamedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 16, 4, stride=4)
        self.attn = NamedHeads()
        self.head = nn.Linear(16, 5)

    def forward(self, x: Tensor) -> Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)
        return self.head((t + self.attn(t)).mean(1))


def test_register_heads_names_the_attributes():
    torch.manual_seed(0)
    model = NamedNet().eval()
    example = seeded(0)
    assert not analyze(model, example).group("attn.c_attn").prunable
    ap.register_heads(NamedHeads, ap.HeadsRule(count="n_head", width="d_head"))
    plan = ap.attach_gates(model, keep=0.5, example_inputs=example)
    assert plan["attn.c_attn"].units == 4
    ap.set_alpha(model, 0.0)
    small = ap.shrink(model, example_inputs=example)
    assert (small.attn.n_head, small.attn.d_head) == (2, 3)
    with torch.no_grad():
        assert_same(small(seeded(1)), model(seeded(1)))


def test_attention_heads_alone_in_a_block():
    """A bare :class:`Attention` on tokens (the zoo's block): its heads are one group."""
    torch.manual_seed(0)
    block = Attention(8, num_heads=2, head_dim=4).eval()
    graph = analyze(block, torch.randn(2, 5, 8))
    assert len(graph.group("qkv").units) == 2
    assert graph.group("qkv").prunable


def test_a_shrunk_state_dict_loads_into_a_fresh_model():
    """Reloading a shrunk checkpoint resizes the heads too (``num_heads`` from ``qkv``'s rows)."""
    from alphaprune.engine.checkpoint import model_from_state

    model = vit()
    example, x = seeded(0), seeded(1)
    ap.attach_gates(model, keep=0.5, example_inputs=example)
    ap.set_alpha(model, 0.0)
    small = ap.shrink(model, example_inputs=example)
    fresh = model_from_state({}, small.state_dict(), model=TinyViT().eval())
    assert (fresh.attn.num_heads, fresh.attn.attn_dim) == (2, 12)
    with torch.no_grad():
        assert_same(fresh(x), small(x))


class BiasedHeads(Attention):
    """Attention with a constant bias per head passed as the mask: it would have to lose the
    rows of the removed heads, which no layer cuts, so the heads stay."""

    def __init__(self) -> None:
        super().__init__(16, num_heads=4, head_dim=4)
        self.register_buffer("bias", torch.randn(1, 4, 5, 5))  # (batch, heads, tokens, tokens)

    def forward(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=self.bias)
        return self.proj(y.transpose(1, 2).reshape(b, n, self.attn_dim))


class Gram(nn.Module):
    """``t @ tᵀ`` sums over ``t``'s channels into scores that carry none: they stay."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.out = nn.Linear(16, 6), nn.Linear(16, 16)

    def forward(self, x: Tensor) -> Tensor:
        t = self.fc(x)
        return self.out((t @ t.transpose(1, 2)).softmax(-1) @ x)


@pytest.mark.parametrize(
    ("block", "group", "why"),
    [(BiasedHeads, "qkv", "a mask with values per head"), (Gram, "fc", "a sum over channels")],
)
def test_what_attention_cannot_follow_stays_whole(block, group, why):
    torch.manual_seed(0)
    graph = analyze(block().eval(), torch.randn(2, 5, 16))
    found = graph.group(group)
    assert not found.prunable and why in found.skip, found.skip


class NormedHeads(Attention):
    """timm's ``qk_norm``: a LayerNorm over each head's width of q and of k."""

    def __init__(self) -> None:
        super().__init__(16, num_heads=4, head_dim=4)
        self.q_norm, self.k_norm = nn.LayerNorm(4), nn.LayerNorm(4)

    def forward(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        y = F.scaled_dot_product_attention(self.q_norm(q), self.k_norm(k), v)
        return self.proj(y.transpose(1, 2).reshape(b, n, self.attn_dim))


def test_a_norm_over_each_heads_width_keeps_heads_prunable():
    torch.manual_seed(0)
    block = randomise(NormedHeads()).eval()
    example, x = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    plan = ap.attach_gates(block, keep=0.5, example_inputs=example)
    assert plan["qkv"].units == 4
    ap.set_alpha(block, 0.0)
    small = ap.shrink(block, example_inputs=example)
    assert small.num_heads == 2 and small.q_norm.normalized_shape == (4,)
    with torch.no_grad():
        assert_same(small(x), block(x))


def test_an_explicit_mask_keeps_or_drops_whole_heads():
    model = vit()
    head = torch.tensor([True, False, True, True]).view(1, 4, 1).expand(3, 4, 6).reshape(-1)
    plan = ap.attach_gates(model, masks={"attn.qkv": head}, example_inputs=seeded(0))
    assert plan["attn.qkv"].kept == 3
    split = head.clone()
    split[0] = False  # one channel of head 0's q
    with pytest.raises(ap.PruningError, match="attention head"):
        ap.attach_gates(vit(), masks={"attn.qkv": split}, example_inputs=seeded(0))


class TorchMultiheadBlock(nn.Module):
    """torch's own ``nn.MultiheadAttention`` between two Linear layers."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 8)
        self.attn = nn.MultiheadAttention(16, 4, batch_first=True)

    def forward(self, t: Tensor) -> Tensor:
        h = self.fc1(t)
        return self.fc2(self.attn(h, h, h, need_weights=False)[0])


def test_torch_multihead_attention_stays_whole_and_the_plan_says_why():
    model = TorchMultiheadBlock().eval()
    group = analyze(model, (torch.randn(2, 5, 8),)).group("fc1")
    assert not group.prunable
    assert "MultiheadAttention" in group.skip and "embed_dim // num_heads" in group.skip, group.skip


class TokenAttention(nn.Module):
    """Attention on tokens ``(B, N, 12)``: 4 heads of 3, an output projection defined before
    ``qkv`` and as wide as the heads; ``qkv`` optionally inside a wrapper; optionally another
    int attribute equal to the head count, or a width computed from the input."""

    def __init__(self, wrapped: bool = False, kv_heads: bool = False, computed: bool = False):
        super().__init__()
        self.proj = nn.Linear(12, 12)
        self.qkv = nn.Sequential(nn.Linear(12, 36)) if wrapped else nn.Linear(12, 36)
        self.num_heads, self.head_dim, self.attn_dim = 4, 3, 12
        self.head = nn.Linear(12, 3)  # so that proj's outputs may be pruned
        if kv_heads:
            self.num_key_value_heads = 4  # read by nothing here, but equal to the head count
        self.computed = computed

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        width = c // self.num_heads if self.computed else self.head_dim
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, width).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2)
        return self.head(self.proj(y.reshape(b, n, self.attn_dim)))


@pytest.mark.parametrize("wrapped", [False, True], ids=["proj-first", "wrapped-qkv"])
def test_a_reload_reads_the_heads_from_qkv_not_from_a_pruned_output_projection(wrapped):
    from alphaprune.engine.checkpoint import model_from_state

    torch.manual_seed(0)
    model, example = TokenAttention(wrapped).eval(), torch.randn(2, 5, 12)
    qkv = "qkv.0" if wrapped else "qkv"
    ap.attach_gates(model, keep={qkv: 0.5, "proj": 0.75}, example_inputs=example)
    ap.set_alpha(model, 0.0)
    small = ap.shrink(model, example_inputs=example)
    assert small.num_heads == 2 and small.proj.out_features == 9
    fresh = model_from_state({}, small.state_dict(), model=TokenAttention(wrapped).eval())
    assert (fresh.num_heads, fresh.attn_dim) == (2, 6)
    with torch.no_grad():
        assert_same(fresh(example), small(example))


@pytest.mark.parametrize("case", ["kv_heads", "computed"])
def test_a_head_count_that_the_cut_would_not_follow_stays_whole_when_planned(case):
    """Another int attribute equal to the head count (the code may read it), or a head width
    computed from the input: cutting heads would break the forward, so they are not planned
    (a crash at shrink, after training, is what this prevents)."""
    model = TokenAttention(**{case: True}).eval()
    group = analyze(model, (torch.randn(2, 5, 12),)).group("qkv")
    assert not group.prunable
    assert "num_heads" in group.skip, group.skip
