"""The wheelhouse the project image is built from, so that the image build needs no network.

``compose/Dockerfile`` installs the project with ``pip install --no-index --find-links /wheelhouse``: every
wheel it needs (the runtime dependencies of ``pyproject.toml`` and its build backend) is fetched here, on
the host, with the host's package index, and copied into the build context. Versions are constrained to
those installed in the running environment, so the image runs the dependency versions the tests ran.

pip evaluates environment markers for the Python running it, not for the image's (bookworm's 3.11.2 needs
``async-timeout`` where the host's 3.11.7 does not), so the wheels' own requirements are then evaluated
for the image's Python and whatever that adds is fetched too, until nothing is missing. Invariant: the
wheelhouse is rebuilt whenever ``pyproject.toml`` or the image's Python changes (a stamp holds both).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tomllib
import zipfile
from email.parser import Parser
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from relay.containers.engine import ContainerError

WHEELHOUSE_DIR = "wheelhouse"  # inside compose/, the directory the Dockerfile copies
STAMP = ".pyproject-sha256"
PROJECT = "qkd-relay"


def ensure_wheelhouse(project_root: Path, compose_dir: Path, target_python: str) -> bool:
    """Fill ``compose/wheelhouse`` for an image whose Python is ``target_python`` (e.g. ``3.11.2``) if it is
    missing or stale; True if it was (re)built."""
    pyproject = (project_root / "pyproject.toml").read_bytes()
    digest = f"{hashlib.sha256(pyproject).hexdigest()} python {target_python}"
    wheelhouse = compose_dir / WHEELHOUSE_DIR
    stamp = wheelhouse / STAMP
    if stamp.is_file() and stamp.read_text().strip() == digest:
        return False
    wheelhouse.mkdir(exist_ok=True)
    for stale in wheelhouse.glob("*.whl"):
        stale.unlink()
    document = tomllib.loads(pyproject.decode())
    requirements = [*document["build-system"]["requires"], *document["project"]["dependencies"]]
    constraints = wheelhouse / "constraints.txt"
    constraints.write_text("".join(f"{line}\n" for line in installed_versions()))
    while requirements:
        _pip_wheel(wheelhouse, constraints, requirements)
        requirements = missing_requirements(wheelhouse, target_python)
    stamp.write_text(digest + "\n")
    return True


def missing_requirements(wheelhouse: Path, target_python: str) -> list[str]:
    """Requirements of the wheels in ``wheelhouse`` that apply on ``target_python`` and no wheel there meets."""
    environment = {name: str(value) for name, value in default_environment().items()}
    environment.update(python_full_version=target_python, extra="")
    environment["python_version"] = ".".join(target_python.split(".")[:2])
    wheels = list(wheelhouse.glob("*.whl"))
    present = {canonicalize_name(wheel.name.split("-")[0]) for wheel in wheels}
    missing = {}
    for wheel in wheels:
        for text in _requires_dist(wheel):
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate(environment):
                continue
            if canonicalize_name(requirement.name) not in present:
                requirement.marker = None
                missing[canonicalize_name(requirement.name)] = str(requirement)
    return sorted(missing.values())


def _requires_dist(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        message = Parser().parsestr(archive.read(name).decode())
    return message.get_all("Requires-Dist") or []


def _pip_wheel(wheelhouse: Path, constraints: Path, requirements: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(wheelhouse), "-c", str(constraints)]
        + requirements,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise ContainerError(f"pip wheel failed:\n{result.stderr.strip()[-2000:]}")


def installed_versions() -> list[str]:
    """``name==version`` of every distribution in this environment but the project itself."""
    pins = {}
    for distribution in metadata.distributions():
        name = distribution.metadata["Name"]
        if name and name.lower() != PROJECT:
            pins[name.lower()] = f"{name}=={distribution.version}"
    return sorted(pins.values())
