"""`make dist`: the Python runtime the full deken package carries (unravel/python/), copied
from the Python that runs this script (a venv that has unravel and its dependencies).

OUT gets a CPython home that works wherever it is unpacked:
  bin/python3                      a launcher (native/pylaunch.c) linked to ../lib/libpython,
                                   isolated (-I): the interpreter the jobs run in
  lib/libpython<X.Y>.so.1.0        the interpreter (the loader embeds it with this home)
  lib/python<X.Y>/                 the standard library and lib-dynload, without test/,
                                   idlelib/, tkinter/, turtledemo/, ensurepip/, config-*/
  lib/python<X.Y>/site-packages/   unravel[diffusion] and the distributions it requires
                                   (torch CPU, numpy, scipy, soundfile with libsndfile,
                                   matplotlib, tqdm, a-unet ...), from their RECORD files,
                                   without tests, headers, static libraries, stubs, Cython
                                   sources, torch's C++ test programs and test libraries
  lib/python<X.Y>/sitecustomize.py adds site-packages (a Debian stdlib's site.py looks for
                                   dist-packages instead)
Compiled files are kept, as unchecked-hash .pyc: a zip keeps mtimes to 2 s, so timestamped
ones would be stale after unpacking, and Python would compile torch at every start.

usage: python tools/pyruntime.py OUT [--link]   (--link: hard links instead of copies)"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
VER = f"{sys.version_info[0]}.{sys.version_info[1]}"
EXTRAS = ("diffusion",)          # the optional parts the help patches and examples use
STDLIB_SKIP = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "site-packages",
               "dist-packages", "lib-dynload", "sitecustomize.py"}
DYNLOAD_SKIP = ("_test", "_tkinter", "xxlimited", "_xxtestfuzz", "_ctypes_test")
DIR_SKIP = {"tests", "test", "include"}
SUFFIX_SKIP = (".pyi", ".a", ".h", ".hpp", ".cuh", ".pxd", ".pyx")
TORCH_SKIP = {"torch/bin/" + n for n in ("FileStoreTest", "HashStoreTest", "TCPStoreTest",
                                         "protoc", "protoc-3.13.0.0")} | {
    "torch/lib/" + n for n in ("libjitbackend_test.so", "libtorchbind_test.so",
                               "libbackend_with_compiler.so", "libaoti_custom_ops.so")}
SITECUSTOMIZE = ('"""unravel\'s runtime: its packages are in site-packages beside the standard '
                 'library."""\nimport os\nimport site\n\n'
                 'site.addsitedir(os.path.join(os.path.dirname(os.__file__), "site-packages"))\n')


def skipped(rel: str) -> bool:
    """Whether a site-packages file (a path relative to it) stays out of the runtime."""
    parts = rel.split("/")
    if rel.startswith("..") or any(p in DIR_SKIP for p in parts[:-1]):
        return True
    if rel.startswith("torch/bin/") and parts[-1] != "torch_shm_manager":
        return True
    return rel in TORCH_SKIP or rel.endswith(SUFFIX_SKIP) or rel.endswith(".dist-info/RECORD")


def distributions() -> list[md.Distribution]:
    """unravel[EXTRAS] and every distribution it requires, for this Python and platform."""
    seen: dict[str, md.Distribution] = {}
    todo = [("unravel", EXTRAS)]
    while todo:
        name, extras = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        dist = seen[key] = md.distribution(name)
        for text in dist.requires or []:
            req = Requirement(text)
            env = [{"extra": e} for e in extras] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(e) for e in env):
                todo.append((req.name, tuple(req.extras)))
    return [seen[k] for k in sorted(seen)]


def put(src: Path, dst: Path, link: bool) -> None:
    """Copy (or hard-link) one file; a .pyc becomes unchecked-hash (see the module's doc)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.suffix == ".pyc":
        data = bytearray(src.read_bytes())
        data[4:8] = (1).to_bytes(4, "little")       # hash-based, source not checked
        dst.write_bytes(bytes(data))
        return
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copy2(src, dst)


def pycache_ok(rel: str) -> bool:
    """A compiled file worth keeping: this interpreter's, not optimized (-O) variants."""
    name = rel.rsplit("/", 1)[-1]
    return name.endswith(f".{sys.implementation.cache_tag}.pyc") and ".opt-" not in name


def copy_tree(src: Path, dst: Path, keep, link: bool) -> int:
    """Copy the files of src that keep(relative path) accepts; returns how many."""
    n = 0
    for dirpath, dirnames, filenames in os.walk(src):
        for f in filenames:
            path = Path(dirpath) / f
            rel = path.relative_to(src).as_posix()
            if path.is_file() and keep(rel):
                put(path, dst / rel, link)
                n += 1
    return n


def stdlib(out: Path, link: bool) -> None:
    """The standard library and its extension modules (lib-dynload)."""
    src = Path(sysconfig.get_path("stdlib"))
    dst = out / "lib" / f"python{VER}"

    def keep(rel: str) -> bool:
        parts = rel.split("/")
        if parts[0] in STDLIB_SKIP or parts[0].startswith("config-") or {"test", "tests"} & set(parts[:-1]):
            return False
        return "__pycache__" not in parts or pycache_ok(rel)

    copy_tree(src, dst, keep, link)
    dynload = Path(sysconfig.get_config_var("DESTSHARED"))
    copy_tree(dynload, dst / "lib-dynload",
              lambda rel: "/" not in rel and not rel.startswith(DYNLOAD_SKIP), link)
    (dst / "sitecustomize.py").write_text(SITECUSTOMIZE)


def site_packages(out: Path, link: bool) -> list[str]:
    """The distributions' files; unravel itself from where it is imported (an editable
    install's files are not in its RECORD). Returns the distributions' names."""
    dst = out / "lib" / f"python{VER}" / "site-packages"
    names = []
    for dist in distributions():
        names.append(f"{dist.metadata['Name']} {dist.version}")
        base = Path(dist.locate_file(""))
        for f in dist.files or []:
            rel = f.as_posix()
            if rel.startswith("unravel/") or rel.startswith("__editable__") or skipped(rel):
                continue
            if "__pycache__" in rel and not pycache_ok(rel):
                continue
            src = base / rel
            if src.is_file():
                put(src, dst / rel, link)
    pkg = Path(importlib.util.find_spec("unravel").submodule_search_locations[0])
    copy_tree(pkg, dst / "unravel",
              lambda rel: not rel.startswith("pdlib/") and "__pycache__" not in rel, link)
    return names


def launcher(out: Path) -> None:
    """bin/python3: native/pylaunch.c against this Python's headers and libpython."""
    v = sysconfig.get_config_var
    lib = Path(v("LIBDIR")) / v("INSTSONAME")
    (out / "lib").mkdir(parents=True, exist_ok=True)
    shutil.copy2(lib.resolve(), out / "lib" / lib.name)
    (out / "bin").mkdir(parents=True, exist_ok=True)
    cc = os.environ.get("CC", "cc")
    subprocess.run([cc, "-O2", f"-I{v('INCLUDEPY')}", str(ROOT / "native" / "pylaunch.c"),
                    "-o", str(out / "bin" / "python3"), str(out / "lib" / lib.name),
                    "-Wl,-rpath,$ORIGIN/../lib"], check=True)


def build(out: Path, link: bool = False) -> list[str]:
    """Write the runtime into out (emptied first); returns the distributions it holds."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    launcher(out)
    stdlib(out, link)
    return site_packages(out, link)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--link"]
    if len(args) != 1:
        sys.exit(__doc__.rsplit("usage: ", 1)[1])
    names = build(Path(args[0]), "--link" in sys.argv)
    print(f"wrote {args[0]}: Python {VER}, " + ", ".join(names))
