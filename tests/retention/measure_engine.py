"""Time hub.retention.evaluate over 100,000 tags in 1,000 repositories (median of 3 runs).

    PYTHONPATH=$PWD .venv/bin/python -m tests.retention.measure_engine

Each repository holds 60 CI tags (sha-...), 30 releases (v1.M.P), 6 release candidates, 2 other
tags and 2 cosign signatures; a third were pulled in the last week. The policy is the issue's
(newest 2 patches per minor, pulled in 7 days, newest 5 sha-*), plus a regex rule and one override.
"""

from __future__ import annotations

import random
import statistics
import time
from datetime import UTC, datetime, timedelta

from hub.retention import TagRecord, UntaggedManifest, evaluate, parse_immutable_rules, parse_policy

NOW = datetime(2026, 12, 1, tzinfo=UTC)
POLICY = {
    "rules": [
        {"tags": {"semver": "*"}, "keep": {"semver_line": {"per": "minor", "count": 2}}},
        {"tags": {"glob": "*"}, "keep": {"pulled_within_days": 7}},
        {"tags": {"glob": "sha-*"}, "keep": {"latest_pushed": 5}},
        {"tags": {"regex": "(latest|stable|main)"}, "keep": {"always": True}},
    ],
    "untagged_days": 30,
    "overrides": [{"repositories": "team-7*/**", "rules": [{"tags": {"glob": "**"}, "keep": {"latest_pushed": 10}}]}],
}


def records(repos: int = 1000, per_repo: int = 100) -> tuple[list[TagRecord], list[UntaggedManifest]]:
    rng = random.Random(1)
    tags, untagged = [], []
    for r in range(repos):
        repo = f"team-{r % 10}/app-{r}"
        names = [f"sha-{rng.getrandbits(40):010x}" for _ in range(60)]
        names += [f"v1.{m}.{p}" for m in range(6) for p in range(5)]
        names += [f"v1.{m}.5-rc.1" for m in range(6)] + ["latest", "nightly"]
        for i, name in enumerate(names[:per_repo - 2]):
            pushed = NOW - timedelta(hours=rng.randrange(1, 24 * 365))
            pulled = NOW - timedelta(hours=rng.randrange(1, 24 * 90)) if rng.random() < 0.33 else None
            tags.append(TagRecord(repo, name, f"sha256:{r:08x}{i:056x}", pushed, "image", pulled))
        for s in range(2):
            subject = f"sha256:{r:08x}{s:056x}"
            tags.append(TagRecord(repo, f"sha256-{subject[7:]}.sig", f"sha256:{r:08x}{s + 500:056x}",
                                  NOW - timedelta(days=1), "signature", None, subject))
        untagged.append(UntaggedManifest(repo, f"sha256:{r:08x}{999:056x}", NOW - timedelta(days=40)))
    return tags, untagged


def main() -> None:
    tags, untagged = records()
    policy = parse_policy(POLICY)
    immutable = parse_immutable_rules({"rules": [{"repositories": "team-1/**", "tags": {"semver": ">=1.5.0"}}]})
    times = []
    for _ in range(3):
        start = time.perf_counter()
        plan = evaluate(policy, tags, NOW, untagged=untagged, immutable=immutable)
        times.append(time.perf_counter() - start)
    print(f"{len(tags)} tags in 1000 repositories: median {statistics.median(times):.3f} s "
          f"(runs {', '.join(f'{t:.3f}' for t in times)}); deleted {len(plan.deleted)}, kept {len(plan.kept)}, "
          f"protected {len(plan.protected)}, untagged deleted {len(plan.untagged_deleted)}")


if __name__ == "__main__":
    main()
