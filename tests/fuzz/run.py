"""Run one fuzz target under atheris (libFuzzer), with its seed corpus and dictionary.

    python -m tests.fuzz.run --list
    python -m tests.fuzz.run TARGET [libFuzzer flags...] [corpus dirs...]

With no corpus directory given, new inputs go to test-artifacts/fuzz/corpus/TARGET/ (kept, so a
later run starts from them) and the seeds are read from tests/fuzz/corpus/TARGET/. Defaults that
a flag of the same name overrides: -dict=tests/fuzz/dicts/TARGET.dict, -timeout=20 (seconds per
input: a hang is a failure), -artifact_prefix=test-artifacts/fuzz/TARGET- (where a crashing or
hanging input is written), and -runs=$FUZZ_RUNS when that is set. Other libFuzzer flags pass
through: -runs=N, -max_total_time=S, -seed=N, -jobs=N, -max_len=N... A crash, a hang, an
unexpected exception, a broken invariant or a 5xx exits non-zero with the input and traceback.

Where atheris is not installed, a plain mutation loop (no coverage feedback) runs the same
targets with the same flags -runs, -seed, -timeout and -max_total_time.
"""

from __future__ import annotations

import importlib.metadata
import os
import random
import signal
import sys
import time
import traceback
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
ARTIFACTS = REPO_ROOT / "test-artifacts" / "fuzz"
INSTRUMENTED = ["hub", "auth", "appstore", "storage_backends"]

try:
    import atheris
except ImportError:  # pragma: no cover - atheris is in the test extra
    atheris = None


def _load_targets():
    if atheris is None:
        from . import targets
    else:
        with atheris.instrument_imports(include=INSTRUMENTED):
            from . import targets
    return targets


def _flag(args: list[str], name: str) -> str | None:
    for arg in args:
        if arg.startswith(f"-{name}="):
            return arg.split("=", 1)[1]
    return None


def arguments(name: str, args: list[str]) -> list[str]:
    """libFuzzer's arguments: the ones given, then this target's defaults for those not given."""
    flags = [a for a in args if a.startswith("-")]
    dirs = [a for a in args if not a.startswith("-")]
    defaults = {"timeout": "20", "artifact_prefix": f"{ARTIFACTS}/{name}-"}
    dictionary = HERE / "dicts" / f"{name}.dict"
    if dictionary.exists():
        defaults["dict"] = str(dictionary)
    if os.environ.get("FUZZ_RUNS"):
        defaults["runs"] = os.environ["FUZZ_RUNS"]
    for key, value in defaults.items():
        if _flag(flags, key) is None:
            flags.append(f"-{key}={value}")
    if not dirs:
        dirs = [str(ARTIFACTS / "corpus" / name), str(HERE / "corpus" / name)]
    for directory in dirs[:1]:  # libFuzzer writes new inputs there (a file given instead is replayed)
        if not Path(directory).is_file():
            Path(directory).mkdir(parents=True, exist_ok=True)
    prefix = _flag(flags, "artifact_prefix")
    Path(prefix).parent.mkdir(parents=True, exist_ok=True)
    return flags + dirs


def _seeds(dirs: list[str]) -> list[bytes]:
    found = []
    for directory in dirs:
        for path in sorted(Path(directory).glob("*")):
            if path.is_file():
                found.append(path.read_bytes())
    return found or [b""]


def _dictionary(path: str | None) -> list[bytes]:
    words = []
    for line in Path(path).read_text().splitlines() if path else ():
        line = line.strip()
        if line.startswith('"') and line.endswith('"'):
            words.append(line[1:-1].encode().decode("unicode_escape").encode("latin-1"))
    return words


def _mutate(rng: random.Random, data: bytes, seeds: list[bytes], words: list[bytes]) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(6)
        at = rng.randint(0, len(out))
        if kind == 0 and out:
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        elif kind == 1:
            out[at:at] = bytes([rng.randrange(256)])
        elif kind == 2 and out:
            del out[at:at + rng.randint(1, 16)]
        elif kind == 3 and out:
            start = rng.randrange(len(out))
            out[at:at] = out[start:start + rng.randint(1, 64)] * rng.randint(1, 8)
        elif kind == 4 and words:
            out[at:at] = rng.choice(words)
        else:
            other = rng.choice(seeds)
            cut = rng.randint(0, len(other))
            out[at:] = other[cut:]
    return bytes(out)


class _Hang(Exception):
    pass


def _fallback(name: str, one_input, argv: list[str]) -> int:
    """The same target without coverage feedback: seeds first, then mutations of them."""
    flags = [a for a in argv if a.startswith("-")]
    dirs = [a for a in argv if not a.startswith("-")]
    runs = int(_flag(flags, "runs") or -1)
    timeout = float(_flag(flags, "timeout") or 20)
    max_time = float(_flag(flags, "max_total_time") or 0)
    rng = random.Random(int(_flag(flags, "seed") or 0))
    seeds, words = _seeds(dirs), _dictionary(_flag(flags, "dict"))

    def alarm(*_):
        raise _Hang(f"an input ran longer than {timeout:g}s")

    signal.signal(signal.SIGALRM, alarm)
    started, done = time.monotonic(), 0
    while runs < 0 or done < runs:
        if max_time and time.monotonic() - started > max_time:
            break
        data = seeds[done] if done < len(seeds) else _mutate(rng, rng.choice(seeds), seeds, words)
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            one_input(data)
        except BaseException:
            signal.setitimer(signal.ITIMER_REAL, 0)
            crash = Path(f"{_flag(flags, 'artifact_prefix')}crash-{done}")
            crash.write_bytes(data)
            traceback.print_exc()
            print(f"input {done} failed; written to {crash}: {data[:300]!r}", file=sys.stderr)
            return 1
        signal.setitimer(signal.ITIMER_REAL, 0)
        done += 1
    print(f"Done {done} runs in {int(time.monotonic() - started)} second(s)", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    targets = _load_targets()
    if not argv or argv[0] in ("--list", "-h", "--help"):
        width = max(map(len, targets.TARGETS))
        for target in targets.TARGETS.values():
            print(f"{target.name:<{width}}  {target.doc}")
        return 0 if argv else 2
    name = argv.pop(0)
    if name not in targets.TARGETS:
        print(f"no fuzz target {name!r}; --list shows them", file=sys.stderr)
        return 2
    target = targets.TARGETS[name]
    os.environ.setdefault("FUZZ_SCRATCH", str(ARTIFACTS / "scratch"))
    args = arguments(name, argv)
    if target.max_len and _flag(args, "max_len") is None:
        args.insert(0, f"-max_len={target.max_len}")

    def one_input(data: bytes) -> None:
        try:
            target.run(data)
        except target.expected:
            pass

    engine = f"atheris {importlib.metadata.version('atheris')}" if atheris else "fallback"
    print(f"fuzz target {name}: engine {engine}", file=sys.stderr, flush=True)
    if atheris is None:
        return _fallback(name, one_input, args)
    atheris.Setup([sys.argv[0], *args], one_input)
    atheris.Fuzz()  # exits the process: 0 after -runs or -max_total_time, else the failure's code
    return 0


if __name__ == "__main__":
    sys.exit(main())
