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

from pdrun import BUILD, PD, Patch, is_error
from unravel.archive import DEFAULT_MODEL

pytestmark = pytest.mark.skipif(not (BUILD / "unravel~.pd_linux").exists(),
                                reason="the external is not built (make setup)")

# each step's reply starts the next: loop -> encode -> stats -> generate -> diffuse; after
# the diffused set two more loop boundaries, then quit (or after 60 s whatever happened)
def driver() -> Patch:
    p = Patch()
    lb = p.obj("loadbang")
    d1 = p.obj("del 300")
    p.connect(lb, 0, d1, 0)
    p.connect(d1, 0, p.msg("; pd dsp 1; live-loop bang"), 0)
    d2 = p.obj("del 800")
    p.connect(lb, 0, d2, 0)
    p.connect(d2, 0, p.msg("; live-encode bang"), 0)
    rep = p.obj("r live-reply")
    p.connect(rep, 0, p.obj("print reply"), 0)
    done = p.obj("route done")
    p.connect(rep, 0, done, 0)
    step = p.obj("route encode stats generate diffuse")
    p.connect(done, 0, step, 0)
    for k, nxt in enumerate(("stats", "generate", "diffuse")):
        p.connect(step, k, p.msg(f"; live-{nxt} bang"), 0)
    opened = p.msg("1")
    p.connect(step, 3, opened, 0)
    pl = p.obj("r live-player")
    p.connect(pl, 0, p.obj("print player"), 0)
    gate = p.obj("spigot")
    p.connect(pl, 0, gate, 0)
    p.connect(opened, 0, gate, 1)
    tick = p.obj("t b")
    p.connect(gate, 0, tick, 0)
    count = p.obj("f")
    plus = p.obj("+ 1")
    p.connect(tick, 0, count, 0)
    p.connect(count, 0, plus, 0)
    p.connect(plus, 0, count, 1)
    two = p.obj("sel 2")
    p.connect(plus, 0, two, 0)
    quit_ = p.msg("; pd dsp 0; pd quit")
    p.connect(two, 0, quit_, 0)
    late = p.obj("del 60000")
    p.connect(lb, 0, late, 0)
    p.connect(late, 0, quit_, 0)
    return p


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
    drive = driver().write(work / "drive.pd")
    example = BUILD / "examples" / "5-live.pd"
    folders = [work, home, BUILD]
    before = [listing(f) for f in folders]
    cmd = [PD, "-nogui", "-noaudio", "-nomidi", "-noprefs", "-stderr", "-path", str(BUILD),
           "-open", str(example), "-open", str(drive)]
    env = dict(os.environ, HOME=str(home), OMP_NUM_THREADS="1")
    p = subprocess.run(["unshare", "-rm", "sh", "-c", READONLY, "sh", *map(str, folders), "--",
                        *cmd], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    lines = [ln for ln in (p.stderr + p.stdout).splitlines() if ln.strip()]
    assert p.returncode == 0, lines[-20:]
    assert [ln for ln in lines if is_error(ln)] == [], lines
    replies = [ln.split()[1:4] for ln in lines if ln.startswith("reply:")]
    assert replies == [["loaded", str(DEFAULT_MODEL)], ["done", "encode", "live-a"],
                       ["done", "stats", "live-a"],
                       ["done", "generate", "live-b"], ["done", "diffuse", "live-b"]], lines
    # the loop count goes on through every switch, two boundaries after the diffused set
    loops = [int(ln.split()[-1]) for ln in lines if ln.startswith("player: loop")]
    assert loops == list(range(len(loops))) and len(loops) >= 3, lines
    last = max(i for i, ln in enumerate(lines) if ln.startswith("reply: done diffuse"))
    assert len([ln for ln in lines[last:] if ln.startswith("player: loop")]) == 2, lines
    assert [listing(f) for f in folders] == before
