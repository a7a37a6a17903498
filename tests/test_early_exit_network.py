"""EarlyExit: the network that really stops, held to the simulated early-exit curve of the evaluation
suite (same predictions, same exit points), to the full model at threshold inf, on fused and
channels-last models, and through its exported archive."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import coded_resnext as cr
from coded_resnext.early_exit import EarlyExitError
from coded_resnext.evaluation.collect import collect
from coded_resnext.evaluation.early_exit import early_exit_curve, exit_compute_fractions, simulated_exits
from coded_resnext.extraction.fusion import fuse_for_inference
from tests.conftest import randomize_batchnorm

BATCH = 16


def _model(seed: int = 0) -> cr.CodedResNeXt:
    """A mini net whose BatchNorms are randomized, so energies and confidences differ between samples
    and blocks as after training (at initialization every coded block looks alike)."""
    torch.manual_seed(seed)
    model = cr.create_model("coded_resnext_mini", 10, in_chans=1)
    randomize_batchnorm(model)
    return model.eval()


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    return torch.randn(32, 1, 16, 16), torch.randint(0, 10, (32,))


def _loader(x: torch.Tensor, y: torch.Tensor):
    return [(x[i : i + BATCH], y[i : i + BATCH]) for i in range(0, len(y), BATCH)]


def _run(early_exit: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    outs = [early_exit(x[i : i + BATCH]) for i in range(0, len(x), BATCH)]
    return torch.cat([o.prediction for o in outs]), torch.cat([o.exit_block for o in outs])


@pytest.mark.unit
@pytest.mark.parametrize("fused", [False, True], ids=["as-is", "fused-channels-last"])
def test_decisions_equal_the_simulated_curve_at_its_thresholds(data, fused):
    x, y = data
    model = _model()
    if fused:
        model = fuse_for_inference(model)  # BatchNorms folded, channels-last weights
    collected = collect(model, _loader(x, y), torch.device("cpu"))
    fractions = exit_compute_fractions(model, x[:1])
    curve = early_exit_curve(model, collected, fractions, num_thresholds=13)
    assert sum(0 < row["exit_rate"] < 1 for row in curve) >= 3  # thresholds that split the samples
    for row in curve:
        early = cr.EarlyExit(model, row["threshold"])
        prediction, exit_block = _run(early, x)
        expected_prediction, expected_exit = simulated_exits(model, collected, row["threshold"])
        assert torch.equal(exit_block, expected_exit), row
        assert torch.equal(prediction, expected_prediction), row
        assert (prediction == y).float().mean().item() == pytest.approx(row["accuracy"], abs=1e-6)
        assert (exit_block >= 0).float().mean().item() == pytest.approx(row["exit_rate"], abs=1e-6)
        compute = torch.tensor([fractions[b] if b >= 0 else 1.0 for b in exit_block.tolist()]).mean().item()
        assert compute == pytest.approx(row["compute_fraction"], abs=1e-6)


@pytest.mark.unit
def test_per_block_thresholds_equal_the_simulation(data):
    x, y = data
    model = _model()
    collected = collect(model, _loader(x, y), torch.device("cpu"))
    confidences = torch.stack(
        [cr.decode(e, info.scheme).confidence for e, info in zip(collected.energies, model.coded_blocks, strict=True)],
        1,
    )
    thresholds = confidences.median(0).values.tolist()  # a different threshold in every block
    thresholds[0] = math.inf  # and no exit at all in the first
    prediction, exit_block = _run(cr.EarlyExit(model, thresholds), x)
    expected_prediction, expected_exit = simulated_exits(model, collected, torch.tensor(thresholds))
    assert torch.equal(exit_block, expected_exit) and torch.equal(prediction, expected_prediction)
    assert 0 not in exit_block.tolist() and len(set(exit_block.tolist())) > 1


@pytest.mark.unit
def test_pooled_prediction_decides_as_the_simulation(data):
    """predict() pools the samples that go on across input batches; every sample still decides alone."""
    x, y = data
    model = fuse_for_inference(_model())
    collected = collect(model, _loader(x, y), torch.device("cpu"))
    curve = early_exit_curve(model, collected, exit_compute_fractions(model, x[:1]), num_thresholds=13)
    split = [row for row in curve if 0 < row["exit_rate"] < 1]
    for row in split[:: max(1, len(split) // 3)]:
        out = cr.EarlyExit(model, row["threshold"]).predict(x, batch_size=6)  # pools fill across 6-sample batches
        expected_prediction, expected_exit = simulated_exits(model, collected, row["threshold"])
        assert torch.equal(out.exit_block, expected_exit) and torch.equal(out.prediction, expected_prediction)


@pytest.mark.unit
def test_threshold_inf_is_the_full_model(data):
    x, _ = data
    model = _model()
    for net in (model, fuse_for_inference(model)):
        out = cr.EarlyExit(net, math.inf)(x)
        assert torch.equal(out.prediction, net(x).argmax(1))
        assert (out.exit_block == -1).all()


@pytest.mark.unit
def test_samples_that_exit_are_not_computed_further(data):
    """The point of it: blocks after an exit see only the samples that stayed; none run the head."""
    x, _ = data
    model = _model()
    seen: list[int] = []
    hooks = [block.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0])) for block in model.blocks]
    hooks.append(model.fc.register_forward_hook(lambda m, i, o: seen.append(-i[0].shape[0])))
    try:
        out = cr.EarlyExit(model, -1.0)(x[:BATCH])  # every confidence is >= 0: all leave at coded block 0
        first_coded = model.coded_blocks[0].block_index
        assert (out.exit_block == 0).all()
        assert seen == [BATCH] * (first_coded + 1)  # nothing after the first coded block, no head
        collected = collect(model, _loader(x[:BATCH], x.new_zeros(BATCH, dtype=torch.long)), torch.device("cpu"))
        tau = cr.decode(collected.energies[0], model.coded_blocks[0].scheme).confidence.median().item()
        seen.clear()
        out = cr.EarlyExit(model, [tau, math.inf, math.inf, math.inf])(x[:BATCH])
        stayed = int((out.exit_block == -1).sum())
        assert 0 < stayed < BATCH
        assert seen[first_coded + 1 :] == [stayed] * (len(model.blocks) - first_coded - 1) + [-stayed]
    finally:
        for hook in hooks:
            hook.remove()


@pytest.mark.unit
@pytest.mark.parametrize(
    "threshold, message",
    [
        ("high", "'high' is not a number"),
        (float("nan"), "nan is not a number"),
        ([0.5, 0.5], "got 2 per-block values but the model has 4 coded blocks"),
        ([0.5, "x", 0.5, 0.5], "'x' is not a number"),
        (True, "True is not a number"),
    ],
)
def test_bad_thresholds_are_one_line_errors(threshold, message):
    with pytest.raises(EarlyExitError) as err:
        cr.EarlyExit(_model(), threshold)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.unit
def test_a_control_model_cannot_exit_early():
    with pytest.raises(EarlyExitError, match="no coded blocks"):
        cr.EarlyExit(cr.create_model("coded_resnext_mini", 10, in_chans=1, control=True), 0.5)


@pytest.mark.unit
def test_training_mode_is_refused():
    early = cr.EarlyExit(_model(), 0.5)
    early.train()
    with pytest.raises(RuntimeError, match="inference"):
        early(torch.randn(2, 1, 16, 16))


@pytest.mark.slow
def test_exported_archive_decides_as_the_module(data, tmp_path):
    from coded_resnext.early_exit.export import export_early_exit, load_early_exit

    x, _ = data
    model = fuse_for_inference(_model())
    early = cr.EarlyExit(model, 0.3)
    path = export_early_exit(early, x[:4], tmp_path / "early.pt2", extra={"source": "test"})
    loaded = load_early_exit(path)
    assert loaded.manifest["source"] == "test" and loaded.thresholds == early.thresholds
    for n in (1, 5, 32):  # batch 1 and a batch larger than the example: the batch dimension is dynamic
        a, b = early(x[:n]), loaded(x[:n])
        assert torch.equal(a.prediction, b.prediction) and torch.equal(a.exit_block, b.exit_block)
    reloaded = load_early_exit(path, threshold=math.inf)  # another operating point, same programs
    assert (reloaded(x[:8]).exit_block == -1).all()


@pytest.mark.unit
def test_pool_gives_whole_batches_oldest_first_and_keeps_the_rest():
    from coded_resnext.early_exit.pool import SamplePool

    pool = SamplePool()
    for start, n in ((0, 4), (4, 3), (7, 5)):  # three chunks of 4, 3 and 5 samples
        index = torch.arange(start, start + n)
        pool.add(
            index[:, None, None, None].float().expand(n, 2, 3, 3).contiguous(memory_format=torch.channels_last), index
        )
    features, index = pool.take(6)  # all of the first chunk, 2 of the second
    assert index.tolist() == [0, 1, 2, 3, 4, 5] and features[:, 0, 0, 0].tolist() == index.float().tolist()
    assert features.is_contiguous(memory_format=torch.channels_last) and pool.count == 6
    features, index = pool.take(6)
    assert index.tolist() == [6, 7, 8, 9, 10, 11] and features[:, 1, 2, 2].tolist() == index.float().tolist()
    assert pool.count == 0 and not pool.indices and not pool.features
