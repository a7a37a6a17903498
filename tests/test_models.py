"""The model: every preset builds, runs and trains; coded vs control vs materialized; DropSubNNs."""

import pytest
import torch
import torch.nn.functional as F

import coded_resnext as cr
from coded_resnext.layers.coded_block import CodedBlock
from coded_resnext.layers.drop_subnns import drop_subnns_mask
from coded_resnext.layers.energy import expand_gram, normalized_branches
from tests.conftest import randomize_batchnorm

pytestmark = pytest.mark.unit

# (input size, channels) small enough for a CPU test and large enough for every stride
PRESET_INPUTS = {
    "coded_resnext29_10x11d": (32, 3),
    "coded_resnext29_20x6d": (32, 3),
    "coded_resnext50_32x4d": (64, 3),
    "coded_resnext_mini": (28, 1),
    "coded_resnext_small": (32, 3),
}
PAPER_PARAMS_M = {"coded_resnext29_10x11d": 4.7, "coded_resnext29_20x6d": 4.7, "coded_resnext50_32x4d": 25.0}


def test_every_preset_has_a_test_input():
    assert set(cr.list_models()) == set(PRESET_INPUTS)


@pytest.mark.parametrize("name", sorted(PRESET_INPUTS))
def test_preset_forward_shape_no_nan_and_backward(name):
    size, chans = PRESET_INPUTS[name]
    model = cr.create_model(name, in_chans=chans)
    k = model.num_classes
    x = torch.randn(2, chans, size, size)
    y = torch.tensor([0, k - 1])
    out = model.forward_with_aux(x)
    assert out.logits.shape == (2, k)
    assert len(out.energies) == len(model.coded_blocks) > 0
    loss = model.loss(out, y)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model(x).shape == (2, k)


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS_M))
def test_paper_presets_parameter_count_within_3pct(name):
    params = cr.parameter_count(cr.create_model(name)) / 1e6
    assert abs(params - PAPER_PARAMS_M[name]) / PAPER_PARAMS_M[name] <= 0.03, params


def test_paper_presets_use_the_published_schemes():
    assert {s.name for s in cr.create_model("coded_resnext29_10x11d").schemes.values()} == {
        "paper:cifar10/5/10",
        "paper:cifar10/3/10",
    }
    assert {s.name for s in cr.create_model("coded_resnext29_20x6d").schemes.values()} == {
        "paper:cifar100/8/20",
        "paper:cifar100/4/20",
    }


def test_energies_sum_to_n_per_sample():
    model = cr.create_model("coded_resnext_small")
    out = model.forward_with_aux(torch.randn(5, 3, 32, 32))
    for energies, info in zip(out.energies, model.coded_blocks, strict=True):
        n = info.scheme.num_branches
        assert energies.shape == (5, n)
        torch.testing.assert_close(energies.sum(1), torch.full((5,), float(n)))


def _pair(name="coded_resnext_small", **kw):
    fast = cr.create_model(name, **kw).double()
    ref = cr.create_model(name, energy_impl="materialized", **kw).double()
    randomize_batchnorm(fast)
    ref.load_state_dict(fast.state_dict())  # same state dict, no missing or extra keys
    return fast, ref


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_gram_and_materialized_paths_agree_in_values_and_gradients(mode):
    fast, ref = _pair()
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    y = torch.tensor([0, 3, 5, 9])
    for m in (fast, ref):
        m.train(mode == "train")
    seed = torch.seed()
    torch.manual_seed(seed)
    out_fast = fast.forward_with_aux(x)
    torch.manual_seed(seed)  # same DropSubNNs masks in training mode
    out_ref = ref.forward_with_aux(x)
    torch.testing.assert_close(out_fast.logits, out_ref.logits)
    for a, b in zip(out_fast.energies, out_ref.energies, strict=True):
        torch.testing.assert_close(a.double(), b.double())
    fast.loss(out_fast, y).backward()
    ref.loss(out_ref, y).backward()
    for (name, p), q in zip(fast.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


@pytest.mark.parametrize("channels_last", [False, True])
def test_normalization_backward_matches_finite_differences_with_removal_and_dropping(channels_last):
    # the hand-written backward of the coded block's normalization, through every input that
    # carries a gradient (h, and the Gram matrices of the live expand weight), with branches removed
    # (keep) and dropped (DropSubNNs) so every term of the scale and energy gradients is exercised
    torch.manual_seed(0)
    b, n, d = 3, 4, 2
    h = torch.rand(b, n * d, 3, 3, dtype=torch.float64)
    if channels_last:
        h = h.contiguous(memory_format=torch.channels_last)
    w = torch.randn(5, n * d, 1, 1, dtype=torch.float64)
    keep = torch.tensor([[1, 1, 0, 1], [1, 1, 1, 1], [0, 1, 1, 0]], dtype=torch.float64)
    drop = torch.tensor([[2.0, 0, 2, 2], [2, 2, 2, 0], [2, 2, 0, 2]], dtype=torch.float64)

    def fn(h, w):
        scaled, energies = normalized_branches(h, expand_gram(w, n), 5, n, keep, drop)
        return scaled, energies

    assert torch.autograd.gradcheck(fn, (h.requires_grad_(), w.requires_grad_()))
    scaled, energies = fn(h, w)
    assert scaled.is_contiguous(memory_format=torch.channels_last) == channels_last
    # the same values whichever layout h comes in (gradcheck alone would pass a consistent wrong forward)
    scaled_nchw, energies_nchw = fn(h.detach().contiguous(), w)
    torch.testing.assert_close(scaled, scaled_nchw)
    torch.testing.assert_close(energies, energies_nchw)


def test_keep_paths_of_agrees_between_paths():
    fast, ref = _pair()
    fast.eval(), ref.eval()
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    cls = torch.tensor([1, 4, 7])
    torch.testing.assert_close(
        fast.forward_with_aux(x, keep_paths_of=cls).logits, ref.forward_with_aux(x, keep_paths_of=cls).logits
    )


def test_keep_paths_of_zeroes_the_energy_of_branches_off_the_path():
    model = cr.create_model("coded_resnext_small").eval()
    out = model.forward_with_aux(torch.randn(2, 3, 32, 32), keep_paths_of=6)
    for energies, info in zip(out.energies, model.coded_blocks, strict=True):
        off = ~torch.from_numpy(info.scheme.codewords[6].copy())
        assert (energies[:, off] == 0).all()
        assert (energies[:, ~off] > 0).all()


def test_control_is_plain_resnext_with_same_shape_and_no_coding_ops():
    coded = cr.create_model("coded_resnext_small")
    control = cr.create_model("coded_resnext_small", control=True)
    assert control.coded_blocks == [] and control.schemes == {}
    assert not any(isinstance(m, CodedBlock) and m.normalize_energy for m in control.modules())
    assert control.state_dict().keys() == coded.state_dict().keys()
    assert cr.parameter_count(control) == cr.parameter_count(coded)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    out = control.forward_with_aux(x)
    assert out.energies == ()
    torch.testing.assert_close(control.loss(out, y), F.cross_entropy(out.logits, y))


def test_loss_is_cross_entropy_plus_mu_times_coding_losses():
    model = cr.create_model("coded_resnext_small", coding_loss_weight=2.5)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    out = model.forward_with_aux(x)
    parts = model.loss_parts(out, y)
    assert parts.coding > 0
    torch.testing.assert_close(parts.classification, F.cross_entropy(out.logits, y))
    torch.testing.assert_close(parts.total, parts.classification + 2.5 * parts.coding)
    torch.testing.assert_close(model.loss(out, y), parts.total)


@pytest.mark.parametrize(("power", "threshold"), [(4.0, 0.0), (2.0, 0.1)])
def test_coding_loss_part_is_eq5_summed_over_the_coded_blocks(power, threshold):
    """Eq. 5 by hand on ``out.energies``: r = N_act / N of each block's own codewords (5/10 in c3, 3/10
    in c4, so one block's ratio for all, or r = 1, is caught), the configured power and threshold."""
    model = cr.create_model("coded_resnext_small", coding_loss_power=power, coding_loss_threshold=threshold)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 3, 7, 9])
    out = model.forward_with_aux(x)
    expected = torch.zeros(())
    for info, energies in zip(model.coded_blocks, out.energies, strict=True):
        words = torch.from_numpy(info.scheme.codewords).float()  # (K, N) 0/1
        ratio = words[0].sum() / words.shape[1]
        deviation = ((ratio * energies - words[y]).abs() - threshold).clamp_min(0)
        expected = expected + (deviation**power).sum(1).div(words.shape[1]).mean()  # (1/N) sum_n, mean over B
    assert {round(float(i.scheme.ratio), 2) for i in model.coded_blocks} == {0.5, 0.3}
    torch.testing.assert_close(model.loss_parts(out, y).coding, expected)


def test_last_bn_gamma_starts_at_zero():
    model = cr.create_model("coded_resnext_small")
    assert all((block.bn_sum.weight == 0).all() for block in model.blocks)
    assert any((block.bn_reduce.weight != 0).any() for block in model.blocks)


def test_drop_subnns_mask_keeps_the_expectation():
    mask = drop_subnns_mask(20000, 10, 0.3)
    values = mask.unique().tolist()
    assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(1 / 0.7)
    assert mask.mean().item() == pytest.approx(1.0, abs=0.01)
    assert (mask == 0).float().mean().item() == pytest.approx(0.3, abs=0.01)


def test_drop_subnns_block_output_is_unbiased():
    block = CodedBlock(4, 6, 2, 5, normalize_energy=True, zero_init_last=False).double().eval()
    x = torch.randn(1, 4, 3, 3, dtype=torch.float64)
    h = block.act(block.bn_group(block.conv_group(block.act(block.bn_reduce(block.conv_reduce(x))))))
    reference, _ = block._normalized_sum(h, None, None)
    draws = 20000
    masks = drop_subnns_mask(draws, 5, 0.2, dtype=torch.float64)
    dropped, _ = block._normalized_sum(h.expand(draws, -1, -1, -1), None, masks)
    torch.testing.assert_close(
        dropped.mean(0, keepdim=True), reference, atol=0.03 * reference.abs().max().item(), rtol=0
    )


def _captured_drop_masks(model, x):
    seen = {}

    def hook(module, args):
        seen[module] = args[2] if len(args) > 2 else None

    handles = [b.register_forward_pre_hook(hook) for b in model.coded_block_modules]
    model.forward_with_aux(x)
    for h in handles:
        h.remove()
    return [seen[b] for b in model.coded_block_modules]


def test_drop_subnns_one_mask_per_run_of_blocks_sharing_a_scheme():
    model = cr.create_model("coded_resnext_small", drop_prob=0.5).train()
    masks = _captured_drop_masks(model, torch.randn(64, 3, 32, 32))
    stages = [info.stage for info in model.coded_blocks]
    assert stages == ["c3", "c3", "c4", "c4"]
    assert masks[0] is masks[1] and masks[2] is masks[3]  # shared within a scheme's run
    assert not torch.equal(masks[1], masks[2])  # a new scheme draws a new mask
    assert masks[0].shape == (64, 10) and (masks[0] == 0).any()
    # independent per sample: rows differ
    assert len({tuple(row.tolist()) for row in masks[0]}) > 1


def test_drop_subnns_a_plain_block_between_two_blocks_of_one_scheme_passes_the_mask_on():
    """The authors' block of ratio 1 returns the mask it was given, so the next block of the scheme reuses it."""
    model = cr.create_model("coded_resnext_small", drop_prob=0.5, schemes={"c3": ("paper:cifar10/3/10", "off")})
    model.train()
    assert [info.stage for info in model.coded_blocks] == ["c3", "c4", "c4"]  # c3's second block is plain
    assert len({info.drop_group for info in model.coded_blocks}) == 1  # c4's default scheme is c3's 3/10
    masks = _captured_drop_masks(model, torch.randn(16, 3, 32, 32))
    assert masks[0] is masks[1] is masks[2]


def test_drop_subnns_off_in_eval_mode_and_in_uncoded_stages():
    model = cr.create_model("coded_resnext_small", drop_prob=0.5).eval()
    assert _captured_drop_masks(model, torch.randn(2, 3, 32, 32)) == [None] * 4
    assert [info.drop_prob for info in model.coded_blocks] == [0.5] * 4


def test_width_multiplier_scales_widths():
    wide = cr.create_model("coded_resnext_small", width_multiplier=2.0)
    base = cr.create_model("coded_resnext_small")
    assert wide.blocks[-1].conv_expand.out_channels == 2 * base.blocks[-1].conv_expand.out_channels
    assert wide.blocks[-1].branch_width == 2 * base.blocks[-1].branch_width


def test_a_stage_can_be_turned_off_or_on_by_its_scheme():
    off = cr.create_model("coded_resnext_small", schemes={"c3": "off"})
    assert list(off.schemes) == ["c4"] and [i.stage for i in off.coded_blocks] == ["c4", "c4"]
    on = cr.create_model("coded_resnext_small", schemes={"c2": "paper:cifar10/5/10"})
    assert list(on.schemes) == ["c2", "c3", "c4"]
    assert on.coded_blocks[0].drop_prob == 0.0  # c2 keeps its stage setting (no DropSubNNs in c2)


@pytest.mark.parametrize("control", [False, True])
def test_the_trunk_and_the_rest_are_the_forward_pass(control):
    """An evaluation runs the trunk (stem and the blocks before the first coded block) once for the model
    and every classifier extracted from it; the rest must then give exactly the model's outputs."""
    from tests.conftest import randomize_batchnorm

    model = cr.create_model("coded_resnext_mini", 6, in_chans=1, control=control).eval()
    randomize_batchnorm(model)
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        whole = model.forward_with_aux(x)
        depth = model.trunk_depth
        assert depth == (len(model.blocks) if control else model.coded_blocks[0].block_index)
        rest = model.forward_from(model.trunk(x), depth)
        assert torch.equal(rest.logits, whole.logits)
        assert all(torch.equal(a, b) for a, b in zip(rest.energies, whole.energies, strict=True))
        if not control:  # from a later block, with a removal mask in it: forward_with_branch_masks's result
            late = model.coded_blocks[-2]
            keep = [None] * len(model.coded_blocks)
            keep[-2] = (torch.rand(5, late.scheme.num_branches) > 0.4).float()
            masked = model.forward_with_branch_masks(x, keep)
            rest = model.forward_from(model.trunk(x, late.block_index), late.block_index, keep)
            assert torch.equal(rest.logits, masked.logits)
            assert torch.equal(rest.energies[0], masked.energies[-2]) and len(rest.energies) == 2
    model.train()
    with pytest.raises(RuntimeError, match=r"call model\.eval"):
        model.trunk(x)
