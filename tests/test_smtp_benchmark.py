"""The SMTP send benchmark runs: quick mode, Dovecot only, two peers (about 6 s). The full run
(2,000 messages, five peers, both servers, five rounds) is for people, not CI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "smtp_send.py"


def test_smtp_send_benchmark_quick() -> None:
    args = [
        sys.executable,
        str(SCRIPT),
        "--quick",
        "--server",
        "dovecot",
        "--peers",
        "trio_mailoauth,plain socket",
    ]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    table, _, ratios = out.stdout.partition("Ratios")
    for client in ("trio_mailoauth", "plain socket"):
        rows = [line.split("|") for line in table.splitlines() if line.startswith(f"| {client} |")]
        assert [row[2].strip() for row in rows] == ["1", "20"]
        assert all(float(row[3]) > 0 and float(row[4]) > 0 for row in rows)
    rows = [line.split("|") for line in ratios.splitlines() if line.startswith("| plain socket |")]
    assert [row[2].strip() for row in rows] == ["1", "20"]
