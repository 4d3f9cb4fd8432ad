"""UnRAVEl jobs as [unravel~] messages: encode, stats, generate, decode, tempo run from the job
thread (all but tempo in a child process) and reply `done <job> <paths...>` / `error <job>
<reason>`; the files equal the ones the backend writes for the same inputs, with the
object's weights as they are (bent). Relative paths resolve against the patch folder.
Freeing the object ends its job's process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time

import numpy as np
import pytest
import soundfile as sf

from pdrun import BUILD, Patch, jobs_patch, pd_command, run_pd, write_patch
from test_jobproc import jobproc_children, no_partial_file
from unravel.operations import DIFFUSE, GENERATE
from unravel import generator, pipeline, stats, tempo
from unravel.bend import Bender
from unravel.model import DEFAULT_MODEL, load_model

pytestmark = pytest.mark.skipif(not (BUILD / "unravel~.pd_linux").exists(),
                                reason="the external is not built (make setup)")

JOBS = [
    "encode input loop.wav output lat",
    "stats input lat/loop.npy iqr 1",
    "generate input lat/loop.npy output gen seed 3 points 11 files 2",
    "decode input lat/loop.npy output dec",
    "tempo bpm 120",
    "tempo k 11",
    # wrong ones: one `error <job> <reason>` each, Pd goes on
    "encode input nonexistent.wav output lat",
    "encode bogus 1",
    "encode input",
    "decode output dec",
    "tempo k 0",
    "generate input lat/loop.npy pattern nope",
    "stats 3 x",
]


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    d = tmp_path_factory.mktemp("pdjobs")
    audio, sr = sf.read(pipeline.__file__.replace("pipeline.py", "data/loop.wav"), dtype="float32")
    sf.write(d / "loop.wav", audio[: sr * 2], sr, subtype="FLOAT")   # 2 s
    patch = jobs_patch(d / "jobs.pd", JOBS)
    r = run_pd(patch, timeout=120)
    return d, r


def test_every_job_replies_once_in_order(result):
    d, r = result
    assert r.returncode == 0
    # each failed job also prints its cause on the console (issue 11): one line per wrong job
    wrong = [job.split()[0] for job in JOBS[6:]]
    assert len(r.errors) == len(wrong), r.errors
    assert [ln.split()[2].rstrip(":") for ln in r.errors] == wrong, r.errors
    assert all(ln.startswith("error: [unravel~]: ") for ln in r.errors), r.errors
    replies = r.after("reply:")
    assert len(replies) == len(JOBS), replies
    for job, rep in zip(JOBS, replies):
        name = job.split()[0]
        good = JOBS.index(job) < 6
        assert rep.split()[:2] == (["done", name] if good else ["error", name]), (job, rep)


def test_job_files_equal_the_backend(result, tmp_path):
    d, r = result
    replies = [rep.split() for rep in r.after("reply:")]
    npy = d / "lat" / "loop.npy"
    assert replies[0][2:] == [str(npy)]
    m = load_model(DEFAULT_MODEL)
    ref = pipeline.encode_files(m, [d / "loop.wav"], tmp_path / "lat", progress=False)
    assert np.array_equal(np.load(npy), np.load(ref[0]))
    stats_path = replies[1][2]
    assert json.loads(open(stats_path).read()) == json.loads(json.dumps(stats.read([npy]).to_dict(iqr=True)))
    gen = replies[2][2:]
    assert len(gen) == 2
    ref_gen = generator.generate_files(GENERATE.settings(inputs=[npy], output=tmp_path / "gen", seed=3, points=11, files=2, sr=m.sr, ratio=m.ratio))
    for a, b in zip(gen, ref_gen):
        assert np.array_equal(np.load(a), np.load(b))
    dec = replies[3][2:]
    ref_dec = pipeline.decode_files(m, [npy], tmp_path / "dec", progress=False)
    assert np.array_equal(sf.read(dec[0], dtype="float32")[0], sf.read(ref_dec[0], dtype="float32")[0])
    t, _ = tempo.nearest(120, m.sr, m.ratio)
    assert [float(v) for v in replies[4][2:]] == pytest.approx([t.k, t.bpm, t.double, t.seconds], rel=1e-5)  # Pd prints 6 digits
    assert float(replies[5][2]) == 11


def test_diffuse_replies_wav_and_npy_equal_to_the_backend(tmp_path):
    """`diffuse` on the job thread replies `done diffuse <wav> <npy>`; the latents equal the
    backend's for the same seed and settings, and the wav is their decode."""
    from unravel import diffusion
    p = Patch()
    lb = p.obj("loadbang")
    u = p.obj("unravel~ default decode")
    pr = p.obj("print reply")
    p.connect(u, 1, pr, 0)
    rt = p.obj("route done error")
    p.connect(u, 1, rt, 0)
    q = p.msg("; pd quit")
    p.connect(rt, 0, q, 0)
    p.connect(rt, 1, q, 0)
    box = p.msg("diffuse output diff seed 5 steps 3")
    p.connect(lb, 0, box, 0)
    p.connect(box, 0, u, 0)
    r = run_pd(p.write(tmp_path / "diffuse.pd"), timeout=120)
    assert r.returncode == 0
    assert r.errors == [], r.errors
    replies = [rep.split() for rep in r.after("reply:")]
    assert len(replies) == 1 and replies[0][:2] == ["done", "diffuse"], replies
    wav, npy = replies[0][2:]
    assert wav.endswith(".wav") and npy.endswith(".npy")
    assert wav.startswith(str(tmp_path / "diff"))
    ref = diffusion.diffuse_files("default", DIFFUSE.settings(seed=5, steps=3, save_latents=True),
                                  tmp_path / "ref")[0]
    assert np.array_equal(np.load(npy), np.load(ref.npy))
    assert np.array_equal(sf.read(wav, dtype="float32")[0], sf.read(ref.wav, dtype="float32")[0])


DIFFUSE_BOUNDS = [
    ("diffuse output big seed 1 steps 1 length-mult 100000", "length-mult must be between 1 and 1024"),
    ("diffuse checkpoint huge.pt output big seed 1 steps 1", "latent_length 1000000000"),
    ("diffuse checkpoint long.pt output big seed 1 steps 1", "of memory"),
    ("diffuse output big seed 1 steps 1 num 1000000000", "num must be between 1 and 10000"),
    ("diffuse output big seed 1 steps 1000000000", "steps must be between 1 and 10000"),
    ("diffuse output big seed 1 steps 1 name ../../escape", "may not leave its folder"),
]


def test_diffuse_job_sizes_are_bounded_before_anything_is_allocated(tmp_path):
    """The Pd `diffuse` job goes through the backend's checks (issue 16): sizes past their
    limits, a checkpoint claiming latent_length 1e9 (32 GB), one whose sampling cannot fit in
    memory, a name with '..': one `error diffuse <reason>` each, nothing written, Pd alive."""
    from test_cli_limits import tiny_checkpoint
    from unravel import limits
    tiny_checkpoint(tmp_path / "huge.pt", 10**9)
    tiny_checkpoint(tmp_path / "long.pt", limits.MAX_LATENT_FRAMES)
    p = Patch()
    lb = p.obj("loadbang")
    u = p.obj("unravel~ default decode")
    pr = p.obj("print reply")
    p.connect(u, 1, pr, 0)
    tb = p.obj("t b")
    count = p.obj("f")
    plus = p.obj("+ 1")
    p.connect(u, 1, tb, 0)
    p.connect(tb, 0, count, 0)
    p.connect(count, 0, plus, 0)
    p.connect(plus, 0, count, 1)
    sel = p.obj(f"sel {len(DIFFUSE_BOUNDS)}")
    p.connect(plus, 0, sel, 0)
    q = p.msg("; pd quit")
    p.connect(sel, 0, q, 0)
    box = p.msg(", ".join(job for job, _ in DIFFUSE_BOUNDS))
    p.connect(lb, 0, box, 0)
    p.connect(box, 0, u, 0)
    r = run_pd(p.write(tmp_path / "bounds.pd"), timeout=300)   # six jobs, on a loaded machine
    assert r.returncode == 0
    replies = r.after("reply:")
    assert len(replies) == len(DIFFUSE_BOUNDS), (replies, r.errors)
    for (job, why), rep in zip(DIFFUSE_BOUNDS, replies):
        rep = rep.replace("\\", "")          # Pd prints the reason as one escaped symbol
        assert rep.startswith("error diffuse"), (job, rep)
        assert why in rep, (job, rep)
    assert not (tmp_path / "big").exists()
    assert not (tmp_path.parent / "escape_1.wav").exists()


@pytest.mark.parametrize("mode", ["", "-live"])
def test_a_job_on_a_bent_object_decodes_with_its_bent_weights(tmp_path, mode):
    """`decode` after `bend` and `set_weights` on the object: the job's process decodes with
    the object's weights as they are (handed over as a TorchScript file), equal to the
    backend's decode by the same bent model, unlike the file's. In live mode too, where the
    edits run on the control thread: the job waits for the messages sent before it."""
    z = tmp_path / "z.npy"
    np.save(z, np.random.default_rng(2).standard_normal((1, 8, 30)).astype(np.float32))
    bias = np.linspace(-0.5, 0.5, 16).astype(np.float32)
    p = Patch()
    lb = p.obj("loadbang")
    u = p.obj(f"unravel~ {mode} default decode")
    p.connect(u, 1, p.obj("print reply"), 0)
    rt = p.obj("route done error")
    p.connect(u, 1, rt, 0)
    q = p.msg("; pd quit")
    p.connect(rt, 0, q, 0)
    p.connect(rt, 1, q, 0)
    box = p.msg("bend decoder.net.2.weight offset 0.02 50 7, set_weights decoder.net.10.bias "
                + " ".join(f"{v:.9g}" for v in bias) + ", decode input z.npy output dec")
    p.connect(lb, 0, box, 0)
    p.connect(box, 0, u, 0)
    r = run_pd(p.write(tmp_path / "bent.pd"), timeout=120)
    assert r.returncode == 0 and r.errors == [], r.errors
    replies = [rep.split() for rep in r.after("reply:")]
    # a live object made with a model loads it in the background and says when it plays
    loaded = [["loaded", str(DEFAULT_MODEL)]] if mode == "-live" else []
    assert replies == loaded + [["done", "decode", str(tmp_path / "dec" / "z.wav")]], replies
    m = load_model(DEFAULT_MODEL, share=False)
    b = Bender(m)
    b.bend("decoder.net.2.weight", "offset", 0.02, 50, 7)
    b.set_weights("decoder.net.10.bias", bias)
    bent = pipeline.decode_files(m, [z], tmp_path / "bent", progress=False)[0]
    plain = pipeline.decode_files(load_model(DEFAULT_MODEL), [z], tmp_path / "plain", progress=False)[0]
    got = sf.read(tmp_path / "dec" / "z.wav", dtype="float32")[0]
    assert np.array_equal(got, sf.read(bent, dtype="float32")[0])
    assert not np.array_equal(got, sf.read(plain, dtype="float32")[0])


def test_freeing_the_object_kills_its_jobs_process(tmp_path):
    """Real-time Pd: a long job runs in a child process of Pd (`<unravel.cfg's python> -m
    unravel.jobproc`); freeing the object while that process writes files ends it within a
    few seconds, and it leaves no temporary or partial file."""
    np.save(tmp_path / "z.npy", np.random.default_rng(0).standard_normal((1, 8, 40)).astype(np.float32))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    patch = write_patch(tmp_path / "free.pd", [
        "#N canvas 0 50 450 300 sub 0", "#X obj 10 10 unravel~ default", "#X obj 10 50 r job",
        "#X connect 1 0 0 0", "#X restore 10 10 pd sub",
        f"#X obj 10 40 netreceive {port}", "#X obj 10 70 route job free quit",
        "#X msg 10 100 \\; job generate input z.npy output gen files 10000 points 11",
        "#X msg 10 130 \\; pd-sub clear", "#X msg 10 160 \\; pd quit",
        "#X connect 1 0 2 0", "#X connect 2 0 3 0", "#X connect 2 1 4 0", "#X connect 2 2 5 0"])
    python = dict(ln.split("=", 1) for ln in (BUILD / "unravel.cfg").read_text().splitlines()
                  if "=" in ln and not ln.startswith("#"))["python"]
    pd = subprocess.Popen(pd_command(patch, batch=False), cwd=tmp_path, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(pd.stderr), daemon=True).start()
    seen: dict[int, list[str]] = {}
    gen = tmp_path / "gen"
    net = None
    try:
        end = time.monotonic() + 60
        while True:
            try:
                net = socket.create_connection(("127.0.0.1", port))
                break
            except OSError:
                assert time.monotonic() < end and pd.poll() is None, lines
                time.sleep(0.1)
        net.sendall(b"job;\n")
        while not (gen.exists() and len(list(gen.iterdir())) >= 6):
            assert time.monotonic() < end and pd.poll() is None, lines
            seen.update(jobproc_children(pd.pid))
            time.sleep(0.02)
        net.sendall(b"free;\n")
        t0 = time.monotonic()
        while jobproc_children(pd.pid) and time.monotonic() - t0 < 10:
            time.sleep(0.02)
        gone = time.monotonic() - t0
        net.sendall(b"quit;\n")
        assert pd.wait(30) == 0, lines[-10:]
    finally:
        if net is not None:
            net.close()
        if pd.poll() is None:
            pd.kill()
    assert [argv for argv in seen.values()] == [[python, "-m", "unravel.jobproc"]], seen
    assert gone < 3, gone
    no_partial_file(gen)
    assert [ln for ln in lines if ln.startswith("error")] == [], lines


def test_library_warnings_never_reach_pd(tmp_path):
    """`decode` of a float64 file that overflows float32: numpy's RuntimeWarning stays
    silent (in the job process and in Pd's); the error is our one line."""
    np.save(tmp_path / "f64.npy", np.full((1, 8, 10), 1e300))
    r = run_pd(jobs_patch(tmp_path / "w.pd", ["decode input f64.npy output dec"]), timeout=120)
    assert r.returncode == 0
    assert len(r.errors) == 1 and r.errors[0].startswith("error: [unravel~]: decode: "), r.errors
    assert r.errors[0].endswith("f64.npy: latents contain NaN or infinite values"), r.errors
    assert not [ln for ln in r.lines if "Warning" in ln or "overflow" in ln], r.lines
