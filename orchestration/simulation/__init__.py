"""Sweeps at cluster scale, simulated: recorded learning curves replayed under the sweep's own searchers and
schedulers on an event-driven clock (``coded-resnext simulate``; docs/searching.md, "Simulating sweeps").

``curves``: the recorded curves (a Parquet file, or a finished sweep in MLflow); ``engine``: the replay;
``evaluate``: many seeds, arms and worker counts, with intervals over seeds.
"""

from coded_resnext.orchestration.simulation.curves import Curves, CurvesError, read_curves, write_curves
from coded_resnext.orchestration.simulation.engine import Arm, Budget, Outcome, Simulation

__all__ = ["Arm", "Budget", "Curves", "CurvesError", "Outcome", "Simulation", "read_curves", "write_curves"]
