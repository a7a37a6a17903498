"""The searchers pickle as Ray pickles them (Tuner set-up, searcher checkpoints) with the installed Optuna,
and a sampler that went through a pickle samples as the one that did not."""

import pickle
import threading
from types import SimpleNamespace

import optuna
import pytest
from packaging.version import Version
from ray import cloudpickle

from coded_resnext.orchestration.samplers import NSGAIISampler, TPESampler, make_sampler
from coded_resnext.orchestration.searcher import OPTUNA_ALGORITHMS, make_searcher

optuna.logging.set_verbosity(optuna.logging.WARNING)
OBJECTIVES = {"val/accuracy": "max", "binary/param_fraction": "min"}


def _suggestions(sampler, n: int = 12) -> list[tuple[float, int]]:
    """``n`` trials of a two-objective study, asked and told with ``sampler``."""
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    out = []
    for _ in range(n):
        trial = study.ask()
        x, k = trial.suggest_float("x", 0.0, 1.0), trial.suggest_int("k", 1, 8)
        study.tell(trial, [x * k, k])
        out.append((x, k))
    return out


@pytest.mark.parametrize("algorithm", OPTUNA_ALGORITHMS)
@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps], ids=["pickle", "cloudpickle"])
def test_a_sampler_pickles_keeps_its_random_state_and_gets_new_locks(algorithm, dumps):
    sampler = make_sampler(algorithm, seed=3, num_samples=8, max_concurrent=2)
    restored = pickle.loads(dumps(sampler))
    for name, value in vars(sampler).items():
        if isinstance(value, type(threading.Lock())):
            fresh = getattr(restored, name)
            assert isinstance(fresh, type(threading.Lock())) and fresh is not value and not fresh.locked()
    assert _suggestions(restored) == _suggestions(sampler)  # the same seed state went through the pickle


def test_optunas_own_nsga2_holds_a_lock_from_5_1_on_so_the_pickling_test_exercises_the_fix():
    # Optuna 5.1 added the lock that broke every nsga2 sweep; with such a release the test above would fail
    # on Optuna's own sampler, which this checks so that it cannot pass without exercising the fix.
    if Version(optuna.__version__) < Version("5.1"):
        return  # the floor (5.0) has no lock: the test above checks that the samplers pickle there too
    with pytest.raises(TypeError, match="lock"):
        pickle.dumps(optuna.samplers.NSGAIISampler(seed=0))


def test_samplers_keep_optunas_class_names_so_old_studies_keep_their_generations():
    assert NSGAIISampler.__name__ == "NSGAIISampler" and TPESampler.__name__ == "TPESampler"
    get_key = getattr(optuna.samplers.NSGAIISampler, "_get_generation_key", None)
    if get_key is not None:
        assert NSGAIISampler._get_generation_key() == get_key()


@pytest.mark.parametrize("algorithm", OPTUNA_ALGORITHMS)
def test_every_optuna_searcher_survives_rays_pickling(tmp_path, algorithm):
    tune = SimpleNamespace(
        algorithm=algorithm,
        seed=0,
        max_concurrent_trials=2,
        num_samples=4,
        searcher_storage=f"sqlite:///{tmp_path / 'optuna.db'}",
        multi_objective=algorithm != "optuna",
        metric="val/accuracy",
        mode="max",
    )
    searcher = make_searcher(tune, OBJECTIVES, 0, "study", "hash")
    searcher.set_search_properties(None, None, {"x": __import__("ray").tune.uniform(0, 1)})
    restored = cloudpickle.loads(cloudpickle.dumps(searcher))  # what Tuner(...) does to its search_alg
    assert restored.suggest("t1") is not None
    path = tmp_path / "searcher.pkl"
    restored.save(str(path))  # what a searcher checkpoint does (plain pickle of the searcher's state)
    assert path.stat().st_size > 0
