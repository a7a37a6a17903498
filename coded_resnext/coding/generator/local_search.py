"""Min-conflicts local search over K codewords at once, and the balance repair of a valid scheme.

Each move takes a 1 out of one column of one codeword and puts it into another column, scored by the
change in (pairs closer than D) + (columns outside the target window). Only words already at the
overlap limit can become conflicts, so a move is evaluated on a handful of rows; a tabu list and
restarts keep it from cycling. It never enumerates C(N, A), so (1000, 32, 16, 10) -- over an hour
for Algorithm 1 -- takes a few seconds, with perfectly balanced columns.

Balance repair: when a scheme meets the distance but not the spread (e.g. a lexicode whose columns
are skewed), the same moves, restricted to those that keep every pair >= D apart and accepted with a
Metropolis rule on the column cost, even out the columns.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, NamedTuple

import numpy as np

from coded_resnext.coding.generator.clock import Deadline

# Balance repair accepts a move that worsens the column cost by c with probability exp(-c / T)
# (moves that break the distance are never taken).
REPAIR_TEMPERATURE = 0.5
_BIG = 1 << 30
_CHECK_EVERY = 64  # moves between deadline checks and progress reports


class Move(NamedTuple):
    """Moving one 1 of codeword ``word`` from column ``source`` to column ``target``."""

    delta: float  # change in cost (>= _BIG: no allowed move)
    word: int
    source: int
    target: int
    overlaps: np.ndarray  # (K,) overlap of ``word`` with every codeword before the move


class MoveCosts(NamedTuple):
    """Cost change of every move of one codeword: 1 out of column ins[a], into column outs[b]."""

    ins: np.ndarray  # columns holding a 1
    outs: np.ndarray  # columns holding a 0
    cost: np.ndarray  # (len(ins), len(outs))


class LocalSearch:
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

    def repair(self, rows: np.ndarray) -> None:
        """Start from ``rows``, a scheme meeting the distance, to even out its columns without breaking it."""
        self.load(rows)
        self.keep_distance = True
        self.temperature = REPAIR_TEMPERATURE

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
    def _move_costs(self, i: int, ov: np.ndarray) -> MoveCosts:
        """Cost change of every move of word i."""
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
            return MoveCosts(ins, outs, np.where(pair > 0, _BIG, pair + column))
        return MoveCosts(ins, outs, pair + column)

    def _masked(self, i: int, ins: np.ndarray, outs: np.ndarray, cost: np.ndarray, best: int) -> np.ndarray:
        tabu = (self.tabu[i, ins][:, None] > self.steps) | (self.tabu[i, outs][None, :] > self.steps)
        current = self.pair_cost + self.col_cost
        return np.where(tabu & (current + cost >= best), _BIG, cost)  # aspiration for a new best

    def _apply(self, move: Move) -> None:
        i, a, b, ov = move.word, move.source, move.target, move.overlaps
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

    def _pick_move(self, best: int) -> Move:
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
            return Move(float(cost.ravel()[flat]), i, int(ins[flat // outs.size]), int(outs[flat % outs.size]), ov)
        # A column outside the window: the best move into/out of it among a few words that can make it.
        bad = np.flatnonzero((self.sums > self.hi) | (self.sums < self.lo))
        col = int(bad[rng.integers(bad.size)])
        over = bool(self.sums[col] > self.hi)
        words = np.flatnonzero(self.rows[:, col] == (1 if over else 0))
        if words.size > self.sample:
            words = rng.choice(words, self.sample, replace=False)
        choice: Move | None = None
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
            if choice is None or line[j] < choice.delta:
                choice = Move(float(line[j]), i, a, b, ov)
        assert choice is not None
        return choice

    def _repair_move(self, best: int) -> Move:
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
        return Move(delta, i, a, b, self._overlaps(i))

    def run(self, max_steps: int, deadline: Deadline, report: Callable[[], None]) -> Literal["solved", "steps"]:
        """Move until cost 0 ("solved") or ``max_steps`` more moves ("steps"); the deadline can only
        raise :class:`OutOfTime`."""
        best = self.pair_cost + self.col_cost
        stop = self.steps + max_steps
        while self.pair_cost + self.col_cost > 0:
            if self.steps >= stop:
                return "steps"
            if self.steps % _CHECK_EVERY == 0:
                deadline.check()
                report()
            move = self._pick_move(best)
            if move.delta >= _BIG or (
                move.delta > 0
                and self.temperature is not None
                and self.rng.random() >= math.exp(-move.delta / self.temperature)
            ):
                self.steps += 1
                continue
            self._apply(move)
            best = min(best, self.pair_cost + self.col_cost)
        return "solved"
