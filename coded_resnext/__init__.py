"""Coded ResNeXt in pure PyTorch: coding schemes, the coded block, the paper's networks, early
decoding, early exit and extraction of per-class binary classifiers. Imports no Ray and no MLflow.

The packages, one concept each: ``coding`` (schemes, the generator, Eq. 7 decoding), ``layers`` (the
coded block), ``models`` (the network, its config and presets, size and FLOPs, branch removal,
checkpoints), ``extraction`` (per-class binary classifiers and BatchNorm folding), ``early_exit``
(the network that stops computing, its pool and PT2 export), ``evaluation`` (what the paper measures),
``measure`` (speed and memory), ``datasets`` and ``validation`` (bounds of config fields).
"""

from coded_resnext.coding import CodingScheme, CodingSchemeError, paper_scheme, resolve_scheme
from coded_resnext.coding.decoding import Decoded, decode
from coded_resnext.coding.defaults import GeneratedScheme
from coded_resnext.early_exit import EarlyExit, EarlyExitError, EarlyExitOutput
from coded_resnext.extraction import (
    BinaryClassifier,
    PrunedCodedResNeXt,
    extract_binary_classifier,
    extract_submodel,
)
from coded_resnext.models import (
    CodedOutput,
    CodedResNeXt,
    CodedResNeXtConfig,
    LossParts,
    ModelCheckpointError,
    ModelConfigError,
    StageConfig,
    checkpoint_state,
    create_model,
    flop_count,
    list_models,
    load_checkpoint,
    model_config,
    parameter_count,
    removal_logits,
    removal_masks,
)

__all__ = [
    "BinaryClassifier",
    "CodedOutput",
    "CodedResNeXt",
    "CodedResNeXtConfig",
    "CodingScheme",
    "CodingSchemeError",
    "Decoded",
    "EarlyExit",
    "EarlyExitError",
    "EarlyExitOutput",
    "GeneratedScheme",
    "LossParts",
    "ModelCheckpointError",
    "ModelConfigError",
    "PrunedCodedResNeXt",
    "StageConfig",
    "checkpoint_state",
    "create_model",
    "decode",
    "extract_binary_classifier",
    "extract_submodel",
    "flop_count",
    "list_models",
    "load_checkpoint",
    "model_config",
    "paper_scheme",
    "parameter_count",
    "removal_logits",
    "removal_masks",
    "resolve_scheme",
]
