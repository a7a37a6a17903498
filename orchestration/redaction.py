"""Keep secrets out of what a run records: tracking credentials never reach params, tags or artifacts.

Two kinds of secret are recognised: the values of credential environment variables (the ones MLflow
and the object stores read, and any variable named like ``*_PASSWORD``, ``*_SECRET*``, ``*_TOKEN``,
``*_ACCESS_KEY``), and the ``user:password@`` part of any URI (``http://u:p@host``,
``postgresql+psycopg2://u:p@host/db``). Both are replaced by ``***`` wherever they occur in a string.
Values shorter than six characters or made of digits only are not treated as secrets: masking them
would corrupt ordinary data (a seed, an RNG state) without protecting anything worth the name.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

MASK = "***"

# The credentials MLflow, boto3, Azure, GCS and Databricks clients read from the environment.
SECRET_ENV_VARS = (
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_CLIENT_SECRET",
    "DATABRICKS_TOKEN",
    "DATABRICKS_CLIENT_SECRET",
    "PGPASSWORD",
)
_SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|ACCESS_KEY|API_KEY|CREDENTIALS?)(_|$)", re.IGNORECASE)
# scheme://user:password@  or  scheme://token@  (the userinfo part of a URI, RFC 3986)
_URI_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/@\s'\"]+)@")
# In bytes, only RFC 3986 userinfo characters after a URI scheme: random binary data (a checkpoint's
# float tensors) also contains "://" ... "@" sequences, which must not read as credentials.
_URI_USERINFO_BYTES = re.compile(rb"[A-Za-z][A-Za-z0-9+.\-]*://[A-Za-z0-9._~%!$&'()*+,;=:\-]{1,256}@")
_MIN_SECRET_LENGTH = 6  # shorter values ("1", "true") would mask ordinary text


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The secret values present in ``environ`` (default: ``os.environ``), longest first."""
    env = os.environ if environ is None else environ
    found = {
        value
        for name, value in env.items()
        if (name in SECRET_ENV_VARS or _SECRET_NAME.search(name))
        and len(value) >= _MIN_SECRET_LENGTH
        and not value.isdigit()  # digits alone are indistinguishable from data (RNG states, counts)
    }
    return sorted(found, key=len, reverse=True)


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    """``text`` with URI credentials and secret environment values replaced by ``***``."""
    text = _URI_USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    for value in secret_values(environ):
        text = text.replace(value, MASK)
    return text


def contains_secret(data: bytes, environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``data`` holds a secret environment value or a URI with credentials."""
    if any(value.encode() in data for value in secret_values(environ)):
        return True
    return _URI_USERINFO_BYTES.search(data) is not None


def redact_uri(uri: str) -> str:
    """A URI fit to print or log: its ``user:password@`` part masked."""
    return _URI_USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", uri)
