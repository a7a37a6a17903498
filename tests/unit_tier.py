"""The unit tier: what a test marked ``unit`` runs under, and what it may not do.

``pytest -m unit`` is the developer's inner loop (README, "Developing"): the library, config and
search-space tests in under a minute, with no Ray cluster, no MLflow store and no training loop. While a
unit test runs (its fixtures' set-up and teardown included):

- ``ray.init`` and the creation of an MLflow tracking or model-registry store raise
  :class:`UnitTierError`, so a unit test that starts to need them fails at once instead of slowly turning
  the inner loop into the whole suite. Neither library has to be imported for this: a module the test
  imports for the first time is patched as soon as it has loaded.
- torch computes on one intra-op thread. Unit tests use tiny tensors, and on a 2-core machine shared with
  other jobs torch's default thread pool spins against them: ``time .venv/bin/python -m pytest -m unit -q
  -p no:cacheprovider`` measured 102 s of CPU (5 min 11 s) with torch's default threads and 26 s of CPU
  with one, run back to back at load averages of 6 to 14.

Everything is undone when the test ends, so the other tiers see the real functions and thread count.
``tests/conftest.py`` wires it in; ``tests/test_unit_tier.py`` checks it in a fresh pytest process.
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest

UNIT_MARKER = "unit"
NOT_UNIT_MARKERS = ("slow", "ray")  # a test marked with one of these is outside the unit tier by definition


class UnitTierError(RuntimeError):
    """A test marked ``unit`` did what the unit tier excludes."""


def _refusal(what: str) -> Callable[..., None]:
    def refuse(*args, **kwargs) -> None:
        raise UnitTierError(
            f"a test marked {UNIT_MARKER} {what}; the unit tier runs without Ray and MLflow: "
            f"drop its {UNIT_MARKER} marker (and mark it slow or ray if it is)"
        )

    return refuse


def _patch_ray(ray: ModuleType, mp: pytest.MonkeyPatch) -> None:
    # ray/__init__ binds ``init`` from ray._private.worker, and Ray's own auto-init calls ray.init(): both names
    mp.setattr(ray, "init", _refusal("started Ray (ray.init)"))
    mp.setattr(sys.modules["ray._private.worker"], "init", _refusal("started Ray (ray._private.worker.init)"))


def _patch_store_registry(class_name: str) -> Callable[[ModuleType, pytest.MonkeyPatch], None]:
    def patch(module: ModuleType, mp: pytest.MonkeyPatch) -> None:
        # get_store, not the builder: a store built earlier is cached behind get_store and must be refused too
        mp.setattr(getattr(module, class_name), "get_store", _refusal(f"opened an MLflow store ({class_name})"))

    return patch


# module -> what to patch in it once it has loaded. "ray" rather than ray._private.worker: patching the
# worker while ray/__init__ is still running would leave ray.init bound to the refusal for good.
PATCHES: dict[str, Callable[[ModuleType, pytest.MonkeyPatch], None]] = {
    "ray": _patch_ray,
    "mlflow.tracking._tracking_service.registry": _patch_store_registry("TrackingStoreRegistry"),
    "mlflow.tracking._model_registry.registry": _patch_store_registry("ModelRegistryStoreRegistry"),
}

_active = False


def active() -> bool:
    """Whether the guard is on (a unit test is running)."""
    return _active


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Lets the other finders find a watched module and patches it right after it has executed."""

    def __init__(self, pending: dict[str, Callable[[ModuleType, pytest.MonkeyPatch], None]], mp: pytest.MonkeyPatch):
        self.pending, self.mp = pending, mp

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None):
        patch = self.pending.pop(fullname, None)
        if patch is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader, mp = spec.loader, self.mp
        exec_module = loader.exec_module

        def exec_then_patch(module: ModuleType) -> None:
            exec_module(module)
            patch(module, mp)

        loader.exec_module = exec_then_patch  # this spec's own loader instance, made for this one import
        return spec


@contextmanager
def refusing_ray_and_mlflow() -> Iterator[None]:
    """Within: ray.init and MLflow store creation raise UnitTierError."""
    global _active
    mp = pytest.MonkeyPatch()
    pending = {}
    for name, patch in PATCHES.items():
        module = sys.modules.get(name)
        if module is not None:
            patch(module, mp)
        else:
            pending[name] = patch
    finder = _PatchOnImport(pending, mp)
    sys.meta_path.insert(0, finder)
    _active = True
    try:
        yield
    finally:
        _active = False
        sys.meta_path.remove(finder)
        mp.undo()


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    torch = sys.modules.get("torch")  # tests/conftest.py imports it; a session without torch has nothing to set
    if torch is None:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def check_markers(items: Sequence[pytest.Item]) -> None:
    """A test cannot be unit and slow (or ray): the tier would silently grow past its minute."""
    clashes = [
        item.nodeid
        for item in items
        if item.get_closest_marker(UNIT_MARKER) and any(item.get_closest_marker(m) for m in NOT_UNIT_MARKERS)
    ]
    if clashes:
        raise pytest.UsageError(
            f"marked {UNIT_MARKER} and also {' or '.join(NOT_UNIT_MARKERS)} (mark such tests one by one, not by "
            f"module): {', '.join(clashes)}"
        )


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Under exactly ``-m unit``, a test module whose source never says ``mark.unit`` holds no unit test, so
    it is not imported at all: about 2 s of CPU (Ray Tune and the CLI's imports) off every inner loop."""
    if config.option.markexpr != UNIT_MARKER or not collection_path.is_file():
        return None
    if not (collection_path.name.startswith("test_") and collection_path.suffix == ".py"):
        return None
    return f"mark.{UNIT_MARKER}" not in collection_path.read_text(encoding="utf-8") or None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    """Set-up, call and teardown of a unit test run with Ray and MLflow stores refused."""
    if item.get_closest_marker(UNIT_MARKER) is None:
        return (yield)
    with refusing_ray_and_mlflow(), _one_torch_thread():
        return (yield)
