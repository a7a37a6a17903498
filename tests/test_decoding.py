"""Early decoding (Eq. 7) and the specialization diagnostic's branch choice."""

import pytest
import torch

import coded_resnext as cr
from coded_resnext.coding import paper_scheme
from coded_resnext.evaluation.removal import removal_curves, removal_summary

pytestmark = pytest.mark.unit


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


@pytest.mark.parametrize("as_tensor", [False, True], ids=["scheme", "codeword-tensor"])
def test_decoding_distances_and_confidence_are_eq7_with_the_ratio_of_the_codewords(as_tensor):
    """Distances ||r E - w_k|| with r = N_act / N (3/10 here), so the early-exit thresholds see the right
    margins; with r = 1 the nearest codeword can survive while every distance and margin is wrong."""
    scheme = paper_scheme("paper:cifar10/3/10")
    words = torch.from_numpy(scheme.codewords.astype("float32"))
    energies = torch.rand(6, 10)
    energies = energies / energies.sum(1, keepdim=True) * 10  # rows sum to N, as the model's do
    expected = torch.cdist(0.3 * energies, words)
    result = cr.decode(energies, words if as_tensor else scheme)
    torch.testing.assert_close(result.distances, expected)
    nearest = expected.sort(1).values
    torch.testing.assert_close(result.confidence, nearest[:, 1] - nearest[:, 0])
    assert result.prediction.tolist() == expected.argmin(1).tolist()


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


def test_removal_curves_cover_every_coded_block_by_default_or_the_one_asked_for():
    model = cr.create_model("coded_resnext_mini", in_chans=1)
    batches = [(torch.randn(4, 1, 28, 28), torch.tensor([0, 3, 7, 9]))]
    every = removal_curves(model, batches, torch.device("cpu"), None, limit=4)
    assert sorted({r["block"] for r in every}) == [0, 1, 2, 3]
    # per block: k = 0..active and 0..inactive (c3 5/10, c4 3/10)
    assert [sum(r["block"] == b for r in every) for b in range(4)] == [12, 12, 12, 12]
    last = removal_curves(model, batches, torch.device("cpu"), -1, limit=4)
    assert {r["block"] for r in last} == {3}
    with pytest.raises(ValueError, match="removal block 4 out of range"):
        removal_curves(model, batches, torch.device("cpu"), 4, limit=4)


def test_removal_summary_gives_each_blocks_drops_and_their_mean():
    def curve(block, active, inactive):
        rows = [{"block": block, "which": "active", "k": k, "accuracy": a} for k, a in enumerate(active)]
        return rows + [{"block": block, "which": "inactive", "k": k, "accuracy": a} for k, a in enumerate(inactive)]

    # block 0: 2 active, 3 inactive -> compared at k = 2; block 1: 1 active, 1 inactive -> k = 1
    rows = curve(0, [0.9, 0.8, 0.5], [0.9, 0.92, 0.95, 0.1]) + curve(1, [0.9, 0.7], [0.9, 0.9])
    out = removal_summary(rows)
    assert out["removal/k/block_0"] == 2 and out["removal/k/block_1"] == 1
    assert out["removal/active_drop/block_0"] == pytest.approx(0.4)
    assert out["removal/inactive_drop/block_0"] == pytest.approx(-0.05)
    assert out["removal/active_drop/block_1"] == pytest.approx(0.2)
    assert out["removal/inactive_drop/block_1"] == pytest.approx(0.0)
    assert out["removal/active_drop"] == pytest.approx(0.3)
    assert out["removal/inactive_drop"] == pytest.approx(-0.025)
