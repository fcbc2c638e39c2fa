"""The token storm benchmark runs (quick mode: 200 waiters, one round, about 4 s)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "token_storm.py"


def test_token_storm_quick() -> None:
    args = [sys.executable, str(SCRIPT), "--quick"]
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.terminate()  # SIGTERM: the script stops its OAuth2 server on the way out
            proc.communicate()
            raise
    assert proc.returncode == 0, stderr
    lines = stdout.splitlines()
    ours = next(line for line in lines if "| trio_mailoauth |" in line)
    assert ours.split("|")[4].strip() == "1"  # exactly one token request
    naive = next(line for line in lines if "| naive |" in line)
    assert naive.split("|")[4].strip() == "200"
