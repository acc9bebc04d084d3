"""Helpers of the identity contract tests."""

from __future__ import annotations

# Names that collations other than bytewise sort differently, in byte order.
BYTEWISE = ["B", "a-b", "a.b", "a/b", "a0", "a_b", "ab", "b"]
# Shuffled, so that the insertion order is not the answer.
SHUFFLED = ["ab", "b", "a_b", "a/b", "B", "a-b", "a0", "a.b"]
# Between "a0" and "a_b": an `after` that falls in a gap.
GAP = "a1"

assert sorted(SHUFFLED) == BYTEWISE == sorted(BYTEWISE, key=str.encode)


async def walk(page, limit: int, key: str = "name") -> list[list[str]]:
    """Every page of `page(limit, after)`, as names, walked the way the API's clients walk them:
    each next page starts after the last name of the one before."""
    out: list[list[str]] = []
    after = None
    while batch := [getattr(r, key) for r in await page(limit, after)]:
        assert len(batch) <= limit
        out.append(batch)
        after = batch[-1]
    return out


def chunks(items: list[str], n: int) -> list[list[str]]:
    return [items[i:i + n] for i in range(0, len(items), n)]
