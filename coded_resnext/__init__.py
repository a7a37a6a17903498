"""Coded ResNeXt in pure PyTorch: coding schemes, the coded block, the paper's networks, early
decoding, early exit and extraction of per-class binary classifiers. Imports no Ray and no MLflow."""

from coded_resnext.accounting import flop_count, parameter_count
from coded_resnext.coding import CodingScheme, CodingSchemeError, paper_scheme, resolve_scheme
from coded_resnext.coding.defaults import GeneratedScheme
from coded_resnext.decoding import Decoded, decode
from coded_resnext.diagnostics import removal_logits, removal_masks
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
    ModelConfigError,
    StageConfig,
    create_model,
    list_models,
    model_config,
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
    "ModelConfigError",
    "PrunedCodedResNeXt",
    "StageConfig",
    "create_model",
    "decode",
    "extract_binary_classifier",
    "extract_submodel",
    "flop_count",
    "list_models",
    "model_config",
    "paper_scheme",
    "parameter_count",
    "removal_logits",
    "removal_masks",
    "resolve_scheme",
]
