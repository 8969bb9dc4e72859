"""Which of a row's seeds the plan asked for, which stand in for planned ones, which are extra.

The plan runs every seeded row at seeds 0..N-1 (a constant baseline at seed 0). A run at a seed
beyond the plan either stands in for a planned seed that could not be made (its teacher cannot
be re-made on the machine at hand) or sits beside a complete row. A comparison's planned seeds
are the plan's plus the stand-ins of either row: the other row's run at a stand-in seed is its
partner, made for that pairing. Any other extra seed is beyond the plan, whatever the reason it
ran (the files do not say): a verdict that changes with it could be optional stopping, so the
report shows the planned-seed verdict beside it.
"""

from __future__ import annotations

from experiments.tables import rows as rows_lib


def planned_seeds(row, seeds: int) -> range:
    return range(seeds if row.seeded else 1)


def seed_use(runs, row, seeds: int) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """(planned seeds without a run, seeds run beyond the plan, cells still short).

    A cell counts as complete once it has as many seeds as planned, whichever they are.
    """
    planned = planned_seeds(row, seeds)
    have = {x.seed for x in runs}
    lost = tuple(s for s in planned if s not in have)
    extra = tuple(sorted(s for s in have if s not in planned))
    return lost, extra, max(0, len(lost) - len(extra))


def stand_in_seeds(runs, row, seeds: int) -> tuple[int, ...]:
    """The extra seeds that fill a planned seed's place: the lowest ones, one per lost seed (a
    convention: the runs do not record which extra seed was meant for which place)."""
    lost, extra, _ = seed_use(runs, row, seeds)
    return extra[:len(lost)]


def pair_seeds(cells, task: str, a: str, b: str, seeds: int) -> set[int]:
    """The seeds a comparison of rows a and b may use under the plan."""
    out = set(range(seeds))
    for name in (a, b):
        row = rows_lib.ROW_BY_NAME.get(name)
        if row is not None:
            out |= set(stand_in_seeds(cells.get((task, name), []), row, seeds))
    return out
