"""Reliability and safety of [unravel~] under hostile input and faults (issues 15 and 16),
each through a real Pd process: hostile model files refused with one line, `save` on a full
disk, `save` refusing what it must not replace, non-finite values refused, a non-finite model
output reported once, `pd quit` during a slow model call, job threads of freed objects,
`reload` of a file replaced by another model, job errors on the console, and the stats job
never replacing what is not a regular file."""

from __future__ import annotations

import os
import re
import stat

import numpy as np
import pytest
import soundfile as sf

from pdrun import BUILD, Patch, can_mount_tmpfs, cycles_patch, jobs_patch, pd_command, run_marked, run_pd
from unravel import pipeline
from unravel.model import DEFAULT_MODEL
from toymodels import make_hostile_model, make_test_model

pytestmark = pytest.mark.skipif(not (BUILD / "unravel~.pd_linux").exists(),
                                reason="the external is not built (make setup)")

BIAS = "encoder.net.10.bias"        # 8 weights in the bundled default model
# one line `[unravel~]: <what>: <cause>`, no Python class name, no traceback
ONE_LINE = re.compile(r"^error: \[unravel~\]: [^:]+: \S.*$")
PYTHONISMS = re.compile(r"Traceback|Exception ignored|KeyboardInterrupt|\b[A-Z]\w*(Error|Exception)\b")


def well_formed(line: str) -> bool:
    """An error line of ours in the one-line form."""
    return bool(ONE_LINE.match(line)) and not PYTHONISMS.search(line)


def ours(r) -> list[str]:
    return [ln for ln in r.errors if "[unravel~]" in ln]


def sections(lines: list[str]) -> dict[str, list[str]]:
    """Lines after each `mark: <name>` up to the next mark."""
    out: dict[str, list[str]] = {}
    cur = None
    for ln in lines:
        if ln.startswith("mark: "):
            cur = ln[6:].strip()
            out[cur] = []
        elif cur is not None:
            out[cur].append(ln)
    return out


def marked_patch(obj: str, cases: list[str], extra=None, info_outlet: int = 1,
                 quit_after_replies: int = 0) -> Patch:
    """[r u] -> [obj] with its info outlet on [print info]; each case `; mark cK; u <msg>`
    (or the raw text after '; '), then `pd quit` (after that many `done`/`error` job replies
    when quit_after_replies is given)."""
    p = Patch()
    lb = p.obj("loadbang")
    r = p.obj("r u")
    u = p.obj(obj)
    p.connect(r, 0, u, 0)
    p.connect(u, info_outlet, p.obj("print info"), 0)
    p.connect(p.obj("r mark"), 0, p.obj("print mark"), 0)
    if extra:
        extra(p, lb, u)
    text = ""
    for k, m in enumerate(cases):
        text += f"; mark c{k}; " + (m[2:] if m.startswith("; ") else "u " + m)
    if quit_after_replies:
        rt = p.obj("route done error")
        p.connect(u, info_outlet, rt, 0)
        tb = p.obj("t b")
        p.connect(rt, 0, tb, 0)
        p.connect(rt, 1, tb, 0)
        f = p.obj("f")
        plus = p.obj("+ 1")
        p.connect(tb, 0, f, 0)
        p.connect(f, 0, plus, 0)
        p.connect(plus, 0, f, 1)
        sel = p.obj(f"sel {quit_after_replies}")
        p.connect(plus, 0, sel, 0)
        p.connect(sel, 0, p.msg("; mark end; pd quit"), 0)
        box = p.msg(text)
    else:
        box = p.msg(text + "; mark end; pd quit")
    dl = p.obj("delay 10")
    p.connect(lb, 0, dl, 0)
    p.connect(dl, 0, box, 0)
    return p


# ------------------------------------------------------------------ hostile model files

HOSTILE = {"ratio0": [1, 0, 1, 1], "ratio2p32": [1, 2 ** 32, 1, 1], "chans0": [0, 1, 1, 1],
           "chans1e6": [10 ** 6, 1, 10 ** 6, 1], "chans20000": [20000, 1, 20000, 1]}


def test_hostile_model_params_are_refused(tmp_path):
    """A ratio of 0 or 2^32, 0 or 10^6 channels, and a -m model declaring 20,000 channels: one
    error line each at creation and at `load`, before anything is allocated (no SIGFPE); the
    object that tried the load keeps its model."""
    for name, params in HOSTILE.items():
        make_hostile_model(tmp_path / f"{name}.ts", params)
    cases = [f"load {n}" for n in HOSTILE] + ["bang"]

    def extra(p, lb, u):
        for n in HOSTILE:
            p.obj(f"unravel~ {n}")
            p.obj(f"unravel~ -m {n}")
    r = run_pd(marked_patch("unravel~ default forward 2048", cases, extra).write(tmp_path / "h.pd"),
               timeout=90)
    assert r.returncode == 0, r.lines[-10:]
    mine = ours(r)
    assert len(mine) == 3 * len(HOSTILE), mine
    assert all(well_formed(ln) for ln in mine), mine
    for n in HOSTILE:
        assert len([ln for ln in mine if f"{n}.ts: method 'forward' declares" in ln]) == 3, (n, mine)
    assert any(ln.startswith("info: model") and ln.endswith("default.ts") for ln in r.lines)


# ------------------------------------------------------------------ save

def test_save_refuses_what_it_must_not_replace(tmp_path):
    """`save` refuses an existing file unless `save <path> force`, an empty name, a name that
    leaves the patch folder, a folder; it posts `saved <path>` when it wrote."""
    keep = tmp_path / "keep.ts"
    keep.write_bytes(b"precious")
    (tmp_path / "adir.ts").mkdir()
    (tmp_path / "sub").mkdir()
    cases = ["save keep.ts", "save keep", "save keep.ts bogus", "; empty bang", "save ../escape.ts",
             "save sub/", "save adir force", "save new.ts", "save sub/inner", "save keep.ts force"]

    def extra(p, lb, u):     # `save` with an empty symbol
        e = p.obj("r empty")
        sym = p.obj("symbol")
        pre = p.obj("list prepend save")
        trim = p.obj("list trim")
        p.connect(e, 0, sym, 0)
        p.connect(sym, 0, pre, 0)
        p.connect(pre, 0, trim, 0)
        p.connect(trim, 0, u, 0)
    r = run_pd(marked_patch("unravel~ default forward 2048", cases, extra).write(tmp_path / "s.pd"),
               timeout=60)
    assert r.returncode == 0
    sec = sections(r.lines)
    for k in range(7):                  # the refusals: one well-formed error each, no reply
        errs = [ln for ln in sec[f"c{k}"] if ln.startswith("error")]
        assert len(errs) == 1 and well_formed(errs[0]), (cases[k], sec[f"c{k}"])
        assert not any(ln.startswith("info:") for ln in sec[f"c{k}"]), sec[f"c{k}"]
    assert "already exists" in sec["c0"][0] and "force" in sec["c0"][0]
    assert "empty name" in sec["c3"][0]
    assert "leaves the patch folder" in sec["c4"][0]
    assert "folder" in sec["c6"][0]
    for k, name in ((7, "new.ts"), (8, "sub/inner.ts"), (9, "keep.ts")):
        assert f"[unravel~]: saved {tmp_path / name}" in sec[f"c{k}"], sec[f"c{k}"]
        assert f"info: saved {tmp_path / name}" in sec[f"c{k}"], sec[f"c{k}"]
        assert (tmp_path / name).read_bytes()[:2] == b"PK"     # a TorchScript zip
    assert not (tmp_path.parent / "escape.ts").exists()
    assert (tmp_path / "adir.ts").is_dir()
    assert sorted(os.listdir(tmp_path)) == ["adir.ts", "keep.ts", "new.ts", "s.pd", "sub"]


needs_tmpfs = pytest.mark.skipif(bool(can_mount_tmpfs()), reason=can_mount_tmpfs() or "ok")


@needs_tmpfs
def test_save_and_jobs_on_a_full_disk(tmp_path):
    """A 64 kB tmpfs: `save` (a 2.9 MB model) and jobs whose outputs do not fit fail with one
    line each (Pd is not aborted by torch's writer), and leave no temporary file."""
    full = tmp_path / "full"
    full.mkdir()
    audio, sr = sf.read(DEFAULT_MODEL.with_name("loop.wav"), dtype="float32")
    sf.write(tmp_path / "loop.wav", audio[: sr * 2], sr, subtype="FLOAT")
    m = make_test_model(tmp_path / "m.ts")
    np.save(tmp_path / "lat.npy", np.zeros((1, 8, 300), np.float32))
    cases = ["save full/bent.ts", "save full/bent.ts force", "decode input lat.npy output full",
             "encode input loop.wav output full latent-wav 1"]
    p = marked_patch("unravel~ default forward 2048", cases, quit_after_replies=2)
    r = run_pd(p.write(tmp_path / "full.pd"), timeout=90, tmpfs=(full, "64k"))
    assert r.returncode == 0, r.lines[-10:]
    assert "mark: end" in r.lines
    mine = ours(r)
    assert all(well_formed(ln) for ln in mine), mine
    assert len([ln for ln in mine if "bent.ts: cannot write (No space left on device)" in ln]) == 2, mine
    assert any("decode: " in ln and "No space left on device" in ln for ln in mine), mine
    listing = (tmp_path / "full.listing").read_text().split()
    assert not [f for f in listing if ".tmp" in f], listing
    assert "bent.ts" not in listing
    assert m.exists()


# ------------------------------------------------------------------ non-finite values

def test_non_finite_values_are_refused(tmp_path):
    """set_weights with inf/NaN, `set temperature` inf, `enable`/`sync` NaN: one error line
    each, nothing changed; `enable <symbol>` gets our message, not Pd's."""
    cases = ["; run0 bang", "; run1 bang", "set temperature 1e39", "set temperature inf",
             "; run2 bang", "; run3 bang", "enable foo", f"get_weights {BIAS}", "get temperature"]

    def extra(p, lb, u):     # [r runK] -> a message with $1 = NaN or inf (made at loadbang)
        inf = p.msg("1e39")
        p.connect(lb, 0, inf, 0)
        tff = p.obj("t f f")
        p.connect(inf, 0, tff, 0)
        nan = p.obj("-")
        p.connect(tff, 1, nan, 1)
        p.connect(tff, 0, nan, 0)
        for k, (src, text) in enumerate(((nan, f"set_weights {BIAS}" + " $1" * 8),
                                         (inf, f"set_weights {BIAS}" + " $1" * 8),
                                         (nan, "enable $1"), (nan, "sync $1"))):
            f = p.obj("f")
            p.connect(src, 0, f, 1)
            p.connect(p.obj(f"r run{k}"), 0, f, 0)
            m = p.msg(text)
            p.connect(f, 0, m, 0)
            p.connect(m, 0, u, 0)
    r = run_pd(marked_patch("unravel~ default forward 2048", cases, extra).write(tmp_path / "nf.pd"),
               timeout=60)
    assert r.returncode == 0, r.lines[-10:]
    sec = sections(r.lines)
    for k in range(7):
        errs = [ln for ln in sec[f"c{k}"] if ln.startswith("error")]
        assert len(errs) == 1 and well_formed(errs[0]), (cases[k], sec[f"c{k}"])
    assert "finite" in sec["c0"][0] and "finite" in sec["c1"][0] and "finite" in sec["c2"][0]
    assert "enable: usage" in sec["c6"][0]
    weights = [ln for ln in sec["c7"] if ln.startswith("info: layer")]
    values = [float(v) for v in weights[0].split()[2:]]
    assert len(values) == 8 and np.all(np.isfinite(values)), sec["c7"]
    assert "info: attribute temperature 1" in sec["c8"], sec["c8"]


def test_non_finite_model_output_is_reported_once(tmp_path):
    """A model whose output turns into NaN after a few calls: one error line, while its output
    is silent (not NaN) for the rest of the run."""
    make_hostile_model(tmp_path / "nanmodel.ts", [1, 1, 1, 1], behave="nan", after=4)
    p = Patch()
    lb = p.obj("loadbang")
    sig = p.obj("osc~ 100")
    u = p.obj("unravel~ nanmodel forward 64")
    p.connect(sig, 0, u, 0)
    p.obj("table out 4410")
    w = p.obj("tabwrite~ out")
    p.connect(u, 0, w, 0)
    start = p.msg("; pd dsp 1")
    p.connect(lb, 0, start, 0)
    dl = p.obj("delay 500")
    p.connect(lb, 0, dl, 0)
    p.connect(dl, 0, w, 0)
    dl2 = p.obj("delay 700")
    p.connect(lb, 0, dl2, 0)
    wr = p.msg("write -wave -bytes 4 out.wav out")
    p.connect(dl2, 0, wr, 0)
    p.connect(wr, 0, p.obj("soundfiler"), 0)
    q = p.obj("delay 710")
    p.connect(lb, 0, q, 0)
    p.connect(q, 0, p.msg("; pd quit"), 0)
    r = run_pd(p.write(tmp_path / "nan.pd"), timeout=60)
    assert r.returncode == 0
    mine = ours(r)
    assert len(mine) == 1 and "not finite" in mine[0] and well_formed(mine[0]), mine
    y, _ = sf.read(tmp_path / "out.wav", dtype="float32")
    assert np.all(np.isfinite(y)) and np.all(y == 0)


# ------------------------------------------------------------------ quit and threads

def test_quit_during_a_slow_model_call(tmp_path):
    """`pd quit` while the worker is inside a model call that does not end: Pd exits with
    status 0 (the worker is not joined forever), printing no Python traceback."""
    make_hostile_model(tmp_path / "slow.ts", [1, 1, 1, 1], behave="slow", spins=10 ** 9, after=2)
    p = Patch()
    lb = p.obj("loadbang")
    noise = p.obj("noise~")
    u = p.obj("unravel~ -live slow forward 64")
    p.connect(noise, 0, u, 0)
    on = p.msg("; pd dsp 1")
    p.connect(lb, 0, on, 0)
    dl = p.obj("delay 1500")        # real time (no -batch): the worker is inside the call
    p.connect(lb, 0, dl, 0)
    p.connect(dl, 0, p.msg("; pd quit"), 0)
    r = run_pd(p.write(tmp_path / "q.pd"), timeout=60, batch=False)
    assert r.returncode == 0, r.lines[-10:]
    assert not [ln for ln in r.lines if PYTHONISMS.search(ln)], r.lines


def test_jobs_of_freed_objects_are_cancelled(tmp_path):
    """Objects freed while their (long) job runs: each job is cancelled, its thread ends and
    releases what it held; no temporary file is left. Pd runs in real time (no -batch)."""
    cycles = 6
    src = tmp_path / "src"
    src.mkdir()
    np.save(src / "z.npy", np.random.default_rng(0).standard_normal((1, 8, 40)).astype(np.float32))
    patch = cycles_patch(tmp_path / "free.pd",
                         "; pd-sub obj 10 10 unravel~ default; pd-sub obj 10 50 r job; "
                         "pd-sub connect 1 0 0 0; job generate input src/z.npy output gen "
                         "files 10000 points 11", cycles, 300)
    rc, seen, lines = run_marked(pd_command(patch, batch=False), tmp_path,
                                 dict(os.environ, OMP_NUM_THREADS="1"))
    print(f"\nRSS MB/threads: {seen}")
    assert rc == 0, lines[-10:]
    assert "start" in seen and "check" in seen, lines[-10:]
    # every job thread of the freed objects has ended 3 s after the last free
    assert seen["check"][1] <= seen["start"][1], (seen, lines[-10:])
    written = list((tmp_path / "gen").iterdir()) if (tmp_path / "gen").exists() else []
    assert not [f for f in written if ".tmp" in f.name]
    assert len(written) < 3 * 10000
    assert [ln for ln in lines if "[unravel~]" in ln and ln.startswith("error")] == []


# ------------------------------------------------------------------ reload

def test_reload_after_the_file_holds_another_model(tmp_path):
    """The model file replaced by one of another latent size: `reload` gives one error naming
    the change and the object keeps its model; `load` then takes the new one."""
    make_test_model(tmp_path / "m.ts", dims=8)
    make_test_model(tmp_path / "m4.ts", dims=4, seed=1)
    cases = ["bang", f"; cp list {tmp_path / 'm4.ts'} {tmp_path / 'm.ts'}", "reload", "bang",
             "load m", "bang"]

    def extra(p, lb, u):
        c = p.obj("r cp")
        f = p.obj("file copy")
        p.connect(c, 0, f, 0)
    r = run_pd(marked_patch("unravel~ m encode 2048", cases, extra, info_outlet=8).write(tmp_path / "r.pd"),
               timeout=60)
    assert r.returncode == 0
    sec = sections(r.lines)
    assert "info: dim 1 8" in sec["c0"]
    errs = [ln for ln in sec["c2"] if ln.startswith("error")]
    assert len(errs) == 1 and well_formed(errs[0]), sec["c2"]
    assert "another model" in errs[0] and "4" in errs[0] and "8" in errs[0], errs
    assert "info: dim 1 8" in sec["c3"] and "info: loaded 1" in sec["c3"]
    assert not [ln for ln in sec["c4"] if ln.startswith("error")], sec["c4"]
    assert "info: dim 1 4" in sec["c5"]


# ------------------------------------------------------------------ job errors

def test_job_errors_reach_the_console_in_one_line(tmp_path):
    """Failed jobs: `error <job> <reason>` on the outlet and the same cause on Pd's console as
    `[unravel~]: <job>: <cause>` with readable paths; wrong argument types give sentences."""
    (tmp_path / "my folder").mkdir()
    jobs = ["encode input my\\ folder/missing\\ file.wav output lat", "tempo k foo", "tempo bpm 1e39",
            "tempo k 1e30", "generate input x.npy points -5.5", "stats input 3 output 4",
            "decode input", "diffuse steps nope"]
    r = run_pd(jobs_patch(tmp_path / "jobs.pd", jobs), timeout=60)
    assert r.returncode == 0
    replies = r.after("reply:")
    assert len(replies) == len(jobs) and all(rep.startswith("error ") for rep in replies), replies
    mine = ours(r)
    assert len(mine) == len(jobs), mine
    assert all(well_formed(ln) for ln in mine), mine
    for job, ln in zip(jobs, mine):
        assert ln.startswith(f"error: [unravel~]: {job.split()[0]}: "), (job, ln)
    assert f"{tmp_path}/my folder/missing file.wav: no such file" in mine[0]
    assert "\\" not in mine[0]


# ------------------------------------------------------------------ the stats job's output

def test_stats_job_never_replaces_what_is_not_a_regular_file(tmp_path):
    """The stats job's output: an existing folder, a character device (made here as root,
    else skipped), a symbolic link and an existing file (without force) are refused with one
    line; a file named like the old fixed temp name (`<out>.tmp`) is not touched."""
    np.save(tmp_path / "z.npy", np.random.default_rng(0).standard_normal((1, 8, 40)).astype(np.float32))
    (tmp_path / "adir").mkdir()
    (tmp_path / "o.tmp").write_text("mine")
    (tmp_path / "o2").write_text("keep")
    (tmp_path / "target").write_text("linked")
    os.symlink(tmp_path / "target", tmp_path / "link")
    outs = ["adir", "link", "o2", "o"]
    try:
        os.mknod(tmp_path / "dev", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        outs.insert(0, "dev")
    except OSError:
        pass
    jobs = [f"stats input z.npy output {o} force {0 if o in ('o2', 'o') else 1}" for o in outs]
    p = Patch()
    lb = p.obj("loadbang")
    u = p.obj("unravel~ default")
    p.connect(u, 1, p.obj("print reply"), 0)
    box = p.msg(", ".join(jobs))
    p.connect(lb, 0, box, 0)
    p.connect(box, 0, u, 0)
    rt = p.obj("route done error")
    p.connect(u, 1, rt, 0)
    tb = p.obj("t b")
    p.connect(rt, 0, tb, 0)
    p.connect(rt, 1, tb, 0)
    f = p.obj("f")
    plus = p.obj("+ 1")
    p.connect(tb, 0, f, 0)
    p.connect(f, 0, plus, 0)
    p.connect(plus, 0, f, 1)
    sel = p.obj(f"sel {len(jobs)}")
    p.connect(plus, 0, sel, 0)
    p.connect(sel, 0, p.msg("; pd quit"), 0)
    r = run_pd(p.write(tmp_path / "st.pd"), timeout=60)
    assert r.returncode == 0
    replies = r.after("reply:")
    assert len(replies) == len(outs), r.lines
    for o, rep in zip(outs, replies):
        assert rep.startswith("done stats" if o == "o" else "error stats"), (o, rep)
    mine = ours(r)
    assert len(mine) == len(outs) - 1 and all(well_formed(ln) for ln in mine), mine
    if "dev" in outs:
        assert stat.S_ISCHR(os.lstat(tmp_path / "dev").st_mode)
    assert os.path.islink(tmp_path / "link") and (tmp_path / "target").read_text() == "linked"
    assert (tmp_path / "adir").is_dir() and (tmp_path / "o2").read_text() == "keep"
    assert (tmp_path / "o.tmp").read_text() == "mine"
    assert (tmp_path / "o").read_text().startswith("{")
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".") and ".tmp" in f]
    assert pipeline  # the backend module the job runs
