"""Podman and podman-compose for the compose testbed, with the engine settings that live beside the file.

Docker does not run on the project's machines; podman does, but only with settings that no system file
should carry for one project (runc instead of crun, cgroupfs, ulimits within the host's hard limits).
They live in ``compose/containers.conf`` and every podman and podman-compose call made through
:class:`Engine` selects that file with ``CONTAINERS_CONF``, so ``docker-compose.yml`` stays engine-neutral
and no system configuration is changed. Missing tools are installed the way ``./run`` installs
redis-server: Debian packages with apt-get, podman-compose from PyPI into the running environment.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

ENGINE_CONF = "containers.conf"  # beside docker-compose.yml
PODMAN_COMPOSE = "podman-compose==1.6.0"
# Debian package -> the program it provides; runc is the runtime containers.conf names.
APT_PROGRAMS = {"podman": "podman", "runc": "/usr/sbin/runc", "debootstrap": "debootstrap"}
PROJECT_LABEL = "io.podman.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


class ContainerError(Exception):
    """A container step failed; printed as one line with what to look at."""


def ensure_debian_packages(packages: Sequence[str]) -> list[str]:
    """apt-get install the packages whose program is missing; returns those installed."""
    missing = [p for p in packages if shutil.which(APT_PROGRAMS[p]) is None]
    if missing:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        _run([*sudo, "apt-get", "update", "-qq"], environment)
        _run([*sudo, "apt-get", "install", "-y", "-qq", *missing], environment)
    return missing


def ensure_podman_compose() -> bool:
    """pip install podman-compose into this interpreter's environment if missing; True if installed."""
    if find_spec("podman_compose") is not None:
        return False
    _run([sys.executable, "-m", "pip", "install", "-q", PODMAN_COMPOSE], dict(os.environ))
    return True


@dataclass(frozen=True)
class Container:
    """One container of the compose project, as ``podman ps --all`` lists it."""

    id: str
    name: str
    service: str
    running: bool


@dataclass(frozen=True)
class Engine:
    """podman and podman-compose on one compose directory, with its ``containers.conf``."""

    compose_dir: Path
    compose_file: str
    project: str
    variables: Mapping[str, str] = field(default_factory=dict)  # for the compose file's ${...}

    def environment(self) -> dict[str, str]:
        return {**os.environ, **self.variables, "CONTAINERS_CONF": str(self.compose_dir.resolve() / ENGINE_CONF)}

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(["podman", *args], self.environment(), check=check)

    def compose(self, *args: str) -> subprocess.CompletedProcess[str]:
        """podman-compose on the compose file; its output is shown only when it fails."""
        command = [sys.executable, "-m", "podman_compose", "--project-name", self.project, "-f", self.compose_file]
        return _run([*command, *args], self.environment(), cwd=self.compose_dir)

    def image_exists(self, name: str) -> bool:
        return self.podman("image", "exists", name, check=False).returncode == 0

    def containers(self) -> dict[str, Container]:
        """The project's containers by compose service name, running or not."""
        listed = self._list_json("ps", "--all")
        return {
            entry["Labels"][SERVICE_LABEL]: Container(
                entry["Id"], entry["Names"][0], entry["Labels"][SERVICE_LABEL], entry["State"] == "running"
            )
            for entry in listed
        }

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, networks and volumes still labelled with the project: empty lists after a clean down."""
        label = f"label={PROJECT_LABEL}={self.project}"
        return {
            "containers": [c["Names"][0] for c in self._list_json("ps", "--all")],
            "networks": self._names("network", "ls", "--filter", label),
            "volumes": self._names("volume", "ls", "--filter", label),
        }

    def inspect(self, container: str) -> dict[str, Any]:
        document: list[dict[str, Any]] = json.loads(self.podman("container", "inspect", container).stdout)
        return document[0]

    def _list_json(self, *command: str) -> list[dict[str, Any]]:
        output = self.podman(*command, "--filter", f"label={PROJECT_LABEL}={self.project}", "--format", "json")
        return json.loads(output.stdout or "[]") or []

    def _names(self, *command: str) -> list[str]:
        return self.podman(*command, "--format", "{{.Name}}").stdout.split()


def _run(
    command: list[str],
    environment: Mapping[str, str],
    *,
    cwd: Path | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        command,
        env=dict(environment),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        encoding="latin-1",
    )
    if check and result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise ContainerError(f"`{' '.join(command[:6])} ...` failed with exit status {result.returncode}:\n{tail}")
    return result
