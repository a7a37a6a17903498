"""Configurations too large for their device: estimated on the meta device, refused in one line naming the
key and the size before any run is opened, and in a sweep ended as infeasible rather than crashed."""

from __future__ import annotations

import types

import pytest
import torch
from mlflow.tracking import MlflowClient

from coded_resnext.measure import peak_memory, training_footprint
from coded_resnext.orchestration.build import build_model
from coded_resnext.orchestration.config import load_config
from coded_resnext.orchestration.resources import (
    ResourceError,
    check_fits,
    footprint,
    is_out_of_memory,
    out_of_memory_error,
)

QUICK = ["data.name=synthetic", "data.ood=null", "train.progress=none", "tracking.log_model=false"]


def _cfg(*overrides: str):
    return load_config(None, [*QUICK, *overrides])


def test_the_footprint_counts_the_real_parameters_and_grows_with_the_batch():
    cfg = _cfg("model.width_multiplier=2")
    real = build_model(cfg, 10, 1)
    weights = sum(p.numel() * p.element_size() for p in real.parameters())
    small = footprint(cfg, 10, 1, 28)
    assert small.parameters == weights and small.gradients == weights and small.optimizer_state == weights  # momentum
    cfg.optim.batch_size *= 4
    large = footprint(cfg, 10, 1, 28)
    assert large.fixed == small.fixed and large.activations == 4 * small.activations
    with pytest.raises(ValueError, match="meta device"):
        training_footprint(real, (2, 1, 28, 28))


def test_the_activation_estimate_is_within_a_small_factor_of_a_measured_training_step():
    """The estimate is meant to catch configurations off by orders of magnitude, not to budget bytes: its
    activations against torch.profiler's peak of a real forward and backward on CPU, same batch."""
    cfg = _cfg()
    estimate = footprint(cfg, 10, 1, 28)
    model = build_model(cfg, 10, 1).train()
    x, y = torch.randn(cfg.optim.batch_size, 1, 28, 28), torch.randint(0, 10, (cfg.optim.batch_size,))

    def step() -> None:
        model.loss(model.forward_with_aux(x, targets=y), y).backward()

    step()
    model.zero_grad(set_to_none=True)
    measured = peak_memory(step).peak_bytes
    print(f"FIGURE activations estimated {estimate.activations / 2**20:.1f} MiB, step peak {measured / 2**20:.1f} MiB")
    assert 0.25 <= estimate.activations / measured <= 4


def test_a_configuration_that_cannot_fit_names_the_key_and_the_size():
    fp = footprint(_cfg(), 10, 1, 28)
    with pytest.raises(
        ResourceError, match=r"^model\.name=coded_resnext_mini: training needs about [\d.]+ [KMG]iB"
    ) as e:
        check_fits(_cfg(), 10, 1, 28, torch.device("cpu"), available=fp.fixed - 1)
    assert e.value.before_allocation and "\n" not in str(e.value)
    with pytest.raises(ResourceError, match=r"^model\.width_multiplier=3: .* choose a smaller width multiplier"):
        check_fits(_cfg("model.width_multiplier=3"), 10, 1, 28, torch.device("cpu"), available=fp.fixed)
    with pytest.raises(ResourceError, match=r"^optim\.batch_size=128: .* but cpu has [\d.]+ [KMG]iB available"):
        check_fits(_cfg(), 10, 1, 28, torch.device("cpu"), available=fp.total - 1)
    assert check_fits(_cfg(), 10, 1, 28, torch.device("cpu"), available=fp.total) == fp


def test_the_allocators_own_error_becomes_the_same_one_line():
    err = RuntimeError(
        "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you tried"
    )
    assert is_out_of_memory(err) and is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried 2 GiB"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    line = str(out_of_memory_error(_cfg("optim.batch_size=64"), err))
    assert line.startswith("model.width_multiplier=1, optim.batch_size=64: ran out of memory") and "\n" not in line


def test_a_trial_too_large_for_its_device_ends_infeasible_not_crashed(tmp_path, monkeypatch):
    import ray.tune

    from coded_resnext.orchestration import trial
    from coded_resnext.orchestration.search_space import load_search_space
    from coded_resnext.orchestration.tracking import RunTracker

    space = tmp_path / "space.yaml"
    space.write_text(
        "config: {data: {name: synthetic, ood: null}, train: {epochs: 1}, tracking: {experiment: big, "
        "log_model: false, system_metrics: false}}\nsearch: {model.width_multiplier: {choice: [1000]}}\n"
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = RunTracker(uri, "big", tags={"role": "sweep"})
    reports: list[dict] = []
    monkeypatch.setattr(ray.tune, "get_context", lambda: types.SimpleNamespace(get_trial_id=lambda: "t1"))
    monkeypatch.setattr(ray.tune, "get_checkpoint", lambda: None)
    monkeypatch.setattr(ray.tune, "report", lambda metrics, **kw: reports.append(metrics))
    ctx = trial.TrialContext(load_search_space(space), uri, parent.run_id, str(tmp_path / "ray"), "big")

    trial.run_trial({"model.width_multiplier": 1000}, ctx)  # returns: no exception for Tune to count as a crash

    (report,) = reports
    assert report["infeasible"] == 1.0 and report["epoch"] == 0 and report["model/params"] > 1e9
    client = MlflowClient(uri)
    (run,) = [r for r in client.search_runs([parent.experiment_id]) if r.data.tags.get("trial_id") == "t1"]
    assert run.info.status == "FINISHED" and run.data.tags["infeasible"] == "true"
    assert run.data.tags["infeasible_reason"].startswith("model.width_multiplier=1000: training needs about")
    assert "train/loss" not in run.data.metrics
    parent.finish()
