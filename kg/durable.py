"""Writes that survive a power cut: files flushed to disk before they are renamed into place,
and the directories that hold the renames flushed after."""
from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Callable


def write_synced(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Create ``path`` with ``write(file)`` and flush it to disk before returning."""
    with open(path, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())


def sync_files(directory: Path) -> None:
    """Flush every file of ``directory`` (its own, not its subdirectories'), then the directory."""
    for f in Path(directory).iterdir():
        if f.is_file() and not f.is_symlink():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    sync_dir(directory)


def sync_dir(directory: Path) -> None:
    """Flush a directory's entries (renames and links in it); a filesystem that cannot is let be."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a directory
        pass
    finally:
        os.close(fd)
