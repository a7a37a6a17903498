"""The driver: which distances to try, how hard (in counts), and the one call that does it.

For each distance level it runs a portfolio: the lexicode pool when C(N, A) is small, seeded
local-search restarts with doubling move limits, balance repair of a valid but skewed scheme, and
the pool as a fallback when the local search does not meet the distance. ``min_distance=None`` climbs
D = 2, 4, ... with a fixed effort per level and keeps the last level met with the target spread.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from coded_resnext.coding.generator.bounds import best_spread, max_distance_bound, validate_request
from coded_resnext.coding.generator.clock import Deadline, OutOfTime, now
from coded_resnext.coding.generator.lexicode import SELECTION_POOL_CAP, lexicode, select_balanced, to_matrix
from coded_resnext.coding.generator.local_search import LocalSearch
from coded_resnext.coding.scheme import CodingScheme, CodingSchemeError

# Enumerate all C(N, A) words and build the lexicode pool before the local search when there are at
# most this many (cheap: about a second at the limit) ...
POOL_ENUMERATION_LIMIT = 1_000_000
# ... and as a fallback when the local search does not meet the distance, up to this many (C(32, 8) =
# 10.5 M words take about 15 s; the uint64 words take 8 bytes each).
POOL_FALLBACK_LIMIT = 1 << 24
# Local-search moves in the first restart: _BASE_STEPS + _STEPS_PER_CLASS * K, doubling per restart.
_BASE_STEPS = 2_000
_STEPS_PER_CLASS = 20
_MAX_DOUBLINGS = 5
# With target_spread=None, once the distance is met, this many further restarts try for the target.
_BALANCE_PATIENCE = 2
_PROGRESS_EVERY = 3.0  # seconds between progress lines (output only: never read by the search)
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Effort:
    """How hard one distance level is tried, in counts, never seconds."""

    restarts: int | None  # local-search restarts after the first; None: until found (or out of time)
    fallback_pool: bool  # build the lexicode pool of up to POOL_FALLBACK_LIMIT words if the search fails
    repair_share: int  # a balance-repair restart gets 1/repair_share of a fresh restart's moves


# A requested distance: search until found; only the time budget ends a search that does not find it.
EXPLICIT_EFFORT = Effort(restarts=None, fallback_pool=True, repair_share=1)
# min_distance=None: each level D = 2, 4, ... gets two restarts; the climb stops at the first level
# they do not solve. No fallback pool (building it costs more than a level is worth), and repair
# restarts get 1/16 of the moves (a repair move scans every word that can make it: ~100x a
# local-search move). It reaches the paper's distances with perfectly balanced columns where the
# paper's columns spread by 2: D = 10 on (1000, 32, 16) and D = 6 on (1000, 32, 8) (the paper's D = 8
# variant has column sums 162..297), the same schemes a 20 s budget gave before, in 11-16 s on 2 busy
# cores; the last, unmet level costs most of that.
CLIMB_EFFORT = Effort(restarts=1, fallback_pool=False, repair_share=16)


@dataclass(frozen=True)
class GeneratorResult:
    """A generated scheme and how it was found."""

    scheme: CodingScheme
    seconds: float
    attempts: int  # lexicode selections + local-search restarts, over all distances tried
    steps: int  # local-search moves and selection swaps
    method: str  # what produced the words: "lexicode" or "local-search", "+repair" if then rebalanced
    requested_distance: int | None  # as asked (None: the largest found)
    target_spread: int  # the column spread searched for
    reached_target: bool  # column_spread <= target_spread


@dataclass
class _Found:
    rows: np.ndarray  # (K, N) rows of the reduced problem (weight min(A, N-A))
    spread: int
    method: str


def _step_limit(k: int, restart: int) -> int:
    return (_BASE_STEPS + _STEPS_PER_CLASS * k) << min(restart, _MAX_DOUBLINGS)


class _Search:
    """One generate call: the per-distance portfolio, statistics and progress lines."""

    def __init__(
        self,
        k: int,
        n: int,
        w: int,
        *,
        seed: int,
        target: int,
        soft_target: bool,
        deadline: Deadline,
    ) -> None:
        self.k, self.n, self.w = k, n, w
        self.seed, self.target, self.soft_target = seed, target, soft_target
        self.deadline = deadline
        self.attempts = 0
        self.steps = 0
        self.last_report = now()

    def say(self, message: str) -> None:
        """A progress line (``logger.info``), with the seconds since the search began."""
        logger.info("[%6.1fs] %s", self.deadline.elapsed(), message)
        self.last_report = now()

    def _reporter(self, distance: int, restart: int, search: LocalSearch) -> Callable[[], None]:
        def report() -> None:
            if logger.isEnabledFor(logging.INFO) and now() - self.last_report >= _PROGRESS_EVERY:
                spread = int(search.sums.max() - search.sums.min())
                self.say(
                    f"D>={distance} spread<={self.target}: restart {restart}, {search.steps} moves, "
                    f"excess overlap {search.pair_cost}, spread {spread}"
                )

        return report

    def _pool(self, distance: int) -> _Found | None:
        """Algorithm 1's lexicode, then the most balanced K of its words; None if it is too small."""
        self.attempts += 1
        pool = lexicode(self.n, self.w, distance, 4 * self.k + 1024, self.deadline)
        if pool.size < self.k:
            self.say(f"D>={distance}: lexicode pool has only {pool.size} < {self.k} words")
            return None
        rng = np.random.default_rng([self.seed, distance, 0])
        if pool.size > SELECTION_POOL_CAP:
            pool = np.sort(rng.choice(pool, SELECTION_POOL_CAP, replace=False))
        matrix = to_matrix(pool, self.n)[:, rng.permutation(self.n)]
        selection = select_balanced(matrix, self.k, self.target, rng, _step_limit(self.k, 0), self.deadline)
        self.steps += selection.swaps
        rows = matrix[selection.chosen]
        sums = rows.sum(axis=0)
        found = _Found(rows, int(sums.max() - sums.min()), "lexicode")
        self.say(f"D>={distance}: lexicode pool of {pool.size} words, best selection spread {found.spread}")
        return found

    def level(self, distance: int, effort: Effort) -> _Found | None:
        """Best scheme for one distance: spread <= target if found, else (soft target) the smallest
        spread seen among schemes meeting the distance, else None."""
        k, n, w = self.k, self.n, self.w
        enumerable = n <= 64 and math.comb(n, w) <= POOL_FALLBACK_LIMIT
        pool_tried = False
        found: _Found | None = None

        def consider(candidate: _Found | None) -> None:
            nonlocal found
            if candidate is not None and (found is None or candidate.spread < found.spread):
                found = candidate

        if enumerable and math.comb(n, w) <= POOL_ENUMERATION_LIMIT:
            pool_tried = True
            consider(self._pool(distance))
            if found is not None and found.spread <= self.target:
                return found

        restart, met_at = 0, None
        fresh_meets = True  # False once a fresh local search has failed to meet the distance
        while effort.restarts is None or restart <= effort.restarts:
            rng = np.random.default_rng([self.seed, distance, 1, restart])
            search = LocalSearch(k, n, w, distance, self.target, rng)
            repair = found is not None and (restart % 2 == 1 or not fresh_meets)
            steps = _step_limit(k, restart)
            if repair:  # balance repair of the best valid scheme: moves may not break the distance
                search.repair(found.rows)
                steps = max(1, steps // effort.repair_share)
            else:
                search.construct()
            self.attempts += 1
            status = search.run(steps, self.deadline, self._reporter(distance, restart, search))
            self.steps += search.steps
            if not repair and search.best_feasible is None:
                fresh_meets = False
            if search.best_feasible is not None:
                sums = search.best_feasible.sum(axis=0)
                method = "local-search"
                if repair:
                    method = found.method if found.method.endswith("+repair") else f"{found.method}+repair"
                consider(_Found(search.best_feasible, int(sums.max() - sums.min()), method))
            if status == "solved":
                return found
            if found is None and enumerable and not pool_tried and effort.fallback_pool:
                pool_tried = True
                self.say(f"D>={distance}: local search has not met the distance; building the lexicode pool")
                consider(self._pool(distance))
                if found is not None and found.spread <= self.target:
                    return found
            if found is not None:
                if met_at is None:
                    met_at = restart
                    self.say(f"D>={distance} met with spread {found.spread}; searching for spread {self.target}")
                if self.soft_target and restart - met_at >= _BALANCE_PATIENCE:
                    return found
            restart += 1
        return found

    def climb(self) -> tuple[_Found | None, int]:
        """min_distance=None: levels D = 2, 4, ... up to the bound, each with :data:`CLIMB_EFFORT`;
        the last level met with the target spread (or, failing even that at D = 2, what D = 2 gave)."""
        found, reached = None, 0
        for level in range(2, max_distance_bound(self.k, self.n, self.w) + 1, 2):
            result = self.level(level, CLIMB_EFFORT)
            if result is None or result.spread > self.target:
                if found is None and result is not None:  # keep something that meets D=2 at least
                    found, reached = result, level
                break
            found, reached = result, level
            self.say(f"D>={level} reached with spread {result.spread}")
        return found, reached


def search_scheme(
    num_classes: int,
    num_branches: int,
    num_active: int,
    min_distance: int | None = None,
    *,
    seed: int = 0,
    time_budget: float = 120.0,
    target_spread: int | None = None,
) -> GeneratorResult:
    """Like :func:`generate_scheme`, with statistics about the search."""
    deadline = Deadline(time_budget)
    distance = validate_request(num_classes, num_branches, num_active, min_distance, seed, time_budget, target_spread)
    k, n = int(num_classes), int(num_branches)
    w = min(int(num_active), n - int(num_active))
    target = best_spread(k, n, w) if target_spread is None else int(target_spread)
    search = _Search(
        k,
        n,
        w,
        seed=int(seed),
        target=target,
        soft_target=target_spread is None,
        deadline=deadline,
    )
    try:
        if distance is None:
            found, reached = search.climb()
        else:
            found, reached = search.level(distance, EXPLICIT_EFFORT), distance
    except OutOfTime:
        raise CodingSchemeError(_out_of_time(min_distance, target_spread, time_budget)) from None
    if found is None:  # only a climb ends without a scheme: an explicit distance searches until out of time
        raise CodingSchemeError(
            f"no scheme with {num_classes} codewords found even at min distance 2; try another seed"
        )
    if found.spread > target:
        if target_spread is not None:
            raise CodingSchemeError(
                f"found min distance >= {reached} but no column spread <= {target} (best {found.spread}); "
                "try a larger --target-spread, a --min-distance or another seed"
            )
        search.say(f"column spread {target} not reached; returning the best found, spread {found.spread}")

    rows = found.rows.astype(np.bool_)
    if w != num_active:  # words with A > N/2 were searched as their weight N-A complements
        rows = ~rows
    scheme = CodingScheme(rows, name=f"generated:K{k}-N{n}-A{num_active}-D{reached}-seed{seed}")
    return GeneratorResult(
        scheme=scheme,
        seconds=deadline.elapsed(),
        attempts=search.attempts,
        steps=search.steps,
        method=found.method,
        requested_distance=None if min_distance is None else int(min_distance),
        target_spread=target,
        reached_target=scheme.column_spread <= target,
    )


def _out_of_time(min_distance: int | None, target_spread: int | None, time_budget: float) -> str:
    if min_distance is None:
        return (
            f"the search for the largest min distance did not finish within {time_budget:g} s; give a larger "
            "--time-budget (it changes only whether the search finishes, never the scheme) or a --min-distance"
        )
    spread = "" if target_spread is None else f" and column spread <= {target_spread}"
    return (
        f"no scheme with min distance >= {min_distance}{spread} found within {time_budget:g} s; try a smaller "
        "--min-distance, a larger --time-budget or another seed"
    )


def generate_scheme(
    num_classes: int,
    num_branches: int,
    num_active: int,
    min_distance: int | None = None,
    *,
    seed: int = 0,
    time_budget: float = 120.0,
    target_spread: int | None = None,
) -> CodingScheme:
    """A coding scheme with ``num_classes`` codewords of ``num_active`` ones over ``num_branches``.

    Rules (paper section 3): (A) equal weight, distinct; (B) min pairwise Hamming distance >=
    ``min_distance`` (odd values mean the next even one; None: the largest distance that a fixed,
    counted effort per level reaches, trying D = 2, 4, ... up to :func:`max_distance_bound`); (C)
    column spread <= ``target_spread`` (None: aim for :func:`best_spread` and, if that is not reached,
    return the most balanced scheme found that meets the distance, saying so in a progress line (``logging``);
    an explicit target is a requirement).

    The scheme is a function of (classes, branches, active, min_distance, target_spread, seed): the
    same on any machine and under any load. ``time_budget`` (seconds) only decides when to give up, with a :class:`CodingSchemeError` (one line), as for impossible requests.
    """
    return search_scheme(
        num_classes,
        num_branches,
        num_active,
        min_distance,
        seed=seed,
        time_budget=time_budget,
        target_spread=target_spread,
    ).scheme
