"""hub/cli/progress.Meter off a terminal: a plain line on stderr per tenth done and one at the end;
nothing on stdout. (tests/transfer/test_progress.py runs the real commands, piped and on a pty.)"""

from __future__ import annotations

import io

from hub.cli.progress import Meter, human_bytes


def test_plain_lines_per_tenth_and_at_the_end_on_stderr_only():
    out, err = io.StringIO(), io.StringIO()
    with Meter("blobs", unit="bytes", total=1000, stdout=out, stderr=err) as meter:
        assert not meter.live
        for _ in range(100):
            meter.advance(10)
    lines = err.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == [f"{p}%" for p in range(10, 100, 10)] + ["100%"]
    assert lines[0].startswith("blobs: 10% (100 B of 1.0 kB) at ") and "ETA " in lines[0]
    assert lines[-1].startswith("blobs: 100% (1.0 kB of 1.0 kB) at ") and "done in 0:00:00" in lines[-1]
    assert out.getvalue() == ""


def test_an_items_job_grows_its_total_and_counts_bytes_freed():
    err = io.StringIO()
    with Meter("gc", unit="items", items="reviews", freed=True, stdout=io.StringIO(), stderr=err) as meter:
        meter.grow(2)
        meter.advance(1, nbytes=1500)
        meter.advance(1)
        meter.advance(1, nbytes=500)   # more than the total it started with: the total grows
    assert meter.total == 3
    assert err.getvalue().splitlines()[-1].startswith("gc: 100% (3 of 3 reviews, 2.0 kB freed) at ")


def test_nothing_to_do_is_one_line():
    err = io.StringIO()
    with Meter("retention", unit="items", items="verdicts", stdout=io.StringIO(), stderr=err):
        pass
    (line,) = err.getvalue().splitlines()
    assert line.startswith("retention: 100% (0 of 0 verdicts) at 0.0 verdicts/s, done in ")


def test_human_bytes():
    assert [human_bytes(n) for n in (0, 999, 1000, 1_500_000, 3 * 10**12)] == ["0 B", "999 B", "1.0 kB", "1.5 MB",
                                                                               "3.0 TB"]
