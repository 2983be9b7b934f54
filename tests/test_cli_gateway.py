"""`qkd-relay gateway run` as an operator starts it: tunables that cannot work are refused in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    ("option", "value", "complaint"),
    [
        ("--qkd-fill-batch", "0", "max_batch must be positive"),
        ("--qkd-fill-interval", "-1", "interval_s"),
        ("--hop-timeout", "0", "timeouts and intervals must be positive"),
    ],
)
def test_gateway_run_refuses_unworkable_settings_before_starting(
    tmp_path: Path, option: str, value: str, complaint: str
) -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "relay.cli", "gateway", "run", "--id", "GW1", option, value],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 2
    assert complaint in finished.stderr
    assert "Traceback" not in finished.stderr
    assert finished.stderr.count("\n") == 1
