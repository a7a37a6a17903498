"""SyncBatchNorm2d: plain BatchNorm2d outside a process group; over two gloo ranks, the statistics,
output, gradients and running averages of one BatchNorm2d over the concatenated batch."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from coded_resnext import create_model
from coded_resnext.layers.sync_batchnorm import SyncBatchNorm2d


def _bn_pair(seed: int = 0) -> tuple[nn.BatchNorm2d, SyncBatchNorm2d]:
    torch.manual_seed(seed)
    plain = nn.BatchNorm2d(6, momentum=0.3)
    with torch.no_grad():
        plain.weight.uniform_(0.5, 1.5)
        plain.bias.uniform_(-0.5, 0.5)
    synced = SyncBatchNorm2d.convert(nn.Sequential(plain))[0]
    return plain, synced


def test_convert_swaps_every_batchnorm_and_shares_its_tensors():
    model = create_model("coded_resnext_mini", 10, in_chans=1)
    params = {name: p for name, p in model.named_parameters()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    converted = SyncBatchNorm2d.convert(model)
    assert converted is model
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(type(m) is SyncBatchNorm2d for m in bns)
    assert all(p is params[name] for name, p in model.named_parameters())  # optimizer state stays valid
    assert model.state_dict().keys() == state.keys()  # checkpoints load either way


def test_outside_a_process_group_it_is_batchnorm2d():
    plain, _ = _bn_pair()
    reference = nn.BatchNorm2d(6, momentum=0.3)
    reference.load_state_dict(plain.state_dict())
    synced = SyncBatchNorm2d.convert(nn.Sequential(nn.BatchNorm2d(6, momentum=0.3)))[0]
    synced.load_state_dict(plain.state_dict())
    x = torch.randn(4, 6, 5, 5)
    torch.testing.assert_close(synced(x), reference(x), rtol=0, atol=0)
    torch.testing.assert_close(synced.running_var, reference.running_var, rtol=0, atol=0)


def _worker(rank: int, init_file: str, x: torch.Tensor, grad: torch.Tensor, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        _, synced = _bn_pair()
        half = x.shape[0] // 2
        mine = x[rank * half : (rank + 1) * half].clone().requires_grad_()
        y = synced(mine)
        y.backward(grad[rank * half : (rank + 1) * half])
        result = {"y": y.detach(), "dx": mine.grad, "dw": synced.weight.grad, "db": synced.bias.grad}
        result.update(running_mean=synced.running_mean, running_var=synced.running_var)
        torch.save(result, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_normalize_like_one_batchnorm_over_the_whole_batch(tmp_path):
    torch.manual_seed(1)
    x = 3.0 + 2.0 * torch.randn(8, 6, 5, 5)  # a mean far from 0: the variance must not cancel away
    grad = torch.randn_like(x)
    mp.spawn(_worker, args=(str(tmp_path / "init"), x, grad, str(tmp_path)), nprocs=2, join=True)
    results = [torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1)]

    plain, _ = _bn_pair()
    whole = x.clone().requires_grad_()
    y = plain(whole)
    y.backward(grad)
    torch.testing.assert_close(torch.cat([results[0]["y"], results[1]["y"]]), y.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat([results[0]["dx"], results[1]["dx"]]), whole.grad, rtol=1e-4, atol=1e-5)
    # DDP averages parameter gradients over ranks; each rank's is its share of the whole batch's
    torch.testing.assert_close(results[0]["dw"] + results[1]["dw"], plain.weight.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(results[0]["db"] + results[1]["db"], plain.bias.grad, rtol=1e-4, atol=1e-5)
    for rank in (0, 1):
        torch.testing.assert_close(results[rank]["running_mean"], plain.running_mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(results[rank]["running_var"], plain.running_var, rtol=1e-5, atol=1e-6)
