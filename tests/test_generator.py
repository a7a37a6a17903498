"""Coding-scheme generator: rules A-C of the paper (arXiv 2202.05343), the published schemes it must
match, determinism (also against the clock), and one-line errors for impossible requests."""

from __future__ import annotations

import itertools
import logging
import math
from functools import cache
from itertools import combinations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from coded_resnext.coding import CodingScheme, CodingSchemeError, paper_scheme
from coded_resnext.coding.generator import (
    best_spread,
    clock,
    generate_scheme,
    max_distance_bound,
    search_scheme,
)


def assert_rules(scheme: CodingScheme, k: int, n: int, a: int, distance: int) -> None:
    """Rule A (K distinct weight-A words of length N) and rule B (min distance), checked directly."""
    words = scheme.codewords
    assert words.shape == (k, n)
    assert (words.sum(axis=1) == a).all()
    assert len({w.tobytes() for w in words}) == k
    ints = words.astype(np.int64)
    dist = a + a - 2 * (ints @ ints.T)
    np.fill_diagonal(dist, n + 1)
    assert dist.min() >= distance


@cache
def lexicode_size(n: int, a: int, distance: int) -> int:
    """Independent, plain-Python Algorithm 1 greedy pass: a lower bound on the achievable code size."""
    kept: list[int] = []
    for support in combinations(range(n), a):
        word = sum(1 << i for i in support)
        if all((word ^ other).bit_count() >= distance for other in kept):
            kept.append(word)
    return len(kept)


@st.composite
def feasible_requests(draw: st.DrawFn) -> tuple[int, int, int, int]:
    """(K, N, A, D) with N in 4..12 and D even, proven feasible by a lexicode of >= K words."""
    n = draw(st.integers(4, 12), label="N")
    a = draw(st.integers(1, n - 1), label="A")
    k = draw(st.integers(2, min(math.comb(n, a), 30)), label="K")
    feasible = [d for d in range(2, 2 * min(a, n - a) + 1, 2) if lexicode_size(n, a, d) >= k]
    distance = draw(st.sampled_from(feasible), label="D")
    return k, n, a, distance


# ---- published schemes ------------------------------------------------------------------------------
PUBLISHED_FAST = ["cifar10/5/10", "cifar10/3/10", "cifar100/8/20", "cifar100/4/20", "cifar100/12/20"]


@pytest.mark.unit
@pytest.mark.parametrize("name", PUBLISHED_FAST)
def test_published_parameters_reproduced_with_distance_at_least_published_and_perfect_balance(name: str) -> None:
    published = paper_scheme(name)
    k, n, a = published.num_classes, published.num_branches, published.num_active
    result = search_scheme(k, n, a, published.min_distance, time_budget=30)
    assert_rules(result.scheme, k, n, a, published.min_distance)
    assert result.scheme.min_distance >= published.min_distance
    assert result.scheme.column_spread == 0 == published.column_spread
    assert result.reached_target


@pytest.mark.slow
def test_imagenet_16_of_32_distance_10_reaches_perfect_balance() -> None:
    published = paper_scheme("imagenet/16/32")
    scheme = generate_scheme(1000, 32, 16, 10, time_budget=60)
    assert_rules(scheme, 1000, 32, 16, 10)
    assert scheme.column_spread == 0 < published.column_spread


@pytest.mark.unit
def test_weight_above_half_is_solved_through_complements() -> None:
    # Complements have weight 3 and must share at most one branch: a Steiner triple system on 9
    # points, which has exactly 12 blocks, each point in 4 of them.
    scheme = generate_scheme(12, 9, 6, 4)
    assert_rules(scheme, 12, 9, 6, 4)
    assert scheme.column_spread == 0


@pytest.mark.unit
def test_more_than_64_branches_uses_the_local_search() -> None:
    scheme = generate_scheme(20, 70, 5, 8)
    assert_rules(scheme, 20, 70, 5, 8)
    assert scheme.column_spread == best_spread(20, 70, 5) == 1


# ---- properties -------------------------------------------------------------------------------------
@pytest.mark.unit
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(feasible_requests(), st.integers(0, 3))
def test_feasible_small_request_meets_rules_a_and_b_and_is_deterministic(
    request: tuple[int, int, int, int], seed: int
) -> None:
    k, n, a, distance = request
    result = search_scheme(k, n, a, distance, seed=seed, time_budget=60)
    first = result.scheme
    assert_rules(first, k, n, a, distance)
    assert result.reached_target == (first.column_spread <= best_spread(k, n, a))
    assert first.min_distance <= max_distance_bound(k, n, a)
    second = generate_scheme(k, n, a, distance, seed=seed, time_budget=60)
    assert np.array_equal(first.codewords, second.codewords)


@pytest.mark.unit
@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(4, 12),
    data=st.data(),
)
def test_explicit_target_spread_is_always_met_for_distinct_words(n: int, data: st.DataObject) -> None:
    a = data.draw(st.integers(1, n - 1), label="A")
    k = data.draw(st.integers(2, min(math.comb(n, a), 30)), label="K")
    target = data.draw(st.integers(best_spread(k, n, a), 3), label="target")
    # Distinct words with column sums within 1 of each other always exist, so this must succeed.
    scheme = generate_scheme(k, n, a, 2, target_spread=target, time_budget=20)
    assert_rules(scheme, k, n, a, 2)
    assert scheme.column_spread <= target


@pytest.mark.unit
@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(4, 10),
    data=st.data(),
)
def test_unspecified_distance_returns_a_valid_scheme_within_the_bound(n: int, data: st.DataObject) -> None:
    a = data.draw(st.integers(1, n - 1), label="A")
    k = data.draw(st.integers(2, min(math.comb(n, a), 20)), label="K")
    bound = max_distance_bound(k, n, a)
    assume(bound == 2 or lexicode_size(n, a, bound) >= k)  # the top level is reachable: no wasted budget
    scheme = generate_scheme(k, n, a, None, time_budget=30)
    assert_rules(scheme, k, n, a, 2)
    assert scheme.min_distance <= bound


@pytest.mark.unit
def test_unspecified_distance_climbs_to_the_bound_when_it_is_reachable() -> None:
    assert max_distance_bound(10, 10, 5) == 4  # A(10, 6, 5) = 6 < 10
    result = search_scheme(10, 10, 5, None)
    assert result.scheme.min_distance == 4
    assert result.scheme.column_spread == 0
    assert result.requested_distance is None


@pytest.mark.unit
def test_odd_distance_is_treated_as_the_next_even_one() -> None:
    scheme = generate_scheme(10, 10, 5, 3)
    assert scheme.min_distance >= 4


@pytest.mark.unit
def test_result_depends_on_the_seed_but_not_on_the_time_budget() -> None:
    base = generate_scheme(100, 20, 4, 4, seed=5, time_budget=100)
    assert np.array_equal(base.codewords, generate_scheme(100, 20, 4, 4, seed=5, time_budget=7).codewords)
    other = generate_scheme(100, 20, 4, 4, seed=6, time_budget=100)
    assert not np.array_equal(base.codewords, other.codewords)


@pytest.mark.unit
def test_progress_is_one_line_log_messages(caplog) -> None:
    with caplog.at_level(logging.INFO, logger="coded_resnext.coding.generator"):
        generate_scheme(10, 10, 5, 4)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("coded_resnext.coding.generator")]
    assert lines
    assert all(isinstance(line, str) and "\n" not in line for line in lines)


# ---- bounds -----------------------------------------------------------------------------------------
@pytest.mark.unit
@pytest.mark.parametrize(
    ("k", "n", "a", "expected"),
    [
        (14, 8, 4, 4),  # Steiner system S(3, 4, 8): exactly 14 words
        (15, 8, 4, 2),
        (1240, 32, 4, 4),  # Steiner quadruple system on 32 points
        (1241, 32, 4, 2),
        (7, 7, 3, 4),  # Fano plane
        (8, 7, 3, 2),
        (4, 8, 2, 4),  # disjoint pairs
        (5, 8, 2, 2),
        (2, 10, 5, 10),  # a word and its complement
        (3, 10, 5, 6),
    ],
)
def test_max_distance_bound_known_values(k: int, n: int, a: int, expected: int) -> None:
    assert max_distance_bound(k, n, a) == expected


@pytest.mark.unit
@pytest.mark.parametrize("name", [*PUBLISHED_FAST, "imagenet/24/32", "imagenet/16/32", "imagenet/8/32_D8"])
def test_max_distance_bound_is_never_below_a_published_scheme(name: str) -> None:
    published = paper_scheme(name)
    k, n, a = published.num_classes, published.num_branches, published.num_active
    assert published.min_distance <= max_distance_bound(k, n, a) <= 2 * min(a, n - a)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("k", "n", "a", "expected"), [(10, 10, 5, 0), (100, 20, 8, 0), (7, 10, 3, 1), (1000, 32, 8, 0)]
)
def test_best_spread(k: int, n: int, a: int, expected: int) -> None:
    assert best_spread(k, n, a) == expected


# ---- impossible requests ----------------------------------------------------------------------------
@pytest.mark.unit
@pytest.mark.parametrize(
    ("args", "kwargs", "mentions"),
    [
        ((11, 5, 1, None), {}, "11"),  # only C(5, 1) = 5 words exist
        ((11, 5, 1, None), {}, "C(5,1)=5"),
        ((5, 4, 4, None), {}, "got 4"),  # A >= N
        ((5, 4, 0, None), {}, "got 0"),  # A < 1
        ((1, 10, 3, None), {}, "got 1"),  # K < 2
        ((10, 10, 5, 12), {}, "12"),  # D > 2 * min(A, N - A)
        ((10, 10, 5, 6), {}, "<= 4"),  # D above the Johnson bound for 10 words
        ((10, 10, 5, 0), {}, "got 0"),
        ((10, 10, 5, 4), {"seed": -1}, "-1"),
        ((10, 10, 5, 4), {"time_budget": 0}, "got 0"),
        ((7, 10, 3, 4), {"target_spread": 0}, "target spread 0"),
    ],
)
def test_impossible_request_is_a_one_line_error_naming_the_value(
    args: tuple[int, int, int, int | None], kwargs: dict, mentions: str
) -> None:
    with pytest.raises(CodingSchemeError) as info:
        generate_scheme(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert mentions in message


@pytest.mark.unit
def test_too_few_branches_is_an_error_for_the_bound_too() -> None:
    with pytest.raises(CodingSchemeError, match="C\\(5,2\\)=10"):
        max_distance_bound(11, 5, 2)


@pytest.mark.unit
def test_out_of_time_is_a_one_line_error_with_advice() -> None:
    with pytest.raises(CodingSchemeError) as info:
        generate_scheme(1000, 32, 8, 8, time_budget=0.3)
    message = str(info.value)
    assert "\n" not in message
    assert "within 0.3 s" in message and "--time-budget" in message


def test_balance_repair_evens_out_columns_without_breaking_the_distance() -> None:
    """The repair phase (private API) on a valid but skewed start: the first 1000 words of the
    (32, 4, 4) lexicode, whose early words crowd the low columns."""
    from coded_resnext.coding.generator.lexicode import lexicode, to_matrix
    from coded_resnext.coding.generator.local_search import LocalSearch

    start = to_matrix(lexicode(32, 4, 4, cap=1000), 32)
    start_spread = int(np.ptp(start.sum(axis=0)))
    search = LocalSearch(1000, 32, 4, 4, 0, np.random.default_rng(0))
    search.repair(start)
    search.run(300, clock.Deadline(math.inf), report=lambda: None)
    assert search.pair_cost == 0
    repaired = CodingScheme(search.rows)
    assert_rules(repaired, 1000, 32, 4, 4)
    assert start_spread > 100
    assert repaired.column_spread <= 2


# ---- the clock can stop the search, never change its answer ------------------------------------------
# (100, 20, 8, None) climbs D = 2..8 through lexicode pools and local searches, reading the clock about
# 190 times; (60, 16, 8, 6) meets D = 6 with spread 2 and then repairs the balance to 0, about 90 times.
# When running out of time returned the best so far, a budget ending after 5 or 150 readings gave
# D = 2 or 4 instead of 8, and one ending after 60 readings gave spread 2 instead of 0.
@pytest.mark.parametrize(
    ("request_", "stop_after"),
    [((100, 20, 8, None), (5, 150, 400)), ((60, 16, 8, 6), (10, 60, 200))],
)
def test_a_slow_clock_can_stop_the_search_but_never_change_the_scheme(
    request_: tuple[int, int, int, int | None], stop_after: tuple[int, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = generate_scheme(*request_, time_budget=600)
    outcomes = set()
    for calls in stop_after:
        ticks = itertools.count()  # every reading of the clock is one second later: the budget ends after `calls`
        monkeypatch.setattr(clock, "now", lambda ticks=ticks: float(next(ticks)))
        try:
            scheme = generate_scheme(*request_, time_budget=calls + 0.5)
        except CodingSchemeError as err:
            assert f"within {calls + 0.5:g} s" in str(err) and "\n" not in str(err)
            outcomes.add("stopped")
            continue
        assert np.array_equal(scheme.codewords, reference.codewords), f"budget ended after {calls} clock readings"
        outcomes.add("same")
    assert outcomes == {"stopped", "same"}  # the sweep reached both sides of the finishing line


@pytest.mark.unit
def test_unspecified_distance_under_a_tiny_budget_raises_instead_of_returning_a_smaller_distance() -> None:
    assert generate_scheme(100, 20, 8, None, time_budget=600).min_distance == 8
    with pytest.raises(CodingSchemeError, match=r"did not finish within 0\.001 s; give a larger --time-budget"):
        generate_scheme(100, 20, 8, None, time_budget=0.001)
