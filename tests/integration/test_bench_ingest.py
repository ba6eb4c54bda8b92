"""`python -m bench.ingest` still runs end to end, as a new user would run it (tiny sizes).

Speed is the benchmark's business, not the suite's: this checks that every run completes,
that each figure is recorded, and that the outage run lost and duplicated nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MESSAGES = 3000


def test_ingest_benchmark_runs_every_part_and_loses_nothing(tmp_path: Path) -> None:
    readme = (ROOT / "bench" / "README.md").read_text()
    output = tmp_path / "result.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.ingest",
            "--quick",
            "--messages",
            str(MESSAGES),
            "--latency-seconds",
            "3",
            "--outage-seconds",
            "3",
            "--no-readme",
            "--output",
            str(output),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(output.read_text())
    for subscriber in ("bare_subscriber", "raw_subscriber"):
        assert result[subscriber]["msgs_per_s"] > 0
        assert set(result[subscriber]["cpu_cores_busy"]) == {"subscriber", "mosquitto"}
    for drain, readings in (
        ("postgres_single", MESSAGES),
        ("postgres_array100", MESSAGES // 100 * 100),
        ("sqlite_single", MESSAGES),
        ("postgres_mapped_json5", MESSAGES // 5 * 5),
        ("postgres_sparkplug_ddata10", (MESSAGES // 10 + 100) * 10),
    ):
        assert result[drain]["readings"] == readings
        assert result[drain]["readings_per_s"] > 0
        assert 0 < result[drain]["peak_rss_mb"] < 500
    latency = result["latency"]
    assert latency["stored"] == latency["rows"] >= latency["published"] > 0
    assert latency["p50_ms"] <= latency["p99_ms"]
    outage = result["outage"]
    assert outage["rows_stored"] == outage["readings_published"] > 0
    assert outage["lost"] == 0
    assert outage["duplicated_rows"] == 0
    assert set(result["targets"]) >= {"postgres_single_ge_40k", "outage_zero_loss"}
    assert (ROOT / "bench" / "README.md").read_text() == readme
