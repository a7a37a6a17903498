"""The model variants of the paper's discussion: concatenated branch outputs (Section 4.3.1), gradient
masking (footnote 5), per-block schemes inside a stage (Appendix B), and the expand conv's init."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import coded_resnext as cr
from coded_resnext.layers.coded_block import CodedBlock
from coded_resnext.layers.concat_expand import ConcatExpand
from coded_resnext.layers.energy import expand_gram, normalized_branches
from coded_resnext.models import ModelConfigError
from tests.conftest import randomize_batchnorm

pytestmark = pytest.mark.unit

X = torch.randn(4, 3, 32, 32, dtype=torch.float64)
Y = torch.tensor([0, 3, 5, 9])


def _pair(**kw):
    # the mini preset: 48, 96, 192 output channels over 10 branches, so concat slices are uneven too
    fast = cr.create_model("coded_resnext_mini", **kw).double()
    ref = cr.create_model("coded_resnext_mini", energy_impl="materialized", **kw).double()
    randomize_batchnorm(fast)
    ref.load_state_dict(fast.state_dict())
    return fast, ref


def _same_values_and_gradients(fast, ref, train: bool) -> None:
    fast.train(train), ref.train(train)
    seed = torch.seed()
    outs = []
    for model in (fast, ref):
        torch.manual_seed(seed)  # same DropSubNNs masks
        out = model.forward_with_aux(X, targets=Y)
        model.loss(out, Y).backward()
        outs.append(out)
    torch.testing.assert_close(outs[0].logits, outs[1].logits)
    for a, b in zip(outs[0].energies, outs[1].energies, strict=True):
        torch.testing.assert_close(a, b)
    for (name, p), q in zip(fast.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


# ---- concatenation (Section 4.3.1) -----------------------------------------------------------------


def test_concat_gram_path_agrees_with_the_materialized_reference_in_values_and_gradients():
    _same_values_and_gradients(*_pair(branch_merge="concat"), train=True)


def test_concat_branch_writes_only_its_own_output_channels():
    block = CodedBlock(6, 13, 2, 4, normalize_energy=True, merge="concat").double().eval()  # 13 = 4 + 3 + 3 + 3
    owner = block.conv_expand.owner_onehot.argmax(1)
    assert owner.tolist() == [0] * 4 + [1] * 3 + [2] * 3 + [3] * 3
    assert block.conv_expand.weight.shape == (13, 2, 1, 1)  # N times fewer than the summing expand
    h = torch.rand(2, 8, 3, 3, dtype=torch.float64)
    for n in range(4):
        keep = F.one_hot(torch.tensor([n, n]), 4).double()
        summed, energies = block._normalized_sum(h, keep, None)
        per_channel = summed.abs().sum(dim=(0, 2, 3))
        assert (per_channel[owner != n] == 0).all() and (per_channel[owner == n] > 0).all()
        torch.testing.assert_close(energies.sum(1), torch.full((2,), 4.0, dtype=torch.float64))


def test_concat_energies_are_means_over_each_branchs_own_channels():
    block = CodedBlock(6, 13, 2, 4, normalize_energy=True, merge="concat").double()
    h = torch.rand(2, 8, 3, 3, dtype=torch.float64)
    t = F.conv2d(h, block.expand_weight())  # (B, C_out, H, W): the concatenation, unnormalized
    owner = block.conv_expand.owner_onehot.argmax(1)
    raw = torch.stack([t[:, owner == n].pow(2).mean(dim=(1, 2, 3)) for n in range(4)], dim=1)
    _, energies = normalized_branches(h, expand_gram(block.expand_weight(), 4), block.energy_channels(), 4)
    torch.testing.assert_close(energies, raw * 4 / raw.sum(1, keepdim=True))


def test_concat_model_is_extractable_and_its_binary_classifier_is_exact():
    model = cr.create_model("coded_resnext_small", branch_merge="concat")
    randomize_batchnorm(model)
    model.eval()
    x = torch.randn(3, 3, 32, 32)
    for fuse in (False, True):
        binary = cr.extract_binary_classifier(model, 4, fuse=fuse)
        expected = model.forward_with_aux(x, keep_paths_of=4).logits[:, 4]
        torch.testing.assert_close(binary(x), expected, atol=1e-4, rtol=1e-4)
    pruned = cr.extract_binary_classifier(model, 4, fuse=False).blocks[-1].conv_expand
    kept = model.coded_blocks[-1].scheme.codewords[4].nonzero()[0].tolist()
    owner = model.blocks[-1].conv_expand.owner_onehot.argmax(1)
    # the expand rows (output channels) of the kept branches survive, written back at their channels
    assert isinstance(pruned, ConcatExpand) and pruned.channels.tolist() == [
        c for n in kept for c in (owner == n).nonzero()[:, 0].tolist()
    ]
    assert cr.parameter_count(binary) < cr.parameter_count(model)


def test_concat_applies_to_every_block_and_a_bad_merge_is_one_line():
    model = cr.create_model("coded_resnext_small", branch_merge="concat", control=True)
    assert all(isinstance(b.conv_expand, ConcatExpand) for b in model.blocks)
    with pytest.raises(
        ModelConfigError, match=r"^branch_merge must be one of \['sum', 'concat', 'concat_coded'\], got 'mean'$"
    ):
        cr.create_model("coded_resnext_small", branch_merge="mean")
    with pytest.raises(ModelConfigError, match="stage c2 has 6 output channels for 10 branches"):
        cr.create_model("coded_resnext_small", branch_merge="concat", width_multiplier=0.1)


def test_concat_coded_concatenates_in_the_coded_blocks_only_so_the_control_is_the_summing_one():
    """Section 4.3.1's reading: the coded blocks concatenate; the uncoded stage keeps its summing ResNeXt blocks,
    so the control (no coded block) is the plain ResNeXt of the summing net, parameter for parameter."""
    model = cr.create_model("coded_resnext29_10x11d", branch_merge="concat_coded")
    coded = {info.block_index for info in model.coded_blocks}
    assert coded and all(isinstance(b.conv_expand, ConcatExpand) == (i in coded) for i, b in enumerate(model.blocks))
    summing = cr.create_model("coded_resnext29_10x11d")
    c2 = [i for i in range(len(model.blocks)) if i not in coded]
    assert [cr.parameter_count(model.blocks[i]) for i in c2] == [cr.parameter_count(summing.blocks[i]) for i in c2]
    every = cr.create_model("coded_resnext29_10x11d", branch_merge="concat")
    assert cr.parameter_count(every) < cr.parameter_count(model) < cr.parameter_count(summing)
    control = cr.create_model("coded_resnext29_10x11d", branch_merge="concat_coded", control=True)
    assert cr.parameter_count(control) == cr.parameter_count(cr.create_model("coded_resnext29_10x11d", control=True))
    assert not any(isinstance(b.conv_expand, ConcatExpand) for b in control.blocks)
    # only the coded stages need an output channel per branch: c2 may be narrower than its 10 branches
    with pytest.raises(ModelConfigError, match="branch_merge='concat_coded': stage c3 has 6 output channels"):
        cr.create_model("coded_resnext_small", branch_merge="concat_coded", width_multiplier=0.05)


# ---- gradient masking (footnote 5) --------------------------------------------------------------------


def test_mask_grads_gram_path_agrees_with_the_authors_formula():
    # the materialized path applies the authors' mask * t + (1 - mask) * t.detach() to branch outputs
    _same_values_and_gradients(*_pair(mask_grads=True, drop_prob=0.3), train=True)


def test_mask_grads_stops_each_samples_gradient_at_the_branches_it_marks_zero():
    block = CodedBlock(6, 5, 2, 4, normalize_energy=True).double()
    h = torch.rand(2, 8, 3, 3, dtype=torch.float64)
    g = torch.randn(2, 5, 3, 3, dtype=torch.float64)

    def grads(grad_keep):
        hh = h.clone().requires_grad_()
        block.zero_grad()
        summed, _ = block._normalized_sum(hh, None, None, grad_keep)
        (summed * g).sum().backward()
        return hh.grad, block.conv_expand.weight.grad.clone()

    free_h, free_w = grads(None)
    # sample 0 blocked everywhere, sample 1 free: sample 0 gets no gradient at all, sample 1 the usual one
    masked_h, _ = grads(torch.tensor([[0.0] * 4, [1.0] * 4], dtype=torch.float64))
    assert (masked_h[0] == 0).all()
    torch.testing.assert_close(masked_h[1], free_h[1])
    torch.testing.assert_close(grads(torch.ones(2, 4, dtype=torch.float64))[1], free_w)
    # one branch blocked: its expand columns lose the output's direct gradient and keep only the one
    # through the normalizer, which averages over every branch (as the authors' rms does)
    _, w = grads(torch.tensor([[1.0, 0, 1, 1]] * 2, dtype=torch.float64))
    assert not torch.allclose(w[:, 2:4], free_w[:, 2:4]) and (w[:, 2:4] != 0).any()


def test_mask_grads_changes_only_gradients_and_needs_the_targets_in_training():
    plain = cr.create_model("coded_resnext_small", drop_prob=0.0).double()
    masked = cr.create_model("coded_resnext_small", drop_prob=0.0, mask_grads=True).double()
    randomize_batchnorm(plain)  # bn_sum's gamma starts at 0, which would hide the branch sum's gradient
    masked.load_state_dict(plain.state_dict())
    grads = []
    for model in (plain, masked):
        out = model.forward_with_aux(X, targets=Y)
        model.loss(out, Y).backward()
        grads.append(model.blocks[-1].conv_expand.weight.grad)
        if model is masked:
            torch.testing.assert_close(out.logits, plain.forward_with_aux(X).logits)
    assert not torch.allclose(grads[0], grads[1])
    with pytest.raises(ValueError, match=r"forward_with_aux\(x, targets=y\)"):
        masked.forward_with_aux(X)
    masked.eval()
    masked.forward_with_aux(X)  # inference needs no labels


# ---- per-block schemes (Appendix B) -------------------------------------------------------------------


def test_a_scheme_can_change_inside_a_stage():
    schemes = {"c4": ("paper:cifar10/3/10", "paper:cifar10/5/10")}
    model = cr.create_model("coded_resnext_small", schemes=schemes, drop_prob=0.5)
    c4 = [info for info in model.coded_blocks if info.stage == "c4"]
    assert [info.scheme.num_active for info in c4] == [3, 5]
    assert c4[0].drop_group != c4[1].drop_group  # a new scheme draws a new DropSubNNs mask
    assert set(model.schemes) == {"c3", "c4.0", "c4.1"}
    assert model.block_schemes["c4"] == tuple(info.scheme for info in c4)
    # a per-block list of one scheme is the stage-wide spec
    same = cr.create_model("coded_resnext_small", schemes={"c4": ["paper:cifar10/3/10"] * 2})
    assert set(same.schemes) == {"c3", "c4"} and same.schemes["c4"].name == "paper:cifar10/3/10"


def test_per_block_off_makes_plain_blocks_inside_a_coded_stage():
    model = cr.create_model("coded_resnext_small", schemes={"c4": ("off", None)})
    assert [model.blocks[i.block_index] is model.blocks[-1] for i in model.coded_blocks if i.stage == "c4"] == [True]
    assert not model.blocks[-2].normalize_energy and model.schemes["c4.1"].num_active == 3


def test_per_block_count_must_match_the_stage():
    with pytest.raises(ModelConfigError) as exc:
        cr.create_model("coded_resnext_small", schemes={"c4": ("paper:cifar10/3/10",) * 3})
    assert str(exc.value) == "schemes['c4']: 3 per-block schemes for the 2 blocks of stage c4; give one per block"


# ---- expand init --------------------------------------------------------------------------------------


def test_expand_init_follows_the_authors_grouped_fan_out_by_default():
    torch.manual_seed(0)
    grouped = cr.create_model("coded_resnext29_10x11d")
    dense = cr.create_model("coded_resnext29_10x11d", expand_init="fan_out_dense")
    for model, fan in ((grouped, lambda c: 10 * c), (dense, lambda c: c)):
        for info in model.coded_blocks:
            weight = model.blocks[info.block_index].conv_expand.weight
            assert weight.std().item() == pytest.approx(math.sqrt(2 / fan(weight.shape[0])), rel=0.02)
        plain = model.blocks[0].conv_expand.weight  # uncoded c2: the dense conv's fan-out either way
        assert plain.std().item() == pytest.approx(math.sqrt(2 / plain.shape[0]), rel=0.03)
