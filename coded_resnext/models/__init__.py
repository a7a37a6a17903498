from coded_resnext.models.coded_resnext import CodedOutput, CodedResNeXt, LossParts
from coded_resnext.models.config import CodedResNeXtConfig, ModelConfigError, StageConfig
from coded_resnext.models.presets import create_model, list_models, model_config

__all__ = [
    "CodedOutput",
    "CodedResNeXt",
    "CodedResNeXtConfig",
    "LossParts",
    "ModelConfigError",
    "StageConfig",
    "create_model",
    "list_models",
    "model_config",
]
