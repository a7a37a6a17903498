"""Early exit that stops computing: each sample leaves a Coded ResNeXt at the first coded block whose
Eq. 7 decoding is confident enough.

The network cut into segments (``network``), one batch routed through them (``routing``), many
batches with the samples that go on pooled (``pool``), the thresholds (``thresholds``), and the
deployable PT2 archive (``export``). Its timing against the full model is measuring code
(``coded_resnext.measure.early_exit_benchmark``); its simulation on a full pass is evaluation
(``coded_resnext.evaluation.early_exit``).
"""

from coded_resnext.early_exit.export import ExportedEarlyExit, export_early_exit, load_early_exit
from coded_resnext.early_exit.network import EarlyExit, ExitSegment, ExitTail, split_model
from coded_resnext.early_exit.pool import route_pooled
from coded_resnext.early_exit.routing import FINAL_HEAD, EarlyExitOutput, SegmentOutput, route
from coded_resnext.early_exit.thresholds import EarlyExitError, check_thresholds

__all__ = [
    "FINAL_HEAD",
    "EarlyExit",
    "EarlyExitError",
    "EarlyExitOutput",
    "ExitSegment",
    "ExitTail",
    "ExportedEarlyExit",
    "SegmentOutput",
    "check_thresholds",
    "export_early_exit",
    "load_early_exit",
    "route",
    "route_pooled",
    "split_model",
]
