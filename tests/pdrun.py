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

    def count(self, n: int) -> tuple[int, int]:
        """[f] x [+ 1] -> [sel n]: (the box that counts each bang, the box whose left outlet
        bangs at the n-th)."""
        f, plus, sel = self.obj("f"), self.obj("+ 1"), self.obj(f"sel {n}")
        self.connect(f, 0, plus, 0)
        self.connect(plus, 0, f, 1)
        self.connect(plus, 0, sel, 0)
        return f, sel

    def first_sound(self, src: int) -> tuple[int, int]:
        """[env~ 1024 1024] on `src`'s left outlet -> [moses 1]: (that box, whose right outlet
        gives every non-silent envelope, and a box whose left outlet bangs once, at the
        first)."""
        env, loud = self.obj("env~ 1024 1024"), self.obj("moses 1")
        self.connect(src, 0, env, 0)
        self.connect(env, 0, loud, 0)
        gate, once, close = self.obj("spigot 1"), self.obj("t b b"), self.msg("0")
        self.connect(loud, 1, gate, 0)
        self.connect(gate, 0, once, 0)
        self.connect(once, 1, close, 0)
        self.connect(close, 0, gate, 1)
        return loud, once

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


def jobs_patch(path: os.PathLike, jobs: list[str], obj: str = "unravel~ default encode",
               outlet: int = 8) -> pathlib.Path:
    """A patch that sends `jobs` (one message box, in order) to `obj` at load, prints each
    reply of its info `outlet` as 'reply: ...' and quits after as many `done`/`error` replies."""
    p = Patch()
    lb = p.obj("loadbang")
    u = p.obj(obj)
    p.connect(u, outlet, p.obj("print reply"), 0)
    rt = p.obj("route done error")
    p.connect(u, outlet, rt, 0)
    tb = p.obj("t b")
    p.connect(rt, 0, tb, 0)
    p.connect(rt, 1, tb, 0)
    f, sel = p.count(len(jobs))
    p.connect(tb, 0, f, 0)
    p.connect(sel, 0, p.msg("; pd quit"), 0)
    box = p.msg(", ".join(jobs))
    p.connect(lb, 0, box, 0)
    p.connect(box, 0, u, 0)
    return p.write(path)


def messages_patch(path: os.PathLike, obj: str, messages: str, outlet: int = 1) -> pathlib.Path:
    """A patch that sends `messages` (one message box) to `obj` at load, prints each reply of
    its info `outlet` as 'reply: ...' and quits."""
    p = Patch()
    lb = p.obj("loadbang")
    u = p.obj(obj)
    p.connect(u, outlet, p.obj("print reply"), 0)
    tb = p.obj("t b b")
    p.connect(lb, 0, tb, 0)
    box = p.msg(messages)
    p.connect(tb, 1, box, 0)
    p.connect(box, 0, u, 0)
    p.connect(tb, 0, p.msg("; pd quit"), 0)
    return p.write(path)


def render_patch(path: os.PathLike, chains: list[Chain], frames: int, tail: int = 8192,
                 wait_loaded: bool = False) -> pathlib.Path:
    """A patch that renders every chain for frames + tail frames (32-bit wav files), then
    bangs each object (status on [print info<i>]) and quits. `wait_loaded`: start when the
    first object replies `loaded` (a live object made with a model loads in the background),
    not at load."""
    p = Patch()
    lb = p.obj("loadbang")
    seq = p.obj("t b b b b")
    if not wait_loaded:
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
        for c in range(ch.n_in):
            p.obj(f"table c{k}in{c} 10")
        for c in range(ch.n_out):
            p.obj(f"table c{k}out{c} {frames + tail}")
        u = p.obj(ch.obj)
        info = p.obj(f"print info{k}")
        p.connect(u, 1 if ch.multi else ch.n_out, info, 0)
        if wait_loaded and k == 0:
            loaded = p.obj("route loaded")
            p.connect(u, 1 if ch.multi else ch.n_out, loaded, 0)
            p.connect(loaded, 0, seq, 0)
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


# ------------------------------------------------------------------ real-time probe (issue 20)

LIVE = "lv_"          # prefix of the probe's [print] names


@dataclass
class LiveResult:
    """What one message sent during DSP cost (None: not seen, e.g. Pd was killed first)."""
    message: str
    pd_thread_ms: float | None = None     # the message call on Pd's thread ([realtime] around it)
    max_gap_ms: float | None = None       # largest gap between two DSP ticks in the window after it
    underruns_before: int | None = None   # the object's `underruns` pre_ms before the message
    underruns_after: int | None = None    # ... pre_ms before the next message (or at the end)
    status: dict[str, str] = field(default_factory=dict)
    # the object's status reply (bang) pre_ms before the message: {'shared': '1', ...}
    replies: list[tuple[float | None, str]] = field(default_factory=list)
    # (ms after the message was sent, reply) for each info-outlet reply until the next status
    # bang, timed in Pd; `layer` (get_weights' list) is left out; a measured bang's
    # `underruns` reply is listed with the time None
    errors: list[str] = field(default_factory=list)
    # Pd's error lines (is_error) from the message until the next status bang

    @property
    def underruns_delta(self) -> int | None:
        """Underruns counted from pre_ms before this message to pre_ms before the next (None
        where the status has no `underruns`, e.g. nn~'s)."""
        if self.underruns_before is None or self.underruns_after is None:
            return None
        return self.underruns_after - self.underruns_before


@dataclass
class LiveRun:
    """One real-time Pd process run by `run_live`."""
    results: list[LiveResult]
    returncode: int                       # -999: killed after the timeout
    timed_out: bool
    seconds: float                        # wall time of the whole process
    first_output_s: float | None          # wall s from starting Pd to the object's first non-zero output
    first_output_ms: float | None         # the same in Pd, from its loadbang (after the patch loaded)
    started_by: str | None                # what started the messages: 'output' or 'timeout'
    lines: list[str]                      # every stderr line
    errors: list[str] = field(default_factory=list)   # is_error lines


def live_patch(path: os.PathLike, obj: str, messages: list[tuple[float, str]], *,
               extra: list[str] = (), info_outlet: int = 1, window_ms: float = 1500,
               pre_ms: float = 300, tail_ms: float = 2000, start_timeout_ms: float = 20000,
               source: str = "noise~") -> pathlib.Path:
    """Write the real-time probe patch and return its path.

    `source` (e.g. 'noise~', 'osc~ 220') plays into `obj` (e.g. 'unravel~ /abs/m.ts forward
    2048'), whose outlet 0 goes to [env~]; `extra` objects sit beside it, unconnected (e.g. a
    second object on the same model, 'array define name n'). DSP goes on at load. The
    messages start at the first non-zero output of `obj` (an [unravel~]'s once it replied
    `loaded`: its first path plays before), or start_timeout_ms after load, whichever comes
    first: message i goes messages[i][0] ms after the previous one (the
    first: after the start), at T_i. For each message i:

    - T_i - pre_ms: `obj` gets `bang`, between 'lv_mark: status i' and 'lv_mark: end'; its
      `underruns N` reply prints 'lv_under: b i N', its other replies 'lv_info: ...';
    - T_i: the gap maximum is reset, 'lv_mark: send i' prints, and [realtime] times the message
      itself ('lv_ms: i MS', printed after it returned);
    - T_i + window_ms: the largest gap between two [bang~] ticks since T_i ('lv_gap: i MS').

    A last status bang goes tail_ms after the last message (status n), then `; pd quit`.
    Other replies on outlet `info_outlet` print as 'lv_info: ...' (each after 'lv_at: MS', the
    time since the last message was sent), except `layer` (get_weights' list reply), which is
    dropped. '' as a message sends nothing (the idle
    baseline). A message may hold several, comma-separated; '$', ';' and ',' are escaped."""
    for k, (delay, _) in enumerate(messages):
        if k and delay < window_ms + pre_ms:
            raise ValueError(f"message {k}: delay {delay} ms < window_ms + pre_ms")
    if messages and tail_ms < window_ms:
        raise ValueError("tail_ms < window_ms")
    p = Patch()
    lb = p.obj("loadbang")
    p.connect(lb, 0, p.msg("; pd dsp 1"), 0)
    src = p.obj(source)
    u = p.obj(obj)
    p.connect(src, 0, u, 0)
    for text in extra:
        p.obj(text)
    mark = p.obj(f"print {LIVE}mark")
    # replies: underruns (tagged 'b i' / 'm i'), get_weights' list dropped, the rest printed
    route = p.obj("route underruns layer")
    p.connect(u, info_outlet, route, 0)
    tag = p.obj("list prepend")
    p.connect(route, 0, tag, 0)
    p.connect(tag, 0, p.obj(f"print {LIVE}under"), 0)
    since = p.obj("realtime")                 # ms since the last message was sent
    stamp = p.obj("t a b")
    p.connect(route, 2, stamp, 0)
    p.connect(stamp, 1, since, 1)
    p.connect(since, 0, p.obj(f"print {LIVE}at"), 0)
    p.connect(stamp, 0, p.obj(f"print {LIVE}info"), 0)
    # the DSP-tick gap: [bang~] -> ms since the previous tick -> running maximum in [f]
    tick = p.obj("bang~")
    tt = p.obj("t b b")
    p.connect(tick, 0, tt, 0)
    rt = p.obj("realtime")
    p.connect(tt, 1, rt, 1)
    p.connect(tt, 0, rt, 0)
    mx = p.obj("max")
    p.connect(rt, 0, mx, 0)
    tf = p.obj("t f f")
    p.connect(mx, 0, tf, 0)
    cur = p.obj("f")
    p.connect(tf, 1, cur, 1)
    p.connect(tf, 0, mx, 1)
    reset = p.msg("0")
    p.connect(reset, 0, mx, 1)
    p.connect(reset, 0, cur, 1)
    gaptag = p.obj("list prepend")
    p.connect(cur, 0, gaptag, 0)
    p.connect(gaptag, 0, p.obj(f"print {LIVE}gap"), 0)
    # the first non-zero output ('lv_first: MS', once: an [unravel~]'s first path may play
    # before its model is loaded); the start: the first non-zero output once the object has
    # said `loaded` (an [unravel~]: messages then meet the loaded model), or the timeout
    t_load = p.obj("realtime")
    p.connect(lb, 0, t_load, 0)
    moses, heard = p.first_sound(u)
    p.connect(heard, 0, t_load, 1)
    p.connect(t_load, 0, p.obj(f"print {LIVE}first"), 0)
    unravel = obj.split()[0] == "unravel~"
    armed = p.obj(f"spigot {0 if unravel else 1}")
    p.connect(moses, 1, armed, 0)
    loaded = p.obj("route loaded")
    p.connect(u, info_outlet, loaded, 0)
    p.connect(loaded, 0, p.obj("t b"), 0)
    p.connect(p.n - 1, 0, p.msg("1"), 0)
    p.connect(p.n - 1, 0, armed, 1)
    once = p.obj("spigot 1")
    p.connect(armed, 0, once, 0)
    first = p.obj("t b b")
    p.connect(once, 0, first, 0)
    timeout = p.obj(f"delay {start_timeout_ms:g}")
    p.connect(lb, 0, timeout, 0)
    close = p.msg("0")                        # the start happens once
    p.connect(close, 0, once, 1)
    stop = p.msg("stop")
    p.connect(stop, 0, timeout, 0)
    p.connect(first, 1, close, 0)
    p.connect(first, 1, stop, 0)
    start = p.obj("t b")
    p.connect(first, 0, p.msg(f"; {LIVE}start output"), 0)
    p.connect(first, 0, start, 0)
    tmo = p.obj("t b b")
    p.connect(timeout, 0, tmo, 0)
    p.connect(tmo, 1, close, 0)
    p.connect(tmo, 0, p.msg(f"; {LIVE}start timeout"), 0)
    p.connect(tmo, 0, start, 0)
    p.connect(p.obj(f"r {LIVE}start"), 0, p.obj(f"print {LIVE}start"), 0)

    def at(ms: float) -> int:
        """A [delay ms] started at the start."""
        d = p.obj(f"delay {ms:g}")
        p.connect(start, 0, d, 0)
        return d

    def status(ms: float, i: int) -> None:
        t = p.obj("t b b b")
        p.connect(at(ms), 0, t, 0)
        m = p.msg(f"list b {i}")
        p.connect(t, 2, m, 0)
        p.connect(m, 0, tag, 1)
        p.connect(t, 2, p.msg(f"list status {i}"), 0)
        p.connect(p.n - 1, 0, mark, 0)
        p.connect(t, 1, u, 0)
        p.connect(t, 0, p.msg("list end"), 0)
        p.connect(p.n - 1, 0, mark, 0)

    t_i = 0.0
    for i, (delay, message) in enumerate(messages):
        t_i += delay
        status(max(t_i - pre_ms, 0), i)
        seq = p.obj("t b b b b")
        p.connect(at(t_i), 0, seq, 0)
        m = p.msg(f"list m {i}")                          # 3: tag a reply to a measured bang,
        p.connect(seq, 3, m, 0)
        p.connect(m, 0, tag, 1)
        p.connect(seq, 3, reset, 0)                       # restart the gap maximum,
        p.connect(seq, 3, p.msg(f"list send {i}"), 0)     # 'lv_mark: send i'
        p.connect(p.n - 1, 0, mark, 0)
        timer = p.obj("realtime")
        p.connect(seq, 2, timer, 0)                       # 2: start the timers
        p.connect(seq, 2, since, 0)
        if message.strip():
            box = p.msg(message)                          # 1: the message
            p.connect(seq, 1, box, 0)
            p.connect(box, 0, u, 0)
        p.connect(seq, 0, timer, 1)                       # 0: stop it
        ms = p.obj(f"list prepend {i}")
        p.connect(timer, 0, ms, 0)
        p.connect(ms, 0, p.obj(f"print {LIVE}ms"), 0)
        gap = p.obj("t b b")
        p.connect(at(t_i + window_ms), 0, gap, 0)
        p.connect(gap, 1, p.msg(f"list {i}"), 0)
        p.connect(p.n - 1, 0, gaptag, 1)
        p.connect(gap, 0, cur, 0)
    status(t_i + tail_ms, len(messages))
    p.connect(at(t_i + tail_ms + 300), 0, p.msg("; pd quit"), 0)
    return p.write(path)


def _live_fields(line: str, name: str) -> list[str] | None:
    """The atoms of a probe line '<LIVE><name>: ...' ([print]'s leading 'list' or 'symbol'
    dropped), else None."""
    head = f"{LIVE}{name}:"
    if not line.startswith(head):
        return None
    f = line[len(head):].split()
    return f[1:] if f and f[0] in ("list", "symbol") else f


def parse_live(messages: list[tuple[float, str]], lines: list[str]) -> list[LiveResult]:
    """One LiveResult per message from the probe's stderr lines."""
    res = [LiveResult(m) for _, m in messages]
    n = len(res)
    under: dict[int, int] = {}
    in_status: int | None = None      # inside the status bang before message i
    current = -1                      # the last message sent
    at: float | None = None           # the last 'lv_at' value
    for ln in lines:
        if is_error(ln):
            if in_status is None and 0 <= current < n:
                res[current].errors.append(ln)
        elif (f := _live_fields(ln, "mark")) is not None:
            if f[:1] == ["status"]:
                in_status = int(f[1])
            elif f[:1] == ["end"]:
                in_status = None
            elif f[:1] == ["send"]:
                current = int(f[1])
        elif (f := _live_fields(ln, "at")) and len(f) == 1:
            at = float(f[0])
        elif (f := _live_fields(ln, "ms")) and len(f) == 2:
            res[int(f[0])].pd_thread_ms = float(f[1])
        elif (f := _live_fields(ln, "gap")) and len(f) == 2:
            res[int(f[0])].max_gap_ms = float(f[1])
        elif (f := _live_fields(ln, "under")) and len(f) == 3:
            if f[0] == "b":
                under.setdefault(int(f[1]), int(float(f[2])))
            elif 0 <= current < n:
                res[current].replies.append((None, f"underruns {f[2]}"))
        elif (f := _live_fields(ln, "info")) is not None:
            if in_status is not None:
                if in_status < n and f:
                    res[in_status].status.setdefault(f[0], " ".join(f[1:]))
            elif 0 <= current < n:
                res[current].replies.append((at, " ".join(f)))
            at = None
    for i, r in enumerate(res):
        r.underruns_before, r.underruns_after = under.get(i), under.get(i + 1)
        if i in under:
            r.status["underruns"] = str(under[i])
    return res


def run_live(folder: os.PathLike, obj: str, messages: list[tuple[float, str]], *,
             extra: list[str] = (), info_outlet: int = 1, window_ms: float = 1500,
             pre_ms: float = 300, tail_ms: float = 2000, start_timeout_ms: float = 20000,
             source: str = "noise~", timeout: float | None = None, args: list[str] | None = None,
             env: dict | None = None, path: os.PathLike | None = BUILD,
             name: str = "live.pd") -> LiveRun:
    """Write `live_patch` as folder/name and run it in REAL TIME (`pd -nogui -noaudio`,
    i.e. -nosound, no -batch; -r 44100 unless `args` sets -r) in `folder`; see live_patch
    for the schedule and the other arguments. `env` updates the environment (a value None
    removes the variable; OMP_NUM_THREADS=1 unless given). `timeout` (default: the schedule
    plus 60 s) kills Pd; what it printed until then is still parsed. Returns a LiveRun, with
    one LiveResult per message."""
    patch = live_patch(pathlib.Path(folder) / name, obj, messages, extra=extra,
                       info_outlet=info_outlet, window_ms=window_ms, pre_ms=pre_ms,
                       tail_ms=tail_ms, start_timeout_ms=start_timeout_ms, source=source)
    args = list(args or [])
    if "-r" not in args:
        args = ["-r", "44100"] + args
    cmd = pd_command(patch, args, batch=False, path=path)
    e = dict(os.environ)
    e.setdefault("OMP_NUM_THREADS", "1")
    for k, v in (env or {}).items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = v
    if timeout is None:
        timeout = (start_timeout_ms + sum(d for d, _ in messages) + tail_ms) / 1000 + 60
    import threading
    timed: list[tuple[float, str]] = []
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=patch.parent, env=e, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, errors="replace")

    def read() -> None:
        for ln in proc.stderr:
            if ln.strip():
                timed.append((time.perf_counter() - t0, ln.rstrip("\n")))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        rc, timed_out = proc.wait(timeout=timeout), False
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        rc, timed_out = -999, True
    reader.join(timeout=10)
    seconds = time.perf_counter() - t0
    lines = [ln for _, ln in timed]
    first_s = next((t for t, ln in timed if ln.startswith(f"{LIVE}first:")), None)
    first_ms = next((float(f[0]) for ln in lines if (f := _live_fields(ln, "first"))), None)
    started = next((f[0] for ln in lines if (f := _live_fields(ln, "start"))), None)
    return LiveRun(parse_live(messages, lines), rc, timed_out, seconds, first_s, first_ms,
                   started, lines, [ln for ln in lines if is_error(ln)])
