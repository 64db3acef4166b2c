"""Files that live in a local folder or behind an fsspec URL (s3://, gs://, memory:// ...).

The manifest and the catalogs are read and written through these few functions, so that every path
a user gives may be either kind, and every file the pipeline publishes appears whole or not at all.
"""
from __future__ import annotations

import io
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import fsspec


def is_url(location: str | Path) -> bool:
    """True for "scheme://..." locations (s3://, file://, memory://), False for plain local paths."""
    return "://" in str(location)


def join(location: str | Path, *parts: str) -> str:
    """`location`/part/... as a string, for local paths and URLs alike."""
    if is_url(location):
        return "/".join([str(location).rstrip("/"), *parts])
    return str(Path(location, *parts))


def filesystem(location: str | Path) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, path inside it) of a local path or fsspec URL.

    Raises:
        ValueError: the URL's protocol is unknown, or the package that serves it is not installed.
    """
    try:
        return fsspec.core.url_to_fs(str(location))
    except ImportError as error:
        raise ValueError(f"{location}: {error}") from None


def write_atomically(location: str | Path, write: Callable[[IO[bytes]], Any]) -> str:
    """Write a file through `write(sink)` so that readers see the old file or the whole new one.

    The bytes go to a hidden temporary name in the destination folder, which is renamed (`fs.mv`)
    over the destination once `write` has returned; if `write` raises, the temporary file is removed
    and the destination is left as it was. Parent folders are created. Returns `location` as a string.
    """
    fs, path = filesystem(location)
    parent, _, name = path.rpartition("/")
    if parent:
        fs.makedirs(parent, exist_ok=True)
    temporary = f"{parent}/.{name}.{uuid.uuid4().hex}.tmp" if parent else f".{name}.{uuid.uuid4().hex}.tmp"
    try:
        with fs.open(temporary, "wb") as sink:
            write(sink)
            _flush_to_disk(sink)
        fs.mv(temporary, path)
    except BaseException:
        _remove_quietly(fs, temporary)
        raise
    return str(location)


def _flush_to_disk(sink: IO[bytes]) -> None:
    """fsync a local file before it is renamed into place, so that a record never outlives, after a
    power cut, the bytes it describes; remote files have no descriptor and are left alone."""
    try:
        sink.flush()
        os.fsync(sink.fileno())
    except (AttributeError, OSError, io.UnsupportedOperation):
        pass


def fsync_file(path: str | Path) -> None:
    """Flush a finished local file's bytes to disk (before its rename or record makes it count)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove_quietly(fs: fsspec.AbstractFileSystem, path: str) -> None:
    try:
        if fs.exists(path):
            fs.rm(path)
    except OSError:
        pass


def local_copy(location: str | Path, folder: str | Path) -> Path:
    """A local file for `location`: plain paths and file:// URLs as they are, other URLs copied once
    into `folder` (under a temporary name, then renamed, so a half-copied file is never used)."""
    if not is_url(location):
        return Path(location)
    fs, path = filesystem(location)
    if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        return Path(path)
    target = Path(folder) / Path(path).name
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        try:
            fs.get_file(path, str(partial))
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
    return target


def publish_file(local: str | Path, location: str | Path) -> str:
    """Move a finished local file to `location` (a local path or URL) so that it appears whole or not
    at all: renamed when on the same disk, else copied under a temporary name beside the destination
    and renamed there (uploaded, then moved, for URLs). The local file is gone afterwards."""
    local = Path(local)
    if not is_url(location):
        target = Path(location)
        target.parent.mkdir(parents=True, exist_ok=True)
        fsync_file(local)
        try:
            local.replace(target)
        except OSError:  # another disk: copy beside the target first
            partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
            try:
                shutil.copyfile(local, partial)
                partial.replace(target)
            finally:
                partial.unlink(missing_ok=True)
            local.unlink()
        return str(target)
    fs, path = filesystem(location)
    parent, _, name = path.rpartition("/")
    temporary = f"{parent}/.{name}.{uuid.uuid4().hex}.part"
    try:
        fs.put_file(str(local), temporary)
        fs.mv(temporary, path)
    except BaseException:
        _remove_quietly(fs, temporary)
        raise
    local.unlink()
    return str(location)


def exists(location: str | Path) -> bool:
    """Whether a file is at a local path or URL."""
    fs, path = filesystem(location)
    return fs.isfile(path)
