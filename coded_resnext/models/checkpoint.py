"""Checkpoints the library can load on its own: the model config beside the weights.

A checkpoint that holds only the weights and the config of the run that trained them (orchestration's
``RunConfig`` as YAML) needs that run's code to rebuild the model. ``checkpoint_state(model)`` gives the
entries that make it self-describing, as nanoGPT's ``model_args`` and litgpt's ``Config.from_checkpoint``
do: the weights under ``"model"`` and ``CodedResNeXtConfig.to_dict()`` under ``"model_config"``, every
scheme as codewords. A trainer adds them to whatever else it saves (optimizer, epoch, RNG states), and
``load_checkpoint`` rebuilds the model from them without Ray, MLflow or a run config.

The file may be the state itself (``torch.save(state, path)``) or orchestration's checksummed envelope
(``{"format": "coded-resnext-checkpoint/...", "sha256", "state"}``, ``coded_resnext.orchestration.checkpoint``);
the envelope is opened here but its checksum is verified only by that module's ``load_checkpoint``.
Files are read with ``torch.load(weights_only=True)``: no pickled code runs.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from coded_resnext.coding import CodingSchemeError
from coded_resnext.models.coded_resnext import CodedResNeXt
from coded_resnext.models.config import CodedResNeXtConfig, ModelConfigError

WEIGHTS_KEY = "model"  # the model's state_dict
MODEL_CONFIG_KEY = "model_config"  # CodedResNeXtConfig.to_dict()
ENVELOPE_FORMAT_PREFIX = "coded-resnext-checkpoint/"  # orchestration's checksummed file around the state


class ModelCheckpointError(ValueError):
    """A file or state that is not a checkpoint the library can load; the message is one line."""


def checkpoint_state(model: CodedResNeXt) -> dict[str, Any]:
    """The entries a checkpoint must carry for ``load_checkpoint``: the weights and the model config as built
    (its schemes as the codewords the model runs, sizes as its stages have them)."""
    return {
        WEIGHTS_KEY: model.state_dict(),
        MODEL_CONFIG_KEY: model.config.resolved(model.block_schemes).to_dict(),
    }


def load_checkpoint(
    checkpoint: str | Path | Mapping[str, Any], map_location: str | torch.device = "cpu"
) -> CodedResNeXt:
    """The model saved in ``checkpoint`` (a file path, or a state already loaded), in eval mode on
    ``map_location``; a one-line ``ModelCheckpointError`` for anything that is not such a checkpoint."""
    if isinstance(checkpoint, Mapping):
        source, state = "checkpoint state", checkpoint
    else:
        source, state = str(checkpoint), _read(Path(checkpoint), map_location)
    state = _unwrap(state)
    if not isinstance(state, Mapping) or not isinstance(state.get(WEIGHTS_KEY), Mapping):
        raise ModelCheckpointError(
            f"{source}: not a Coded ResNeXt checkpoint (no {WEIGHTS_KEY!r} weights); "
            "save one with {**coded_resnext.checkpoint_state(model), ...}"
        )
    if MODEL_CONFIG_KEY not in state:
        raise ModelCheckpointError(
            f"{source}: written before checkpoints carried the model config (it holds the run's config only), so "
            "the library cannot rebuild it; `coded-resnext evaluate` and `coded-resnext extract` still read it"
        )
    try:
        config = CodedResNeXtConfig.from_dict(state[MODEL_CONFIG_KEY])
        model = CodedResNeXt(config)
    except (ModelConfigError, CodingSchemeError) as err:
        raise ModelCheckpointError(f"{source}: {MODEL_CONFIG_KEY}: {err}") from None
    _check_weights(source, model, state[WEIGHTS_KEY])
    model.load_state_dict(state[WEIGHTS_KEY])
    return model.to(map_location).eval()


def _read(path: Path, map_location: str | torch.device) -> Any:
    if not path.exists():
        raise ModelCheckpointError(f"{path}: no such file; give the path of a checkpoint file")
    if path.is_dir():
        raise ModelCheckpointError(f"{path}: is a directory; give the path of a checkpoint file in it")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols; the error says enough
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # a truncated zip, garbage, or a pickle asking for a forbidden global
        raise ModelCheckpointError(
            f"{path}: not a checkpoint torch.load can read with weights_only=True ({type(err).__name__})"
        ) from None


def _unwrap(blob: Any) -> Any:
    """The state inside orchestration's envelope, or ``blob`` itself."""
    envelope = (
        isinstance(blob, Mapping)
        and str(blob.get("format", "")).startswith(ENVELOPE_FORMAT_PREFIX)
        and isinstance(blob.get("state"), Mapping)
    )
    return blob["state"] if envelope else blob


def _check_weights(source: str, model: CodedResNeXt, weights: Mapping[str, Any]) -> None:
    """One line for weights that do not fit the model the config builds (``load_state_dict`` raises many)."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in weights]
    unexpected = [key for key in weights if key not in expected]
    if missing or unexpected:
        raise ModelCheckpointError(
            f"{source}: the weights do not fit the model its {MODEL_CONFIG_KEY} builds: {len(missing)} missing "
            f"(e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})"
        )
    for key, tensor in expected.items():
        value = weights[key]
        if not isinstance(value, torch.Tensor) or value.shape != tensor.shape:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ModelCheckpointError(
                f"{source}: weight {key} is {shape} but the model its {MODEL_CONFIG_KEY} builds has "
                f"{tuple(tensor.shape)}"
            )
