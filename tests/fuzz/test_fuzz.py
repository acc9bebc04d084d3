"""Every fuzz target (tests/fuzz/targets.py) for a bounded number of inputs, under atheris.

Each target runs in a process of its own (libFuzzer exits when it is done) with seed 1, its
seed corpus and dictionary, and a bound of 20 s per input: a crash, a hang, an unexpected
exception, a broken invariant or a 5xx fails the test with the input and its traceback.
FUZZ_RUNS=N runs N inputs per target instead of each target's `bounded_runs`. A long run by
hand: `.venv/bin/python -m tests.fuzz.run TARGET -runs=1000000` (or -max_total_time=SECONDS).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.targets import TARGETS
from tests.helpers.server import REPO_ROOT

HERE = Path(__file__).resolve().parent
PARSERS = sorted(name for name in TARGETS if not name.startswith("_"))


def fuzz(name: str, tmp_path: Path, *args: str) -> tuple[int, str]:
    env = {**os.environ, "FUZZ_SCRATCH": str(tmp_path / "scratch")}
    env.pop("FUZZ_RUNS", None)  # the caller says -runs
    command = [sys.executable, "-m", "tests.fuzz.run", name, f"-artifact_prefix={tmp_path}/", *args]
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=540,
                          check=False)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("name", PARSERS)
def test_fuzz_target(name, tmp_path):
    runs = int(os.environ.get("FUZZ_RUNS") or TARGETS[name].bounded_runs)
    (tmp_path / "corpus").mkdir()
    seeds = HERE / "corpus" / name
    code, output = fuzz(name, tmp_path, f"-runs={runs}", "-seed=1", str(tmp_path / "corpus"), str(seeds))
    assert code == 0, output[-8000:]
    done = re.search(r"^Done (\d+) runs in (\d+) second", output, re.MULTILINE)
    assert done and int(done.group(1)) == runs, output[-3000:]
    if os.environ.get("CI") == "true":  # the fallback loop has no coverage feedback: not enough for CI
        assert "engine atheris" in output, output[:2000]
    print(f"fuzz {name}: {done.group(1)} inputs in {done.group(2)} s")


def test_every_target_has_seeds_and_a_dictionary():
    for name in PARSERS:
        assert any((HERE / "corpus" / name).iterdir()), name
        assert (HERE / "dicts" / f"{name}.dict").is_file(), name


@pytest.mark.parametrize(("seed", "expected"), [(b"x CRASH x", "KeyError: \"the canary's crash\""),
                                                (b"x HANG x", "timeout")])
def test_a_crash_or_a_hang_fails_the_run_and_keeps_the_input(tmp_path, seed, expected):
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "seed").write_bytes(seed)
    code, output = fuzz("_canary", tmp_path, "-runs=100", "-timeout=2", str(seeds))
    assert code != 0 and expected in output, output[-3000:]
    written = [p for p in tmp_path.iterdir() if p.name.startswith(("crash-", "timeout-"))]
    assert [p.read_bytes() for p in written] == [seed], output[-3000:]
