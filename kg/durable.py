"""Writes that survive a power cut: files flushed to disk before they are renamed into place,
and the directories that hold the renames flushed after."""
from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import IO, Callable

logger = logging.getLogger(__name__)


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


REMOVING_PREFIX = ".removing-"  # a directory set aside to be deleted (set_aside): never read as what it was


def set_aside(path: Path) -> Path:
    """Rename a directory out of the way (``.removing-<name>-<random>`` beside it, atomically)
    before it is deleted, so nothing opening ``path`` meanwhile finds half of it; returns the new
    path. A killed deletion leaves it under that name, for a later :func:`remove_tree`.

    Raises:
        OSError: the rename failed (FileNotFoundError: another process set it aside first).
    """
    aside = path.with_name(f"{REMOVING_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}")
    path.rename(aside)
    return aside


def remove_tree(path: Path) -> bool:
    """Delete a directory, finishing it alongside another process deleting it too; False, with a
    warning, when some of it stays."""
    error: OSError | None = None
    for _ in range(2):  # again after a file another process removed first (rmtree stops at it)
        try:
            shutil.rmtree(path)
        except FileNotFoundError as e:
            error = e
            continue
        except OSError as e:
            error = e
        break
    if not path.exists():
        return True
    logger.warning("could not remove all of %s (%s): it is tried again next time", path, error)
    return False
