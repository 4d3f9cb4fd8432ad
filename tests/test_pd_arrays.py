"""UnRAVEl jobs on Pd arrays (issue 21): `input-array <set>` / `output-array <set>` instead
of files. A latent set is the arrays <set>-0 … <set>-<D-1>; mono audio is one array. Each
array job's values equal the file job's for the same input and seed; jobs sent together run
in order, each reading the arrays the one before it wrote; bad sets give one error line."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
import soundfile as sf

from pdrun import BUILD, Patch, run_pd
from unravel.operations import DIFFUSE, GENERATE
from unravel import diffusion, generator, pipeline, stats
from unravel.model import DEFAULT_MODEL, load_model

pytestmark = pytest.mark.skipif(not (BUILD / "unravel~.pd_linux").exists(),
                                reason="the external is not built (make setup)")

D = 8   # the default model's latent dims

JOBS = [
    "encode input-array aud output-array lat",
    "stats input-array lat",
    "generate input-array lat output-array gen pattern fibo seed 3 points 11",
    "decode input-array gen output-array dec",
    "diffuse output-array dif seed 5 steps 3 latent-length 64",
    "encode input loop.wav output-array flat",
    # wrong ones: one `error <job> <reason>` each, nothing written
    "generate input-array nope output-array x1",
    "decode input-array aud output-array x2",
    "encode input-array aud",
    "diffuse output-array x3 num 2",
]
WRONG = ["no array 'nope' or 'nope-0'", "latent set 'aud' has 1 arrays",
         "input-array writes to arrays", "output-array takes num 1"]


def _set(name: str) -> str:
    return " ".join(f"{name}-{i}" for i in range(D))


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    d = tmp_path_factory.mktemp("pdarrays")
    audio, sr = sf.read(pipeline.__file__.replace("pipeline.py", "data/loop.wav"), dtype="float32")
    sf.write(d / "loop.wav", audio[: sr * 2], sr, subtype="FLOAT")   # 2 s
    p = Patch()
    p.obj("array define aud")
    lb = p.obj("loadbang")
    t = p.obj("t b b")
    p.connect(lb, 0, t, 0)
    sfr = p.obj("soundfiler")
    p.connect(p.msg("read -resize loop.wav aud"), 0, sfr, 0)
    p.connect(t, 1, p.n - 1, 0)
    u = p.obj("unravel~ default decode")
    p.connect(t, 0, p.msg(", ".join(JOBS)), 0)
    p.connect(p.n - 1, 0, u, 0)
    pr = p.obj("print reply")
    p.connect(u, 1, pr, 0)
    tb = p.obj("t b")
    p.connect(u, 1, tb, 0)
    count = p.obj("f")
    plus = p.obj("+ 1")
    p.connect(tb, 0, count, 0)
    p.connect(count, 0, plus, 0)
    p.connect(plus, 0, count, 1)
    sel = p.obj(f"sel {len(JOBS)}")
    p.connect(plus, 0, sel, 0)
    w = p.obj("soundfiler")
    dump = p.msg(", ".join(f"write -bytes 4 {s}.wav {_set(s)}" for s in ("lat", "gen", "dif", "flat"))
                 + ", write -bytes 4 dec.wav dec, ; pd quit")
    p.connect(sel, 0, dump, 0)
    p.connect(dump, 0, w, 0)
    r = run_pd(p.write(d / "arrays.pd"), timeout=300)
    return d, r


def _read(path) -> np.ndarray:
    """(channels, n) float32 from a wav Pd wrote."""
    return sf.read(path, dtype="float32", always_2d=True)[0].T


def test_array_jobs_reply_in_order_and_wrong_sets_are_one_error_each(result):
    d, r = result
    assert r.returncode == 0
    replies = [rep.split() for rep in r.after("reply:")]
    assert len(replies) == len(JOBS), (replies, r.errors)
    for job, rep in zip(JOBS[:6], replies):
        assert rep[:2] == ["done", job.split()[0]], (job, rep)
    for rep, why in zip(replies[6:], WRONG):
        assert rep[0] == "error" and why in " ".join(rep).replace("\\", ""), rep
    assert [ln.split()[2].rstrip(":") for ln in r.errors] == [j.split()[0] for j in JOBS[6:]], r.errors
    # the reply names the set
    assert [rep[2] for rep in replies[:6] if rep[1] != "stats"] == ["lat", "gen", "dec", "dif", "flat"]
    assert not (d / "x1-0.wav").exists() and sorted(p.name for p in d.iterdir()) == sorted(
        ["loop.wav", "arrays.pd", "lat.wav", "gen.wav", "dif.wav", "flat.wav", "dec.wav"])


def test_each_array_job_equals_the_file_job(result, tmp_path):
    d, r = result
    replies = [rep.split() for rep in r.after("reply:")]
    m = load_model(DEFAULT_MODEL)
    # encode: audio array at Pd's rate (the model's here) -> the set; a file in, arrays out too
    npy = pipeline.encode_files(m, [d / "loop.wav"], tmp_path / "lat", progress=False)[0]
    z = np.load(npy)[0]
    assert np.array_equal(_read(d / "lat.wav"), z)
    assert np.array_equal(_read(d / "flat.wav"), z)
    # stats: <set> <D> then mean std min max per dimension (Pd prints 6 digits)
    s = stats.compute(z)
    assert replies[1][2:4] == ["lat", str(D)]
    got = np.array([float(v) for v in replies[1][4:]]).reshape(D, 4)
    want = np.stack([s.mean, s.std, s.min, s.max], axis=1)
    assert got == pytest.approx(want, rel=1e-5, abs=1e-6)
    # generate: the first file of the file job with the same arguments
    gen = generator.generate_files(GENERATE.settings(inputs=[npy], output=tmp_path / "gen", pattern="fibo", seed=3, points=11, sr=m.sr, ratio=m.ratio))[0]
    assert np.array_equal(_read(d / "gen.wav"), np.load(gen)[0])
    # decode: the file job's audio (Pd runs at the model's rate here)
    wav = pipeline.decode_files(m, [gen], tmp_path / "dec", progress=False)[0]
    assert np.array_equal(_read(d / "dec.wav"), _read(wav))
    # diffuse: the latents the file job saves, not decoded
    ref = diffusion.diffuse_files(m, DIFFUSE.settings(seed=5, steps=3, latent_length=64, save_latents=True),
                                  tmp_path / "dif")[0]
    assert np.load(ref.npy).shape == (1, D, 64)
    assert np.array_equal(_read(d / "dif.wav"), np.load(ref.npy)[0])


# --------------------------------------------------------------- a job's set on the boundary

RATIO, LOOP_FRAMES = 2048, 16
LOOP = LOOP_FRAMES * RATIO
A = [[100.0 + 10 * k + (i % 5) for i in range(LOOP_FRAMES)] for k in range(D)]
SWITCH_SAMPLES = 12 * LOOP


def switch_patch(folder, asked: int) -> pathlib.Path:
    """[ch8ns0n pl] plays the set A (16 frames); `asked` samples after Render a generate job
    makes the set B from A's statistics and its reply sends `arrays B`. Channel 0 of the
    player is recorded into out.wav; 'at: <samples>' is printed at the reply and at each
    `loop <n>`."""
    p = Patch()
    for k in range(D):
        p.obj(f"array define A-{k} {LOOP_FRAMES}")
    p.obj(f"table out0 {SWITCH_SAMPLES}")
    lb = p.obj("loadbang")
    pl = p.obj("ch8ns0n pl")
    u = p.obj("unravel~ default decode")
    p.connect(p.obj("r job"), 0, u, 0)
    snake = p.obj(f"snake~ out {D}")
    p.connect(pl, 0, snake, 0)
    rec = p.obj("r rec")
    w = p.obj("tabwrite~ out0")
    p.connect(snake, 0, w, 0)
    p.connect(rec, 0, w, 0)
    timer = p.obj("timer 1 samp")
    p.connect(rec, 0, timer, 0)
    p.connect(timer, 0, p.obj("print at"), 0)
    done_timer = p.obj("timer 1 samp")
    p.connect(rec, 0, done_timer, 0)
    p.connect(done_timer, 0, p.obj("print done-at"), 0)
    done = p.obj("route done")
    p.connect(u, 1, done, 0)
    p.connect(u, 1, p.obj("print reply"), 0)
    t = p.obj("t b b")
    p.connect(done, 0, t, 0)
    p.connect(t, 1, done_timer, 1)
    p.connect(t, 0, p.msg("; pl arrays B"), 0)
    tl = p.obj("t b a")
    p.connect(pl, 1, tl, 0)
    p.connect(tl, 1, p.obj("print info"), 0)
    p.connect(tl, 0, timer, 1)
    start = p.obj("delay 10")
    p.connect(lb, 0, start, 0)
    go = p.obj("t b b")
    p.connect(start, 0, go, 0)
    fill = "; ".join(f"A-{k} 0 {' '.join(f'{v:g}' for v in vals)}" for k, vals in enumerate(A))
    p.connect(go, 1, p.msg(f"; pd dsp 1; {fill}; rec bang; pl arrays A; pl render 1"), 0)
    ask = p.obj(f"delay {asked} 1 samp")
    p.connect(go, 0, ask, 0)
    p.connect(ask, 0, p.msg("; job generate input-array A output-array B pattern default "
                            f"points {LOOP_FRAMES} seed 9"), 0)
    end = p.obj(f"delay {SWITCH_SAMPLES + 64} 1 samp")
    p.connect(go, 0, end, 0)
    p.connect(end, 0, p.msg("; pl render 0; wr write -wave -bytes 4 out.wav out0; pd quit"), 0)
    p.connect(p.obj("r wr"), 0, p.obj("soundfiler"), 0)
    return p.write(folder / "switch.pd")


@pytest.mark.parametrize("batch", [False, True], ids=["realtime", "batch"])
def test_a_generated_set_comes_in_at_the_first_boundary_after_it_is_ready(tmp_path, batch):
    """Set A plays; during its loop 1 a generate job makes set B from A's statistics; the
    player's output changes exactly at the first loop boundary after the job's reply (a
    multiple of 16 x 2048 samples from Render), from A's values to B's (the job's values),
    never to silence. Under -batch two runs give the same bytes."""
    asked = LOOP + LOOP // 2 + 64
    want_b = generator.generate(np.array(A, np.float32), pattern="default", points=LOOP_FRAMES,
                                seed=9)
    runs = []
    for i in range(2 if batch else 1):
        d = tmp_path / f"run{i}"
        d.mkdir()
        r = run_pd(switch_patch(d, asked), args=["-r", "44100"], batch=batch, timeout=120)
        assert r.returncode == 0 and r.errors == [], r.lines
        runs.append((d / "out.wav").read_bytes())
        y = _read(d / "out.wav")[0]
        at = [int(round(float(v))) for v in r.after("at:")]
        info = r.after("info:")
        assert len(at) == len(info), r.lines
        assert r.after("reply:")[-1] == "done generate B", r.lines
        done_at = int(round(float(r.after("done-at:")[0])))
        assert done_at > asked
        boundary = -(-done_at // LOOP) * LOOP           # the first boundary after the reply
        assert boundary + LOOP <= SWITCH_SAMPLES, (done_at, "the job took too long")
        # A plays exactly until that boundary, then B: the values the job wrote
        a_loop = np.repeat(np.array(A[0], np.float32), RATIO)
        assert np.array_equal(y[:boundary], np.tile(a_loop, boundary // LOOP)), done_at
        b_loop = np.repeat(want_b[0], RATIO)
        assert np.array_equal(y[boundary:boundary + LOOP], b_loop), done_at
        assert np.all(y != 0)
        assert list(zip(at, info))[:3] == [(0, "loop 0"), (LOOP, "loop 1"), (2 * LOOP, "loop 2")]
    if batch:
        assert runs[0] == runs[1]
