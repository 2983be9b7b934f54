"""Creating and reading private key files with owner-only permissions.

Files are created with O_EXCL so an existing key is never overwritten, and are checked through the opened
descriptor (no check-then-open race) so a key readable by group or others is refused, as ssh does.
"""

import os
import stat
from pathlib import Path

from relay.crypto.errors import KeyFileError


def write_private_file(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 and write ``data``; refuse if it already exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists; refusing to overwrite a key") from None
    with os.fdopen(fd, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def read_private_file(path: Path) -> bytes:
    """Read a key file, refusing anything but a regular file accessible only by its owner."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise KeyFileError(f"{path} does not exist") from None
    except OSError as exc:
        raise KeyFileError(f"cannot open {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as file:
        mode = os.fstat(file.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise KeyFileError(f"{path} is not a regular file")
        if mode & 0o077:
            raise KeyFileError(f"{path} has mode {stat.S_IMODE(mode):04o}; a key file must be 0600 (chmod 600)")
        return file.read()
