"""Soak [unravel~] in Pd (issue 15): the fuzz of tests/test_pd_fuzz.py at length, quits during
DSP and jobs, and create/free cycles with RSS measured. Not part of `make test`.

1. Messages: `--seeds` fuzz runs of `--messages` seeded random messages each (hostile model
   files, a 64 kB tmpfs as a full disk where one can be mounted); per run: crashes (exit
   status not 0 or a signal), hangs (no exit within the timeout), our error lines not in
   the one-line form, temporary files left, existing files changed.
2. Quits: `--quits` runs of `pd quit` during DSP (live and sync workers) while an encode job
   is inside torch; counts exits that are not 0, hangs (no exit in 60 s: every thread's
   stack is saved with gdb), and Python noise (tracebacks, `Exception ignored`,
   KeyboardInterrupt).
3. Create/free: `--cycles` cycles of creating an [unravel~] during DSP, starting a long job on
   it and freeing it (Pd in real time, no -batch); Pd's RSS and thread count after the first
   `--warm` cycles and after the last one, growth per cycle.
4. Hostile (issue 26): `--hostile` runs of `--hostile-messages` seeded messages each against a
   hostile local registry on 127.0.0.1 (downloads over a FIFO, a char device, symbolic links,
   dripping, endless and oversized answers, a card name with a newline), encode jobs of
   compressed-audio bombs, and two objects sharing each state-leak model (A on a 220 Hz sine,
   B on silence: B must stay silent), `pd quit` at a random time; counts crashes, hangs,
   files changed, temp files left, foreign error lines per 1000 messages, leaks, Pd's peak RSS.

Usage: .venv/bin/python bench/soak.py [--seeds 20] [--messages 5000] [--quits 50] [--cycles 200]
       [--hostile 10] [--hostile-messages 200]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import random
import resource
import threading
import subprocess
import sys
import tempfile
import time

import numpy as np
import soundfile as sf

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from pdrun import Patch, cycles_patch, pd_command, run_marked  # noqa: E402
import test_pd_fuzz as fuzz  # noqa: E402


def soak_messages(seeds: list[int], n: int) -> dict:
    tot = {"runs": 0, "messages": 0, "crashes": 0, "hangs": 0, "bad_lines": 0, "error_lines": 0,
           "temp_files": 0, "changed_files": 0, "seconds": 0.0}
    for seed in seeds:
        with tempfile.TemporaryDirectory() as d:
            run = fuzz.run_fuzz(pathlib.Path(d), seed, n, timeout=600)
            r = run.result
            bad, temps, changed = fuzz.bad_error_lines(run), fuzz.temp_files_left(run), fuzz.files_changed(run)
            tot["runs"] += 1
            tot["messages"] += run.n
            tot["hangs"] += r.returncode == -999
            tot["crashes"] += r.returncode not in (0, -999) or "mark: end" not in r.lines
            tot["bad_lines"] += len(bad)
            tot["error_lines"] += len(r.errors)
            tot["temp_files"] += len(temps)
            tot["changed_files"] += len(changed)
            tot["seconds"] += r.seconds
            print(f"seed {seed}: {run.n} messages, exit {r.returncode}, {len(r.errors)} error lines, "
                  f"bad {len(bad)} {bad[:2]}, temp files {temps[:2]}, changed {changed[:2]}, "
                  f"{r.seconds:.1f} s, full disk: {run.tmpfs or 'tmpfs'}", flush=True)
    return tot


def quit_patch(d: pathlib.Path, delay: int) -> pathlib.Path:
    p = Patch()
    lb = p.obj("loadbang")
    noise = p.obj("noise~")
    for text in ("unravel~ -live default forward 2048", "unravel~ default forward 4096",
                 "unravel~ -live default encode 2048"):
        u = p.obj(text)
        p.connect(noise, 0, u, 0)
        if "encode" in text:
            job = p.msg("encode input long.wav output lat force 1")
            p.connect(lb, 0, job, 0)
            p.connect(job, 0, u, 0)
    p.connect(lb, 0, p.msg("; pd dsp 1"), 0)
    dl = p.obj(f"delay {delay}")
    p.connect(lb, 0, dl, 0)
    p.connect(dl, 0, p.msg("; pd quit"), 0)
    return p.write(d / "quit.pd")


def soak_quits(count: int) -> dict:
    tot = {"runs": 0, "bad_exits": 0, "hangs": 0, "python_noise": 0, "max_seconds": 0.0}
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as d:
        d = pathlib.Path(d)
        sf.write(d / "long.wav", np.random.default_rng(1).standard_normal(44100 * 60).astype(np.float32) * 0.1,
                 44100, subtype="FLOAT")
        for i in range(count):
            patch = quit_patch(d, rng.choice([50, 150, 300, 600, 1000]))
            t0 = time.monotonic()
            proc = subprocess.Popen(pd_command(patch), cwd=d, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
            try:
                out, _ = proc.communicate(timeout=60)
                rc = proc.returncode
            except subprocess.TimeoutExpired:     # a hang: keep every thread's stack
                rc = -999
                trace = pathlib.Path(tempfile.gettempdir()) / f"soak-quit-hang-{i}.txt"
                with open(trace, "w") as f:
                    subprocess.run(["gdb", "-batch", "-ex", "thread apply all bt 30", "-p", str(proc.pid)],
                                   stdout=f, stderr=subprocess.STDOUT, check=False)
                proc.kill()
                out, _ = proc.communicate()
                print(f"quit {i}: hang, stacks in {trace}", flush=True)
            lines = out.splitlines()
            noise = [ln for ln in lines if fuzz.PYTHONISMS.search(ln)]
            tot["runs"] += 1
            tot["hangs"] += rc == -999
            tot["bad_exits"] += rc not in (0, -999)
            tot["python_noise"] += bool(noise)
            tot["max_seconds"] = max(tot["max_seconds"], round(time.monotonic() - t0, 1))
            if rc != 0 or noise:
                print(f"quit {i}: exit {rc} {noise[:2]} {lines[-3:]}", flush=True)
    return tot


def soak_cycles(cycles: int, warm: int) -> dict:
    """Create [unravel~ default forward 2048] during DSP, start a long generate job on it, free
    it 150 ms later; RSS after `warm` cycles and after all of them."""
    with tempfile.TemporaryDirectory() as d:
        d = pathlib.Path(d)
        np.save(d / "z.npy", np.random.default_rng(0).standard_normal((1, 8, 40)).astype(np.float32))
        patch = cycles_patch(d / "cycles.pd",
                             "; pd-sub obj 10 10 unravel~ default forward 2048; pd-sub obj 10 50 noise~;"
                             "pd-sub connect 1 0 0 0; pd-sub obj 10 90 r job; pd-sub connect 2 0 0 0;"
                             "job generate input z.npy output gen files 10000 points 11",
                             cycles, 150, dsp=True, warm=warm)
        rc, seen, lines = run_marked(pd_command(patch, batch=False), d)
        gen = list((d / "gen").iterdir()) if (d / "gen").exists() else []
        temps = [f.name for f in gen if ".tmp" in f.name]
    (w_rss, w_thr), (c_rss, c_thr) = seen.get("warm", (0, 0)), seen.get("check", (0, 0))
    return {"cycles": cycles, "exit": rc, "rss_warm_mb": round(w_rss, 1), "rss_end_mb": round(c_rss, 1),
            "rss_growth_per_cycle_kb": round((c_rss - w_rss) * 1024 / max(1, cycles - warm), 1),
            "threads_warm": w_thr, "threads_end": c_thr, "files_from_cancelled_jobs": len(gen),
            "temp_files": len(temps),
            "errors": [ln for ln in lines if ln.startswith("error")][:5]}


BOMBS = {"bomb.flac": 600, "bomb.ogg": 120}       # seconds of silence: 80 kB -> 100 MB decoded
TARGETS = {"fifo": "fifo", "dev": "chardev", "dangling": "dangling", "link": "symlink"}


def hostile_folder(d: pathlib.Path) -> dict:
    """The files a hostile run meets (bombs, state-leak models, download targets that must
    not change); returns {name: (mode, inode, size)} of the targets."""
    import test_registry as reg
    from toymodels import make_state_leak_model
    for name, seconds in BOMBS.items():
        with sf.SoundFile(d / name, "w", 44100, 1, format=name.split(".")[1].upper()) as f:
            for _ in range(seconds):
                f.write(np.zeros(44100, np.float32))
    for kind in ("delay", "counter"):
        make_state_leak_model(d / f"{kind}.ts", kind)
    for name, kind in TARGETS.items():
        try:
            reg._make(kind, d / f"{name}.ts")
        except BaseException:  # noqa: BLE001 - no char device without root: skipped
            pass
    (d / "mine.ts").write_bytes(b"a model already here")
    return {p.name: (st.st_mode, st.st_ino, st.st_size) for p in d.iterdir()
            if p.suffix == ".ts" and p.stem in [*TARGETS, "mine"] for st in [os.lstat(p)]}


def hostile_messages(rng: random.Random, n: int) -> list[str]:
    cards = ["nasa", "drip", "slowdrip", "big", "endless", "nope"]
    out = []
    for _ in range(n):
        k = rng.random()
        if k < 0.15:
            out.append("u0 print_available_models")
        elif k < 0.6:
            name = rng.choice([*TARGETS, "mine", "", "fresh"])
            out.append(f"u0 download ircam/rave/{rng.choice(cards)} {name}"
                       + (" force" if rng.random() < 0.3 else ""))
        elif k < 0.75:
            out.append(f"u1 encode input {rng.choice(list(BOMBS))} output lat force 1")
        else:
            out.append(f"u{rng.choice([2, 3, 4, 5])} {rng.choice(['bang', 'reload', 'gpu x', 'bend w offset 0.1', 'restore'])}")
    return out


def hostile_patch(d: pathlib.Path, msgs: list[str], quit_ms: int) -> pathlib.Path:
    p = Patch()
    lb = p.obj("loadbang")
    objs = [p.obj(t) for t in ("unravel~", "unravel~ default encode", "unravel~ delay.ts forward 2048",
                               "unravel~ delay.ts forward 2048", "unravel~ counter.ts forward 2048",
                               "unravel~ counter.ts forward 2048")]
    osc, zero = p.obj("osc~ 220"), p.obj("sig~ 0")
    for k, u in enumerate(objs):
        p.connect(p.obj(f"r u{k}"), 0, u, 0)
    for a, b in ((2, 3), (4, 5)):
        p.connect(osc, 0, objs[a], 0)
        p.connect(zero, 0, objs[b], 0)
        env = p.obj("env~ 4096")
        p.connect(objs[b], 0, env, 0)
        gt = p.obj("> 0")
        p.connect(env, 0, gt, 0)
        sel = p.obj("sel 1")
        p.connect(gt, 0, sel, 0)
        leak = p.msg(f"leak u{b}")
        p.connect(sel, 0, leak, 0)
        p.connect(leak, 0, p.obj("print"), 0)
    for i, m in enumerate(msgs):
        dl = p.obj(f"delay {500 + 20 * i}")
        p.connect(lb, 0, dl, 0)
        p.connect(dl, 0, p.msg("; " + m), 0)
    p.connect(lb, 0, p.msg("; pd dsp 1"), 0)
    dl = p.obj(f"delay {quit_ms}")
    p.connect(lb, 0, dl, 0)
    p.connect(dl, 0, p.msg("; pd quit"), 0)
    return p.write(d / "hostile.pd")


def soak_hostile(runs: int, n: int) -> dict:
    import test_registry as reg
    from pdrun import run_pd
    server = reg.QuietServer(("127.0.0.1", 0), reg.Hostile)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {"UNRAVEL_REGISTRY_URL": f"http://127.0.0.1:{server.server_address[1]}/",
           "UNRAVEL_DOWNLOAD_STALL": "2", "no_proxy": "*", "NO_PROXY": "*"}
    tot = {"runs": 0, "messages": 0, "crashes": 0, "hangs": 0, "files_changed": 0,
           "temp_files": 0, "foreign_lines": 0, "leaks": 0, "seconds": 0.0}
    rng = random.Random(26)
    for i in range(runs):
        with tempfile.TemporaryDirectory() as d:
            d = pathlib.Path(d)
            before = hostile_folder(d)
            msgs = hostile_messages(rng, n)
            quit_ms = 500 + 20 * n + rng.choice([0, 3000, 10000, 20000])
            r = run_pd(hostile_patch(d, msgs, quit_ms), env=env, batch=False, timeout=quit_ms / 1000 + 60)
            after = {p.name: (st.st_mode, st.st_ino, st.st_size) for p in d.iterdir()
                     if p.name in before for st in [os.lstat(p)]}
            changed = [k for k in before if after.get(k) != before[k]]
            temps = [p.name for p in d.rglob("*") if p.name.startswith(".") or ".tmp" in p.name
                     or p.name.endswith(".part")]
            foreign = [ln for ln in r.errors if not ln.startswith("error: [unravel~]: ")
                       or fuzz.PYTHONISMS.search(ln)] + [ln for ln in r.lines if "Warning" in ln]
            leaks = r.after("print: leak")
            tot["runs"] += 1
            tot["messages"] += len(msgs)
            tot["hangs"] += r.returncode == -999
            tot["crashes"] += r.returncode not in (0, -999)
            tot["files_changed"] += len(changed)
            tot["temp_files"] += len(temps)
            tot["foreign_lines"] += len(foreign)
            tot["leaks"] += len(leaks)
            tot["seconds"] += r.seconds
            print(f"hostile {i}: exit {r.returncode}, {len(r.errors)} error lines, foreign {foreign[:2]}, "
                  f"changed {changed}, temp files {temps[:3]}, leaks {leaks[:2]}, {r.seconds:.1f} s", flush=True)
    server.shutdown()
    tot["foreign_per_1000"] = round(1000 * tot["foreign_lines"] / max(1, tot["messages"]), 2)
    tot["pd_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
    return tot


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--messages", type=int, default=5000, help="messages per seed")
    ap.add_argument("--quits", type=int, default=50)
    ap.add_argument("--cycles", type=int, default=200)
    ap.add_argument("--warm", type=int, default=20, help="cycles before the first RSS reading")
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--hostile", type=int, default=10, help="hostile registry/bomb/sharing runs")
    ap.add_argument("--hostile-messages", type=int, default=200, help="messages per hostile run")
    a = ap.parse_args()
    t = time.time()
    if a.seeds:
        m = soak_messages(list(range(a.first_seed, a.first_seed + a.seeds)), a.messages)
        print("messages:", m, flush=True)
    if a.quits:
        print("quits:", soak_quits(a.quits), flush=True)
    if a.cycles:
        print("create/free:", soak_cycles(a.cycles, min(a.warm, a.cycles - 1)), flush=True)
    if a.hostile:
        print("hostile:", soak_hostile(a.hostile, a.hostile_messages), flush=True)
    print(f"total {time.time() - t:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
