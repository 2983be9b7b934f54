"""Regenerate the Python gRPC modules from ``protos/``: ``python -m relay.proto.generate [--check]``.

The proto tree is mapped onto the ``relay.proto`` package so generated imports resolve inside our
package. ``--check`` regenerates into a scratch directory and fails if the committed files differ,
which is what the test suite runs.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

REPO = Path(__file__).resolve().parents[2]
PROTOS = REPO / "protos"
PACKAGE_PREFIX = "relay/proto"


def proto_files() -> list[Path]:
    return sorted(PROTOS.rglob("*.proto"))


def generate(out_root: Path) -> list[Path]:
    """Write the generated modules under ``out_root/relay/proto`` and return their paths."""
    sources = [f"{PACKAGE_PREFIX}/{path.relative_to(PROTOS).as_posix()}" for path in proto_files()]
    grpc_include = Path(protoc.__file__).parent / "_proto"
    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"--proto_path={PACKAGE_PREFIX}={PROTOS}",
            f"--proto_path={grpc_include}",
            f"--python_out={out_root}",
            f"--pyi_out={out_root}",
            f"--grpc_python_out={out_root}",
            *sources,
        ]
    )
    if status != 0:
        raise RuntimeError(f"protoc failed with status {status}")
    package_root = out_root / PACKAGE_PREFIX
    generated = sorted(package_root.rglob("*_pb2*.py*"))
    for path in generated:
        directory = path.parent
        while directory != package_root:  # make every generated directory an importable package
            (directory / "__init__.py").touch()
            directory = directory.parent
    return generated


def stale_files() -> list[str]:
    """Generated files whose committed copy differs from a fresh generation (or is missing)."""
    with tempfile.TemporaryDirectory() as scratch:
        fresh = generate(Path(scratch))
        stale = []
        for path in fresh:
            relative = path.relative_to(scratch)
            committed = REPO / relative
            if not committed.is_file() or not filecmp.cmp(path, committed, shallow=False):
                stale.append(str(relative))
        return stale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the committed code is stale")
    if parser.parse_args().check:
        stale = stale_files()
        for name in stale:
            print(f"stale: {name}", file=sys.stderr)
        return 1 if stale else 0
    for path in generate(REPO):
        print(f"generated {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as exc:
        print(f"relay.proto.generate: {exc}", file=sys.stderr)
        sys.exit(2)
