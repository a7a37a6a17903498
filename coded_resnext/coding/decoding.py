"""Early decoding (Eq. 7 of the paper, arXiv 2202.05343): a class decision from one coded block's energies.

Part of ``coding`` because it is the other half of a coding scheme: the codewords say which branches
work for a class, decoding reads a class back from where the energy went.

At coded block l, the normalized energy vector (rows sum to N) is scaled to sum N_act, i.e.
multiplied by r = N_act / N, and the class whose codeword is nearest in Euclidean distance wins.
The margin between the nearest and the second-nearest codeword is the decoder's confidence, which
early-exit policies threshold.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from coded_resnext.coding.scheme import CodingScheme


class Decoded(NamedTuple):
    prediction: Tensor  # (B,) class index of the nearest codeword
    distances: Tensor  # (B, K) Euclidean distance to every codeword
    confidence: Tensor  # (B,) second-nearest minus nearest distance, >= 0


def codeword_distances(energies: Tensor, codewords: Tensor, ratio: float) -> Tensor:
    """(B, N) normalized energies, (K, N) 0/1 codewords -> (B, K) distances ||r E - w_k||."""
    dtype = torch.promote_types(energies.dtype, torch.float32)
    # Computed directly, not through a matrix product (cdist's default above 25 rows): a sample's
    # distances then do not depend on how many samples share its batch, so an early exit that shrinks
    # the batch (coded_resnext.early_exit) decides exactly as a full pass does; B*K*N is small.
    return torch.cdist(ratio * energies.to(dtype), codewords.to(dtype), compute_mode="donot_use_mm_for_euclid_dist")


def decode(energies: Tensor, scheme: CodingScheme | Tensor, ratio: float | None = None) -> Decoded:
    """Nearest-codeword decision (Eq. 7) and its confidence margin."""
    if isinstance(scheme, CodingScheme):
        codewords = torch.tensor(scheme.codewords, dtype=torch.float32, device=energies.device)
        ratio = scheme.ratio
    else:
        codewords = scheme
        if ratio is None:
            ratio = float(codewords[0].sum()) / codewords.shape[1]
    if energies.shape[-1] != codewords.shape[1]:
        raise ValueError(
            f"energies have {energies.shape[-1]} branches but the codewords have length {codewords.shape[1]}"
        )
    distances = codeword_distances(energies, codewords, ratio)
    nearest = distances.topk(2, dim=1, largest=False)
    confidence = nearest.values[:, 1] - nearest.values[:, 0]
    return Decoded(nearest.indices[:, 0], distances, confidence)
