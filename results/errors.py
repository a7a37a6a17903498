"""The results package's one error type, importable without MLflow or pandas (the CLI lists it)."""


class ResultsError(Exception):
    """Something about the requested results the user has to fix (an unknown experiment, no runs)."""
