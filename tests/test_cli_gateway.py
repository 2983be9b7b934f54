"""`qkd-relay gateway run` as an operator starts it: tunables that cannot work are refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import one_line_error, run_cli


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
    finished = run_cli("gateway", "run", "--id", "GW1", option, value, cwd=tmp_path)
    assert complaint in one_line_error(finished)
