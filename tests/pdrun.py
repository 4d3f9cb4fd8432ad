"""Run Pd headless on a patch and collect what it printed (used by tests/test_pd_*.py and bench/)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import time
from dataclasses import dataclass, field

ROOT = pathlib.Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "unravel"
PD = os.environ.get("PD", "pd")


@dataclass
class PdResult:
    returncode: int
    lines: list[str]                  # stderr, one line each
    seconds: float
    errors: list[str] = field(default_factory=list)   # lines Pd prints as errors

    def after(self, prefix: str) -> list[str]:
        """Lines starting with `prefix` (e.g. a [print] name + ':'), prefix removed."""
        return [ln[len(prefix):].strip() for ln in self.lines if ln.startswith(prefix)]


def is_error(line: str) -> bool:
    """Pd's error lines: 'error: ...' (pd_error, bad arguments, no method), 'couldn't
    create', failed connections, and crashes."""
    low = line.lower()
    return (low.startswith("error") or "couldn't create" in low or "connection failed" in low
            or "segmentation" in low or "traceback" in low or "aborted" in low)


def pd_command(patch: os.PathLike, args: list[str] | None = None, batch: bool = True,
               path: os.PathLike | None = BUILD) -> list[str]:
    """`pd -nogui [-batch] -noaudio -nomidi -noprefs -stderr -path build/unravel ARGS -open PATCH`
    (path=None: no -path, as an installed library is found)."""
    return [PD, "-nogui"] + (["-batch"] if batch else []) + [
        "-noaudio", "-nomidi", "-noprefs", "-stderr"] + (["-path", str(path)] if path else []) + (
        args or []) + ["-open", str(patch)]


_TMPFS_SCRIPT = ('mount -t tmpfs -o size="$1" tmpfs "$2" || exit 97; d="$2"; l="$3"; shift 3; '
                 '"$@"; rc=$?; ls -A "$d" > "$l"; exit $rc')


def can_mount_tmpfs() -> str:
    """'' when run_pd(tmpfs=...) works here (a private mount namespace with a tmpfs),
    else the reason it does not."""
    import shutil
    import tempfile
    if not shutil.which("unshare"):
        return "no unshare command"
    with tempfile.TemporaryDirectory() as d:
        p = subprocess.run(["unshare", "-rm", "sh", "-c", _TMPFS_SCRIPT, "sh", "64k", d,
                            os.path.join(d, "listing"), "true"], capture_output=True, text=True)
        if p.returncode != 0:
            return f"cannot mount a tmpfs in a user namespace ({(p.stderr or '').strip()[:100]})"
    return ""


def run_pd(patch: os.PathLike, timeout: float = 120.0, args: list[str] | None = None,
           env: dict | None = None, batch: bool = True, path: os.PathLike | None = BUILD,
           tmpfs: tuple[os.PathLike, str] | None = None) -> PdResult:
    """Run `pd_command(patch, args, batch, path)` in the patch's folder until it quits
    (path=None: no -path). With tmpfs=(folder, size) Pd runs in a private mount namespace
    where `folder` is a tmpfs of that size (a full disk); what it holds at the end is listed
    in `<folder>.listing`."""
    cmd = pd_command(patch, args, batch, path)
    if tmpfs:
        folder, size = tmpfs
        cmd = ["unshare", "-rm", "sh", "-c", _TMPFS_SCRIPT, "sh", size, str(folder),
               f"{folder}.listing"] + cmd
    e = dict(os.environ)
    e.setdefault("OMP_NUM_THREADS", "1")
    if env:
        e.update(env)
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=e,
                           cwd=pathlib.Path(patch).parent)
        rc, out = p.returncode, p.stderr + p.stdout
    except subprocess.TimeoutExpired as ex:
        rc = -999
        out = (ex.stderr or b"").decode(errors="replace") if isinstance(ex.stderr, bytes) else (ex.stderr or "")
    lines = [ln for ln in out.splitlines() if ln.strip()]
    return PdResult(rc, lines, time.perf_counter() - t0, [ln for ln in lines if is_error(ln)])


def write_patch(path: os.PathLike, lines: list[str], size: str = "0 50 900 700 12") -> pathlib.Path:
    """Write a Pd patch from body lines (without the trailing ';'), canvas header added."""
    path = pathlib.Path(path)
    body = [f"#N canvas {size};"] + [ln if ln.endswith(";") else ln + ";" for ln in lines]
    path.write_text("\n".join(body) + "\n")
    return path


class Patch:
    """A Pd patch built object by object: `obj()` returns the object's index for `connect()`."""

    def __init__(self):
        self.lines: list[str] = []
        self.n = 0
        self.y = 10

    def obj(self, text: str, kind: str = "obj") -> int:
        self.lines.append(f"#X {kind} 10 {self.y} {text}")
        self.y += 30
        self.n += 1
        return self.n - 1

    def msg(self, text: str) -> int:
        """A message box; '$', ';' and ',' are escaped as Pd saves them."""
        text = text.replace("$", "\\$").replace(";", " \\; ").replace(",", " \\, ")
        return self.obj(" ".join(text.split()), "msg")

    def connect(self, a: int, outlet: int, b: int, inlet: int) -> None:
        self.lines.append(f"#X connect {a} {outlet} {b} {inlet}")

    def write(self, path: os.PathLike) -> pathlib.Path:
        objs = [ln for ln in self.lines if not ln.startswith("#X connect")]
        conns = [ln for ln in self.lines if ln.startswith("#X connect")]
        return write_patch(path, objs + conns)


@dataclass
class Chain:
    """One [unravel~] in a render patch: plays `in_wav` (n_in channels) into it and records
    its n_out outputs into `out_wav`; `extra` messages go to it before DSP starts."""
    obj: str
    n_in: int
    n_out: int
    in_wav: str | None
    out_wav: str
    multi: bool = False
    extra: tuple = ()


def render_patch(path: os.PathLike, chains: list[Chain], frames: int, tail: int = 8192) -> pathlib.Path:
    """A patch that renders every chain for frames + tail frames (32-bit wav files), then
    bangs each object (status on [print info<i>]) and quits."""
    p = Patch()
    lb = p.obj("loadbang")
    seq = p.obj("t b b b b")
    p.connect(lb, 0, seq, 0)
    dsp = p.msg("; pd dsp 1")
    p.connect(seq, 2, dsp, 0)
    ms = (frames + tail) / 44.1 + 50
    dl = p.obj(f"delay {ms:.1f}")
    p.connect(seq, 0, dl, 0)
    fin = p.obj("t b b b")
    p.connect(dl, 0, fin, 0)
    q = p.msg("; pd quit")
    p.connect(fin, 0, q, 0)
    for k, ch in enumerate(chains):
        ins = [p.obj(f"table c{k}in{c} 10") for c in range(ch.n_in)]
        outs = [p.obj(f"table c{k}out{c} {frames + tail}") for c in range(ch.n_out)]
        u = p.obj(ch.obj)
        info = p.obj(f"print info{k}")
        p.connect(u, 1 if ch.multi else ch.n_out, info, 0)
        for m in ch.extra:
            e = p.msg(m)
            p.connect(seq, 3, e, 0)
            p.connect(e, 0, u, 0)
        if ch.in_wav and ch.n_in:
            rd = p.msg(f"read -resize {ch.in_wav} " + " ".join(f"c{k}in{c}" for c in range(ch.n_in)))
            sf = p.obj("soundfiler")
            p.connect(seq, 3, rd, 0)
            p.connect(rd, 0, sf, 0)
        plays = [p.obj(f"tabplay~ c{k}in{c}") for c in range(ch.n_in)]
        writes = [p.obj(f"tabwrite~ c{k}out{c}") for c in range(ch.n_out)]
        for c in range(ch.n_in):
            p.connect(seq, 1, plays[c], 0)
        for c in range(ch.n_out):
            p.connect(seq, 1, writes[c], 0)
        if ch.multi:
            if ch.n_in:
                sin = p.obj(f"snake~ in {ch.n_in}")
                for c in range(ch.n_in):
                    p.connect(plays[c], 0, sin, c)
                p.connect(sin, 0, u, 0)
            sout = p.obj(f"snake~ out {ch.n_out}")
            p.connect(u, 0, sout, 0)
            for c in range(ch.n_out):
                p.connect(sout, c, writes[c], 0)
        else:
            for c in range(ch.n_in):
                p.connect(plays[c], 0, u, c)
            for c in range(ch.n_out):
                p.connect(u, c, writes[c], 0)
        wr = p.msg(f"write -wave -bytes 4 {ch.out_wav} " + " ".join(f"c{k}out{c}" for c in range(ch.n_out)))
        sf2 = p.obj("soundfiler")
        p.connect(fin, 2, wr, 0)
        p.connect(wr, 0, sf2, 0)
        p.connect(fin, 1, u, 0)       # bang: status
    return p.write(path)


def cycles_patch(path: os.PathLike, create: str, cycles: int, hold_ms: int, dsp: bool = False,
                 warm: int | None = None) -> pathlib.Path:
    """A patch that creates and frees objects in a subpatch [pd sub], `cycles` times: 1 s after
    loading, and again after each free, the message `create` (';'-separated, e.g.
    'pd-sub obj 10 10 unravel~ default; ...') is sent; `hold_ms` later [pd sub] is cleared.
    One [unravel~ default] outside starts Python and torch first. It sends 'mark start' before
    the first cycle, 'mark warm' after `warm` cycles (if given), 'mark freed' after the last,
    'mark check' 3 s later (on [r mark] -> [print mark]), and quits 0.5 s after that. `dsp`
    turns DSP on at load."""
    p = Patch()
    p.lines.append("#N canvas 0 50 450 300 sub 0")
    p.obj("pd sub", "restore")
    p.obj("unravel~ default")                # Python and torch started before the baseline
    p.connect(p.obj("r mark"), 0, p.obj("print mark"), 0)
    lb = p.obj("loadbang")
    if dsp:
        p.connect(lb, 0, p.msg("; pd dsp 1"), 0)
    first = p.obj("delay 1000")
    p.connect(lb, 0, first, 0)
    p.connect(first, 0, p.msg("; mark start"), 0)
    make = p.obj("t b b")
    p.connect(first, 0, make, 0)
    p.connect(make, 0, p.msg(create), 0)
    dl = p.obj(f"delay {hold_ms}")
    p.connect(make, 1, dl, 0)
    free = p.obj("t b b")
    p.connect(dl, 0, free, 0)
    p.connect(free, 1, p.msg("; pd-sub clear"), 0)
    count = p.obj("f")
    plus = p.obj("+ 1")
    p.connect(free, 0, count, 0)
    p.connect(count, 0, plus, 0)
    p.connect(plus, 0, count, 1)
    if warm is not None:
        sel = p.obj(f"sel {warm}")
        p.connect(plus, 0, sel, 0)
        p.connect(sel, 0, p.msg("; mark warm"), 0)
    more = p.obj(f"moses {cycles}")
    p.connect(plus, 0, more, 0)
    p.connect(more, 0, make, 0)
    done = p.obj("t b b")
    p.connect(more, 1, done, 0)
    p.connect(done, 1, p.msg("; mark freed"), 0)
    chk = p.obj("delay 3000")
    p.connect(done, 0, chk, 0)
    p.connect(chk, 0, p.msg("; mark check"), 0)
    q = p.obj("delay 3500")
    p.connect(done, 0, q, 0)
    p.connect(q, 0, p.msg("; pd quit"), 0)
    return p.write(path)


def proc_stats(pid: int) -> tuple[float, int]:
    """(resident memory in MB, number of threads) of a running process."""
    rss = 0.0
    for ln in open(f"/proc/{pid}/status"):
        if ln.startswith("VmRSS:"):
            rss = int(ln.split()[1]) / 1024
    return rss, len(os.listdir(f"/proc/{pid}/task"))


def run_marked(cmd: list[str], cwd: os.PathLike, env: dict | None = None,
               timeout: float = 120.0) -> tuple[int, dict[str, tuple[float, int]], list[str]]:
    """Run `cmd` (Pd); at each 'mark: NAME' line on its stderr read proc_stats of the process.
    Returns (exit status, NAME -> (RSS MB, threads), every stderr line); killed after
    `timeout` s."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    seen: dict[str, tuple[float, int]] = {}
    lines: list[str] = []
    t0 = time.monotonic()
    for ln in proc.stderr:
        lines.append(ln.rstrip())
        if ln.startswith("mark: ") and proc.poll() is None:
            seen[ln[6:].strip()] = proc_stats(proc.pid)
        if time.monotonic() - t0 > timeout:
            proc.kill()
            break
    return proc.wait(timeout=60), seen, lines
