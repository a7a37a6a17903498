"""Invariance of the paths (the "glass-box CNNs" view): under horizontal flips, small shifts and small
rotations of an image, does each coded block decode the same class, and how similar are its energies?"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor

from coded_resnext.coding.decoding import decode
from coded_resnext.evaluation.collect import take
from coded_resnext.models import CodedResNeXt


def _shift(x: Tensor) -> Tensor:
    return TF.affine(x, angle=0.0, translate=[2, 2], scale=1.0, shear=[0.0, 0.0])


def _rotate(x: Tensor) -> Tensor:
    return TF.rotate(x, 10.0)


TRANSFORMS: dict[str, Callable[[Tensor], Tensor]] = {
    "hflip": TF.horizontal_flip,
    "shift2px": _shift,
    "rotate10": _rotate,
}


@torch.no_grad()
def invariance_rows(model: CodedResNeXt, loader: Iterable, device: torch.device, limit: int | None) -> list[dict]:
    """Rows (transform, block, decode_agreement, energy_cosine) averaged over ``limit`` images (None: all)."""
    model.eval()
    if limit == 0 or not model.coded_blocks:
        return []
    sums: dict[tuple[str, int], list[float]] = {}
    count = 0
    for x, _ in take(loader, limit):
        x = x.to(device)
        base = model.forward_with_aux(x).energies
        base_pred = [decode(e, i.scheme).prediction for e, i in zip(base, model.coded_blocks, strict=True)]
        for name, fn in TRANSFORMS.items():
            moved = model.forward_with_aux(fn(x)).energies
            for b, (e0, e1, info) in enumerate(zip(base, moved, model.coded_blocks, strict=True)):
                agree = (decode(e1, info.scheme).prediction == base_pred[b]).float().sum().item()
                cosine = torch.cosine_similarity(e0.float(), e1.float(), dim=1).sum().item()
                acc = sums.setdefault((name, b), [0.0, 0.0])
                acc[0] += agree
                acc[1] += cosine
        count += len(x)
    return [
        {"transform": name, "block": b, "decode_agreement": a / count, "energy_cosine": c / count, "samples": count}
        for (name, b), (a, c) in sums.items()
    ]


def invariance_summary(rows: list[dict]) -> dict[str, float]:
    out: dict[str, float] = {}
    for block in sorted({r["block"] for r in rows}):
        mine = [r for r in rows if r["block"] == block]
        out[f"invariance/decode_agreement/block_{block}"] = sum(r["decode_agreement"] for r in mine) / len(mine)
        out[f"invariance/energy_cosine/block_{block}"] = sum(r["energy_cosine"] for r in mine) / len(mine)
    return out
