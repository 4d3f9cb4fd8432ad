"""UnRAVEl jobs on Pd arrays (issue 21): `input-array <set>` / `output-array <set>` instead
of files. A latent set is the arrays <set>-0 … <set>-<D-1>; mono audio is one array. Each
array job's values equal the file job's for the same input and seed; jobs sent together run
in order, each reading the arrays the one before it wrote; bad sets give one error line."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from pdrun import BUILD, Patch, run_pd
from unravel import diffusion, pipeline, stats
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
    gen = pipeline.generate_files([npy], tmp_path / "gen", pattern="fibo", seed=3, points=11,
                                  sr=m.sr, ratio=m.ratio)[0]
    assert np.array_equal(_read(d / "gen.wav"), np.load(gen)[0])
    # decode: the file job's audio (Pd runs at the model's rate here)
    wav = pipeline.decode_files(m, [gen], tmp_path / "dec", progress=False)[0]
    assert np.array_equal(_read(d / "dec.wav"), _read(wav))
    # diffuse: the latents the file job saves, not decoded
    ref = diffusion.diffuse_files(m, "default", tmp_path / "dif", seed=5, steps=3,
                                  latent_length=64, save_latents=True)[0]
    assert np.load(ref.npy).shape == (1, D, 64)
    assert np.array_equal(_read(d / "dif.wav"), np.load(ref.npy)[0])
