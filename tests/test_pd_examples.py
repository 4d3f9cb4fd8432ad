"""Every example patch, run headless from the library as a musician installs it into a fresh
home's ~/pd-externals (no -path to the build tree): by `unravel pd-install`, or by unpacking
the deken package `make dist` writes (tools/dek.py) and `unravel pd-install --config-only`.
As a musician clicks through them: the results land in ~/Documents/unravel/<example>, never
in the library folder, and nothing is overwritten."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pdrun import BUILD, ROOT, run_pd
from test_pd_package import pd_install

pytestmark = pytest.mark.skipif(not (BUILD / "unravel~.pd_linux").exists(),
                                reason="the external is not built (make setup)")

EXAMPLES = sorted(p.name for p in (ROOT / "pd" / "examples").glob("*.pd"))


# deken's file name pattern (deken/developer/README.md, "Filename format")
DEKEN_NAME = re.compile(r"([^\[\]\(\)]+)(\[v[^\[\]\(\)]+\])?((\([^\[\]\(\)]+\))*)\.(dek)")


def unpack_dek(tmp: Path, externals: Path) -> None:
    """tools/dek.py on the build, checked, unpacked into the empty `externals` folder."""
    p = subprocess.run([sys.executable, str(ROOT / "tools" / "dek.py"), str(BUILD), str(tmp)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    (dek,) = tmp.glob("*.dek")
    m = DEKEN_NAME.fullmatch(dek.name)
    assert m and m.group(1) == "unravel" and m.group(3) == "(Linux-amd64-32)", dek.name
    assert (tmp / (dek.name + ".sha256")).read_text() == hashlib.sha256(dek.read_bytes()).hexdigest()
    objects = [ln.split("\t")[0] for ln in (tmp / (dek.name + ".txt")).read_text().splitlines()]
    assert objects == ["unravel~", "bender", "chns0n", "ch4ns0n", "ch8ns0n"]
    with zipfile.ZipFile(dek) as z:
        names = z.namelist()
        assert all(n.startswith("unravel/") for n in names) and "unravel/unravel.cfg" not in names
        externals.mkdir(parents=True)
        z.extractall(externals)
    for f in ("unravel~.pd_linux", "unravel_core.so"):      # zipfile does not restore modes
        (externals / "unravel" / f).chmod(0o755)


@pytest.fixture(scope="module", params=["pd-install", "dek"])
def home(request, tmp_path_factory) -> Path:
    """A fresh home with the library in ~/pd-externals/unravel, installed either way."""
    h = tmp_path_factory.mktemp("home")
    if request.param == "pd-install":
        p = pd_install(h)
    else:
        unpack_dek(tmp_path_factory.mktemp("dist"), h / "pd-externals")
        p = pd_install(h, "--config-only", str(h / "pd-externals"))
    assert p.returncode == 0, p.stderr
    return h


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def driver(path: Path, example: Path, sends: list[str], until: str | None) -> Path:
    """A patch that opens `example` (as File > Open does), sends `sends`, and quits when
    something arrives on [r until] (at once without `until`; "itself": the example quits)."""
    sends = sends + ([] if until else ["pd quit"])
    lines = ["#N canvas 0 50 450 300 12;", "#X obj 10 10 loadbang;",
             f"#X msg 10 40 \\; pd open {example.name} {example.parent}"
             + "".join(f" \\; {s}" for s in sends) + ";",
             "#X msg 10 200 \\; pd dsp 0 \\; pd quit;",
             f"#X obj 10 100 r {until or 'nothing'};", "#X obj 10 130 t b a;",
             "#X obj 100 160 print got;"]
    conns = ["#X connect 0 0 1 0;", "#X connect 3 0 4 0;", "#X connect 4 0 2 0;",
             "#X connect 4 1 5 0;"]
    path.write_text("\n".join(lines + conns) + "\n")
    return path


def run_example(home: Path, tmp_path: Path, name: str, sends: list[str], until: str | None,
                timeout: float = 240):
    lib = home / "pd-externals" / "unravel"
    before = _snapshot(lib)
    r = run_pd(driver(tmp_path / "driver.pd", lib / "examples" / name, sends, until),
               env={"HOME": str(home)}, path=None, timeout=timeout, args=["-r", "44100"])
    assert r.returncode == 0 and not r.errors, r.lines
    assert not [ln for ln in r.lines if "unravel-job-error" in ln], r.lines
    assert _snapshot(lib) == before, "an example wrote into the library folder"
    return r


def test_every_example_is_tested():
    """Each has its test here; 5-live.pd's is tests/test_pd_live_cycle.py (read-only folders)."""
    assert EXAMPLES == ["1-bending.pd", "2-composition.pd", "3-render.pd", "4-diffusion.pd",
                        "5-live.pd"]


def test_1_bending(home, tmp_path):
    run_example(home, tmp_path, "1-bending.pd", ["pd dsp 1"], None)
    assert (home / "Documents" / "unravel" / "1-bending").is_dir()


def test_2_composition_twice(home, tmp_path):
    """Twice: the second run reuses loop.npy and writes a second pattern beside the first."""
    out = home / "Documents" / "unravel" / "2-composition"
    for k in (1, 2):
        r = run_example(home, tmp_path, "2-composition.pd", ["composition-make bang"],
                        "composition-loaded")
        got = r.after("got:")
        # the comment: 19, 136.00 (2 beats in 0.88 s: the player's default, issue 25)
        assert got and got[0].startswith("loaded 19 135.99"), r.lines
        assert sorted(p.name for p in out.glob("fibo-*.latent.wav")) == [
            f"fibo-normal-{i:03d}.latent.wav" for i in range(1, k + 1)]
    assert (out / "loop.npy").exists()


def test_3_render(home, tmp_path):
    out = home / "Documents" / "unravel" / "3-render"
    r = run_example(home, tmp_path, "3-render.pd", [], "itself")
    # the example quits by itself (headless): demo.wav is written before
    assert r.after("demo-frames:") == [str(8 * 44100)], r.lines
    y, sr = sf.read(out / "demo.wav", dtype="float32")
    assert sr == 44100 and y.shape == (8 * 44100,) and np.sqrt(np.mean(y ** 2)) > 1e-3
    first = (out / "demo.wav").read_bytes()
    r = run_example(home, tmp_path, "3-render.pd", [], "itself")
    assert any("exists (kept)" in ln for ln in r.lines), r.lines
    assert f"demo: exists (kept): {out / 'demo.wav'}" in r.lines, r.lines    # the name, not 'float'
    assert (out / "demo.wav").read_bytes() == first


def test_4_diffusion(home, tmp_path):
    out = home / "Documents" / "unravel" / "4-diffusion"
    r = run_example(home, tmp_path, "4-diffusion.pd", ["diffusion-make bang"], "diffusion-loaded")
    got = r.after("got:")
    assert got and got[0].startswith("loaded 256 "), r.lines
    done = r.after("diffused:")
    assert done == [f"{out}/diffused_7.wav {out}/diffused_7.npy {out}/diffused_7.latent.wav"], r.lines
    assert sf.info(out / "diffused_7.wav").frames > 0


def test_help_job_messages_work_from_the_help_folder(home, tmp_path):
    """The job messages of unravel~-help.pd's [pd jobs], sent in order to an [unravel~
    default] in the library folder (where the help patch is), after its phrase is read into
    the array `phrase`: each replies done, the file ones and the array ones."""
    lib = home / "pd-externals" / "unravel"
    help_text = (lib / "unravel~-help.pd").read_text()
    jobs = [ln[len("#X msg "):].split(" ", 2)[2].rstrip(";") for ln in help_text.splitlines()
            if ln.startswith("#X msg ") and ln.split(" ")[4] in
            ("encode", "stats", "generate", "decode", "tempo", "diffuse")]
    names = ["encode", "stats", "generate", "decode", "tempo", "diffuse"]
    assert [j.split()[0] for j in jobs] == names + ["encode", "stats", "generate", "decode", "diffuse"]
    assert [j.split()[1] for j in jobs[6:]] == ["input-array"] * 4 + ["output-array"]
    read = next(ln.split(" ", 4)[4].rstrip(";") for ln in help_text.splitlines()
                if ln.startswith("#X msg ") and " read -resize " in ln)
    lines = ["#N canvas 0 50 450 300 12;", "#X obj 10 10 loadbang;",
             "#X msg 10 40 " + " \\, ".join(jobs) + ";", "#X obj 10 70 unravel~ default;",
             "#X obj 10 100 route done error;", "#X obj 10 130 print done;",
             "#X obj 100 130 print failed;",
             # count the replies; after the last, quit
             "#X obj 200 130 t b;", "#X obj 200 160 f;", "#X obj 240 160 + 1;",
             f"#X obj 200 190 sel {len(jobs)};", "#X msg 200 220 \\; pd quit;",
             # first the phrase, as the help patch reads it
             "#X obj 300 10 array define phrase;", "#X obj 300 40 t b b;",
             f"#X msg 300 70 {read};", "#X obj 300 100 soundfiler;"]
    conns = ["0 0 12 0", "12 0 1 0", "12 1 13 0", "13 0 14 0", "1 0 2 0", "2 1 3 0",
             "3 0 4 0", "3 1 5 0", "3 0 6 0", "3 1 6 0",
             "6 0 7 0", "7 0 8 0", "8 0 7 1", "8 0 9 0", "9 0 10 0"]
    patch = lib / "_jobs_test.pd"
    patch.write_text("\n".join(lines + [f"#X connect {c};" for c in conns]) + "\n")
    try:
        r = run_pd(patch, env={"HOME": str(home)}, path=None, timeout=300)
    finally:
        patch.unlink()
    done = r.after("done:")
    assert [d.split()[0] for d in done] == [j.split()[0] for j in jobs], r.lines
    assert [d.split()[1] for d in done[6:]] == ["lat", "lat", "gen", "heard", "dif"], r.lines
    assert not r.after("failed:") and not r.errors, r.lines
    out = home / "Documents" / "unravel" / "help"
    assert (out / "loop.npy").exists() and (out / "loop.wav").exists()


def test_make_dist_needs_no_venv():
    """Issue 25: `make dist` builds the library folder apart (build/dist) with $(PYTHON)'s
    headers and packs it with the standard library: no venv, no pip, no torch. Then the full
    package's runtime: from a venv of its own holding only the package and what it requires
    (not .venv, no dev or app extras)."""
    p = subprocess.run(["make", "-n", "dist"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    lean = p.stdout.index("tools/dek.py build/dist/unravel dist\n")
    assert ".venv" not in p.stdout and "pip " not in p.stdout[:lean], p.stdout
    pips = [ln for ln in p.stdout.splitlines() if "pip " in ln]
    assert pips == ["build/dist/venv/bin/python -m pip install -q -c constraints.txt '.[diffusion]'"]
    assert "tools/dek.py build/dist/unravel dist --runtime build/dist/python" in p.stdout, p.stdout
