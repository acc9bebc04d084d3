"""The benchmarks under bench/ run end to end at tiny sizes and report both sides.

Each test runs one benchmark script with --smoke, as a user would, and checks its exit status,
its table and its JSON: every row has samples for DaoHub and for what it is compared with, and
no errors. Nothing here looks at how fast anything was.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.util import need_module, need_tool
from tests.helpers.postgres import PG_BIN

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_bench(script: str, results: Path, *extra: str, timeout: float = 600) -> tuple[str, dict]:
    argv = [sys.executable, str(REPO_ROOT / "bench" / script), "--smoke", "--results-dir", str(results),
            "--python", sys.executable, *extra]
    proc = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # SIGTERM lets the script stop the servers it started; SIGKILL only if it does not.
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        pytest.fail(f"{script} --smoke did not finish in {timeout:.0f}s:\n{err[-4000:]}")
    assert proc.returncode == 0, f"{script} exited {proc.returncode}\nstdout:\n{out}\nstderr:\n{err[-6000:]}"
    files = list(results.glob("*-smoke.json"))
    assert len(files) == 1, files
    return out, json.loads(files[0].read_text())


def check_report(out: str, report: dict, keys: set[str]) -> None:
    rows = {row["key"]: row for row in report["rows"]}
    assert set(rows) == keys
    for row in rows.values():
        assert row["errors"] == {}, row
        for side in ("daohub", "other"):
            assert row["samples"][side], (row["key"], side)
            assert all(v > 0 for v in row["samples"][side])
            assert row["median"][side] > 0
        assert row["ratio_daohub_over_other"] > 0
        assert row["label"] in out  # and the table shows it
    assert len(report["load_average_start"]) == 3
    assert report["machine"]["cpus"] >= 1


def test_s3_bench_smoke(tmp_path):
    need_tool("docker-registry")
    need_tool("curl")
    need_module("moto.server")
    if not (PG_BIN / "initdb").exists():
        need_tool("initdb")  # not at the usual place: fail under CI, skip elsewhere
    out, report = run_bench("s3_bench.py", tmp_path)
    check_report(out, report, {"push", "chunked", "pull", "catalog_pages", "catalog_one"})
    assert report["params"]["repos"] == 20
    # Every request of the paginated listing returned a page on both sides.
    for side in ("daohub", "other"):
        assert all(run["pages"] >= 3 for run in report["rows"][3]["runs"][side])


def test_proxy_bench_smoke(tmp_path):
    need_tool("docker-registry")
    need_tool("curl")
    out, report = run_bench("proxy_bench.py", tmp_path)
    check_report(out, report, {"cold", "cold_dist_cache", "warm", "warm_dist_cache", "local"})
    rows = {row["key"]: row for row in report["rows"]}
    assert rows["cold"]["target"] == "ratio <= 1.15"
    assert rows["warm"]["target"] == "ratio <= 1.0"
    # DaoHub's cold pulls are compared with the direct pulls and with distribution's cache alike.
    assert rows["cold_dist_cache"]["samples"]["daohub"] == rows["cold"]["samples"]["daohub"]


def test_tls_bench_smoke(tmp_path):
    need_tool("docker-registry")
    need_tool("curl")
    out, report = run_bench("tls_bench.py", tmp_path)
    check_report(out, report, {"push", "pull", "pull_cpu", "manifest"})
    rows = {row["key"]: row for row in report["rows"]}
    assert rows["pull"]["target"] == "ratio >= 0.8"
    assert report["ssl"].startswith("OpenSSL")


def test_webhooks_bench_smoke(tmp_path):
    _, report = run_bench("webhooks_bench.py", tmp_path)
    cost, latency = report["push_cost"], report["latency"]
    assert len(cost["pushes_per_s_none"]) == 2 and len(cost["pushes_per_s_three"]) == 1
    assert all(v > 0 for v in cost["serve_cpu_ms_per_push_none"] + cost["serve_cpu_ms_per_push_three"])
    assert latency["received"] == latency["events"] == 20  # every event arrived (how fast is not checked)
    assert latency["p95_seconds"] is not None


def test_signin_bench_smoke(tmp_path):
    need_tool("slapd")
    need_tool("ldapadd")
    out, report = run_bench("signin_bench.py", tmp_path)
    check_report(out, report, {"warm", "cold"})
    assert all(run["requests"] >= 1 for row in report["rows"] for side in ("daohub", "other")
               for run in row["runs"][side])


def test_workers_bench_smoke(tmp_path):
    need_tool("docker-registry")
    need_tool("wrk")
    out, report = run_bench("workers_bench.py", tmp_path)
    assert set(report["summary"]) == {"shared/manifest-get", "shared/mixed", "split/manifest-get", "split/mixed"}
    for key, row in report["summary"].items():
        for target in ("daohub-1w", "daohub-2w", "distribution"):
            assert row[target]["rps_median"] > 0, (key, target)
        assert row["daohub-1w"]["non_2xx"] == row["daohub-2w"]["non_2xx"] == 0
        assert key in out
    spread = report["fresh_connections_per_worker_of_320"]
    assert sum(spread.values()) == 320 and all(spread.values()), spread
    assert len(report["runs"]) == 12 and all(len(run["load_avg"]) == 3 for run in report["runs"])
