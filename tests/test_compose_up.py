"""The compose testbed for real (slow: image builds, containers): ``qkd-relay compose up``, the demo through
the containers (keys between the first SAEs of every region pair, then the transit gateway stopped), and
``compose down`` leaving no container, network or volume of the project behind.

Run with ``./run tests -m slow tests/test_compose_up.py -s`` (as root, or where podman runs); base images
are built from Debian (``--base-images debian``), so no registry but Debian's and PyPI is contacted.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from relay import topology as topology_module
from relay.compose import compose_project_name
from relay.containers.engine import PROJECT_LABEL
from tests.support.cli import run_cli

ROOT = Path(__file__).resolve().parents[1]
STEP_TIMEOUT_S = 1800

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(3 * STEP_TIMEOUT_S),
    pytest.mark.skipif(
        os.geteuid() != 0 and shutil.which("podman") is None, reason="needs podman, or root to install it"
    ),
]


def qkd_relay(*args: str, state: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = run_cli("compose", *args, "--state", state, cwd=ROOT, timeout_s=STEP_TIMEOUT_S)
    print(f"$ qkd-relay compose {' '.join(args)}  ({time.monotonic() - started:.1f} s)\n{result.stdout}{result.stderr}")
    return result, time.monotonic() - started


def project_leftovers(project: str) -> dict[str, str]:
    label = f"label={PROJECT_LABEL}={project}"
    listings = {
        "containers": ["ps", "--all", "--filter", label, "--format", "{{.Names}}"],
        "networks": ["network", "ls", "--filter", label, "--format", "{{.Name}}"],
        "volumes": ["volume", "ls", "--filter", label, "--format", "{{.Name}}"],
    }
    environment = {**os.environ, "CONTAINERS_CONF": str(ROOT / "compose" / "containers.conf")}
    return {
        kind: subprocess.run(["podman", *command], capture_output=True, text=True, env=environment, check=True).stdout
        for kind, command in listings.items()
    }


def test_compose_testbed_comes_up_relays_keys_between_every_region_pair_reroutes_and_goes_down(
    tmp_path: Path,
) -> None:
    topology = topology_module.load_default()
    state = tmp_path / "state"
    try:
        up, _ = qkd_relay("up", "--base-images", "debian", state=state)
        assert up.returncode == 0, up.stderr
        assert "is up and healthy" in up.stdout

        demo, _ = qkd_relay("demo", state=state)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        before_fault, _, after_fault = demo.stdout.partition("fault: stopped the container of GW2")
        regions = {sae.gateway: sae.id for sae in reversed(topology.saes)}  # the first SAE of each gateway
        pairs = re.findall(r"^(\S+) -> (\S+): key_ID \S+: identical key", before_fault, re.MULTILINE)
        assert len(pairs) == 5 and {a for pair in pairs for a in pair} == {*regions.values(), "SAE-X-A"}
        assert "KEYS DIFFER" not in demo.stdout
        assert re.search(r"^SAE-R1-A -> SAE-R3-A: key_ID \S+: identical key", after_fault, re.MULTILINE)
        assert re.search(r"^GW1 relayed [1-9]\d* keys end-to-end after GW2 stopped", after_fault, re.MULTILINE)
        assert re.search(r"^GW2 +\d+ +DOWN ", after_fault, re.MULTILINE)

        status, _ = qkd_relay("status", state=state)
        assert status.returncode == 0 and "8/9 processes running" in status.stdout
    finally:
        down, _ = qkd_relay("down", state=state)
    assert down.returncode == 0, down.stderr
    assert project_leftovers(compose_project_name(topology)) == {"containers": "", "networks": "", "volumes": ""}
