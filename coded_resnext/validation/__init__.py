"""Validation of config values: numeric bounds declared on dataclass fields and checked in one place.

Its own package because three configs at three levels use it (the model's, ``models/config.py``; the
evaluation settings, ``evaluation/settings.py``; and the run config of ``coded_resnext.orchestration``),
and none of them owns it.
"""

from coded_resnext.validation.bounds import Bound, bounded, check_bounds, field_bounds

__all__ = ["Bound", "bounded", "check_bounds", "field_bounds"]
