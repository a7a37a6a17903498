"""Early decoding (Eq. 7) and the specialization diagnostic's branch choice."""

import pytest
import torch

import coded_resnext as cr
from coded_resnext.coding import paper_scheme


def test_decoding_picks_the_class_whose_codeword_the_energies_follow():
    scheme = paper_scheme("paper:cifar10/3/10")
    words = torch.from_numpy(scheme.codewords.astype("float32"))
    # energies concentrated on class k's branches (normalized to sum N), plus noise
    energies = words / scheme.ratio + 0.1 * torch.rand(10, 10)
    energies = energies / energies.sum(1, keepdim=True) * 10
    result = cr.decode(energies, scheme)
    assert result.prediction.tolist() == list(range(10))
    assert (result.confidence > 0).all()


def test_decoding_confidence_is_zero_between_two_codewords():
    scheme = paper_scheme("paper:cifar10/5/10")
    words = torch.from_numpy(scheme.codewords.astype("float32"))
    midway = (words[0] + words[1]) / 2 / scheme.ratio  # equidistant from codewords 0 and 1
    result = cr.decode(midway[None], scheme)
    assert result.confidence.item() == pytest.approx(0.0, abs=1e-5)
    assert result.prediction.item() in (0, 1)


def test_decoding_rejects_wrong_length():
    with pytest.raises(ValueError, match="branches"):
        cr.decode(torch.rand(2, 8), paper_scheme("paper:cifar10/5/10"))


@pytest.mark.parametrize("which", ["active", "inactive"])
def test_removal_masks_remove_k_branches_of_the_requested_kind(which):
    model = cr.create_model("coded_resnext_mini", in_chans=1)
    targets = torch.tensor([0, 3, 7, 9])
    masks = cr.removal_masks(model, 1, targets, k=2, which=which, generator=torch.Generator().manual_seed(0))
    assert masks[0] is None and masks[2] is None and masks[3] is None
    bits = torch.from_numpy(model.coded_blocks[1].scheme.codewords.astype("float32"))[targets]
    removed = masks[1] == 0
    assert (removed.sum(1) == 2).all()
    on_path = bits[removed] == 1
    assert on_path.all() if which == "active" else (~on_path).all()


def test_removal_rejects_more_branches_than_available():
    model = cr.create_model("coded_resnext_mini", in_chans=1)
    with pytest.raises(ValueError, match="cannot remove 4"):
        cr.removal_masks(model, 2, torch.tensor([0]), k=4, which="active")  # c4 is 3/10
