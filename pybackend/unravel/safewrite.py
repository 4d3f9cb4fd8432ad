"""Safe file writes: every file the program writes goes through `write_file` (or `write_bytes`).

The rules ("no partial or corrupt output file, nothing the user had is overwritten
without being asked"):
- the target must be a new name or an existing regular file (never a folder, a device, a
  pipe or a symbolic link), and an existing file is replaced only when `force` is given;
- the data goes to a unique temporary name in the target's folder
  (`.<stem>.<pid>-<hex>.tmp<suffix>`), created exclusively, and is renamed over the target only
  when complete;
- on any failure (full disk, an exception, an interruption) the temporary file is removed.

Writers that serialize through torch (TorchScript, checkpoints) must serialize to memory
and call `write_bytes`: torch's file writer throws C++ exceptions from a destructor on a
full disk, which abort the process instead of raising.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from typing import Callable

from unravel.errors import UnravelError


def check_writable_dir(folder: str | os.PathLike) -> Path:
    """Create `folder` if needed and check that files can be created in it."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UnravelError(f"{folder}: output path is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UnravelError(f"{folder}: cannot create output folder ({e.strerror or e})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UnravelError(f"{folder}: output folder is not writable")
    return folder


def check_target(path: str | os.PathLike, force: bool = False) -> Path:
    """Refuse a target that is not a new name or a regular file, or that exists without
    `force`. Returns the path."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):   # a new name (its folder is checked later)
        return path
    except OSError as e:
        raise UnravelError(f"{path}: cannot write ({e.strerror or e})") from None
    if stat.S_ISLNK(st.st_mode):
        raise UnravelError(f"{path}: is a symbolic link; not replacing it")
    if stat.S_ISDIR(st.st_mode):
        raise UnravelError(f"{path}: is a folder; not replacing it")
    if not stat.S_ISREG(st.st_mode):
        raise UnravelError(f"{path}: is not a regular file (a device, pipe or socket); not replacing it")
    if not force:
        raise UnravelError(f"{path}: already exists (use --force to overwrite)")
    return path


def temp_name(path: Path) -> Path:
    """A fresh temporary name beside `path`: `.<stem>.<pid>-<hex>.tmp<suffix>` (the suffix
    kept for writers that look at it)."""
    return path.with_name(f".{path.stem}.{os.getpid()}-{secrets.token_hex(4)}.tmp{path.suffix}")


def write_file(path: str | os.PathLike, writer: Callable[[str], object],
               force: bool = False) -> Path:
    """Call writer(tmp_name) on a new temporary file beside `path`, then rename it to `path`.

    The target rules are in the module docstring. An OSError (full disk, no permission)
    becomes one UnravelError line; other exceptions from the writer pass through. Either way
    the temporary file is gone afterwards.
    """
    path = Path(path)
    check_target(path, force)
    check_writable_dir(path.parent if str(path.parent) else ".")
    tmp = temp_name(path)
    created = False
    try:  # one try from creation on: an exception raised in this thread (a cancelled job)
        # between two statements still removes the file
        # created like any new file (mode 0666 less the umask), unlike mkstemp's 0600
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        created = True
        writer(str(tmp))
        check_target(path, force)   # still a regular file or a new name just before the rename
        os.replace(tmp, path)
    except BaseException as e:
        if created or not isinstance(e, FileExistsError):
            _unlink(tmp)
        if isinstance(e, OSError):
            raise UnravelError(f"{path}: cannot write ({e.strerror or e})") from None
        raise
    return path


def write_bytes(path: str | os.PathLike, data: bytes, force: bool = False) -> Path:
    """Write `data` to `path` safely (see write_file)."""
    def writer(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
    return write_file(path, writer, force=force)


def _unlink(path: os.PathLike) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
