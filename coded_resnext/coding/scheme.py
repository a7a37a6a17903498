"""Coding schemes: which branches ("subNNs") of a coded block work for which class.

A scheme is a boolean (classes x branches) matrix; row k is the codeword w_k of class k
(docs/method.md section 3). Rules checked on construction: (A) every codeword has the same number of
ones, N_act, with 1 <= N_act < N; codewords are distinct; at least two classes. Rules (B) maximal
pairwise Hamming distance and (C) balanced column sums are properties to report and optimise
(`min_distance`, `column_sums`), not validity conditions.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class CodingSchemeError(ValueError):
    """A coding scheme (or a request for one) is invalid; the message is one line for the user."""


def pairwise_hamming(words: np.ndarray) -> np.ndarray:
    """(K, N) 0/1 matrix -> (K, K) Hamming distances (diagonal 0)."""
    w = words.astype(np.int32)
    overlap = w @ w.T
    weights = w.sum(axis=1)
    return weights[:, None] + weights[None, :] - 2 * overlap


@dataclass(frozen=True, eq=False)
class CodingScheme:
    """One codeword per class, in class-index order; ``codewords[k, n]`` is True when branch n
    works for class k."""

    codewords: np.ndarray
    name: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        words = np.asarray(self.codewords)
        if words.ndim != 2:
            raise CodingSchemeError(
                f"codewords must form a (classes x branches) matrix, got an array of shape {words.shape}"
            )
        if words.dtype != np.bool_:
            if not np.isin(words, (0, 1)).all():
                raise CodingSchemeError("codewords must contain only 0 and 1")
            words = words.astype(np.bool_)
        words = np.ascontiguousarray(words)
        words.setflags(write=False)
        object.__setattr__(self, "codewords", words)
        k, n = words.shape
        if k < 2:
            raise CodingSchemeError(f"a coding scheme needs at least 2 classes, got {k}")
        weights = words.sum(axis=1)
        if not (weights == weights[0]).all():
            bad = int(np.flatnonzero(weights != weights[0])[0])
            raise CodingSchemeError(
                f"rule A: every codeword needs the same number of active branches; codeword 0 has "
                f"{int(weights[0])}, codeword {bad} has {int(weights[bad])}"
            )
        active = int(weights[0])
        # kept as a plain int: computed from the numpy codewords on every call, torch.compile would turn
        # it into a data-dependent tensor op and break the graph in the coding loss
        object.__setattr__(self, "_num_active", active)
        if not 1 <= active < n:
            raise CodingSchemeError(
                f"each codeword needs 1 <= active branches < {n} (branches), got {active}; "
                "a block with all branches active is a plain ResNeXt block and needs no scheme"
            )
        _, first, counts = np.unique(words, axis=0, return_index=True, return_counts=True)
        if (counts > 1).any():
            dup = words[first[np.argmax(counts > 1)]]
            rows = np.flatnonzero((words == dup).all(axis=1))
            raise CodingSchemeError(f"codewords must be distinct; classes {rows.tolist()} share codeword {_bits(dup)}")

    # ---- properties -------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return self.codewords.shape[0]

    @property
    def num_branches(self) -> int:
        return self.codewords.shape[1]

    @property
    def num_active(self) -> int:
        return self._num_active

    @property
    def ratio(self) -> float:
        """r = N_act / N (docs/method.md Eq. 5)."""
        return self.num_active / self.num_branches

    @property
    def min_distance(self) -> int:
        d = pairwise_hamming(self.codewords)
        np.fill_diagonal(d, self.num_branches + 1)
        return int(d.min())

    @property
    def column_sums(self) -> np.ndarray:
        """Classes served by each branch (rule C wants these equal)."""
        return self.codewords.sum(axis=0).astype(np.int64)

    @property
    def column_spread(self) -> int:
        sums = self.column_sums
        return int(sums.max() - sums.min())

    @property
    def content_hash(self) -> str:
        """Stable hash of the matrix alone (not the name): equal codewords, equal hash."""
        k, n = self.codewords.shape
        payload = f"{k}x{n}:" + ",".join(_bits(w) for w in self.codewords)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CodingScheme):
            return NotImplemented
        return self.codewords.shape == other.codewords.shape and bool((self.codewords == other.codewords).all())

    def __hash__(self) -> int:
        return hash(self.content_hash)

    def __repr__(self) -> str:
        label = f"{self.name!r}, " if self.name else ""
        return (
            f"CodingScheme({label}classes={self.num_classes}, branches={self.num_branches}, "
            f"active={self.num_active}, min_distance={self.min_distance}, "
            f"column_sums={self.column_sums.min()}..{self.column_sums.max()})"
        )

    # ---- JSON -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The format of the entries of ``paper_coding_schemes.json``."""
        sums = self.column_sums
        out: dict[str, Any] = {}
        if self.name:
            out["name"] = self.name
        out.update(
            num_classes=self.num_classes,
            num_branches=self.num_branches,
            num_active=self.num_active,
            min_hamming_distance=self.min_distance,
            column_sum_min=int(sums.min()),
            column_sum_max=int(sums.max()),
            codewords=[_bits(w) for w in self.codewords],
            content_hash=self.content_hash,
        )
        return out

    @classmethod
    def from_dict(cls, entry: Any, source: str = "scheme") -> CodingScheme:
        """Parse one entry; the stated properties, when present, must match the codewords."""
        if not isinstance(entry, dict):
            raise CodingSchemeError(f"{source}: expected a JSON object with 'codewords', got {type(entry).__name__}")
        words = entry.get("codewords")
        if not isinstance(words, list) or not words or not all(isinstance(w, str) for w in words):
            raise CodingSchemeError(f"{source}: 'codewords' must be a non-empty list of strings of 0/1")
        lengths = {len(w) for w in words}
        if len(lengths) != 1:
            raise CodingSchemeError(
                f"{source}: all codewords must have the same length, found lengths {sorted(lengths)}"
            )
        bad = next((w for w in words if set(w) - {"0", "1"}), None)
        if bad is not None:
            raise CodingSchemeError(f"{source}: codeword {bad!r} contains characters other than 0 and 1")
        matrix = np.array([[c == "1" for c in w] for w in words], dtype=np.bool_)
        name = entry.get("name")
        try:
            scheme = cls(matrix, name=str(name) if name is not None else None)
        except CodingSchemeError as err:
            raise CodingSchemeError(f"{source}: {err}") from None
        stated = {
            "num_classes": scheme.num_classes,
            "num_branches": scheme.num_branches,
            "num_active": scheme.num_active,
            "min_hamming_distance": scheme.min_distance,
            "column_sum_min": int(scheme.column_sums.min()),
            "column_sum_max": int(scheme.column_sums.max()),
        }
        for key, actual in stated.items():
            if key in entry and entry[key] != actual:
                raise CodingSchemeError(
                    f"{source}: '{key}' says {entry[key]} but the codewords give {actual}; fix or drop the field"
                )
        return scheme

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> CodingScheme:
        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise CodingSchemeError(f"{path}: no such file") from None
        except (IsADirectoryError, PermissionError, UnicodeDecodeError) as err:
            raise CodingSchemeError(f"{path}: cannot read a scheme ({err.__class__.__name__})") from None
        try:
            entry = json.loads(text)
        except json.JSONDecodeError as err:
            raise CodingSchemeError(
                f"{path}: malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}"
            ) from None
        return cls.from_dict(entry, source=str(path))

    # ---- use in a model ---------------------------------------------------------------------
    def check_compatible(self, num_classes: int, num_branches: int, where: str = "block") -> None:
        """One-line error when this scheme cannot drive a block with these shapes."""
        if self.num_classes != num_classes:
            raise CodingSchemeError(
                f"{where}: scheme {self.name or self.content_hash} has {self.num_classes} codewords but the "
                f"model has {num_classes} classes; use a scheme with one codeword per class"
            )
        if self.num_branches != num_branches:
            raise CodingSchemeError(
                f"{where}: scheme {self.name or self.content_hash} has codewords of length "
                f"{self.num_branches} but the block has {num_branches} branches"
            )


def _bits(word: np.ndarray) -> str:
    return "".join("1" if b else "0" for b in word)
