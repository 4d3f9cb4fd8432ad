"""The Pd library as a musician installs it (issue 11): `unravel pd-install DIR` puts a
relocatable unravel/ folder into a Pd externals folder; Pd finds it there with
[declare -path unravel] / [declare -stdpath unravel] from any patch folder, with no -path to
the build tree; a missing or broken interpreter gives one error line naming the cfg and the fix.
Without a cfg the loader finds a Python that imports unravel (UNRAVEL_PYTHON, python3 on PATH).
The full deken package (issue 25) plays with its own Python in a clean environment.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pdrun import BUILD, ROOT, PdResult, is_error, pd_command, run_pd

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
    assert (h / "pd-externals" / "unravel" / "unravel_first.so").is_file()    # the first path
    return h


def test_binaries_carry_no_python_path():
    """The loader Pd loads links no libpython and has no RUNPATH; the core neither, nor the
    first path's library (it finds torch's where the object's Python has them)."""
    for f in (BUILD / "unravel~.pd_linux", BUILD / "unravel_core.so", BUILD / "unravel_first.so"):
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


# no Python that imports unravel on PATH or in UNRAVEL_PYTHON (the system's python3 has none)
NO_PYTHON = {"PATH": "/usr/bin:/bin", "PYTHONPATH": "", "UNRAVEL_PYTHON": ""}


def _without_cfg(home: Path, tmp_path: Path) -> Path:
    """A copy of the installed library folder without its unravel.cfg (as deken's is)."""
    lib = tmp_path / "ext" / "unravel"
    shutil.copytree(home / "pd-externals" / "unravel", lib)
    (lib / "unravel.cfg").unlink()
    return lib


def _broken(home: Path, tmp_path: Path, cfg_text: str | None, loads: bool = False,
            env: dict | None = None) -> list[str]:
    """One error line naming the cfg and the fix. loads: the external loads (the Python
    starts but cannot import unravel), so the object is created empty, as nn~'s is."""
    lib = _without_cfg(home, tmp_path)
    if cfg_text is not None:
        (lib / "unravel.cfg").write_text(cfg_text)
    r = run_pd(library_patch(tmp_path / "song.pd", None, ["unravel~ default"]),
               env={"HOME": str(tmp_path), **(env or {})}, path=lib, timeout=60)
    mine = [ln for ln in r.errors if "[unravel~]" in ln]
    assert len(mine) == 1, r.errors
    assert str(lib / "unravel.cfg") in mine[0] and "unravel pd-install" in mine[0], mine
    assert len([ln for ln in r.errors if "couldn't create" in ln]) == (0 if loads else 1), r.errors
    return mine


def test_missing_config(home, tmp_path):
    """No cfg, no runtime (python/), no Python that imports unravel: the line names the
    command that fixes it, for this folder."""
    mine = _broken(home, tmp_path, None, env=NO_PYTHON)[0]
    lib = tmp_path / "ext" / "unravel"
    assert "cannot read" in mine and f"{lib}/python holds no Python" in mine, mine
    assert f"run 'unravel pd-install --config-only {lib}' with the Python" in mine, mine


def _plays(lib: Path, tmp_path: Path, env: dict) -> None:
    r = run_pd(library_patch(tmp_path / "song.pd", None, ["unravel~ default"]),
               env={"HOME": str(tmp_path), **env}, path=lib, timeout=120)
    assert r.returncode == 0 and not r.errors, r.lines
    assert any(ln.startswith("info: method forward") for ln in r.lines), r.lines


def test_no_config_finds_unravel_python(home, tmp_path):
    """Without a cfg, the loader asks UNRAVEL_PYTHON whether it imports unravel."""
    _plays(_without_cfg(home, tmp_path), tmp_path, dict(NO_PYTHON, UNRAVEL_PYTHON=sys.executable))


def test_no_config_finds_python3_on_path(home, tmp_path):
    """... then python3 on PATH (here a script that runs this venv's python)."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_ / "python3").chmod(0o755)
    _plays(_without_cfg(home, tmp_path), tmp_path,
           dict(NO_PYTHON, PATH=f"{bin_}:/usr/bin:/bin", PYTHONPATH=os.environ.get("PYTHONPATH", "")))


def test_config_only_accepts_the_library_folder(home, tmp_path):
    """`pd-install --config-only` given the library folder itself (not its externals
    folder) writes that folder's cfg; then it plays."""
    lib = _without_cfg(home, tmp_path)
    p = pd_install(tmp_path, "--config-only", str(lib))
    assert p.returncode == 0, p.stderr
    assert f"python={sys.executable}\n" in (lib / "unravel.cfg").read_text()
    assert not (lib / "unravel").exists()
    _plays(lib, tmp_path, NO_PYTHON)


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


# ------------------------------------------- the full deken package: a Python of its own (issue 25)

DEK = ROOT / "tools" / "dek.py"
VER = f"{sys.version_info[0]}.{sys.version_info[1]}"
PATCHES = sorted(p.name for p in (ROOT / "pd").glob("*-help.pd")) + sorted(
    f"examples/{p.name}" for p in (ROOT / "pd" / "examples").glob("*.pd"))
# what a musician does after opening each patch: (messages, wait for [r name], ms to play);
# 3-render quits by itself, writing its demo.wav; the others play once DSP is on
RUNS = {"examples/2-composition.pd": (["composition-make bang"], "composition-loaded", 3000),
        "examples/3-render.pd": ([], "itself", 0),
        "examples/4-diffusion.pd": (["diffusion-make bang"], "diffusion-loaded", 3000)}


def _dek():
    spec = importlib.util.spec_from_file_location("dek", DEK)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def full_home(tmp_path_factory) -> Path:
    """A fresh home with the full deken package unpacked into ~/pd-externals/unravel: the
    files `tools/dek.py --runtime` packs (the library folder and the runtime tools/pyruntime.py
    makes from this venv), hard-linked, not zipped (zipping the ~1 GB takes ~45 s, unzipping
    ~13 s); or the archive UNRAVEL_TEST_DEK names (e.g. make dist's), unzipped."""
    h = tmp_path_factory.mktemp("fullhome")
    ext = h / "pd-externals"
    if os.environ.get("UNRAVEL_TEST_DEK"):
        with zipfile.ZipFile(os.environ["UNRAVEL_TEST_DEK"]) as z:
            z.extractall(ext)
        return h
    runtime = tmp_path_factory.mktemp("runtime") / "python"
    p = subprocess.run([sys.executable, str(ROOT / "tools" / "pyruntime.py"), str(runtime),
                        "--link"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    for name, f in _dek().files(BUILD, runtime):
        (ext / name).parent.mkdir(parents=True, exist_ok=True)
        os.link(f, ext / name)
    return h


def clean_env(home: Path, **extra: str) -> dict:
    """No Python of ours: HOME, the system's PATH (its python3 has no unravel), one thread."""
    return {"HOME": str(home), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", **extra}


def run_clean(patch: Path, env: dict, timeout: float = 300) -> PdResult:
    cmd = pd_command(patch, path=None)
    cmd[0] = shutil.which(cmd[0])
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                       cwd=patch.parent)
    lines = [ln for ln in (p.stderr + p.stdout).splitlines() if ln.strip()]
    return PdResult(p.returncode, lines, 0.0, [ln for ln in lines if is_error(ln)])


def test_full_package_env_has_no_python_of_ours(full_home):
    """The control: in the clean environment no python3 imports unravel or torch."""
    env = clean_env(full_home)
    for mod in ("unravel", "torch"):
        p = subprocess.run(["sh", "-c", f"python3 -c 'import {mod}'"], env=env, capture_output=True)
        assert p.returncode != 0, mod
    assert not (full_home / "pd-externals" / "unravel" / "unravel.cfg").exists()


def test_full_package_embeds_its_own_python(full_home, tmp_path):
    """While Pd plays [unravel~ default], the libpython and torch mapped into Pd are the
    package's own; a PYTHONPATH and PYTHONHOME that would break any other Python are ignored."""
    lib = full_home / "pd-externals" / "unravel"
    poison = tmp_path / "poison" / "unravel"
    poison.mkdir(parents=True)
    (poison / "__init__.py").write_text("raise ImportError('PYTHONPATH was used')\n")
    patch = tmp_path / "song.pd"
    patch.write_text("\n".join([
        "#N canvas 0 50 450 300 12;", "#X declare -path unravel;",
        "#X obj 10 10 unravel~ default;", "#X obj 10 100 loadbang;", "#X msg 10 130 bang;",
        "#X obj 10 160 print info;", "#X obj 100 130 delay 60000;", "#X msg 100 160 \\; pd quit;",
        "#X connect 1 0 2 0;", "#X connect 2 0 0 0;", "#X connect 0 1 3 0;",
        "#X connect 1 0 4 0;", "#X connect 4 0 5 0;"]) + "\n")
    cmd = pd_command(patch, batch=False, path=None)
    cmd[0] = shutil.which(cmd[0])
    log = tmp_path / "pd.log"
    with log.open("w") as out:
        pd = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
                              env=clean_env(full_home, PYTHONPATH=str(poison.parent),
                                            PYTHONHOME=str(poison.parent)))
        try:
            t0 = time.monotonic()
            while "info: method forward" not in log.read_text() and pd.poll() is None:
                assert time.monotonic() - t0 < 120, log.read_text()
                time.sleep(0.2)
            maps = Path(f"/proc/{pd.pid}/maps").read_text()
        finally:
            pd.terminate()
            pd.wait(10)
    text = log.read_text()
    # (real time on a busy machine: the model's first answer may come late, which is said)
    errors = [ln for ln in text.splitlines() if is_error(ln) and "has not answered" not in ln]
    assert "info: method forward" in text and not errors, text
    files = {ln.split(None, 5)[5] for ln in maps.splitlines() if len(ln.split(None, 5)) == 6}
    py = lib / "python"
    assert [f for f in files if "libpython" in f] == [str(py / "lib" / f"libpython{VER}.so.1.0")]
    torch = [f for f in files if "libtorch_cpu" in f]
    assert torch == [str(py / "lib" / f"python{VER}" / "site-packages/torch/lib/libtorch_cpu.so")]
    # nothing of this venv, of its base Python, or of any other Python or torch
    theirs = [f for f in files if f.startswith((sys.prefix, str(ROOT))) or (
        ("python" in f or "torch" in f) and not f.startswith(str(lib)))]
    assert not theirs, theirs


def _probe(folder: Path, name: str) -> Path:
    """A copy of the patch beside it whose [dac~] is [_probe~]: its two inlets' sum on
    [env~], printed as `level: <dB>` (Pd's dB: 100 is 1.0 RMS, 0 silence)."""
    (folder / "_probe~.pd").write_text(
        "#N canvas 0 50 300 200 12;\n#X obj 10 10 inlet~;\n#X obj 80 10 inlet~;\n"
        "#X obj 10 50 +~;\n#X obj 10 80 env~ 8192;\n#X obj 10 110 print level;\n"
        "#X connect 0 0 2 0;\n#X connect 1 0 2 1;\n#X connect 2 0 3 0;\n#X connect 3 0 4 0;\n")
    text = re.sub(r"(#X obj \d+ \d+) dac~", r"\1 _probe~", (folder / name).read_text())
    (folder / f"_probe-{name}").write_text(text)
    return folder / f"_probe-{name}"


@pytest.mark.parametrize("name", PATCHES)
def test_full_package_plays_every_patch(full_home, tmp_path, name):
    """Each help patch and example, opened from the unpacked package in a clean environment,
    with the clicks it needs, then DSP on: no error line; sound where it plays."""
    lib = full_home / "pd-externals" / "unravel"
    folder, base = (lib / name).parent, (lib / name).name
    sends, until, ms = RUNS.get(name, ([], None, 3000))
    probe = _probe(folder, base)
    lines = ["#N canvas 0 50 450 300 12;", "#X obj 10 10 loadbang;", "#X obj 10 40 t b b;",
             f"#X msg 100 70 \\; pd open {probe.name} {folder}"
             + "".join(f" \\; {s}" for s in sends) + ";",
             f"#X obj 10 100 r {until if until and until != 'itself' else 'nothing'};",
             "#X obj 10 130 t b b;", "#X msg 100 160 \\; pd dsp 1;", f"#X obj 10 160 delay {ms};",
             "#X msg 10 190 \\; pd dsp 0 \\; pd quit;"]
    conns = ["0 0 1 0", "1 1 2 0", "3 0 4 0", "4 1 5 0", "4 0 6 0", "6 0 7 0"] + (
        ["1 0 4 0"] if until is None else [])
    lines += [f"#X connect {c};" for c in conns]
    driver = tmp_path / "driver.pd"
    driver.write_text("\n".join(lines) + "\n")
    try:
        r = run_clean(driver, clean_env(full_home))
    finally:
        probe.unlink()
        (folder / "_probe~.pd").unlink()
    assert r.returncode == 0 and not r.errors, r.lines
    assert not [ln for ln in r.lines if "unravel-job-error" in ln], r.lines
    levels = [float(ln.split()[1]) for ln in r.lines if ln.startswith("level:")]
    if until == "itself":
        y, sr = sf.read(full_home / "Documents" / "unravel" / "3-render" / "demo.wav")
        assert np.sqrt(np.mean(y ** 2)) > 1e-3
    else:
        assert levels and max(levels) > 40, r.lines     # RMS above 0.01
