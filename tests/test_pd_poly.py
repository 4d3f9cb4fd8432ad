"""`poly 1` (issue 24): [unravel~] objects of one streaming model share one batched model
call in live mode, each with its own state, and each plays what a private object plays.

Real time (`pd -nogui`, no -batch): four `-p` objects and one private object on a streaming
model whose arithmetic is the same batched or not (tests/toymodels.py VoiceFir), fed four
different inputs, render 3 s; one of them is bent half-way. A sixth object, made without
-p, gets `poly 1` while its model loads and joins the group. A block that came late plays as
silence (an underrun on a loaded machine): a 64-sample vector is either the private
reference bit for bit or silent, and most must be the reference."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from pdrun import BUILD, Patch, run_pd
from toymodels import make_voice_model
from unravel.bend import Bender
from unravel.model import load_model

pytestmark = pytest.mark.skipif(not (BUILD / "unravel~.pd_linux").exists(),
                                reason="the external is not built (make setup)")

SR = 44100
B = 2048
FRAMES = 64 * B            # about 3 s
N = 4                      # grouped objects; object N is a private one fed input 0, object
                           # N + 1 one made without -p that gets `poly 1` while it loads
BEND_MS = 1500
BEND = "bend fir.weight spread 0.5"


def _patch(d) -> None:
    """The objects load in the background; DSP, players and recorders start together once
    all of them replied `loaded` (so that their blocks line up with the recordings)."""
    p = Patch()
    lb = p.obj("loadbang")
    count, sel = p.count(N + 2)
    seq = p.obj("t b b b b")
    p.connect(sel, 0, seq, 0)
    p.connect(seq, 2, p.msg("; pd dsp 1"), 0)
    mid, bend, end = p.obj("delay 1000"), p.obj(f"delay {BEND_MS}"), p.obj(f"delay {FRAMES / 44.1 + 300:.0f}")
    for dl in (mid, bend, end):
        p.connect(seq, 0, dl, 0)
    fin = p.obj("t b b b b")            # status, write, quit
    p.connect(end, 0, fin, 0)
    p.connect(fin, 0, p.msg("; pd quit"), 0)
    for k in range(N + 2):
        flag = "-p " if k < N else ""
        src = k if k < N else 0
        p.obj(f"table in{k} 10")
        p.obj(f"table out{k} {FRAMES}")
        u = p.obj(f"unravel~ {flag}vfir.ts forward {B}")
        loaded = p.obj("route loaded")
        p.connect(u, 1, loaded, 0)
        p.connect(loaded, 0, p.obj("t b"), 0)
        p.connect(p.n - 1, 0, count, 0)
        tag_mid, tag_end = p.obj(f"print mid{k}"), p.obj(f"print end{k}")
        gate = p.obj("spigot 0")          # the status replies, tagged by when they were asked
        p.connect(u, 1, gate, 0)
        p.connect(gate, 0, tag_mid, 0)
        gate2 = p.obj("spigot 0")
        p.connect(u, 1, gate2, 0)
        p.connect(gate2, 0, tag_end, 0)
        for g, dl, o in ((gate, mid, 0), (gate2, fin, 3)):
            t = p.obj("t b b b")
            p.connect(dl, o, t, 0)
            p.connect(t, 2, p.msg("1"), 0)
            p.connect(p.n - 1, 0, g, 1)
            p.connect(t, 1, u, 0)
            p.connect(t, 0, p.msg("0"), 0)
            p.connect(p.n - 1, 0, g, 1)
        rd = p.msg(f"read -resize in{src}.wav in{k}")
        p.connect(lb, 0, rd, 0)
        p.connect(rd, 0, p.obj("soundfiler"), 0)
        play, rec = p.obj(f"tabplay~ in{k}"), p.obj(f"tabwrite~ out{k}")
        p.connect(seq, 1, play, 0)
        p.connect(seq, 1, rec, 0)
        p.connect(play, 0, u, 0)
        p.connect(u, 0, rec, 0)
        wr = p.msg(f"write -wave -bytes 4 out{k}.wav out{k}")
        p.connect(fin, 2, wr, 0)
        p.connect(wr, 0, p.obj("soundfiler"), 0)
        if k == 1:
            p.connect(bend, 0, p.msg(BEND), 0)
            p.connect(p.n - 1, 0, u, 0)
        if k == N + 1:
            p.connect(lb, 0, p.msg("poly 1"), 0)
            p.connect(p.n - 1, 0, u, 0)
    p.write(d / "poly.pd")


def _private(path, x: np.ndarray, bend_at: int | None = None) -> np.ndarray:
    """What a private object plays (latency 2B) on a fresh Model; with `bend_at`, bent as the
    patch bends object 1 from that input frame on. (VoiceFir gives the same output whatever
    the blocks: a group's blocks start where Pd's clock is in a block, not at frame 0.)"""
    m = load_model(path)
    cut = len(x) - 2 * B if bend_at is None else bend_at
    run = lambda a: m.run("forward", torch.from_numpy(np.ascontiguousarray(a))[None, None])[0, 0].numpy()
    out = [np.zeros(2 * B, np.float32), run(x[:cut])]
    if bend_at is not None:
        Bender(m).bend("fir.weight", "spread", 0.5)
        out.append(run(x[cut:len(x) - 2 * B]))
    return np.concatenate(out)


def _matches(got: np.ndarray, ref: np.ndarray) -> tuple[int, int]:
    """(vectors equal to ref, vectors that are neither equal nor silent)."""
    g, r = got.reshape(-1, 64), ref.reshape(-1, 64)
    same = (g == r).all(axis=1)
    silent = ~g.any(axis=1)
    return int(same.sum()), int((~same & ~silent).sum())


def _status(r, tag: str) -> dict[str, list[str]]:
    return {ln.split()[0]: ln.split()[1:] for ln in r.after(f"{tag}:")}


def test_poly_voices_play_what_private_objects_play(tmp_path):
    model = make_voice_model(tmp_path / "vfir.ts")
    rng = np.random.default_rng(3)
    xs = [(0.3 * rng.standard_normal(FRAMES)).astype(np.float32) for _ in range(N)]
    for k, x in enumerate(xs):
        sf.write(tmp_path / f"in{k}.wav", x, SR, subtype="FLOAT")
    _patch(tmp_path)
    r = run_pd(tmp_path / "poly.pd", args=["-r", str(SR)], batch=False, timeout=90)
    # five objects loading at once wait for the first one's import of torch, which a loaded
    # machine may take over 3 s to make: reported, then answered (not what is tested here)
    loaded = next(i for i, ln in enumerate(r.lines + ["loaded model"]) if "loaded model" in ln)
    errors = [ln for ln in r.errors if "has not answered" not in ln or r.lines.index(ln) > loaded]
    assert r.returncode == 0 and errors == [], (errors, r.lines[-10:])
    outs = [sf.read(tmp_path / f"out{k}.wav", dtype="float32")[0] for k in range(N + 1)]
    # grouping happened: four members, and calls that ran more than one of them
    mid = [_status(r, f"mid{k}") for k in range(N + 2)]
    assert all(s["mode"] == ["live"] for s in mid)
    assert [s["poly"][:2] for s in mid] == [["1", "5"]] * N + [["0", "0"], ["1", "5"]], mid
    assert max(int(s["poly"][2]) for s in mid[:N]) >= 2, mid
    end = [_status(r, f"end{k}") for k in range(N + 2)]
    assert [s["poly"][:2] for s in end] == [["1", "4"], ["1", "0"], ["1", "4"], ["1", "4"], ["0", "0"],
                                            ["1", "4"]], end
    print("underruns", [s["underruns"] for s in end])
    # the three members left alone, and the private object, play the private reference
    for k in (0, 2, 3, 4):
        ref = _private(model, xs[k if k < N else 0])
        same, wrong = _matches(outs[k], ref)
        assert wrong == 0 and same > 0.5 * FRAMES / 64, (k, same, wrong)
    # the bent one: the reference until the bend landed (at a block boundary), then the bent
    # reference (its state went on from where the group left it)
    ref = _private(model, xs[1])
    g, rv = outs[1].reshape(-1, 64), ref.reshape(-1, 64)
    differs = [j for j in range(len(g)) if g[j].any() and not (g[j] == rv[j]).all()]
    assert differs, "bending object 1 changed nothing"
    bend_at = differs[0] * 64 - 2 * B  # the input frame whose output plays 2 blocks later
    assert bend_at / SR * 1000 > BEND_MS - 300, bend_at
    same, wrong = _matches(outs[1], _private(model, xs[1], bend_at))
    assert wrong == 0 and same > 0.5 * FRAMES / 64, (same, wrong)


def test_poly_plays_alone_under_batch(tmp_path):
    """Under `pd -batch` (sync mode) a `-p` object plays alone: `poly 1 0 0`, and what it
    renders is the private render, bit for bit."""
    from pdrun import Chain, render_patch
    model = make_voice_model(tmp_path / "vfir.ts")
    x = (0.3 * np.random.default_rng(4).standard_normal(16 * B)).astype(np.float32)
    sf.write(tmp_path / "in.wav", x, SR, subtype="FLOAT")
    chains = [Chain(f"unravel~ {flag}vfir.ts forward {B}", 1, 1, "in.wav", f"out{k}.wav")
              for k, flag in enumerate(["-p ", "-p ", ""])]
    r = run_pd(render_patch(tmp_path / "batch.pd", chains, 16 * B), args=["-r", str(SR)], timeout=120)
    assert r.returncode == 0 and r.errors == [], r.errors
    outs = [sf.read(tmp_path / f"out{k}.wav", dtype="float32")[0] for k in range(3)]
    for k in range(3):
        status = _status(r, f"info{k}")
        assert status["mode"] == ["sync"] and status["poly"] == [["1", "0", "0"], ["1", "0", "0"], ["0", "0", "0"]][k]
    m = load_model(model)
    ref = np.concatenate([m.run("forward", torch.from_numpy(x[k * B:(k + 1) * B])[None, None])[0, 0].numpy()
                          for k in range(16)])
    for k in range(3):
        np.testing.assert_array_equal(outs[k][B:B + len(ref)], ref)
