"""A key directory in which one entity's files are another's: start a real server "as" an entity while it
presents someone else's certificate, genuine and issued by the same CA."""

from __future__ import annotations

import shutil
from pathlib import Path

from relay.pki.layout import KeyDirectory


def impostor_keys(keys: KeyDirectory, directory: Path, *, serving_as: str, presenting: str) -> KeyDirectory:
    """``keys`` copied to ``directory``, except that ``serving_as``'s certificate and key are ``presenting``'s."""
    shutil.copytree(keys.root, directory)
    impostor = KeyDirectory(directory)
    stolen, posing = keys.entity(presenting), impostor.entity(serving_as)
    for source, target in ((stolen.cert, posing.cert), (stolen.key, posing.key), (stolen.combined, posing.combined)):
        shutil.copyfile(source, target)
    return impostor
