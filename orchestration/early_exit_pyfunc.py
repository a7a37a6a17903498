"""The MLflow pyfunc face of an early-exit archive (``coded_resnext.early_exit.export``): images in,
a frame of ``prediction`` and ``exit_block`` out. ``mlflow.pyfunc.load_model("models:/NAME/1")`` runs it
with coded_resnext installed; the archive itself holds no pickled code."""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch

from coded_resnext.early_exit.export import load_early_exit


class EarlyExitPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        self._load(context.artifacts["early_exit"])

    def _load(self, archive: str | Path) -> None:

        self.early_exit = load_early_exit(archive)

    @classmethod
    def from_archive(cls, archive: str | Path) -> EarlyExitPyfunc:
        model = cls()
        model._load(archive)
        return model

    def predict(self, context, model_input, params=None):
        x = torch.as_tensor(np.asarray(model_input, dtype=np.float32))
        out = self.early_exit(x)
        return pd.DataFrame({"prediction": out.prediction.numpy(), "exit_block": out.exit_block.numpy()})
