"""Fuzz [unravel~] with thousands of random and malformed messages while DSP runs: wrong
types, missing arguments, unknown layers, huge and short lists, missing arrays, non-model
files, hostile model files (ratio 0 or 2^32, 0 or 10^6 channels, a wrong output shape, a
method that raises, one that is slow, one that turns NaN), a full-disk folder (a tmpfs where
one can be mounted), load/reload/method/bufsize/sync during DSP, jobs, and `pd quit` during
DSP with jobs still running. Pd must never crash or hang; every error line of ours is one
line `[unravel~]: <what>: <cause>`; no temporary file is left and no existing file changes.

The seed differs from run to run (printed; set UNRAVEL_FUZZ_SEED to repeat one)."""

from __future__ import annotations

import hashlib
import os
import pathlib
import random
import re
from dataclasses import dataclass

import numpy as np
import pytest
import soundfile as sf

from pdrun import BUILD, Patch, PdResult, can_mount_tmpfs, run_pd
from unravel import modelinfo
from unravel.model import load_model
from toymodels import make_hostile_model

pytestmark = pytest.mark.skipif(not (BUILD / "unravel~.pd_linux").exists(),
                                reason="the external is not built (make setup)")

N_MESSAGES = 3000
SEED = int(os.environ.get("UNRAVEL_FUZZ_SEED") or random.SystemRandom().randrange(2 ** 31))
HOSTILE = {"h_ratio0": ([1, 0, 1, 1], "ok"), "h_ratio2p32": ([1, 2 ** 32, 1, 1], "ok"),
           "h_chans0": ([0, 1, 1, 1], "ok"), "h_chans1e6": ([10 ** 6, 1, 10 ** 6, 1], "ok"),
           "h_shape": ([1, 1, 1, 1], "shape"), "h_raise": ([1, 1, 1, 1], "raise"),
           "h_slow": ([1, 1, 1, 1], "slow"), "h_nan": ([1, 1, 1, 1], "nan")}
ONE_LINE = re.compile(r"^error: \[unravel~\]: [^:]+: \S.*$")
PYTHONISMS = re.compile(r"Traceback|Exception ignored|KeyboardInterrupt|\b[A-Z]\w*(Error|Exception)\b")
CHUNKS = 30
SELECTORS = ["bang", "enable", "reload", "load", "method", "set", "get", "bufsize", "sync",
             "layers", "get_weights", "set_weights", "bend", "restore", "save", "encode",
             "stats", "generate", "decode", "tempo", "diffuse", "float", "list", "symbol",
             "nonsense", "forward", "dsp"]
# relative frequency: cheap messages often, loads and saves (100+ ms each) rarely
WEIGHTS = {"load": 0.15, "reload": 0.2, "save": 0.1, "encode": 0.3, "decode": 0.3, "generate": 0.3}


def make_messages(seed: int, layers: list[str], n: int = N_MESSAGES) -> list[str]:
    """n random messages for [r u0]..[r u2] (same seed, same messages)."""
    rng = random.Random(seed)
    symbols = (layers + ["nope", "encoder", "", "x" * 300, "default", "default4", "notamodel.wav",
               "notamodel", "fuzz.pd", "forward", "encode", "decode", "warr", "wsrc", "missingarray",
               "temperature", "offset", "spread", "randomize", "invert", "zero", "input", "output",
               "loop.wav", "latents", "bpm", "k", "seed", "points", "/", "/nonexistent/x.ts", "-1",
               "a.b.c", "0", "inf", "existing.ts", "existing", "full/x.ts", "full", "full/o.json",
               "../up", "sub/", "lat", "gen"] + list(HOSTILE))
    floats = [0, 1, -1, 0.5, 2, 3, 64, 2048, 4096, 1024, 1000, 100, 1e30, -1e30, 1e-30, 65536,
              1048576, 2 ** 31, -2048, 7.5, 1e39, -1e39]
    sel_weights = [WEIGHTS.get(s, 1.0) for s in SELECTORS]
    msgs = []
    for _ in range(n):
        sel = rng.choices(SELECTORS, sel_weights)[0]
        kind = rng.random()
        if kind < 0.03:        # a huge list
            args = [rng.choice(layers)] + [f"{rng.uniform(-1, 1):.3f}" for _ in range(rng.choice([5000, 20000]))]
        elif kind < 0.06:      # a short list for a real layer
            args = [rng.choice(layers)] + [f"{rng.uniform(-1, 1):.3f}" for _ in range(rng.randint(0, 9))]
        else:
            args = []
            for _ in range(rng.choice([0, 1, 1, 2, 2, 3, 4, 6])):
                if rng.random() < 0.5:
                    s = rng.choice(symbols)
                    args.append(s if s else "empty")
                else:
                    args.append(f"{rng.choice(floats):g}")
        target = f"u{rng.randint(0, 2)}"
        msgs.append(" ".join([target, sel] + args))
    # every hostile model loaded into every object, and saves onto the full disk, at seeded
    # places (random messages alone reach them only now and then)
    must = [f"u{k} load {name}" for name in HOSTILE for k in range(3)]
    must += [f"u{k} save full/bent{k}" for k in range(3)] + ["u0 load default", "u1 load default"]
    for m in must:
        msgs.insert(rng.randrange(len(msgs) + 1), m)
    return msgs[:n] if n >= len(must) * 2 else msgs


@dataclass
class FuzzRun:
    seed: int
    n: int
    folder: pathlib.Path
    before: dict            # file -> sha256 of what existed before Pd ran
    result: PdResult
    tmpfs: str              # '' when the full-disk folder was a tmpfs, else why not


def run_fuzz(d: pathlib.Path, seed: int, n: int = N_MESSAGES, timeout: float = 150) -> FuzzRun:
    """Fill folder d with the fuzz's files (hostile models, a full-disk folder `full`), run Pd
    on n seeded messages in CHUNKS chunks while DSP runs, quit at the end."""
    sf.write(d / "notamodel.wav", np.zeros(100, np.float32), 44100)
    sf.write(d / "loop.wav", np.random.default_rng(0).standard_normal(22050).astype(np.float32) * 0.1, 44100)
    (d / "notamodel.ts").write_text("not a model\n")
    (d / "existing.ts").write_bytes(b"the user's file")
    for name, (params, behave) in HOSTILE.items():
        make_hostile_model(d / f"{name}.ts", params, behave, spins=500, after=3)
    full = d / "full"
    full.mkdir()
    layers = [l.name for l in modelinfo.layers(load_model("default", warmup=False).module)]
    msgs = make_messages(seed, layers, n)
    p = Patch()
    lb = p.obj("loadbang")
    osc = p.obj("osc~ 220")
    objs = ["unravel~ default forward 2048", "unravel~ -live default encode 4096",
            "unravel~ -m default decode"]
    for k, text in enumerate(objs):
        r = p.obj(f"r u{k}")
        u = p.obj(text)
        p.connect(r, 0, u, 0)
        p.connect(osc, 0, u, 0)
        dac = p.obj("dac~")
        p.connect(u, 0, dac, 0)
    p.obj("table warr 3")
    p.obj("table wsrc 8")
    p.connect(p.obj("r mark"), 0, p.obj("print mark"), 0)
    start = p.msg("; pd dsp 1")
    p.connect(lb, 0, start, 0)
    per = len(msgs) // CHUNKS
    for c in range(CHUNKS):
        chunk = msgs[c * per:(c + 1) * per]
        text = f"; mark chunk{c}; " + "; ".join(chunk)
        if c == CHUNKS - 1:
            text += "; mark end; pd quit"      # quit with DSP on and jobs maybe running
        box = p.msg(text)
        dl = p.obj(f"delay {20 + 30 * c}")
        p.connect(lb, 0, dl, 0)
        p.connect(dl, 0, box, 0)
    patch = p.write(d / "fuzz.pd")
    before = _hashes(d)
    why = can_mount_tmpfs()
    r = run_pd(patch, args=["-r", "44100"], timeout=timeout, tmpfs=None if why else (full, "64k"))
    return FuzzRun(seed, len(msgs), d, before, r, why)


def _hashes(folder) -> dict:
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in folder.rglob("*") if f.is_file()}


def bad_error_lines(run: FuzzRun) -> list[str]:
    """Our error lines not in the one-line form, and any Python noise."""
    mine = [ln for ln in run.result.lines if "[unravel~]" in ln and ln.startswith("error")]
    return ([ln for ln in mine if not ONE_LINE.match(ln) or PYTHONISMS.search(ln)]
            + [ln for ln in run.result.lines if PYTHONISMS.search(ln) and ln not in mine])


def temp_files_left(run: FuzzRun) -> list[str]:
    temps = [str(f) for f in run.folder.rglob("*") if ".tmp" in f.name]
    listing = run.folder / "full.listing"
    if listing.exists():
        temps += [f for f in listing.read_text().split() if ".tmp" in f]
    return temps


def files_changed(run: FuzzRun) -> list[str]:
    after = _hashes(run.folder)
    return [f for f, h in run.before.items() if after.get(f) != h]


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    return run_fuzz(tmp_path_factory.mktemp("pdfuzz"), SEED)


def test_pd_survives_fuzzing(result):
    r = result.result
    print(f"\nfuzz: seed {SEED}, {result.n} messages tried, {len(r.errors)} error lines, Pd exit "
          f"{r.returncode}, {r.seconds:.1f} s, full disk: {result.tmpfs or 'a 64 kB tmpfs'}")
    assert r.returncode == 0, (SEED, r.lines[-20:])
    assert "mark: end" in r.lines
    assert [ln for ln in r.lines if ln.startswith("mark: chunk")] == [f"mark: chunk{c}" for c in range(CHUNKS)]
    bad = [ln for ln in r.lines if any(w in ln.lower() for w in ("segmentation", "traceback", "abort", "fatal"))]
    assert bad == []
    assert 0 < len(r.errors) <= result.n


def test_fuzz_error_lines_are_one_line_sentences(result):
    assert bad_error_lines(result) == [], SEED


def test_fuzz_leaves_no_temp_file_and_changes_no_file(result):
    assert temp_files_left(result) == [], SEED
    assert files_changed(result) == [], SEED


def test_quit_during_dsp_and_a_running_job(tmp_path):
    """`pd quit` (exit() at once) while live and sync workers run and a long encode job is
    inside torch: the atexit handler stops the threads; exit status 0, no crash."""
    sf.write(tmp_path / "long.wav", np.random.default_rng(1).standard_normal(44100 * 60).astype(np.float32) * 0.1,
             44100, subtype="FLOAT")
    p = Patch()
    lb = p.obj("loadbang")
    noise = p.obj("noise~")
    for text in ("unravel~ -live default forward 2048", "unravel~ default forward 4096",
                 "unravel~ -live default encode 2048"):
        u = p.obj(text)
        p.connect(noise, 0, u, 0)
        if "encode" in text:
            job = p.msg("encode input long.wav output lat")
            p.connect(lb, 0, job, 0)
            p.connect(job, 0, u, 0)
            p.connect(u, 8, p.obj("print reply"), 0)
    on = p.msg("; pd dsp 1")
    p.connect(lb, 0, on, 0)
    dl = p.obj("delay 300")
    p.connect(lb, 0, dl, 0)
    q = p.msg("; pd quit")
    p.connect(dl, 0, q, 0)
    r = run_pd(p.write(tmp_path / "quit.pd"), timeout=60)
    assert r.returncode == 0, r.lines[-10:]
    assert r.errors == [], r.errors
    # quit came before the job's reply (a live object replies `loaded` when its model plays)
    assert [x for x in r.after("reply:") if not x.startswith("loaded ")] == []
    assert r.seconds < 30
