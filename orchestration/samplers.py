"""Optuna's samplers in a form Ray can carry: a sampler that pickles.

Ray pickles the searcher, and with it the sampler, when the Tuner is built and at every searcher checkpoint
(``OptunaSearch.save``). Optuna 5.1's genetic samplers (NSGA-II, NSGA-III) hold a ``threading.Lock`` around a
cache of the study's generations (``_ga/_base.py``), and a lock does not pickle: every ``algorithm: nsga2``
sweep crashed at start with "cannot pickle '_thread.lock' object". The samplers here leave their locks out
of the pickle and make new ones when unpickled; what a lock guarded is a cache that the sampler rebuilds
from the study, so nothing the search depends on is dropped (the random state pickles as before).

The subclasses keep Optuna's class names on purpose: Optuna keys a genetic sampler's study attributes by its
class name (``NSGAIISampler:generation``), so a study written by Optuna's own sampler, or by an earlier
release of this project, continues with its generations.
"""

from __future__ import annotations

import threading
from typing import Any

import optuna

_LOCK_KINDS = {type(threading.Lock()): "lock", type(threading.RLock()): "rlock"}  # a lock's type does not pickle
_MAKE_LOCK = {"lock": threading.Lock, "rlock": threading.RLock}
_DROPPED = "_pickled_without_locks"


class _PicklesWithoutLocks:
    """Pickles every attribute but the locks, and makes a new lock of the same kind for each on unpickling."""

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        dropped = {name: _LOCK_KINDS[type(value)] for name, value in state.items() if type(value) in _LOCK_KINDS}
        for name in dropped:
            del state[name]
        state[_DROPPED] = dropped
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        dropped = state.pop(_DROPPED, {})
        self.__dict__.update(state)
        for name, kind in dropped.items():
            setattr(self, name, _MAKE_LOCK[kind]())


class NSGAIISampler(_PicklesWithoutLocks, optuna.samplers.NSGAIISampler):
    """Optuna's NSGA-II sampler, picklable with any Optuna release."""


class TPESampler(_PicklesWithoutLocks, optuna.samplers.TPESampler):
    """Optuna's TPE sampler (single- and multi-objective), picklable should a release give it a lock too."""


def make_sampler(algorithm: str, *, seed: int, num_samples: int, max_concurrent: int) -> optuna.samplers.BaseSampler:
    """The sampler of ``tune.algorithm`` (``optuna``, ``motpe``: TPE; ``nsga2``: NSGA-II)."""
    if algorithm == "nsga2":
        return NSGAIISampler(seed=seed, population_size=max(4, max_concurrent))
    # optuna (TPE) and motpe (multi-objective TPE: fewer repeats than NSGA-II's crossover on small budgets)
    return TPESampler(seed=seed, n_startup_trials=min(10, max(2, num_samples // 2)))
