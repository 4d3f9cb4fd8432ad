"""`unravel pd-install`: build the Pd library folder `unravel/` (the [unravel~] external, the
abstractions, help patches and examples) and install it into a Pd externals folder, pointed
at this Python (its unravel.cfg names sys.executable and its libpython).

The external is built here, by CMake, for this Python: that needs cmake, a C compiler and
Pd's headers (m_pd.h). Its sources ship inside the Python package (unravel/pdlib/, copied
there when the wheel is built) or, in a clone, are the clone's own CMakeLists.txt, native/, pd/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from unravel.errors import UnravelError

PACKAGE = "unravel"                          # the folder name in the externals folder
LOADER = "unravel~.pd_darwin" if sys.platform == "darwin" else "unravel~.pd_linux"
CONFIG = "unravel.cfg"
NEEDS = "cmake, a C compiler and Pd's headers (Debian: apt install cmake build-essential puredata-dev)"


def source_dir() -> Path:
    """The folder holding CMakeLists.txt, native/ and pd/: unravel/pdlib in an installed
    package, else the clone this package is imported from."""
    here = Path(__file__).resolve().parent
    for d in (here / "pdlib", here.parents[1]):
        if (d / "CMakeLists.txt").is_file() and (d / "native").is_dir() and (d / "pd").is_dir():
            return d
    raise UnravelError(f"the Pd library sources are not in {here / 'pdlib'} "
                       "(reinstall unravel from its source or clone)")


def default_dir() -> Path:
    """A folder Pd always searches, so that [declare -path unravel] finds the library from any
    patch: ~/pd-externals (Linux) or ~/Library/Pd (macOS)."""
    return Path.home() / ("Library/Pd" if sys.platform == "darwin" else "pd-externals")


def libpython() -> Path:
    """This Python's shared library (what the external loads)."""
    v = sysconfig.get_config_var
    libdir, name = v("LIBDIR") or "", v("INSTSONAME") or v("LDLIBRARY") or ""
    path = Path(libdir) / name
    if not name or ".so" not in name and ".dylib" not in name or not path.exists():
        raise UnravelError(f"{sys.executable} has no shared libpython ({path}); use a Python "
                           "built with --enable-shared (Debian's, pyenv's with "
                           "PYTHON_CONFIGURE_OPTS=--enable-shared, conda's)")
    return path


def write_config(folder: Path, python: str | None = None) -> Path:
    """Write folder/unravel.cfg naming `python` (default: this one) and its libpython."""
    cfg = Path(folder) / CONFIG
    text = (f"# written by `unravel pd-install`: the Python [unravel~] embeds\n"
            f"python={python or sys.executable}\nlibpython={libpython()}\n")
    tmp = cfg.with_name(CONFIG + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, cfg)
    return cfg


def build_firstpath(src: Path, work: Path) -> Path | None:
    """unravel_first.so (a live object's first path, native/build_firstpath.py) for this
    Python's torch, built under `work`; None when it cannot be (the object is then silent
    until torch is imported)."""
    out = work / "first" / "unravel_first.so"
    p = subprocess.run([sys.executable, str(src / "native" / "build_firstpath.py"), str(out)],
                       capture_output=True, text=True)
    return out if p.returncode == 0 and out.is_file() else None


def build(work: Path) -> Path:
    """Build the library folder with CMake under `work`; returns work/unravel."""
    src = source_dir()
    if not shutil.which("cmake"):
        raise UnravelError(f"building [unravel~] needs {NEEDS}: cmake is not on PATH")
    first = build_firstpath(src, work)
    for cmd in (["cmake", "-S", str(src), "-B", str(work), f"-DUNRAVEL_PYTHON={sys.executable}",
                 f"-DUNRAVEL_FIRST={first or ''}"],
                ["cmake", "--build", str(work), "-j2"]):
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode:
            lines = [ln for ln in (p.stderr + p.stdout).splitlines() if ln.strip()]
            why = next((ln.strip() for ln in lines if "error" in ln.lower()), lines[-1] if lines else "")
            raise UnravelError(f"building [unravel~] failed (it needs {NEEDS}): {why}")
    out = work / PACKAGE
    if not (out / LOADER).is_file():
        raise UnravelError(f"building [unravel~] made no {out / LOADER}")
    return out


def install(dest: Path | None = None, force: bool = False, config_only: bool = False) -> Path:
    """Install the library as dest/unravel (dest: default_dir()); returns that folder.
    config_only: only point an unravel folder already there (e.g. from deken) at this Python;
    dest may then also be that folder itself. An existing dest/unravel is replaced only with
    force."""
    dest = Path(dest).expanduser().resolve() if dest else default_dir()
    target = dest / PACKAGE
    if config_only:
        if (dest / LOADER).is_file():        # the library folder itself
            target = dest
        if not (target / LOADER).is_file():
            raise UnravelError(f"{target} holds no {LOADER} (install the library there first)")
        write_config(target)
        return target
    if target.exists() and not force:
        raise UnravelError(f"{target} exists (an earlier install?): add --force to replace it")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".unravel-build-", dir=dest) as tmp:
        built = build(Path(tmp) / "build")
        write_config(built)
        old = Path(tmp) / "old"
        if target.exists():
            os.replace(target, old)
        os.replace(built, target)
    return target


def usage(target: Path) -> str:
    """What to tell the musician after an install."""
    where = ("[declare -path unravel] in a patch finds it" if target.parent == default_dir()
             else f"add {target} to Pd's search path (Preferences > Path) to use it")
    return (f"installed {target} (Python: {sys.executable})\n"
            f"{where}: [unravel~ default], [bender], [ch8ns0n]; "
            f"examples in {target / 'examples'}.")
