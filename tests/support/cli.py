"""The ``qkd-relay`` console script as a subprocess, the way an operator runs it.

Tests of the command line run the real entry point (``python -m relay.cli``) in a child process: exit
status, stdout and stderr are what an operator sees, and nothing the command does (logging set-up,
``sys.exit``) leaks into the test process. A refusal of bad input must be exit status 2 with one line on
stderr and no traceback (:func:`one_line_error`).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

QKD_RELAY = (sys.executable, "-m", "relay.cli")
REPO_ROOT = Path(__file__).resolve().parents[2]
CLI_TIMEOUT_S = 60.0  # a command that hangs fails its test instead of stalling the suite


def run_cli(
    *args: str | Path, cwd: Path = REPO_ROOT, timeout_s: float = CLI_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """One command run to completion in ``cwd``, its output captured as text; the exit status is not checked."""
    return subprocess.run(
        [*QKD_RELAY, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout_s, check=False
    )


def one_line_error(finished: subprocess.CompletedProcess[str]) -> str:
    """The refusal of a command that must reject its input: exit status 2, one stderr line, no traceback.
    Returns that line without its newline, for the caller to check what it says."""
    assert finished.returncode == 2, (finished.returncode, finished.stderr)
    assert "Traceback" not in finished.stderr, finished.stderr
    assert finished.stderr.count("\n") == 1 and finished.stderr.endswith("\n"), finished.stderr
    return finished.stderr.removesuffix("\n")
