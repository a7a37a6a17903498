"""The GPU-ready train path, tested on CPU: bf16 autocast (the coded block's hand-written backward
against fp32), torch.compile of the train step against eager, precision choices, determinism flags,
and loader settings."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from coded_resnext import CodedResNeXt, CodedResNeXtConfig, StageConfig, create_model
from coded_resnext.layers.coded_block import CodedBlock
from coded_resnext.orchestration import acceleration
from coded_resnext.orchestration.errors import UserError
from coded_resnext.orchestration.training import TrainStep, train_epoch


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def _block_grads(materialize: bool, precision: acceleration.Precision, x: torch.Tensor):
    torch.manual_seed(0)
    block = CodedBlock(16, 32, 4, 8, normalize_energy=True, materialize=materialize, zero_init_last=False)
    block = block.to(memory_format=torch.channels_last).train()
    x = x.clone().requires_grad_()
    with precision.autocast():
        out = block(x, drop=(torch.rand(x.shape[0], 8, generator=torch.Generator().manual_seed(1)) > 0.2).float())
        loss = out.out.float().square().mean() + 3 * out.energies[:, :3].square().mean()
    loss.backward()
    return [x.grad, *(p.grad for p in block.parameters())], out.energies


def test_coded_block_backward_under_bf16_autocast_matches_fp32():
    torch.manual_seed(2)
    x = torch.randn(4, 16, 8, 8).contiguous(memory_format=torch.channels_last)
    cpu = torch.device("cpu")
    # the reference: the materialized block (plain autograd) in fp32
    fp32_grads, fp32_energies = _block_grads(True, acceleration.resolve_precision("fp32", cpu), x)
    bf16 = acceleration.resolve_precision("bf16", cpu)
    grads, energies = _block_grads(False, bf16, x)  # the Gram-matrix block, hand-written backward, bf16
    assert energies.dtype == torch.float32  # energies stay fp32 under autocast
    reference, _ = _block_grads(True, bf16, x)  # the materialized block under the same autocast
    for grad, exact, autograd in zip(grads, fp32_grads, reference, strict=True):
        error = _relative_error(grad, exact)
        assert error < 0.1, error  # bf16 keeps 8 bits of mantissa: a few percent after a block
        assert error < 1.5 * _relative_error(autograd, exact) + 0.01  # no worse than autograd under the same autocast
    torch.testing.assert_close(energies, fp32_energies, rtol=0.05, atol=0.02)


def _mini_step(seed: int = 0, p_drop: float = 0.0) -> TrainStep:
    torch.manual_seed(seed)
    model = create_model("coded_resnext_mini", 10, in_chans=1, drop_prob=p_drop)
    return TrainStep(model.to(memory_format=torch.channels_last).train())


def _loss_and_grads(step: nn.Module, params: list[nn.Parameter], precision, x, y):
    for p in params:
        p.grad = None
    with precision.autocast():
        out = step(x, y)
    out["total"].backward()
    return out["total"].detach().float(), [p.grad.clone() for p in params]


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(3)
    return torch.randn(8, 1, 16, 16).contiguous(memory_format=torch.channels_last), torch.randint(0, 10, (8,))


def test_bf16_train_step_on_cpu_matches_fp32(batch):
    x, y = batch
    step = _mini_step()
    params = list(step.parameters())
    cpu = torch.device("cpu")
    loss32, grads32 = _loss_and_grads(step, params, acceleration.resolve_precision("fp32", cpu), x, y)
    loss16, grads16 = _loss_and_grads(step, params, acceleration.resolve_precision("bf16", cpu), x, y)
    assert loss16.item() == pytest.approx(loss32.item(), rel=0.03)
    flat32, flat16 = torch.cat([g.flatten() for g in grads32]), torch.cat([g.flatten() for g in grads16])
    assert torch.nn.functional.cosine_similarity(flat16, flat32, dim=0) > 0.99


def _tiny_step() -> TrainStep:
    """One plain and one coded block: all a compile test needs, traced in a few seconds."""
    torch.manual_seed(0)
    stages = (StageConfig("c2", 1, 16, 2, 4, 4, stride=2), StageConfig("c3", 1, 32, 2, 10, 5, stride=2))
    config = CodedResNeXtConfig(num_classes=10, stages=stages, stem_channels=8, in_chans=1, drop_prob=0.0)
    return TrainStep(CodedResNeXt(config).to(memory_format=torch.channels_last).train())


@pytest.mark.parametrize(
    "backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)], ids=["aot_eager", "inductor"]
)
def test_compiled_train_step_matches_eager(batch, backend):
    """Dynamo traces the model, AOTAutograd the coded block's hand-written backward; inductor (the
    default, ``train.compile: true``) also generates C++ for it."""
    torch._dynamo.reset()
    x, y = batch
    step = _tiny_step()
    params = list(step.parameters())
    fp32 = acceleration.resolve_precision("fp32", torch.device("cpu"))
    loss, grads = _loss_and_grads(step, params, fp32, x, y)
    compiled = acceleration.compile_step(step, True, backend=backend)
    assert compiled is not step
    loss_c, grads_c = _loss_and_grads(compiled, params, fp32, x, y)
    torch.testing.assert_close(loss_c, loss, rtol=1e-4, atol=1e-5)
    for g_c, g in zip(grads_c, grads, strict=True):
        torch.testing.assert_close(g_c, g, rtol=1e-3, atol=1e-4)
    assert acceleration.compile_step(step, False) is step


def test_train_step_compiles_to_one_graph(batch):
    """No graph break: the coded block's backward and the coding loss are traceable (an autograd.grad in
    the backward, or a ratio read off numpy codewords, broke the graph at every coded block)."""
    torch._dynamo.reset()
    x, y = batch
    explained = torch._dynamo.explain(_tiny_step())(x, y)
    assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]
    assert explained.graph_count == 1


def test_train_epoch_runs_under_bf16_on_cpu(batch):
    x, y = batch
    step = _mini_step(p_drop=0.1)
    opt = torch.optim.SGD(step.parameters(), lr=0.05)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    before = [p.detach().clone() for p in step.parameters()]
    bf16 = acceleration.resolve_precision("bf16", torch.device("cpu"))
    metrics = train_epoch(step, [(x, y), (x, y)], opt, scheduler, torch.device("cpu"), precision=bf16)
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))
    assert any(not torch.equal(b, p) for b, p in zip(before, step.parameters(), strict=True))
    assert all(p.dtype == torch.float32 for p in step.parameters())  # autocast leaves the weights fp32


def test_precision_choices_on_cpu():
    cpu = torch.device("cpu")
    assert acceleration.resolve_precision("auto", cpu).dtype is None  # fp32 on CPU, as before
    assert acceleration.resolve_precision("bf16", cpu).dtype is torch.bfloat16
    assert acceleration.resolve_precision("bf16", cpu).scaler is None
    with pytest.raises(UserError, match=r"fp16 needs a CUDA GPU.*use train\.precision=bf16"):
        acceleration.resolve_precision("fp16", cpu)


def test_determinism_flags(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    try:
        acceleration.set_determinism(True, torch.device("cpu"))
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == acceleration.CUBLAS_DETERMINISTIC_WORKSPACE
        acceleration.set_determinism(False, torch.device("cuda"))
        assert not torch.are_deterministic_algorithms_enabled()
        assert not torch.backends.cudnn.deterministic and torch.backends.cudnn.benchmark
    finally:
        acceleration.set_determinism(False, torch.device("cpu"))


def test_loader_settings(monkeypatch):
    assert acceleration.loader_workers(None, "cpu") == 0  # the model's threads use the cores on CPU
    assert acceleration.loader_workers(3, "cpu") == 3  # configured wins
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(32)), raising=False)
    assert acceleration.loader_workers(None, "cuda") == acceleration.MAX_AUTO_LOADER_WORKERS
    assert acceleration.loader_workers(None, "cuda", cpus_per_worker=4) == 3  # a Ray rank's share, minus itself
    assert acceleration.loader_options(0, "cpu", 4) == {"num_workers": 0, "pin_memory": False}
    gpu = acceleration.loader_options(4, "cuda", 6)
    assert gpu == {"num_workers": 4, "pin_memory": True, "persistent_workers": True, "prefetch_factor": 6}


def test_new_train_keys_change_the_config_hash_only_when_they_change_results():
    from coded_resnext.orchestration.config import load_config

    base = load_config(None).experiment_hash
    # at their defaults the new keys leave the hash of configs written before them as it was
    assert load_config(None, ["train.precision=auto", "train.compile=false"]).experiment_hash == base
    for changed in ("train.precision=bf16", "train.compile=true", "train.deterministic=true"):
        assert load_config(None, [changed]).experiment_hash != base, changed
    for speed_only in ("train.loader_workers=4", "train.prefetch_factor=8"):  # how fast, not what
        assert load_config(None, [speed_only]).experiment_hash == base, speed_only
