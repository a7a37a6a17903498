"""Errors that are the user's to fix: the CLI prints their one-line message, no traceback."""

from coded_resnext.coding import CodingSchemeError
from coded_resnext.datasets.spec import DataError
from coded_resnext.models import ModelConfigError
from coded_resnext.results.errors import ResultsError


class UserError(Exception):
    """A mistake in the user's input (a path, an option, a file's content); one-line message."""


USER_ERRORS: tuple[type[Exception], ...] = (UserError, CodingSchemeError, ModelConfigError, DataError, ResultsError)
