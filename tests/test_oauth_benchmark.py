"""The token storm benchmark runs (quick mode: 200 waiters, one round, about 5 s), and keeps
the refresh token off its children's command lines."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

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
    for client in ("trio_mailoauth", "trio_mailoauth/asyncio", "trio floor", "authlib"):
        row = next(line for line in lines if f"| {client} |" in line)
        assert row.split("|")[4].strip() == "1"  # exactly one token request
    naive = next(line for line in lines if "| naive |" in line)
    assert naive.split("|")[4].strip() == "200"


def test_the_refresh_token_never_is_on_a_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every user of the machine can read every process's command line (`ps`, /proc).
    spec = importlib.util.spec_from_file_location("token_storm", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    token_storm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(token_storm)
    calls: list[tuple[list[str], dict[str, str]]] = []
    real_run = subprocess.run

    def run(args: list[str], **kwargs: Any) -> Any:
        calls.append((args, kwargs["env"]))
        return real_run(args, **kwargs)

    monkeypatch.setattr(token_storm.subprocess, "run", run)
    rows = token_storm.run([20], 1)
    assert {r["client"] for r in rows} == set(token_storm.PEERS)
    assert all(r["requests"] == (20 if r["client"] == "naive" else 1) for r in rows)
    assert len(calls) == len(token_storm.PEERS)
    for args, env in calls:
        secret = env[token_storm.REFRESH_TOKEN_VAR]
        assert len(secret) >= 16
        assert not any(secret in arg for arg in args)
