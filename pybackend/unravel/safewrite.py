"""Safe file writes: every file the program writes goes through `write_set` (one file:
`write_file`, `write_bytes`).

The rules ("no partial or corrupt output file, nothing the user had is overwritten
without being asked"):
- the target must be a new name or an existing regular file (never a folder, a device, a
  pipe or a symbolic link), and an existing file is replaced only when `force` is given;
- the data goes to a unique temporary name in the target's folder
  (`.<stem>.<pid>-<hex>.tmp<suffix>`), created exclusively, and is renamed over the target only
  when complete;
- a set of files that belong together is renamed only when all of them are written;
- on any failure (full disk, an exception, an interruption) the temporary files are removed.

Writers that serialize through torch (TorchScript, checkpoints) must serialize to memory
and call `write_bytes`: torch's file writer throws C++ exceptions from a destructor on a
full disk, which abort the process instead of raising.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from typing import Callable, Sequence

from unravel.errors import UnravelError, first_line


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


def write_set(items: Sequence[tuple[str | os.PathLike, Callable[[str], object]]],
              force: bool = False) -> list[Path]:
    """Write a set of files that belong together (e.g. a `.npy`, its latent wav and its
    sidecar), all or nothing: every target is checked (check_target) before anything is
    written, each writer(tmp_name) writes its own temporary file (temp_name), and only when
    all of them are written, and the targets checked again, are they renamed to their targets.

    An OSError or any other exception of a writer (torch's writers raise RuntimeError on a
    full disk) becomes one UnravelError line naming the target; an interrupt passes through.
    Either way every temporary file is gone afterwards.
    """
    targets = [check_target(p, force) for p, _ in items]
    if len(set(targets)) != len(targets):
        raise UnravelError(f"{targets[0]}: the same file would be written twice")
    temps: list[Path] = []
    try:
        for target, (_, writer) in zip(targets, items):
            check_writable_dir(target.parent if str(target.parent) else ".")
            tmp = temp_name(target)
            temps.append(tmp)  # before it exists: a job cancelled from here on still removes it
            try:  # created like any new file (mode 0666 less the umask), unlike mkstemp's 0600
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            except OSError as e:
                temps.pop()   # not ours: never remove a file that was already there
                raise UnravelError(f"{target}: cannot write ({e.strerror or e})") from None
            _run_writer(target, writer, str(tmp))
        for target in targets:   # still regular files or new names just before the renames
            check_target(target, force)
        while temps:
            target = targets[len(targets) - len(temps)]
            try:
                os.replace(temps[0], target)
            except OSError as e:
                raise UnravelError(f"{target}: cannot write ({e.strerror or e})") from None
            temps.pop(0)
    finally:
        for tmp in temps:
            _unlink(tmp)
    return targets


def write_file(path: str | os.PathLike, writer: Callable[[str], object],
               force: bool = False) -> Path:
    """Call writer(tmp_name) on a new temporary file beside `path`, then rename it to `path`
    (a set of one file: see write_set)."""
    return write_set([(path, writer)], force=force)[0]


def bytes_writer(data: bytes) -> Callable[[str], None]:
    """A writer (for write_file, write_set) of `data`."""
    def writer(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
    return writer


def write_bytes(path: str | os.PathLike, data: bytes, force: bool = False) -> Path:
    """Write `data` to `path` safely (see write_set)."""
    return write_file(path, bytes_writer(data), force=force)


def _run_writer(target: Path, writer: Callable[[str], object], tmp: str) -> None:
    """writer(tmp), its failures as one UnravelError line naming `target`."""
    try:
        writer(tmp)
    except UnravelError:
        raise
    except OSError as e:
        raise UnravelError(f"{target}: cannot write ({e.strerror or e})") from None
    except Exception as e:  # noqa: BLE001 - torch's writers raise RuntimeError on a full disk
        raise UnravelError(f"{target}: cannot write ({_write_failure(tmp, e)})") from None


def _write_failure(tmp: str, e: Exception) -> str:
    """The cause of a failed write: a full disk when the folder has no space left."""
    try:
        st = os.statvfs(os.path.dirname(tmp) or ".")
        if st.f_bavail == 0 or st.f_favail == 0:
            return "no space left on device"
    except OSError:
        pass
    return first_line(e)


def _unlink(path: os.PathLike) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
