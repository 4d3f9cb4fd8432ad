"""The Pd library as a musician installs it (issue 11): `unravel pd-install DIR` puts a
relocatable unravel/ folder into a Pd externals folder; Pd finds it there with
[declare -path unravel] / [declare -stdpath unravel] from any patch folder, with no -path to
the build tree; a missing or broken interpreter gives one error line naming the cfg and the fix.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from pdrun import BUILD, ROOT, run_pd

pytestmark = pytest.mark.skipif(not (BUILD / "unravel~.pd_linux").exists(),
                                reason="the external is not built (make setup)")

OBJECTS = ["unravel~ default", "bender", "ch8ns0n", "chns0n 2"]


def pd_install(home: Path, *args: str, python: str = sys.executable) -> subprocess.CompletedProcess:
    """`python -m unravel.cli pd-install ARGS` with HOME=home."""
    env = dict(os.environ, HOME=str(home))
    return subprocess.run([python, "-m", "unravel.cli", "pd-install", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def library_patch(path: Path, declare: str | None, objects=OBJECTS) -> Path:
    """A patch that declares `declare`, creates `objects`, bangs the first one (its status on
    [print info]) and quits."""
    lines = ["#N canvas 0 50 450 300 12;"]
    if declare:
        lines.append(f"#X declare {declare};")
        lines.append(f"#X obj 200 10 declare {declare};")
    n0 = 1 if declare else 0      # the object index of objects[0] ([declare] is object 0)
    for k, text in enumerate(objects):
        lines.append(f"#X obj 10 {10 + 30 * k} {text};")
    lines += ["#X obj 10 200 loadbang;", "#X msg 10 230 bang;", "#X obj 10 260 print info;",
              "#X msg 100 230 \\; pd quit;"]
    first, lb = n0, n0 + len(objects)
    nouts = 2   # [unravel~ default] forward: one signal outlet, then info
    lines += [f"#X connect {lb} 0 {lb + 1} 0;", f"#X connect {lb + 1} 0 {first} 0;",
              f"#X connect {first} {nouts - 1} {lb + 2} 0;", f"#X connect {lb} 0 {lb + 3} 0;"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def run_library(patch: Path, home: Path, args: list[str] | None = None, env: dict | None = None):
    """Run the patch as an installed library is used: HOME=home, no -path to build/."""
    e = {"HOME": str(home)}
    e.update(env or {})
    return run_pd(patch, args=args, env=e, path=None, timeout=60)


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A home folder with `unravel pd-install` done into ~/pd-externals (the default)."""
    h = tmp_path_factory.mktemp("home")
    p = pd_install(h)
    assert p.returncode == 0, p.stderr
    assert str(h / "pd-externals" / "unravel") in p.stdout
    return h


def test_binaries_carry_no_python_path():
    """The loader Pd loads links no libpython and has no RUNPATH; the core neither."""
    for f in (BUILD / "unravel~.pd_linux", BUILD / "unravel_core.so"):
        dyn = subprocess.run(["readelf", "-d", str(f)], capture_output=True, text=True).stdout
        assert "NEEDED" in dyn, dyn
        assert "RPATH" not in dyn and "RUNPATH" not in dyn and "libpython" not in dyn, (f, dyn)


@pytest.mark.parametrize("declare", ["-path unravel", "-stdpath unravel"])
def test_installed_library_from_any_folder(home, tmp_path, declare):
    lib = home / "pd-externals" / "unravel"
    cfg = (lib / "unravel.cfg").read_text()
    assert f"python={sys.executable}\n" in cfg
    r = run_library(library_patch(tmp_path / "songs" / "song.pd", declare), home)
    assert r.returncode == 0 and not r.errors, r.lines
    assert any(ln.startswith("info: method forward") for ln in r.lines), r.lines


def test_without_declare_the_objects_are_not_found(home, tmp_path):
    """The control for the test above: the library is not on Pd's path by itself."""
    r = run_library(library_patch(tmp_path / "song.pd", None), home)
    assert len([ln for ln in r.errors if "couldn't create" in ln]) == len(OBJECTS), r.lines


def test_copied_anywhere(home, tmp_path):
    """The installed folder copied (as a file manager would) into ~/Documents/Pd/externals,
    that folder on Pd's search path (Pd's preferences put it there): it still works."""
    dest = tmp_path / "Documents" / "Pd" / "externals"
    shutil.copytree(home / "pd-externals" / "unravel", dest / "unravel")
    r = run_pd(library_patch(tmp_path / "elsewhere" / "song.pd", None,
                             ["unravel/unravel~ default", "unravel/bender"]),
               env={"HOME": str(tmp_path)}, path=dest, timeout=120)
    assert r.returncode == 0 and not r.errors, r.lines
    assert any(ln.startswith("info: method forward") for ln in r.lines), r.lines


def _broken(home: Path, tmp_path: Path, cfg_text: str | None, loads: bool = False) -> list[str]:
    """One error line naming the cfg and the fix. loads: the external loads (the Python
    starts but cannot import unravel), so the object is created empty, as nn~'s is."""
    lib = tmp_path / "ext" / "unravel"
    shutil.copytree(home / "pd-externals" / "unravel", lib)
    if cfg_text is None:
        (lib / "unravel.cfg").unlink()
    else:
        (lib / "unravel.cfg").write_text(cfg_text)
    r = run_pd(library_patch(tmp_path / "song.pd", None, ["unravel~ default"]),
               env={"HOME": str(tmp_path)}, path=lib, timeout=60)
    mine = [ln for ln in r.errors if "[unravel~]" in ln]
    assert len(mine) == 1, r.errors
    assert str(lib / "unravel.cfg") in mine[0] and "unravel pd-install" in mine[0], mine
    assert len([ln for ln in r.errors if "couldn't create" in ln]) == (0 if loads else 1), r.errors
    return mine


def test_missing_config(home, tmp_path):
    assert "cannot read" in _broken(home, tmp_path, None)[0]


def test_python_gone(home, tmp_path):
    lib = sysconfig.get_config_var("LIBDIR") + "/" + sysconfig.get_config_var("INSTSONAME")
    mine = _broken(home, tmp_path, f"python={tmp_path}/gone/bin/python\nlibpython={lib}\n")
    assert "gone" in mine[0]


def test_python_without_unravel(home, tmp_path):
    """The cfg names a Python that starts but has no unravel (a bare venv)."""
    venv = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    lib = sysconfig.get_config_var("LIBDIR") + "/" + sysconfig.get_config_var("INSTSONAME")
    mine = _broken(home, tmp_path, f"python={venv}/bin/python\nlibpython={lib}\n", loads=True)
    assert "No module named 'unravel'" in mine[0]


def test_libpython_missing(home, tmp_path):
    mine = _broken(home, tmp_path, f"python={sys.executable}\nlibpython={tmp_path}/libpython3.so\n")
    assert "cannot load libpython" in mine[0]


def test_reinstall_needs_force(home):
    p = pd_install(home)
    assert p.returncode == 2 and "--force" in p.stderr, p.stderr
    assert (home / "pd-externals" / "unravel" / "unravel~.pd_linux").exists()


def test_non_editable_install(tmp_path):
    """A wheel (no clone around it) carries the library's sources: its `pd-install` builds
    the external, points it at that Python, and Pd runs it from a fresh home."""
    src = tmp_path / "src"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, src / f)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "dist"), str(src)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("unravel-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for f in ["unravel/pdlib/CMakeLists.txt", "unravel/pdlib/native/unravel_loader.c",
              "unravel/pdlib/pd/bender.pd", "unravel/pdlib/pd/examples/loop.wav"]:
        assert f in names
    # a venv holding the wheel, the dependencies (torch ...) borrowed from this one
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c",
                                "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
                    str(wheel)], check=True, capture_output=True)
    (site / "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    py = str(venv / "bin" / "python")
    where = subprocess.run([py, "-c", "import unravel; print(unravel.__file__)"],
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(site)), where
    h = tmp_path / "home"
    h.mkdir()
    p = pd_install(h, python=py)
    assert p.returncode == 0, p.stderr
    assert f"python={py}\n" in (h / "pd-externals" / "unravel" / "unravel.cfg").read_text()
    r = run_library(library_patch(tmp_path / "song.pd", "-path unravel"), h)
    assert r.returncode == 0 and not r.errors, r.lines
    assert any(ln.startswith("info: method forward") for ln in r.lines), r.lines
