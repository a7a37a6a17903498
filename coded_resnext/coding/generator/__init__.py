"""Generate coding schemes: K weight-A codewords over N branches, pairwise >= D apart, balanced columns.

The paper (arXiv 2202.05343, Algorithm 1) walks all C(N, A) weight-A words in lexicographic order,
keeps a word when it is >= D away from every kept word (rule B), then picks K of the kept words
with column sums as equal as possible (rule C). That is slow in pure Python (C(32, 16) = 6e8 words)
and fails whenever the kept words cannot be balanced: its pool is one fixed set of words.

This generator does better in four ways, one module each:

* ``lexicode``: Algorithm 1's greedy pass, vectorised on bitmasks, and the K words chosen from its
  pool by a tabu swap search on the column sums instead of a one-shot pick.
* ``local_search``: min-conflicts search over K words at once (it never enumerates C(N, A)), and the
  balance repair of a scheme that meets the distance but not the spread.
* ``bounds``: Johnson-type bounds say which distances are possible at all, so impossible requests
  are one-line errors before any search, and the best spread (rule C) is a target searched for
  rather than whatever the greedy pass left.
* ``driver``: the portfolio per distance, the climb D = 2, 4, ... for ``min_distance=None``, and the
  one entry point. Words with A > N/2 are searched as the complements of weight N-A words (same
  distances, same spread), which halves the search space.

Every decision uses counts (moves, swaps, restarts) and seeded random numbers, never the clock
(``clock`` is the only module that reads it): the scheme is a function of the request and the seed,
the same on any machine and under any load. The time budget only decides when to give up, and giving
up is an error, never a best-so-far scheme.

Distances between words of equal weight are always even, so a requested odd ``min_distance`` D is
the same request as D + 1 and is treated as such.

Import from this package; its modules are its internals.
"""

from coded_resnext.coding.generator.bounds import best_spread, max_distance_bound
from coded_resnext.coding.generator.driver import GeneratorResult, generate_scheme, search_scheme

__all__ = [
    "GeneratorResult",
    "best_spread",
    "generate_scheme",
    "max_distance_bound",
    "search_scheme",
]
