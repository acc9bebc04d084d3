"""state: named values the server decides once; absent until set, the last write wins."""

from __future__ import annotations

import asyncio


async def test_a_value_is_absent_then_set_then_replaced(state):  # from tests/db/test_server_state.py
    assert await state.get("x.y") is None
    await state.set("x.y", "one")
    await state.set("other", "two")
    assert await state.get("x.y") == "one"
    await state.set("x.y", "three")
    assert (await state.get("x.y"), await state.get("other")) == ("three", "two")


async def test_names_are_exact_and_values_kept_as_written(state):
    value = "ünïcode, 'quotes', \"double\", a;semicolon and a\nnewline" + "x" * 10_000
    await state.set("seed.catalog", value)
    await state.set("", "empty name")
    await state.set("seed.empty", "")
    assert await state.get("seed.catalog") == value
    assert await state.get("") == "empty name"
    assert await state.get("seed.empty") == ""
    for near in ("Seed.catalog", "seed.catalog ", "seed", "seed.catalo", "seed_catalog"):
        assert await state.get(near) is None, near


async def test_concurrent_writers_of_one_name_leave_one_of_their_values(writers):
    a, b = writers
    await asyncio.gather(*((a if i % 2 else b).set("race", f"v{i}") for i in range(10)))
    value = await b.get("race")
    assert value in {f"v{i}" for i in range(10)}
    assert await a.get("race") == value
    await a.set("race", "last")
    assert await b.get("race") == "last"
