"""Base images for the compose testbed: pulled where a registry serves them, built from Debian elsewhere.

The compose file and the Dockerfile name official images (``redis:7``, ``python:3.11-slim``). Where they
cannot be pulled (no Docker Hub, as on the project's machines), stand-ins are built from Debian packages,
which the machine does reach: ``debootstrap`` makes a bookworm root with Python 3.11 and Redis 7.0, ``podman
import`` turns it into ``localhost/qkd-relay-debian:bookworm``, and ``compose/base-images/<name>.Containerfile``
shapes it like the official image; the result is tagged locally under the official name, which podman
resolves before any registry. Invariant: an image already present is never replaced, and a stand-in is
built only when pulling is not wanted or fails; the stand-in builds run with ``--network=none``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from enum import Enum
from pathlib import Path

from relay.containers.engine import ContainerError, Engine, ensure_debian_packages
from relay.containers.steps import StepTimes

DEBIAN_SUITE = "bookworm"  # Python 3.11 and Redis 7.0, the versions the official images carry
DEBIAN_ROOT_IMAGE = f"localhost/qkd-relay-debian:{DEBIAN_SUITE}"
DEBIAN_PACKAGES = ("python3", "python3-venv", "redis-server")
RECIPES_DIR = "base-images"  # inside compose/
PULL_TIMEOUT_S = 120
# official image -> the Containerfile under compose/base-images/ that stands in for it
STAND_INS = {"python:3.11-slim": "python.Containerfile", "redis:7": "redis.Containerfile"}
_FROM = re.compile(r"^FROM\s+(\S+)", re.MULTILINE | re.IGNORECASE)


class BaseImagePolicy(Enum):
    """``auto``: pull, build a stand-in if that fails; ``pull``: pull or fail; ``debian``: never pull."""

    AUTO = "auto"
    PULL = "pull"
    DEBIAN = "debian"


def images_from_dockerfile(dockerfile: Path) -> list[str]:
    return _FROM.findall(dockerfile.read_text())


def ensure_base_images(engine: Engine, names: list[str], policy: BaseImagePolicy, times: StepTimes) -> dict[str, str]:
    """Make every image in ``names`` present; returns how each was obtained (present, pulled, built)."""
    obtained = {}
    for name in dict.fromkeys(names):
        if engine.image_exists(name):
            obtained[name] = "present"
        elif policy is not BaseImagePolicy.DEBIAN and _pull(engine, name):
            obtained[name] = "pulled"
        elif policy is BaseImagePolicy.PULL:
            raise ContainerError(f"cannot pull {name} (use --base-images auto or debian to build a stand-in)")
        else:
            build_stand_in(engine, name, times)
            obtained[name] = "built from Debian"
    return obtained


def build_stand_in(engine: Engine, name: str, times: StepTimes) -> None:
    recipe = STAND_INS.get(name)
    if recipe is None:
        raise ContainerError(f"{name} cannot be pulled and no stand-in is known for it (see {RECIPES_DIR}/)")
    if not engine.image_exists(DEBIAN_ROOT_IMAGE):
        import_debian_root(engine, times)
    recipes = engine.compose_dir / RECIPES_DIR
    with times.step(f"build stand-in {name}"):
        engine.podman("build", "--network=none", "--pull=never", "-f", str(recipes / recipe), "-t", name, str(recipes))


def import_debian_root(engine: Engine, times: StepTimes) -> None:
    """debootstrap a minimal root with :data:`DEBIAN_PACKAGES` and import it as :data:`DEBIAN_ROOT_IMAGE`."""
    with times.step("apt-get install debootstrap"):
        ensure_debian_packages(["debootstrap"])
    with tempfile.TemporaryDirectory(prefix="qkd-relay-debian-") as scratch:
        root = Path(scratch) / "root"
        with times.step(f"debootstrap {DEBIAN_SUITE}"):
            result = subprocess.run(
                ["debootstrap", "--variant=minbase", f"--include={','.join(DEBIAN_PACKAGES)}", DEBIAN_SUITE, str(root)],
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
            )
        if result.returncode != 0:
            tail = "\n".join(result.stdout.strip().splitlines()[-10:] + result.stderr.strip().splitlines()[-5:])
            raise ContainerError(f"debootstrap failed:\n{tail}")
        shutil.rmtree(root / "var" / "cache" / "apt" / "archives", ignore_errors=True)
        shutil.rmtree(root / "var" / "lib" / "apt" / "lists", ignore_errors=True)
        with times.step("podman import of the Debian root"):
            tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
            imported = subprocess.run(
                ["podman", "import", "-", DEBIAN_ROOT_IMAGE],
                stdin=tar.stdout,
                capture_output=True,
                text=True,
                env=engine.environment(),
            )
            tar.wait()
        if tar.returncode != 0 or imported.returncode != 0:
            raise ContainerError(f"importing the Debian root failed: {imported.stderr.strip()[-1000:]}")


def _pull(engine: Engine, name: str) -> bool:
    """Pull the official image by its fully qualified name (no short-name prompt); False if that fails."""
    qualified = name if "/" in name else f"docker.io/library/{name}"
    try:
        pulled = subprocess.run(
            ["podman", "pull", "--quiet", qualified],
            env=engine.environment(),
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=PULL_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return False
    return pulled.returncode == 0
