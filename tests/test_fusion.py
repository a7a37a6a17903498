"""fuse_for_inference: BatchNorms folded into convs give the same logits and energies in eval mode."""

import pytest
import torch

import coded_resnext as cr
from coded_resnext.extraction.fusion import fuse_for_inference
from tests.conftest import randomize_batchnorm

pytestmark = pytest.mark.unit


def _model(**overrides):
    model = cr.create_model("coded_resnext_mini", in_chans=1, **overrides)
    randomize_batchnorm(model)  # gammas != 1 per channel: folding bn_sum into the expand weight changes its Gram
    return model.eval()


@pytest.mark.parametrize("overrides", [{}, {"control": True}], ids=["coded", "control"])
@pytest.mark.parametrize("channels_last", [True, False])
def test_fused_model_gives_same_logits_and_energies(overrides, channels_last):
    model = _model(**overrides)
    fused = fuse_for_inference(model, channels_last=channels_last)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        for keep in (None, 3):
            expected, out = model.forward_with_aux(x, keep_paths_of=keep), fused.forward_with_aux(x, keep_paths_of=keep)
            torch.testing.assert_close(out.logits, expected.logits, rtol=1e-4, atol=1e-5)
            assert len(out.energies) == len(expected.energies)
            for e_out, e_expected in zip(out.energies, expected.energies, strict=True):
                torch.testing.assert_close(e_out, e_expected, rtol=1e-4, atol=1e-5)


def test_fusion_leaves_the_original_model_alone():
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fuse_for_inference(model)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(block.expand_gram is None for block in model.blocks)


def test_materialized_blocks_keep_bn_sum_and_still_match():
    model = _model(energy_impl="materialized")
    fused = fuse_for_inference(model)
    coded = [fused.blocks[i.block_index] for i in fused.coded_blocks]
    assert all(isinstance(b.bn_sum, torch.nn.BatchNorm2d) for b in coded)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), rtol=1e-4, atol=1e-5)


def test_fused_coded_model_cannot_be_trained():
    fused = fuse_for_inference(_model())
    with pytest.raises(RuntimeError, match="fused for inference"):
        fused.train()(torch.randn(2, 1, 28, 28))


def test_projection_shortcut_conv_stays_at_index_0():
    """models/accounting.py finds the projection-shortcut conv as shortcut[0]."""
    fused = fuse_for_inference(_model())
    shortcuts = [b.shortcut for b in fused.blocks if isinstance(b.shortcut, torch.nn.Sequential)]
    assert shortcuts and all(isinstance(s[0], torch.nn.Conv2d) and s[0].bias is not None for s in shortcuts)
