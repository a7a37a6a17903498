"""The lexicode pool: Algorithm 1's greedy pass on bitmasks, then a balanced choice of K of its words.

Lexicographic greedy codes ("lexicodes") are remarkably large -- the optimal 130 words for (N=20,
A=8, D=8), a Steiner quadruple system (1240 words) for (32, 4, 4), where random greedy codes reach
only about 46 and 970 -- so for requests whose C(N, A) words can be enumerated the pool is the
quickest way to meet rule B. Rule C is then searched for, by tabu swaps on the column sums, instead
of taken from a one-shot pick as in the paper.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from coded_resnext.coding.generator.clock import Deadline

# The balanced selection works on at most SELECTION_POOL_CAP pool words (a seeded sample) and gives
# up after _SELECTION_STALL swaps without a new best.
SELECTION_POOL_CAP = 4096
_SELECTION_STALL = 500
_CHECK_EVERY = 16  # deadline checks, in kept words or swaps


class Selection(NamedTuple):
    chosen: np.ndarray  # row indices into the pool of the most balanced state found
    swaps: int  # swaps made


def _word_dtype(n: int) -> type[np.unsignedinteger]:
    return np.uint32 if n <= 32 else np.uint64  # half the memory traffic when it fits


def all_words(n: int, w: int) -> np.ndarray:
    """All weight-w words over n <= 64 bits as increasing bitmasks (bit j = branch j)."""
    dtype = _word_dtype(n)
    table = [np.zeros(1, dtype)] + [np.zeros(0, dtype)] * w
    for b in range(n):
        bit = dtype(1 << b)
        table = [table[0]] + [np.concatenate([table[k], table[k - 1] | bit]) for k in range(1, w + 1)]
    return table[w]


def lexicode(n: int, w: int, distance: int, cap: int, deadline: Deadline | None = None) -> np.ndarray:
    """Algorithm 1's greedy pass, vectorised: keep each word >= distance from all kept ones.

    Each kept word removes its too-close neighbours from the remaining words in one popcount(XOR)
    pass. Stops after ``cap`` words (a valid, if less balanced, code).
    """
    alive = all_words(n, w)
    if distance <= 2:  # every word is kept
        return alive
    kept = []
    while alive.size and len(kept) < cap:
        word = alive[0]
        kept.append(word)
        alive = alive[np.bitwise_count(alive ^ word) >= distance]
        if deadline is not None and len(kept) % _CHECK_EVERY == 0:
            deadline.check()
    return np.array(kept, alive.dtype)


def to_matrix(words: np.ndarray, n: int) -> np.ndarray:
    """Bitmasks -> (len(words), n) 0/1 int8 rows."""
    one = words.dtype.type(1)
    return ((words[:, None] >> np.arange(n, dtype=words.dtype)) & one).astype(np.int8)


def select_balanced(
    pool: np.ndarray, k: int, target: int, rng: np.random.Generator, max_swaps: int, deadline: Deadline
) -> Selection:
    """Choose k rows of ``pool`` with column spread <= target (or as close as found): rule C.

    Greedy start (each pick uses the least-used columns), then tabu steepest descent on the sum of
    squared column deviations, swapping one chosen row for one unchosen row per step (among the
    rows that most over- / under-use columns plus a few random ones, when there are many).
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
        if swaps % _CHECK_EVERY == 0:
            deadline.check()
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
    return Selection(np.flatnonzero(best_chosen), swaps)


def _candidates(index: np.ndarray, score: np.ndarray, rng: np.random.Generator, top: int = 96) -> np.ndarray:
    """All of ``index`` if small, else its ``top`` lowest-``score`` entries plus 32 random others."""
    if index.size <= top + 32:
        return index
    order = np.argsort(score[index], kind="stable")
    rest = rng.choice(order[top:], 32, replace=False)
    return index[np.concatenate([order[:top], rest])]
