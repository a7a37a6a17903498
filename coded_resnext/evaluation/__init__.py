"""The evaluation suite (what the paper measures), returning plain values and tables."""

from coded_resnext.evaluation.collect import Collected, collect
from coded_resnext.evaluation.settings import EvalSettings
from coded_resnext.evaluation.suite import SuiteData, SuiteResult, as_test_metric, evaluate, run_suite

__all__ = [
    "Collected",
    "EvalSettings",
    "SuiteData",
    "SuiteResult",
    "as_test_metric",
    "collect",
    "evaluate",
    "run_suite",
]
