"""The coded block's arithmetic against the independently computed worked example
(tests/data/block_test_vectors.json): Eq. 2, 3, 5, 7 and branch removal."""

import pytest
import torch

from coded_resnext.coding.decoding import decode
from coded_resnext.layers.coded_block import CodedBlock
from coded_resnext.layers.energy import (
    branch_energies_gram,
    branch_energies_materialized,
    branch_outputs,
    coding_loss,
    normalizer_scale,
)

pytestmark = pytest.mark.unit


def _inputs(v):
    h = torch.tensor(v["h"], dtype=torch.float64)  # (B, N, d, H, W)
    b, n, d, hh, ww = h.shape
    w = torch.tensor(v["expand_weight"], dtype=torch.float64)  # (C_out, N, d)
    return h.reshape(b, n * d, hh, ww), w.reshape(w.shape[0], n * d, 1, 1), n


def _block(v, materialize: bool) -> CodedBlock:
    _, w, n = _inputs(v)
    block = CodedBlock(1, w.shape[0], v["d"], n, normalize_energy=True, materialize=materialize).double()
    with torch.no_grad():
        block.conv_expand.weight.copy_(w)
    return block


def _t(x):
    return torch.tensor(x, dtype=torch.float64)


def test_raw_energies_match_eq2_both_paths(block_vectors):
    h, w, n = _inputs(block_vectors)
    expected = _t(block_vectors["energies_raw"])
    torch.testing.assert_close(branch_energies_gram(h, w, n).double(), expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(branch_energies_materialized(branch_outputs(h, w, n)).double(), expected)


def test_normalizer_is_rms_of_energies(block_vectors):
    raw = _t(block_vectors["energies_raw"])
    expected = _t(block_vectors["normalizer_rms"])
    torch.testing.assert_close(1 / normalizer_scale(raw, block_vectors["N"]), expected)


@pytest.mark.parametrize("materialize", [False, True], ids=["gram", "materialized"])
def test_normalized_energies_and_sum_output(block_vectors, materialize):
    h, _, _ = _inputs(block_vectors)
    block = _block(block_vectors, materialize)
    fn = block._normalized_sum_materialized if materialize else block._normalized_sum
    summed, energies = fn(h, None, None)
    torch.testing.assert_close(energies.double(), _t(block_vectors["energies_normalized"]), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(summed, _t(block_vectors["normalized_sum_output"]), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(energies.sum(1).double(), torch.full((2,), 4.0, dtype=torch.float64))


@pytest.mark.parametrize("materialize", [False, True], ids=["gram", "materialized"])
def test_keep_paths_removes_before_normalization(block_vectors, materialize):
    h, _, _ = _inputs(block_vectors)
    block = _block(block_vectors, materialize)
    k = block_vectors["keep_paths_of_class"]
    keep = _t(block_vectors["codewords"])[k].expand(2, -1)
    fn = block._normalized_sum_materialized if materialize else block._normalized_sum
    summed, energies = fn(h, keep, None)
    torch.testing.assert_close(summed, _t(block_vectors["kept_output"]), rtol=1e-5, atol=1e-7)
    # removed branches have zero energy; the kept ones still sum to the full N (1/N uses N = 4)
    assert (energies[:, keep[0] == 0] == 0).all()
    torch.testing.assert_close(energies.sum(1).double(), torch.full((2,), 4.0, dtype=torch.float64))


def test_kept_normalizer_divides_by_full_n(block_vectors):
    raw = _t(block_vectors["energies_raw"]) * _t(block_vectors["codewords"])[block_vectors["keep_paths_of_class"]]
    torch.testing.assert_close(1 / normalizer_scale(raw, 4), _t(block_vectors["kept_normalizer_rms"]))


def test_coding_loss_power4_matches_eq5(block_vectors):
    energies = _t(block_vectors["energies_normalized"])
    words = _t(block_vectors["codewords"])[block_vectors["targets"]]
    loss = coding_loss(energies, words, block_vectors["ratio"], power=4)
    torch.testing.assert_close(loss, _t(block_vectors["coding_loss_power4"]))


def test_coding_loss_hand_computed_example():
    # r = 1/2, E = (2, 0, 1, 1): r*E - w for w = (1, 0, 1, 0) is (0, 0, -0.5, 0.5);
    # power 4: (0 + 0 + 1/16 + 1/16) / 4 = 1/32; power 2: (1/4 + 1/4) / 4 = 1/8;
    # threshold 0.25: deviations 0.25 each -> power 2: (1/16 + 1/16) / 4 = 1/32
    e = torch.tensor([[2.0, 0.0, 1.0, 1.0]])
    w = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    assert coding_loss(e, w, 0.5, power=4).item() == pytest.approx(1 / 32)
    assert coding_loss(e, w, 0.5, power=2).item() == pytest.approx(1 / 8)
    assert coding_loss(e, w, 0.5, power=2, threshold=0.25).item() == pytest.approx(1 / 32)


def test_decode_distances_and_prediction_eq7(block_vectors):
    energies = _t(block_vectors["energies_normalized"])
    result = decode(energies, _t(block_vectors["codewords"]), block_vectors["ratio"])
    torch.testing.assert_close(result.distances, _t(block_vectors["decode_distances"]))
    assert result.prediction.tolist() == block_vectors["decode_prediction"]
    d = torch.sort(_t(block_vectors["decode_distances"]), dim=1).values
    torch.testing.assert_close(result.confidence, d[:, 1] - d[:, 0])
