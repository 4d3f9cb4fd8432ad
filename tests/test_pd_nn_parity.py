"""[unravel~] as a drop-in for nn~ 1.6 (issue 10), through real Pd processes: the -g flag,
an object whose model is missing (created empty, `load` later plays), an unknown method
(a post, then forward), `bufsize` rounding, `enable` resuming on the same buffer phase,
`gpu`, and nn~'s model-registry messages against a local registry on 127.0.0.1."""

from __future__ import annotations

import http.server
import json
import os
import threading
import urllib.parse

import numpy as np
import pytest
import soundfile as sf

from pdrun import BUILD, Patch, run_pd
from unravel.model import DEFAULT_MODEL

pytestmark = pytest.mark.skipif(not (BUILD / "unravel~.pd_linux").exists(),
                                reason="the external is not built (make setup)")

MODEL_BYTES = DEFAULT_MODEL.read_bytes()
# the registry's JSON, shaped as nn~'s API answers: {source: {model: {name: {...}}}}
CATALOG = {"ircam": {"rave": {"nasa": {"sr": 44100}, "dropped": {"sr": 44100}}},
           "iil": {"rave": {"sax": {"sr": 48000}}}}
CARDS = ["ircam/rave/nasa", "ircam/rave/dropped", "iil/rave/sax"]


class RegistryHandler(http.server.BaseHTTPRequestHandler):
    """nn~'s registry API: `available_models` and `download_model?model=<card>`; the model
    `ircam/rave/dropped` announces its full length, sends half and closes the connection."""

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        if url.path == "/available_models":
            body = json.dumps(CATALOG).encode()
        elif url.path == "/download_model":
            card = urllib.parse.parse_qs(url.query).get("model", [""])[0]
            if card not in CARDS:
                self.send_error(404)
                return
            body = MODEL_BYTES
            if card == "ircam/rave/dropped":
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def registry():
    """A local copy of nn~'s model registry; yields the environment that points Pd at it."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RegistryHandler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield {"UNRAVEL_REGISTRY_URL": f"http://127.0.0.1:{server.server_address[1]}/",
           "no_proxy": "*", "NO_PROXY": "*"}
    server.shutdown()
    server.server_close()


def nn_help_patch() -> Patch:
    """nn~'s help patch, written the nn~ way (same objects, flags and messages, our own
    layout and text) with the object named [unravel~]: encode -> latents -> decode with
    -m -g, a disabled decoder, gpu/enable/bufsize/reload/method/set messages, `load ...,
    method prior, bufsize 8192`, and the direct-download section on an empty object."""
    p = Patch()
    lb = p.obj("loadbang")
    noise = p.obj("noise~")
    lop = p.obj("lop~ 2000")
    p.connect(noise, 0, lop, 0)
    enc = p.obj("unravel~ -m -g percussion encode")
    dec = p.obj("unravel~ -m -g percussion decode")
    p.connect(lop, 0, enc, 0)
    p.connect(enc, 0, dec, 0)
    prior = p.obj("unravel~ -d -g percussion decode")     # the decoder-only example
    mc = p.obj("unravel~ -m -g")
    p.connect(mc, 0, p.obj("dac~"), 0)
    dac = p.obj("dac~")
    p.connect(dec, 0, dac, 0)
    p.connect(prior, 0, dac, 1)
    env = p.obj("env~ 4096")
    p.connect(dec, 0, env, 0)
    top = p.obj("max")
    p.connect(env, 0, top, 0)
    p.connect(top, 0, top, 1)
    snd = p.obj("r \\$0-nn")
    for target in (enc, dec):
        p.connect(snd, 0, target, 0)
    info = p.obj("print info")
    p.connect(dec, 1, info, 0)
    dl = p.obj("unravel~")                      # DIRECT DOWNLOAD: an object without a model
    p.connect(dl, 1, p.obj("print dl"), 0)
    msgs = ["gpu 1", "gpu 0", "enable 0", "enable 1", "bufsize 4096", "bufsize 0",
            "bufsize 16384", "reload", "method forward", "method decode", "set temperature 0.8",
            "bang"]
    seq = p.obj("t b b b b b b")
    p.connect(lb, 0, seq, 0)
    p.connect(seq, 5, p.msg("; pd dsp 1"), 0)
    box = p.msg(" , ".join(msgs))
    p.connect(seq, 4, box, 0)
    p.connect(box, 0, dec, 0)
    mload = p.msg("load percussion, method prior, bufsize 8192, bang")
    p.connect(seq, 3, mload, 0)
    p.connect(mload, 0, mc, 0)
    p.connect(mc, 1, p.obj("print mc"), 0)
    en = p.msg("enable 1")
    p.connect(seq, 2, en, 0)
    p.connect(en, 0, prior, 0)
    reg = p.msg("print_available_models, download ircam/rave/nasa")
    p.connect(seq, 1, reg, 0)
    p.connect(reg, 0, dl, 0)
    # later (Pd runs in real time here): load the downloaded model, then remove it
    later = p.obj("delay 4000")
    p.connect(seq, 0, later, 0)
    fin = p.obj("t b b b")
    p.connect(later, 0, fin, 0)
    en_all = p.msg("enable 1")
    p.connect(fin, 2, en_all, 0)
    p.connect(en_all, 0, p.obj("s \\$0-nn"), 0)
    # a live `load` lands when the model is ready (reply `loaded <path>`): remove it after
    ld = p.msg("load nasa")
    p.connect(fin, 1, ld, 0)
    p.connect(ld, 0, mc, 0)
    after = p.obj("delay 700")
    p.connect(fin, 1, after, 0)
    rm = p.msg("bang, remove nasa")
    p.connect(after, 0, rm, 0)
    p.connect(rm, 0, mc, 0)
    quit_ = p.obj("delay 1500")
    p.connect(fin, 0, quit_, 0)
    pe = p.obj("print env")
    p.connect(quit_, 0, top, 0)
    p.connect(top, 0, pe, 0)
    q = p.obj("delay 10")
    p.connect(quit_, 0, q, 0)
    p.connect(q, 0, p.msg("; pd quit"), 0)
    return p


def test_nn_help_patch_runs_without_errors(tmp_path, registry):
    os.symlink(DEFAULT_MODEL, tmp_path / "percussion.ts")
    nn_help_patch().write(tmp_path / "nn_help.pd")
    r = run_pd(tmp_path / "nn_help.pd", env=registry, batch=False, timeout=90)
    assert r.returncode == 0
    assert r.errors == [], r.errors
    # -g: accepted, nn~'s line once per loaded object and per 'gpu 1'
    assert any("GPU mode not available" in ln for ln in r.lines)
    # method prior on a model without one: a post, then forward
    assert any("method 'prior' not found" in ln for ln in r.lines), r.lines
    mc = {ln.split()[0]: ln.split()[1:] for ln in r.after("mc:")}
    assert mc["method"] == ["forward"] and mc["bufsize"] == ["8192"]
    # the registry section: the list, the download (then loaded), the removal
    for card in CARDS:
        assert card in r.lines
    assert any(ln.startswith("model ircam/rave/nasa downloaded at") for ln in r.lines), r.lines
    assert "model nasa deleted." in r.lines
    assert not (tmp_path / "nasa.ts").exists()
    assert [ln for ln in r.after("mc:") if ln.startswith("model")][-1].endswith("nasa.ts")
    assert float(r.after("env:")[-1]) > 10, "encode -> decode should make sound (dB)"


def test_missing_model_creates_an_empty_object_that_loads_later(tmp_path):
    """[unravel~ not-yet-there.ts decode]: one error line, no "couldn't create", bang says
    `loaded 0`, DSP gives zeros; `load` of a real model later plays through its outlets."""
    os.symlink(DEFAULT_MODEL, tmp_path / "rave.ts")
    p = Patch()
    lb = p.obj("loadbang")
    osc = p.obj("osc~ 3")
    u = p.obj("unravel~ not-yet-there.ts decode")
    p.connect(osc, 0, u, 0)
    p.connect(u, 1, p.obj("print info"), 0)
    env = p.obj("env~ 4096")
    p.connect(u, 0, env, 0)
    top = p.obj("max")
    p.connect(env, 0, top, 0)
    p.connect(top, 0, top, 1)
    hold = p.obj("f")
    p.connect(top, 0, hold, 1)
    pe = p.obj("print env")
    p.connect(hold, 0, pe, 0)
    m1 = p.msg("bang")
    p.connect(lb, 0, m1, 0)
    p.connect(m1, 0, u, 0)
    p.connect(lb, 0, p.msg("; pd dsp 1"), 0)
    d1 = p.obj("delay 500")
    p.connect(lb, 0, d1, 0)
    t1 = p.obj("t b b")
    p.connect(d1, 0, t1, 0)
    ld = p.msg("load rave, bang")
    p.connect(t1, 0, ld, 0)
    p.connect(ld, 0, u, 0)
    p.connect(t1, 1, hold, 0)           # the maximum while empty
    d2 = p.obj("delay 2000")
    p.connect(d1, 0, d2, 0)
    t2 = p.obj("t b b")
    p.connect(d2, 0, t2, 0)
    p.connect(t2, 1, hold, 0)           # the maximum once loaded
    p.connect(t2, 0, p.msg("; pd quit"), 0)
    r = run_pd(p.write(tmp_path / "later.pd"), timeout=60)
    assert r.returncode == 0
    assert not [ln for ln in r.errors if "couldn't create" in ln], r.errors
    assert len(r.errors) == 1 and "not-yet-there" in r.errors[0], r.errors
    info = r.after("info:")
    assert info[0] == "loaded 0"
    assert "loaded 1" in info and ["method decode"] == [ln for ln in info if ln.startswith("method ")]
    env_empty, env_loaded = (float(v) for v in r.after("env:"))
    assert env_empty == 0, "an empty object outputs zeros"
    assert env_loaded > 10, "after load the decoder plays (dB)"


def test_unknown_method_posts_and_uses_forward(tmp_path):
    os.symlink(DEFAULT_MODEL, tmp_path / "rave.ts")
    p = Patch()
    lb = p.obj("loadbang")
    a = p.obj("unravel~ rave prior")
    p.connect(a, 1, p.obj("print a"), 0)
    b = p.obj("unravel~ -m rave encode")
    p.connect(b, 1, p.obj("print b"), 0)
    m = p.msg("method prior, bang")
    p.connect(lb, 0, m, 0)
    p.connect(m, 0, b, 0)
    p.connect(lb, 0, a, 0)
    p.connect(lb, 0, p.msg("; pd quit"), 0)
    r = run_pd(p.write(tmp_path / "method.pd"), timeout=60)
    assert r.errors == [], r.errors
    assert len([ln for ln in r.lines if "method 'prior' not found" in ln]) == 2, r.lines
    assert "method forward" in r.after("a:") and "method forward" in r.after("b:")


def test_bufsize_rounds_and_posts(tmp_path):
    p = Patch()
    lb = p.obj("loadbang")
    u = p.obj("unravel~ default forward")
    p.connect(u, 1, p.obj("print info"), 0)
    m = p.msg("bufsize 1000, bang, bufsize 5000, bang, bufsize 0, bang, bufsize 2.5")
    p.connect(lb, 0, m, 0)
    p.connect(m, 0, u, 0)
    p.connect(lb, 0, p.msg("; pd quit"), 0)
    r = run_pd(p.write(tmp_path / "bufsize.pd"), timeout=60)
    assert [ln.split()[1] for ln in r.after("info:") if ln.startswith("bufsize")] == ["2048", "8192", "0"]
    assert any("bufsize 1000 -> 2048" in ln for ln in r.lines), r.lines
    assert any("bufsize 5000 -> 8192" in ln for ln in r.lines), r.lines
    assert len(r.errors) == 1 and "2.5" in r.errors[0], r.errors


def test_enable_resumes_at_once_on_the_same_buffer_phase(tmp_path):
    """Two identical objects on the same input; B is disabled for a while. What B plays
    right after `enable 1` is what A played right after the moment B stopped: the output
    already computed is not thrown away and no new buffer of latency is added."""
    os.symlink(DEFAULT_MODEL, tmp_path / "rave.ts")
    p = Patch()
    lb = p.obj("loadbang")
    osc = p.obj("osc~ 220")
    a = p.obj("unravel~ rave forward 4096")
    b = p.obj("unravel~ rave forward 4096")
    p.connect(osc, 0, a, 0)
    p.connect(osc, 0, b, 0)
    p.obj("table ta 4096")
    p.obj("table tb 4096")
    wa = p.obj("tabwrite~ ta")
    wb = p.obj("tabwrite~ tb")
    p.connect(a, 0, wa, 0)
    p.connect(b, 0, wb, 0)
    p.connect(lb, 0, p.msg("; pd dsp 1"), 0)
    d1 = p.obj("delay 300")         # not on a buffer boundary (4096 frames = 92.9 ms)
    p.connect(lb, 0, d1, 0)
    t1 = p.obj("t b b")
    p.connect(d1, 0, t1, 0)
    off = p.msg("enable 0")
    p.connect(t1, 1, off, 0)
    p.connect(off, 0, b, 0)
    p.connect(t1, 0, wa, 0)         # A from the moment B stops
    d2 = p.obj("delay 500")
    p.connect(d1, 0, d2, 0)
    t2 = p.obj("t b b")
    p.connect(d2, 0, t2, 0)
    on = p.msg("enable 1")
    p.connect(t2, 1, on, 0)
    p.connect(on, 0, b, 0)
    p.connect(t2, 0, wb, 0)         # B from the moment it resumes
    d3 = p.obj("delay 300")
    p.connect(d2, 0, d3, 0)
    wr = p.msg("write -wave -bytes 4 out.wav ta tb")
    p.connect(d3, 0, wr, 0)
    p.connect(wr, 0, p.obj("soundfiler"), 0)
    p.connect(d3, 0, p.msg("; pd quit"), 0)
    r = run_pd(p.write(tmp_path / "enable.pd"), args=["-r", "44100"], timeout=60)
    assert r.errors == [], r.errors
    y, _ = sf.read(tmp_path / "out.wav", dtype="float32")
    ya, yb = y[:, 0], y[:, 1]
    assert np.abs(yb[:64]).max() > 1e-3, "sound resumes in the first block"
    # the rest of the buffer B had computed before it stopped, sample for sample
    n = 64
    while n < len(ya) and ya[n] == yb[n]:
        n += 1
    assert n >= 128, (n, ya[:4], yb[:4])
    np.testing.assert_array_equal(ya[:n], yb[:n])


def test_registry_messages(tmp_path, registry):
    """print_available_models / download <card> [name] / remove <name>: nn~'s lines; the
    download lands whole in the patch folder or not at all; remove deletes only a model
    there; each failure is one error line. Pd runs in real time (the jobs are threads)."""
    outside = tmp_path / "keep.ts"
    outside.write_bytes(b"not mine")
    d = tmp_path / "patch"
    d.mkdir()
    (d / "mine.ts").write_bytes(b"a model already here")
    (d / "folder.ts").mkdir()
    msgs = ["print_available_models", "download ircam/rave/nasa", "download iil/rave/sax bird",
            "download ircam/rave/nasa", "download ircam/rave/dropped", "download nope/no/no",
            "download iil/rave/sax ../evil", "download", "download 3",
            "remove bird", "remove ../keep", "remove /etc/hostname", "remove folder",
            "remove ghost", "download iil/rave/sax mine"]
    p = Patch()
    lb = p.obj("loadbang")
    u = p.obj("unravel~")
    p.connect(u, 1, p.obj("print reply"), 0)
    m = p.msg(", ".join(msgs))
    p.connect(lb, 0, m, 0)
    p.connect(m, 0, u, 0)
    dl = p.obj("delay 6000")
    p.connect(lb, 0, dl, 0)
    p.connect(dl, 0, p.msg("; pd quit"), 0)
    r = run_pd(p.write(d / "registry.pd"), env=registry, batch=False, timeout=60)
    assert r.returncode == 0
    replies = r.after("reply:")
    assert len(replies) == len(msgs), replies           # every message answered
    for card in CARDS:
        assert card in r.lines
    assert (d / "nasa.ts").read_bytes() == MODEL_BYTES
    assert not (d / "bird.ts").exists()                 # downloaded, then removed
    assert "model bird deleted." in r.lines
    assert any(ln.startswith("model iil/rave/sax downloaded at") and ln.endswith("bird.ts")
               for ln in r.lines), r.lines
    assert any(ln.endswith("nasa.ts seems to be already downloaded.") for ln in r.lines)
    assert (d / "mine.ts").read_bytes() == b"a model already here"     # never overwritten
    assert outside.read_bytes() == b"not mine"
    assert (d / "folder.ts").is_dir()
    assert not (d / "dropped.ts").exists()
    assert sorted(f.name for f in d.iterdir()) == ["folder.ts", "mine.ts", "nasa.ts", "registry.pd"]
    errors = [ln for ln in r.errors if "[unravel~]" in ln]
    expect = ["dropped", "nope/no/no", "../evil", "usage", "symbol", "../keep", "/etc/hostname",
              "folder", "ghost"]
    assert len(errors) == len(expect), errors
    for word, ln in zip(expect, errors):
        assert word in ln, (word, ln)
    assert len(r.errors) == len(expect), r.errors


def test_registry_offline_is_one_error_line(tmp_path):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                                            # nothing listens there
    p = Patch()
    lb = p.obj("loadbang")
    u = p.obj("unravel~")
    p.connect(u, 1, p.obj("print reply"), 0)
    m = p.msg("print_available_models, download ircam/rave/nasa")
    p.connect(lb, 0, m, 0)
    p.connect(m, 0, u, 0)
    dl = p.obj("delay 3000")
    p.connect(lb, 0, dl, 0)
    p.connect(dl, 0, p.msg("; pd quit"), 0)
    r = run_pd(p.write(tmp_path / "offline.pd"), batch=False, timeout=60,
               env={"UNRAVEL_REGISTRY_URL": f"http://127.0.0.1:{port}/", "no_proxy": "*"})
    assert len(r.errors) == 2, r.errors
    assert all("cannot reach the model registry" in ln for ln in r.errors), r.errors
    assert not (tmp_path / "nasa.ts").exists()
