"""The Coded ResNeXt network, its typed config and presets, and what is computed from a model alone:
its size and FLOPs, branch-removal masks, and the entries of a checkpoint that rebuild it."""

from coded_resnext.models.accounting import flop_count, parameter_count
from coded_resnext.models.branch_removal import removal_logits, removal_masks
from coded_resnext.models.checkpoint import ModelCheckpointError, checkpoint_state, load_checkpoint
from coded_resnext.models.coded_resnext import CodedOutput, CodedResNeXt, LossParts
from coded_resnext.models.config import CodedResNeXtConfig, ModelConfigError, StageConfig
from coded_resnext.models.presets import create_model, list_models, model_config

__all__ = [
    "CodedOutput",
    "CodedResNeXt",
    "CodedResNeXtConfig",
    "LossParts",
    "ModelCheckpointError",
    "ModelConfigError",
    "StageConfig",
    "checkpoint_state",
    "create_model",
    "flop_count",
    "list_models",
    "load_checkpoint",
    "model_config",
    "parameter_count",
    "removal_logits",
    "removal_masks",
]
