"""examples/5-live.pd, the whole UnRAVEl cycle on Pd arrays in real-time Pd (issue 21): the
bundled loop as the phrase, encode, stats, generate, diffuse, each new set heard through the
decoder, with the working folder, HOME and the library read-only; nothing is written
anywhere (a listing of the three before and after is equal) and no error is printed."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest

from pdrun import BUILD, PD, is_error, write_patch

pytestmark = pytest.mark.skipif(not (BUILD / "unravel~.pd_linux").exists(),
                                reason="the external is not built (make setup)")

# each step's reply starts the next: loop -> encode -> stats -> generate -> diffuse -> quit
DRIVER = [
    "#X obj 10 10 loadbang",
    "#X obj 10 35 del 300",
    "#X msg 10 60 \\; pd dsp 1 \\; live-loop bang",
    "#X obj 10 85 del 800",
    "#X msg 10 110 \\; live-encode bang",
    "#X obj 200 10 r live-reply",
    "#X obj 200 35 route done",
    "#X obj 200 60 route encode stats generate diffuse",
    "#X msg 200 85 \\; live-stats bang",
    "#X msg 200 110 \\; live-generate bang",
    "#X msg 200 135 \\; live-diffuse bang",
    "#X obj 200 160 t b",
    "#X msg 200 185 \\; pd dsp 0 \\; pd quit",
    "#X obj 400 10 print reply",
    "#X obj 400 35 r live-player",
    "#X obj 400 60 print player",
    "#X obj 300 160 del 3000",
    "#X connect 0 0 1 0", "#X connect 1 0 2 0", "#X connect 0 0 3 0", "#X connect 3 0 4 0",
    "#X connect 5 0 6 0", "#X connect 6 0 7 0", "#X connect 7 0 8 0", "#X connect 7 1 9 0",
    "#X connect 7 2 10 0", "#X connect 7 3 11 0", "#X connect 11 0 16 0", "#X connect 16 0 12 0",
    "#X connect 5 0 13 0", "#X connect 14 0 15 0",
]

# inside a private mount namespace: bind each folder read-only, then run Pd
READONLY = ('for d in "$@"; do [ "$d" = -- ] && break; mount --bind "$d" "$d" && '
            'mount -o remount,bind,ro "$d" || exit 97; done; while [ "$1" != -- ]; do shift; '
            'done; shift; exec "$@"')


def listing(folder: pathlib.Path) -> list[tuple[str, int, int]]:
    """Every file and folder below `folder`: (path, size, mtime in ns)."""
    out = []
    for root, dirs, files in os.walk(folder):
        for n in dirs + files:
            p = pathlib.Path(root) / n
            st = p.lstat()
            out.append((str(p.relative_to(folder)), st.st_size, st.st_mtime_ns))
    return sorted(out)


def can_mount_readonly(tmp: pathlib.Path) -> str:
    if not shutil.which("unshare"):
        return "no unshare command"
    p = subprocess.run(["unshare", "-rm", "sh", "-c", READONLY, "sh", str(tmp), "--", "true"],
                       capture_output=True, text=True)
    return "" if p.returncode == 0 else f"cannot bind read-only in a user namespace ({p.stderr[:100]})"


def test_the_live_example_runs_the_whole_cycle_without_a_file(tmp_path):
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    why = can_mount_readonly(home)
    if why:
        pytest.skip(why)
    driver = write_patch(work / "drive.pd", DRIVER)
    example = BUILD / "examples" / "5-live.pd"
    folders = [work, home, BUILD]
    before = [listing(f) for f in folders]
    cmd = [PD, "-nogui", "-noaudio", "-nomidi", "-noprefs", "-stderr", "-path", str(BUILD),
           "-open", str(example), "-open", str(driver)]
    env = dict(os.environ, HOME=str(home), OMP_NUM_THREADS="1")
    p = subprocess.run(["unshare", "-rm", "sh", "-c", READONLY, "sh", *map(str, folders), "--",
                        *cmd], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    lines = [ln for ln in (p.stderr + p.stdout).splitlines() if ln.strip()]
    assert p.returncode == 0, lines[-20:]
    assert [ln for ln in lines if is_error(ln)] == [], lines
    replies = [ln.split()[1:4] for ln in lines if ln.startswith("reply:")]
    assert replies == [["done", "encode", "live-a"], ["done", "stats", "live-a"],
                       ["done", "generate", "live-b"], ["done", "diffuse", "live-b"]], lines
    loops = [int(ln.split()[-1]) for ln in lines if ln.startswith("player: loop")]
    assert len(loops) >= 3 and loops == sorted(loops), lines
    assert [listing(f) for f in folders] == before
