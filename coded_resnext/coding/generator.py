"""Generate coding schemes: K weight-A codewords over N branches, pairwise >= D apart, balanced columns.

The paper (arXiv 2202.05343, Algorithm 1) walks all C(N, A) weight-A words in lexicographic order,
keeps a word when it is >= D away from every kept word (rule B), then picks K of the kept words
with column sums as equal as possible (rule C). That is slow in pure Python (C(32, 16) = 6e8 words)
and fails whenever the kept words cannot be balanced: its pool is one fixed set of words.

This generator does better in four ways:

* **Lexicode pool + balanced selection** (when C(N, A) is small enough to enumerate). Algorithm 1's
  greedy pass is kept -- lexicographic greedy codes ("lexicodes") are remarkably large, e.g. the
  optimal 130 words for (N=20, A=8, D=8) and a Steiner quadruple system (1240 words) for (32, 4, 4),
  where random greedy codes reach only about 46 and 970 -- but it runs vectorised on bitmasks
  (popcount of XOR, seconds for C(32, 8) = 1e7 words), and the K words are then chosen by a tabu
  swap search on the column sums instead of a one-shot pick.
* **Min-conflicts local search** over K words at once. Each move takes a 1 out of one column of
  one codeword and puts it into another column, scored by the change in (pairs closer than D) +
  (columns outside the target window). Only words already at the overlap limit can become
  conflicts, so a move is evaluated on a handful of rows; a tabu list and restarts keep it from
  cycling. It never enumerates C(N, A), so (1000, 32, 16, 10) -- over an hour for Algorithm 1 --
  takes a few seconds, with perfectly balanced columns.
* **Balance repair**: when a scheme meets the distance but not the spread (e.g. a lexicode whose
  columns are skewed), the same moves, restricted to those that keep every pair >= D apart and
  accepted with a Metropolis rule on the column cost, even out the columns.
* **Targets instead of hopes**: rule C is searched for (spread 0 when K*A/N is an integer, else 1)
  rather than taken from whatever the greedy pass left, and words with A > N/2 are handled as the
  complements of weight N-A words (same distances, same spread), which halves the search space.

Every decision uses counts and seeded random numbers, never the clock: for given inputs and seed
the result is always the same. The time budget only decides when to give up (and, when giving up
on the balance target with ``target_spread=None``, which best-so-far scheme is returned).

Distances between words of equal weight are always even, so a requested odd ``min_distance`` D is
the same request as D + 1 and is treated as such.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np

from coded_resnext.coding.scheme import CodingScheme, CodingSchemeError

__all__ = [
    "GeneratorResult",
    "best_spread",
    "generate_scheme",
    "max_distance_bound",
    "search_scheme",
]

# Enumerate all C(N, A) words and build the lexicode pool before the local search when there are at
# most this many (cheap: about a second at the limit) ...
POOL_ENUMERATION_LIMIT = 1_000_000
# ... and as a fallback when the local search does not meet the distance, up to this many (C(32, 8) =
# 10.5 M words take about 15 s; the uint64 words take 8 bytes each).
POOL_FALLBACK_LIMIT = 1 << 24
# The greedy pass stops after 4 K + 1024 words (each costs one pass over the remaining words: the
# pool matters for tight requests, where it is not much larger than K), and the balanced selection
# works on at most _SELECTION_POOL_CAP of them (a seeded sample).
_SELECTION_POOL_CAP = 4096
_SELECTION_STALL = 500  # give up the selection after this many swaps without a new best
# Local-search moves in the first restart: _BASE_STEPS + _STEPS_PER_CLASS * K, doubling per restart.
_BASE_STEPS = 2_000
_STEPS_PER_CLASS = 20
_MAX_DOUBLINGS = 5
# With min_distance=None, each candidate distance gets this many local-search restarts.
_RESTARTS_PER_LEVEL = 2
# With target_spread=None, once the distance is met, this many further restarts try for the target.
_BALANCE_PATIENCE = 2
_PROGRESS_EVERY = 3.0  # seconds between progress lines
# Balance repair of a valid scheme accepts a move that worsens the column cost by c with
# probability exp(-c / T) (moves that break the distance are never taken).
_REPAIR_TEMPERATURE = 0.5
_BIG = 1 << 30


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


def best_spread(num_classes: int, num_branches: int, num_active: int) -> int:
    """Smallest possible column spread (rule C): 0 when K*A/N is an integer, else 1."""
    return 0 if (num_classes * num_active) % num_branches == 0 else 1


@cache
def _constant_weight_bound(n: int, delta: int, w: int) -> int:
    """Upper bound on A(n, 2*delta, w), the size of a weight-w code of length n with distance >= 2*delta.

    Johnson's recursive bounds A(n,2d,w) <= floor(n/w * A(n-1,2d,w-1)) and
    <= floor(n/(n-w) * A(n-1,2d,w)), the Johnson bound floor(d*n / (w^2 - w*n + d*n)) and C(n, w).
    """
    w = min(w, n - w)
    if w <= 0:
        return 1
    if delta <= 1:
        return math.comb(n, w)
    if w < delta:  # any two distinct weight-w words are at most 2w < 2*delta apart
        return 1
    if w == delta:  # supports must be disjoint
        return n // w
    bound = min(
        math.comb(n, w),
        n * _constant_weight_bound(n - 1, delta, w - 1) // w,
        n * _constant_weight_bound(n - 1, delta, w) // (n - w),
    )
    denominator = w * w - w * n + delta * n
    if denominator > 0:
        bound = min(bound, delta * n // denominator)
    return bound


def max_distance_bound(num_classes: int, num_branches: int, num_active: int) -> int:
    """Upper bound on the minimum distance any scheme with these shapes can have (rule B).

    The largest even D <= 2*min(A, N-A) for which the Johnson-type bounds on constant-weight codes
    still allow ``num_classes`` codewords. Not always achieved, but no scheme can beat it.
    """
    _validate_shape(num_classes, num_branches, num_active)
    n, w = num_branches, min(num_active, num_branches - num_active)
    for distance in range(2 * w, 0, -2):
        if _constant_weight_bound(n, distance // 2, w) >= num_classes:
            return distance
    raise AssertionError("unreachable: distance 2 allows C(N, A) >= K words")  # pragma: no cover


def _validate_shape(num_classes: int, num_branches: int, num_active: int) -> None:
    for label, value in (("classes", num_classes), ("branches", num_branches), ("active", num_active)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise CodingSchemeError(f"number of {label} must be an integer, got {value!r}")
    if num_classes < 2:
        raise CodingSchemeError(f"a coding scheme needs at least 2 classes, got {num_classes}")
    if num_branches < 2:
        raise CodingSchemeError(f"a coding scheme needs at least 2 branches, got {num_branches}")
    if not 1 <= num_active < num_branches:
        raise CodingSchemeError(
            f"active branches per codeword must satisfy 1 <= active < {num_branches} (branches), got {num_active}"
        )
    words = math.comb(num_branches, num_active)
    if num_classes > words:
        raise CodingSchemeError(
            f"{num_classes} classes need distinct codewords but only C({num_branches},{num_active})={words} "
            f"words of weight {num_active} exist over {num_branches} branches; use more branches or a "
            "different active count"
        )


def _validate_request(
    num_classes: int,
    num_branches: int,
    num_active: int,
    min_distance: int | None,
    seed: int,
    time_budget: float,
    target_spread: int | None,
) -> int | None:
    """Check everything up front; return the effective (even) distance or None."""
    _validate_shape(num_classes, num_branches, num_active)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise CodingSchemeError(f"seed must be a non-negative integer, got {seed!r}")
    if not (isinstance(time_budget, (int, float)) and math.isfinite(time_budget) and time_budget > 0):
        raise CodingSchemeError(f"time budget must be a positive number of seconds, got {time_budget!r}")
    if target_spread is not None:
        if isinstance(target_spread, bool) or not isinstance(target_spread, (int, np.integer)):
            raise CodingSchemeError(f"target spread must be an integer, got {target_spread!r}")
        lowest = best_spread(num_classes, num_branches, num_active)
        if target_spread < lowest:
            raise CodingSchemeError(
                f"target spread {target_spread} is impossible: {num_classes} classes x {num_active} active "
                f"over {num_branches} branches give column spread >= {lowest}; use a target >= {lowest}"
            )
    if min_distance is None:
        return None
    if isinstance(min_distance, bool) or not isinstance(min_distance, (int, np.integer)):
        raise CodingSchemeError(f"min distance must be an integer, got {min_distance!r}")
    if min_distance < 1:
        raise CodingSchemeError(f"min distance must be >= 1 (distinct codewords), got {min_distance}")
    distance = int(min_distance) + int(min_distance) % 2
    ceiling = 2 * min(num_active, num_branches - num_active)
    if distance > ceiling:
        raise CodingSchemeError(
            f"min distance {min_distance} is impossible: two words with {num_active} of {num_branches} "
            f"branches active differ in at most {ceiling} places; use a min distance <= {ceiling}"
        )
    bound = max_distance_bound(num_classes, num_branches, num_active)
    if distance > bound:
        capacity = _constant_weight_bound(num_branches, distance // 2, num_active)
        raise CodingSchemeError(
            f"min distance {min_distance} is impossible for {num_classes} classes: at most {capacity} "
            f"words of weight {num_active} over {num_branches} branches are pairwise >= {distance} apart "
            f"(Johnson bound); use a min distance <= {bound}"
        )
    return distance


# ---- lexicode pool ---------------------------------------------------------------------------------
def _word_dtype(n: int) -> type[np.unsignedinteger]:
    return np.uint32 if n <= 32 else np.uint64  # half the memory traffic when it fits


def _all_words(n: int, w: int) -> np.ndarray:
    """All weight-w words over n <= 64 bits as increasing bitmasks (bit j = branch j)."""
    dtype = _word_dtype(n)
    table = [np.zeros(1, dtype)] + [np.zeros(0, dtype)] * w
    for b in range(n):
        bit = dtype(1 << b)
        table = [table[0]] + [np.concatenate([table[k], table[k - 1] | bit]) for k in range(1, w + 1)]
    return table[w]


def _lexicode(n: int, w: int, distance: int, cap: int, deadline: float = math.inf) -> np.ndarray | None:
    """Algorithm 1's greedy pass, vectorised: keep each word >= distance from all kept ones.

    Each kept word removes its too-close neighbours from the remaining words in one popcount(XOR)
    pass. Stops after ``cap`` words (a valid, if less balanced, code); None if the deadline passes
    first.
    """
    alive = _all_words(n, w)
    if distance <= 2:  # every word is kept
        return alive
    kept = []
    while alive.size and len(kept) < cap:
        word = alive[0]
        kept.append(word)
        alive = alive[np.bitwise_count(alive ^ word) >= distance]
        if len(kept) % 16 == 0 and time.monotonic() > deadline:
            return None
    return np.array(kept, alive.dtype)


def _to_matrix(words: np.ndarray, n: int) -> np.ndarray:
    one = words.dtype.type(1)
    return ((words[:, None] >> np.arange(n, dtype=words.dtype)) & one).astype(np.int8)


def _select_balanced(
    pool: np.ndarray, k: int, target: int, rng: np.random.Generator, max_swaps: int, deadline: float
) -> tuple[np.ndarray, int]:
    """Choose k rows of ``pool`` with column spread <= target (or as close as found): rule C.

    Greedy start (each pick uses the least-used columns), then tabu steepest descent on the sum of
    squared column deviations, swapping one chosen row for one unchosen row per step (among the
    rows that most over- / under-use columns plus a few random ones, when there are many).
    Returns (chosen row indices of the most balanced state, swaps made).
    """
    m, n = pool.shape
    weight = int(pool[0].sum())
    mean = k * weight / n
    rows = pool.astype(np.float64)
    chosen = np.zeros(m, np.bool_)
    sums = np.zeros(n)
    for _ in range(k):
        score = rows @ sums + rng.random(m) * 0.5
        score[chosen] = np.inf
        pick = int(np.argmin(score))
        chosen[pick] = True
        sums += rows[pick]
    best_chosen, best_spread_seen = chosen.copy(), sums.max() - sums.min()
    best_energy = float(((sums - mean) ** 2).sum())
    tabu = np.zeros(m, np.int64)
    swaps = last_gain = 0
    while swaps < max_swaps and swaps - last_gain < _SELECTION_STALL and best_spread_seen > target and k < m:
        if swaps % 16 == 0 and time.monotonic() > deadline:
            break
        dev = sums - mean
        energy = float((dev**2).sum())
        ins = _candidates(np.flatnonzero(chosen), -(rows @ dev), rng)
        outs = _candidates(np.flatnonzero(~chosen), rows @ dev, rng)
        # Energy change for swapping u out and v in: 2 dev.(v - u) + |v - u|^2.
        delta = 2.0 * ((rows[outs] @ dev)[None, :] - (rows[ins] @ dev)[:, None])
        delta += 2.0 * weight - 2.0 * (rows[ins] @ rows[outs].T)
        forbidden = (tabu[ins][:, None] > swaps) | (tabu[outs][None, :] > swaps)
        forbidden &= energy + delta >= best_energy - 1e-9  # aspiration: a new best is always allowed
        delta[forbidden] = np.inf
        delta += rng.random(delta.shape) * 1e-3  # random tie-breaking
        flat = int(np.argmin(delta))
        u, v = int(ins[flat // outs.size]), int(outs[flat % outs.size])
        chosen[u], chosen[v] = False, True
        sums += rows[v] - rows[u]
        tenure = int(rng.integers(5, 16))
        tabu[u] = tabu[v] = swaps + tenure
        swaps += 1
        energy = float(((sums - mean) ** 2).sum())
        if energy < best_energy - 1e-9:
            best_energy, last_gain = energy, swaps
        if sums.max() - sums.min() < best_spread_seen:
            best_chosen, best_spread_seen = chosen.copy(), sums.max() - sums.min()
    return np.flatnonzero(best_chosen), swaps


def _candidates(index: np.ndarray, score: np.ndarray, rng: np.random.Generator, top: int = 96) -> np.ndarray:
    """All of ``index`` if small, else its ``top`` lowest-``score`` entries plus 32 random others."""
    if index.size <= top + 32:
        return index
    order = np.argsort(score[index], kind="stable")
    rest = rng.choice(order[top:], 32, replace=False)
    return index[np.concatenate([order[:top], rest])]


# ---- min-conflicts local search ---------------------------------------------------------------------
class _LocalSearch:
    """K weight-w rows; cost = sum over pairs of max(0, overlap - limit) + column-window excess.

    overlap(i, j) <= limit  <=>  distance(i, j) >= 2 * (w - limit), so cost 0 means rule B holds for
    the requested distance and rule C holds for the column window [lo, hi].
    """

    def __init__(self, k: int, n: int, w: int, distance: int, target: int, rng: np.random.Generator) -> None:
        self.k, self.n, self.w = k, n, w
        self.limit = w - distance // 2
        mean = k * w / n
        self.lo = max(0, math.ceil(mean) - (target + 1) // 2)
        self.hi = self.lo + target
        self.rng = rng
        self.rows = np.zeros((k, n), np.int8)
        self.sums = np.zeros(n, np.int64)
        self.steps = 0
        self.best_feasible: np.ndarray | None = None  # meets the distance, smallest spread seen
        self.best_feasible_spread = _BIG
        self.temperature: float | None = None
        self.keep_distance = False  # True: moves may not add conflicts (balance repair of a valid code)
        self.sample = 8  # words examined for a move into / out of a column outside the window

    # -- state ----------------------------------------------------------------------------------
    def construct(self) -> None:
        """Greedy start: each word takes the least-used columns (random tie-break) that keep it
        within the overlap limit of all earlier words; if it runs out, it fills up regardless."""
        rows, n, w, rng = self.rows, self.n, self.w, self.rng
        for i in range(self.k):
            overlap = np.zeros(i, np.int64)
            order = np.lexsort((rng.random(n), self.sums))
            picked: list[int] = []
            for col in order:
                grown = overlap + rows[:i, col]
                if i == 0 or grown.max() <= self.limit:
                    overlap = grown
                    picked.append(int(col))
                    if len(picked) == w:
                        break
            if len(picked) < w:
                rest = [int(c) for c in order if c not in picked]
                picked += rest[: w - len(picked)]
            rows[i, picked] = 1
            self.sums[picked] += 1
        self._init_costs()

    def load(self, rows: np.ndarray) -> None:
        self.rows[:] = rows
        self.sums = rows.sum(axis=0).astype(np.int64)
        self._init_costs()

    def _init_costs(self) -> None:
        self.rows_f = self.rows.astype(np.float32)
        gram = np.rint(self.rows_f @ self.rows_f.T).astype(np.int64)
        np.fill_diagonal(gram, -self.n - 4)
        self.excess = np.maximum(gram - self.limit, 0).sum(axis=1)  # per word
        self.pair_cost = int(self.excess.sum()) // 2
        self.col_cost = self._column_cost()
        self.tabu = np.zeros((self.k, self.n), np.int64)
        self._note_feasible()

    def _column_cost(self) -> int:
        return int(np.maximum(self.sums - self.hi, 0).sum() + np.maximum(self.lo - self.sums, 0).sum())

    def _note_feasible(self) -> None:
        if self.pair_cost == 0:
            spread = int(self.sums.max() - self.sums.min())
            if spread < self.best_feasible_spread:
                self.best_feasible_spread = spread
                self.best_feasible = self.rows.copy()

    def _overlaps(self, i: int) -> np.ndarray:
        ov = np.rint(self.rows_f @ self.rows_f[i]).astype(np.int64)
        ov[i] = -self.n - 4  # never counts as a conflict, never "near the limit"
        return ov

    # -- moves ----------------------------------------------------------------------------------
    def _move_costs(self, i: int, ov: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cost change of every move (1 out of column ins[a], into column outs[b]) for word i."""
        row = self.rows[i].astype(np.bool_)
        ins, outs = np.flatnonzero(row), np.flatnonzero(~row)
        near = np.flatnonzero(ov >= self.limit)  # only these can end up over the limit
        if near.size:
            over = ov[near] - self.limit
            sub = self.rows[near]
            after = over[:, None, None] - sub[:, ins][:, :, None] + sub[:, outs][:, None, :]
            pair = np.maximum(after, 0).sum(axis=0) - over.sum()
        else:
            pair = np.zeros((ins.size, outs.size), np.int64)
        s_in, s_out = self.sums[ins], self.sums[outs]
        d_in = np.where(s_in <= self.lo, 1, np.where(s_in > self.hi, -1, 0))
        d_out = np.where(s_out >= self.hi, 1, np.where(s_out < self.lo, -1, 0))
        column = d_in[:, None] + d_out[None, :]
        if self.keep_distance:
            return ins, outs, np.where(pair > 0, _BIG, pair + column)
        return ins, outs, pair + column

    def _masked(self, i: int, ins: np.ndarray, outs: np.ndarray, cost: np.ndarray, best: int) -> np.ndarray:
        tabu = (self.tabu[i, ins][:, None] > self.steps) | (self.tabu[i, outs][None, :] > self.steps)
        current = self.pair_cost + self.col_cost
        return np.where(tabu & (current + cost >= best), _BIG, cost)  # aspiration for a new best

    def _apply(self, i: int, a: int, b: int, ov: np.ndarray) -> None:
        rows = self.rows
        new_ov = ov - rows[:, a] + rows[:, b]
        old_ex = np.maximum(ov - self.limit, 0)
        new_ex = np.maximum(new_ov - self.limit, 0)
        change = new_ex - old_ex
        self.excess += change
        self.excess[i] = new_ex.sum()
        self.pair_cost += int(change.sum())
        rows[i, a], rows[i, b] = 0, 1
        self.rows_f[i, a], self.rows_f[i, b] = 0.0, 1.0
        self.sums[a] -= 1
        self.sums[b] += 1
        self.col_cost = self._column_cost()
        tenure = int(self.rng.integers(5, 16))
        self.tabu[i, a] = self.tabu[i, b] = self.steps + tenure
        self.steps += 1
        self._note_feasible()

    def _pick_move(self, best: int) -> tuple[float, int, int, int, np.ndarray]:
        rng = self.rng
        if self.keep_distance:
            return self._repair_move(best)
        conflicted = np.flatnonzero(self.excess > 0)
        if rng.random() * (conflicted.size + self.col_cost) < conflicted.size:
            # A word in a too-close pair: its best move (min-conflicts).
            i = int(conflicted[rng.integers(conflicted.size)])
            ov = self._overlaps(i)
            ins, outs, cost = self._move_costs(i, ov)
            cost = self._masked(i, ins, outs, cost, best)
            ties = np.flatnonzero(cost.ravel() == cost.min())
            flat = int(ties[rng.integers(ties.size)])
            return float(cost.ravel()[flat]), i, int(ins[flat // outs.size]), int(outs[flat % outs.size]), ov
        # A column outside the window: the best move into/out of it among a few words that can make it.
        bad = np.flatnonzero((self.sums > self.hi) | (self.sums < self.lo))
        col = int(bad[rng.integers(bad.size)])
        over = bool(self.sums[col] > self.hi)
        words = np.flatnonzero(self.rows[:, col] == (1 if over else 0))
        if words.size > self.sample:
            words = rng.choice(words, self.sample, replace=False)
        choice: tuple[float, int, int, int, np.ndarray] | None = None
        for i in (int(x) for x in words):
            ov = self._overlaps(i)
            ins, outs, cost = self._move_costs(i, ov)
            cost = self._masked(i, ins, outs, cost, best)
            if over:
                line = cost[int(np.flatnonzero(ins == col)[0])].astype(np.float64)
            else:
                line = cost[:, int(np.flatnonzero(outs == col)[0])].astype(np.float64)
            line += rng.random(line.size) * 0.5
            j = int(np.argmin(line))
            a, b = (col, int(outs[j])) if over else (int(ins[j]), col)
            if choice is None or line[j] < choice[0]:
                choice = (float(line[j]), i, a, b, ov)
        assert choice is not None
        return choice

    def _repair_move(self, best: int) -> tuple[float, int, int, int, np.ndarray]:
        """Balance repair (no pair is too close, and none may become so): the best move into or out
        of one column outside the window, over every word that can make it, vectorised.

        Moving a 1 of word i from column a to column b brings i one closer to exactly the words j
        with b but not a, so it is allowed unless such a j is already at the overlap limit."""
        rng, rows, rows_f = self.rng, self.rows, self.rows_f
        bad = np.flatnonzero((self.sums > self.hi) | (self.sums < self.lo))
        col = int(bad[rng.integers(bad.size)])
        over = bool(self.sums[col] > self.hi)
        words = np.flatnonzero(rows[:, col] == (1 if over else 0))
        gram = np.rint(rows_f[words] @ rows_f.T)
        gram[np.arange(words.size), words] = -1.0
        s = self.sums
        d_in = np.where(s <= self.lo, 1, np.where(s > self.hi, -1, 0))  # taking a 1 out of a column
        d_out = np.where(s >= self.hi, 1, np.where(s < self.lo, -1, 0))  # putting a 1 into a column
        if over:  # col -> b, blocked by tight j with b and without col
            tight = (gram == self.limit) & (rows[:, col] == 0)[None, :]
            blocked = (tight.astype(np.float32) @ rows_f) > 0.5
            movable = rows[words] == 0
            cost = d_in[col] + d_out[None, :]
        else:  # a -> col, blocked by tight j with col and without a
            tight = (gram == self.limit) & (rows[:, col] == 1)[None, :]
            blocked = (tight.astype(np.float32) @ (1.0 - rows_f)) > 0.5
            movable = rows[words] == 1
            cost = d_in[None, :] + d_out[col]
        cost = np.broadcast_to(cost, blocked.shape).astype(np.float64)
        tabu = (self.tabu[words] > self.steps) | (self.tabu[words, col] > self.steps)[:, None]
        tabu &= self.col_cost + cost >= best
        cost = np.where(movable & ~blocked & ~tabu, cost, float(_BIG))
        cost += rng.random(cost.shape) * 0.5  # random tie-breaking
        flat = int(np.argmin(cost))
        i, other = int(words[flat // self.n]), flat % self.n
        a, b = (col, other) if over else (other, col)
        delta = float(np.floor(cost.flat[flat]))
        return delta, i, a, b, self._overlaps(i)

    def run(self, max_steps: int, deadline: float, report: Callable[[], None]) -> str:
        """Returns "solved", "steps" (step limit reached) or "time" (deadline passed)."""
        best = self.pair_cost + self.col_cost
        stop = self.steps + max_steps
        while self.pair_cost + self.col_cost > 0:
            if self.steps >= stop:
                return "steps"
            if self.steps % 64 == 0:
                if time.monotonic() > deadline:
                    return "time"
                report()
            delta, i, a, b, ov = self._pick_move(best)
            if delta >= _BIG or (
                delta > 0 and self.temperature is not None and self.rng.random() >= math.exp(-delta / self.temperature)
            ):
                self.steps += 1
                continue
            self._apply(i, a, b, ov)
            best = min(best, self.pair_cost + self.col_cost)
        return "solved"


# ---- driver ----------------------------------------------------------------------------------------
@dataclass
class _Found:
    rows: np.ndarray  # (K, N) rows of the reduced problem (weight min(A, N-A))
    spread: int
    method: str


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
        deadline: float,
        progress: Callable[[str], None] | None,
    ) -> None:
        self.k, self.n, self.w = k, n, w
        self.seed, self.target, self.soft_target = seed, target, soft_target
        self.deadline = deadline
        self.progress = progress
        self.attempts = 0
        self.steps = 0
        self.started = time.monotonic()
        self.last_report = self.started
        self.timed_out = False

    def say(self, message: str) -> None:
        if self.progress is not None:
            self.progress(f"[{time.monotonic() - self.started:6.1f}s] {message}")
        self.last_report = time.monotonic()

    def _reporter(self, distance: int, restart: int, search: _LocalSearch) -> Callable[[], None]:
        def report() -> None:
            if self.progress is not None and time.monotonic() - self.last_report >= _PROGRESS_EVERY:
                spread = int(search.sums.max() - search.sums.min())
                self.say(
                    f"D>={distance} spread<={self.target}: restart {restart}, {search.steps} moves, "
                    f"excess overlap {search.pair_cost}, spread {spread}"
                )

        return report

    def _pool(self, distance: int) -> _Found | None:
        """Algorithm 1's lexicode, then the most balanced K of its words; None if it is too small."""
        self.attempts += 1
        pool = _lexicode(self.n, self.w, distance, 4 * self.k + 1024, self.deadline)
        if pool is None:
            self.timed_out = True
            return None
        if pool.size < self.k:
            self.say(f"D>={distance}: lexicode pool has only {pool.size} < {self.k} words")
            return None
        rng = np.random.default_rng([self.seed, distance, 0])
        if pool.size > _SELECTION_POOL_CAP:
            pool = np.sort(rng.choice(pool, _SELECTION_POOL_CAP, replace=False))
        matrix = _to_matrix(pool, self.n)[:, rng.permutation(self.n)]
        chosen, swaps = _select_balanced(matrix, self.k, self.target, rng, _step_limit(self.k, 0), self.deadline)
        self.steps += swaps
        rows = matrix[chosen]
        sums = rows.sum(axis=0)
        found = _Found(rows, int(sums.max() - sums.min()), "lexicode")
        self.say(f"D>={distance}: lexicode pool of {pool.size} words, best selection spread {found.spread}")
        return found

    def level(self, distance: int, max_restarts: int | None) -> _Found | None:
        """Best scheme for one distance: spread <= target if found, else (soft target) the smallest
        spread seen among schemes meeting the distance, else None. ``max_restarts`` None: until the
        deadline (or, with a soft target, until the balance patience runs out)."""
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
            if self.timed_out or (found is not None and found.spread <= self.target):
                return found

        restart, met_at = 0, None
        fresh_meets = True  # False once a fresh local search has failed to meet the distance
        while max_restarts is None or restart <= max_restarts:
            rng = np.random.default_rng([self.seed, distance, 1, restart])
            search = _LocalSearch(k, n, w, distance, self.target, rng)
            repair = found is not None and (restart % 2 == 1 or not fresh_meets)
            if repair:
                # Balance repair of the best valid scheme: moves may not break the distance.
                search.load(found.rows)
                search.keep_distance = True
                search.temperature = _REPAIR_TEMPERATURE
            else:
                search.construct()
            self.attempts += 1
            status = search.run(_step_limit(k, restart), self.deadline, self._reporter(distance, restart, search))
            self.steps += search.steps
            if not repair and search.best_feasible is None:
                fresh_meets = False
            if search.best_feasible is not None:
                sums = search.best_feasible.sum(axis=0)
                method = "local-search"
                if repair:
                    assert found is not None
                    method = found.method if found.method.endswith("+repair") else f"{found.method}+repair"
                consider(_Found(search.best_feasible, int(sums.max() - sums.min()), method))
            if status == "solved":
                return found
            if status == "time":
                self.timed_out = True
                return found
            if found is None and enumerable and not pool_tried:
                pool_tried = True
                self.say(f"D>={distance}: local search has not met the distance; building the lexicode pool")
                consider(self._pool(distance))
                if self.timed_out or (found is not None and found.spread <= self.target):
                    return found
            if found is not None:
                if met_at is None:
                    met_at = restart
                    self.say(f"D>={distance} met with spread {found.spread}; searching for spread {self.target}")
                if self.soft_target and restart - met_at >= _BALANCE_PATIENCE:
                    return found
            restart += 1
        return found


def _step_limit(k: int, restart: int) -> int:
    return (_BASE_STEPS + _STEPS_PER_CLASS * k) << min(restart, _MAX_DOUBLINGS)


def search_scheme(
    num_classes: int,
    num_branches: int,
    num_active: int,
    min_distance: int | None = None,
    *,
    seed: int = 0,
    time_budget: float = 120.0,
    target_spread: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> GeneratorResult:
    """Like :func:`generate_scheme`, with statistics about the search."""
    started = time.monotonic()
    distance = _validate_request(num_classes, num_branches, num_active, min_distance, seed, time_budget, target_spread)
    k, n = int(num_classes), int(num_branches)
    w = min(int(num_active), n - int(num_active))
    flipped = w != num_active
    lowest = best_spread(k, n, w)
    target = lowest if target_spread is None else int(target_spread)
    search = _Search(
        k,
        n,
        w,
        seed=int(seed),
        target=target,
        soft_target=target_spread is None,
        deadline=started + float(time_budget),
        progress=progress,
    )

    if distance is not None:
        found = search.level(distance, max_restarts=None)
        if found is None:
            raise CodingSchemeError(
                f"no scheme with min distance >= {min_distance} found within {time_budget:g} s; try a smaller "
                "--min-distance, a larger --time-budget or another seed"
            )
        reached = distance
    else:
        bound = max_distance_bound(k, n, w)
        found, reached = None, 0
        for level in range(2, bound + 1, 2):
            result = search.level(level, max_restarts=_RESTARTS_PER_LEVEL)
            if result is None or result.spread > target:
                if found is None and result is not None:  # keep something that meets D=2 at least
                    found, reached = result, level
                break
            found, reached = result, level
            search.say(f"D>={level} reached with spread {result.spread}")
            if search.timed_out:
                break
        if found is None:
            raise CodingSchemeError(
                f"no scheme found within {time_budget:g} s; try a larger --time-budget or another seed"
            )
        if search.timed_out:
            search.say(f"time budget used up; the largest distance found is {reached}")

    if found.spread > target:
        if target_spread is not None:
            raise CodingSchemeError(
                f"found min distance >= {reached} but no column spread <= {target} within {time_budget:g} s "
                f"(best {found.spread}); try a larger --target-spread, a larger --time-budget or another seed"
            )
        search.say(f"column spread {target} not reached; returning the best found, spread {found.spread}")

    rows = found.rows.astype(np.bool_)
    if flipped:
        rows = ~rows
    label = f"generated:K{k}-N{n}-A{num_active}-D{reached}-seed{seed}"
    scheme = CodingScheme(rows, name=label)
    return GeneratorResult(
        scheme=scheme,
        seconds=time.monotonic() - started,
        attempts=search.attempts,
        steps=search.steps,
        method=found.method,
        requested_distance=None if min_distance is None else int(min_distance),
        target_spread=target,
        reached_target=scheme.column_spread <= target,
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
    progress: Callable[[str], None] | None = None,
) -> CodingScheme:
    """A coding scheme with ``num_classes`` codewords of ``num_active`` ones over ``num_branches``.

    Rules (paper section 3): (A) equal weight, distinct; (B) min pairwise Hamming distance >=
    ``min_distance`` (odd values mean the next even one; None: the largest the search reaches,
    trying D = 2, 4, ... up to :func:`max_distance_bound`); (C) column spread <= ``target_spread``
    (None: aim for :func:`best_spread` and, if that is not reached, return the most balanced scheme
    found that meets the distance, saying so through ``progress``; an explicit target is a
    requirement). Same inputs and seed give the same scheme; ``time_budget`` (seconds) only decides
    when to give up. Raises :class:`CodingSchemeError` (one line) for impossible requests or when the
    distance is not met in time.
    """
    return search_scheme(
        num_classes,
        num_branches,
        num_active,
        min_distance,
        seed=seed,
        time_budget=time_budget,
        target_spread=target_spread,
        progress=progress,
    ).scheme
