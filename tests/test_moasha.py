"""MO-ASHA on its own: synthetic trial results driven through the scheduler's Tune interface, no Ray cluster.

Objectives throughout: ``acc`` (max) and ``size`` (min); rungs at epochs 1, 2, 4 below max_t 8 unless said.
"""

import math
import pickle
from types import SimpleNamespace

import pytest
from ray.tune.callback import CallbackList
from ray.tune.experiment import Trial

from coded_resnext.orchestration.moasha import MultiObjectiveASHA, RungEntry, rung_milestones

OBJ = {"acc": "max", "size": "min"}
CONTINUE, STOP = "CONTINUE", "STOP"


def trial(trial_id: str, **config) -> SimpleNamespace:
    return SimpleNamespace(trial_id=trial_id, config=config)


def scheduler(**kw) -> MultiObjectiveASHA:
    return MultiObjectiveASHA(OBJ, time_attr="epoch", **{"max_t": 8, "grace_period": 1, "reduction_factor": 2, **kw})


def report(s: MultiObjectiveASHA, t, epoch: int, **values) -> str:
    return s.on_trial_result(None, t, {"epoch": epoch, **values})


def test_rungs_are_geometric_and_below_max_t():
    assert rung_milestones(1, 8, 2) == [1, 2, 4]
    assert rung_milestones(1, 4, 2) == [1, 2]
    assert rung_milestones(2, 20, 3) == [2, 6, 18]


def test_promotes_the_top_share_of_a_rung_by_non_dominated_sorting():
    s = scheduler()
    assert report(s, trial("a"), 1, acc=0.5, size=0.5) == CONTINUE  # alone at the rung
    assert report(s, trial("b"), 1, acc=0.4, size=0.6) == STOP  # dominated by a: 2nd of 2
    assert report(s, trial("c"), 1, acc=0.9, size=0.1) == CONTINUE  # dominates both: 1st of 3
    assert report(s, trial("d"), 1, acc=0.95, size=0.9) == CONTINUE  # on the front with c: 2nd at worst of 4
    assert report(s, trial("e"), 1, acc=0.3, size=0.95) == STOP  # dominated by every one: last of 5
    assert report(s, trial("a"), 2, acc=0.6, size=0.5) == CONTINUE  # the next rung starts empty
    assert report(s, trial("c"), 2, acc=0.55, size=0.6) == STOP  # now dominated by a there
    assert report(s, trial("a"), 3, acc=0.7, size=0.5) == CONTINUE  # between rungs: nothing to judge
    assert report(s, trial("a"), 8, acc=0.8, size=0.5) == STOP  # max_t: the trial's budget is spent


def test_ties_inside_a_front_go_by_hypervolume_contribution_not_crowding():
    # One front, reference (acc 0, size 1). Exclusive volumes: b 0.273, c 0.05, a 0.001. Crowding distance
    # would keep a and c (the front's two ends, infinite distance) and rank b, the middle, last.
    s = scheduler(reduction_factor=1.5, reference_point=[0.0, 1.0])  # keeps the first 2 of 3
    assert report(s, trial("b"), 1, acc=0.89, size=0.2) == CONTINUE
    assert report(s, trial("c"), 1, acc=0.5, size=0.1) == CONTINUE  # 2nd of 2 < 2 / 1.5
    assert report(s, trial("a"), 1, acc=0.9, size=0.9) == STOP  # 3rd of 3: its contribution is the smallest
    assert s.ranking(s._rungs[1.0]) == ["b", "c", "a"]


def test_the_default_reference_is_just_worse_than_the_rungs_worst_values():
    s = scheduler()
    rung = {
        "x": RungEntry((-0.9, 0.9), 0, CONTINUE),  # acc 0.9, size 0.9
        "y": RungEntry((-0.89, 0.2), 1, CONTINUE),
        "z": RungEntry((-0.5, 0.1), 2, CONTINUE),
    }
    assert s.ranking(rung) == ["y", "z", "x"]


def test_exact_duplicates_fall_back_to_arrival_order():
    s = scheduler()
    assert report(s, trial("first"), 1, acc=0.5, size=0.5) == CONTINUE
    assert report(s, trial("second"), 1, acc=0.5, size=0.5) == STOP  # same vector, arrived later


def test_a_result_missing_an_objective_defers_the_decision_to_the_next_complete_one():
    s = scheduler(grace_period=2)  # rungs 2, 4
    assert report(s, trial("a"), 2, acc=0.9, size=0.1) == CONTINUE
    assert report(s, trial("b"), 2, acc=0.1) == CONTINUE  # no size at its rung epoch: not judged yet
    assert "b" not in s._rungs[2.0]
    assert report(s, trial("b"), 3, acc=0.1, size=0.9) == STOP  # judged at rung 2 with its epoch-3 values
    assert s._rungs[2.0]["b"].costs == (-0.1, 0.9)


@pytest.mark.parametrize("missing", [None, math.nan, "n/a"])
def test_a_none_or_nan_value_ranks_as_the_worst_in_its_objective(missing):
    s = scheduler()
    assert report(s, trial("a"), 1, acc=0.5, size=0.5) == CONTINUE
    # Better accuracy but no size: on the front with a (nothing dominates it), yet it adds no volume.
    assert report(s, trial("b"), 1, acc=0.6, size=missing) == STOP
    assert s._rungs[1.0]["b"].costs == (-0.6, math.inf)


def test_exempt_trials_are_never_judged_or_recorded():
    s = scheduler(exempt_key="reference_control")
    assert report(s, trial("a"), 1, acc=0.9, size=0.1) == CONTINUE
    control = trial("control", reference_control=True)
    assert report(s, control, 1, acc=0.0, size=1.0) == CONTINUE
    assert "control" not in s._rungs[1.0]
    assert report(s, trial("b"), 1, acc=0.1, size=0.9) == STOP  # judged against a alone


def test_works_with_ray_trial_objects():
    s = scheduler()
    ray_trial = Trial("__fake", config={"x": 1}, stub=True)
    assert report(s, ray_trial, 1, acc=0.5, size=0.5) == CONTINUE
    assert ray_trial.trial_id in s._rungs[1.0]


def _filled() -> MultiObjectiveASHA:
    s = scheduler()
    report(s, trial("a"), 1, acc=0.5, size=0.5)
    report(s, trial("b"), 1, acc=0.4, size=0.6)  # stopped
    report(s, trial("a"), 2, acc=0.6, size=0.5)
    return s


def test_rung_records_survive_a_restore_through_tunes_callback_checkpoint(tmp_path):
    before = _filled()
    # What Tune does: it pickles the scheduler and the callbacks together (tuner.pkl) at the start, checkpoints
    # the callbacks' state with the experiment, and on Tuner.restore unpickles both and restores the callbacks.
    pickled_at_start = pickle.dumps((scheduler(), None))
    fresh, _ = pickle.loads(pickled_at_start)
    callbacks = CallbackList([before.state_callback()])
    callbacks.save_to_dir(str(tmp_path), session_str="s1")
    restored_list = CallbackList([fresh.state_callback()])
    assert restored_list.can_restore(str(tmp_path))
    restored_list.restore_from_dir(str(tmp_path))

    assert fresh.state_dict() == before.state_dict()
    assert report(fresh, trial("b"), 1, acc=0.99, size=0.01) == STOP  # replayed: b was stopped at rung 1
    assert report(fresh, trial("a"), 2, acc=0.0, size=1.0) == CONTINUE  # replayed: a continued at rung 2
    assert report(fresh, trial("c"), 1, acc=0.3, size=0.7) == STOP  # judged against the restored a and b
    assert report(scheduler(), trial("c"), 1, acc=0.3, size=0.7) == CONTINUE  # (without them: alone)


def test_the_state_callback_keeps_pointing_at_its_scheduler_after_unpickling():
    s = _filled()
    s2, cb2 = pickle.loads(pickle.dumps((s, s.state_callback())))
    assert cb2.scheduler is s2


def test_restoring_into_a_scheduler_with_other_rungs_is_refused():
    state = _filled().state_dict()
    with pytest.raises(ValueError, match="saved rungs"):
        scheduler(grace_period=2).load_state_dict(state)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"objectives": {"acc": "max"}}, "for one objective use ASHA"),
        ({"grace_period": 8}, "grace_period < max_t"),
        ({"reduction_factor": 1}, "reduction_factor"),
        ({"reference_point": [0.0]}, "reference_point has 1 values for 2 objectives"),
        ({"objectives": {"acc": "up", "size": "min"}}, "'max' or 'min'"),
    ],
)
def test_bad_arguments_are_one_line_errors(kwargs, message):
    args = {"objectives": OBJ, "time_attr": "epoch", "max_t": 8, **kwargs}
    objectives = args.pop("objectives")
    with pytest.raises(ValueError, match=message) as err:
        MultiObjectiveASHA(objectives, **args)
    assert "\n" not in str(err.value)


def test_tune_config_metric_is_refused_since_the_objectives_are_the_schedulers():
    s = scheduler()
    assert s.set_search_properties(None, None)
    assert not s.set_search_properties("acc", "max")


def test_the_fast_decision_is_the_full_rankings_on_random_rungs():
    # _judge finds a trial's place without ranking the whole rung (contributions only where the cut runs
    # through its front); on random rungs with ties, duplicates and missing values it must agree with ranking().
    import numpy as np

    rng = np.random.default_rng(0)
    for case in range(200):
        s = MultiObjectiveASHA(
            {"a": "max", "b": "min", "c": "min"}, time_attr="epoch", max_t=8, reduction_factor=[2, 3, 4][case % 3]
        )
        rung = s._rungs[1.0]
        for k in range(int(rng.integers(1, 40))):
            values = rng.integers(0, 4, 3).astype(float) / 4
            values[rng.random(3) < 0.03] = math.inf
            rung[f"t{k}"] = RungEntry(tuple(values), k, CONTINUE)
        order = s.ranking(rung)
        for trial_id in rung:
            assert s._in_top_share(rung, trial_id) == (order.index(trial_id) < len(order) / s._reduction_factor)
