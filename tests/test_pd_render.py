"""[unravel~] renders in `pd -batch` equal the backend's own output on the same blocks.

One Pd process renders every model x method chain at once (import torch costs ~2 s per Pd
process); a second process renders the same patch again and must give identical bytes."""

from __future__ import annotations


import numpy as np
import pytest
import soundfile as sf
import torch

from pdrun import BUILD, Chain, render_patch, run_pd
from unravel.model import DEFAULT_MODEL, load_model
from toymodels import make_test_model

pytestmark = pytest.mark.skipif(not (BUILD / "unravel~.pd_linux").exists(),
                                reason="the external is not built (make setup)")

FRAMES = 4 * 4096
SR = 44100


def _blocks(model, method: str, x: np.ndarray, B: int, in_ratio: int) -> np.ndarray:
    """Run `method` block by block (B audio-rate frames each) as the worker does."""
    outs = []
    step = B // in_ratio
    for k in range(x.shape[1] // step):
        xb = torch.from_numpy(np.ascontiguousarray(x[:, k * step:(k + 1) * step]))[None]
        outs.append(model.run(method, xb)[0].numpy())
    return np.concatenate(outs, axis=1)


@pytest.fixture(scope="module")
def render(tmp_path_factory, quirk_models):
    """Write inputs, render every chain twice, return (dir, cases, results)."""
    d = tmp_path_factory.mktemp("pdrender")
    dims2 = make_test_model(d / "dims2.ts", dims=2, decode_arg=True, seed=7)
    models = {"default": DEFAULT_MODEL, "streaming": quirk_models["streaming"],
              "decode_arg": quirk_models["decode_arg"], "dims4": quirk_models["dims4"],
              "dims2": dims2, "stereo": quirk_models["stereo"]}
    rng = np.random.default_rng(0)
    audio_in = (0.3 * rng.standard_normal(FRAMES)).astype(np.float32)
    sf.write(d / "audio.wav", audio_in, SR, subtype="FLOAT")
    cases, chains = [], []
    for name, path in models.items():
        m = load_model(path, warmup=False)
        D, ratio = m.latent_dims, m.ratio
        z = (rng.standard_normal((D, FRAMES // ratio))).astype(np.float32)
        sf.write(d / f"{name}_z.wav", np.repeat(z, ratio, axis=1).T, SR, subtype="FLOAT")
        local = d / f"{name}.ts"
        if not local.exists():
            local.symlink_to(path)
        spec = "default" if name == "default" else name   # found next to the patch
        for method, n_in, n_out, wav, B, flags in [
                ("forward", 1, m.out_channels, "audio.wav", 4096, ""),
                ("encode", 1, D, "audio.wav", 2048, ""),
                ("decode", D, m.out_channels, f"{name}_z.wav", 4096, ""),
                ("decode", D, m.out_channels, f"{name}_z.wav", 4096, "-m")]:
            if flags and name not in ("default", "stereo"):
                continue
            k = len(chains)
            chains.append(Chain(f"unravel~ {flags} {spec} {method} {B}".replace("  ", " "), n_in, n_out,
                                wav, f"out{k}.wav", multi=bool(flags)))
            cases.append((name, path, method, B, z if method == "decode" else audio_in[None], k))
    # bufsize 0: the model runs in the DSP thread (one model block per buffer)
    k = len(chains)
    chains.append(Chain("unravel~ default forward 0", 1, 1, "audio.wav", f"out{k}.wav"))
    cases.append(("default", DEFAULT_MODEL, "forward", 2048, audio_in[None], k))
    patch = render_patch(d / "render.pd", chains, FRAMES)
    results = []
    for run in range(2):
        r = run_pd(patch, args=["-r", str(SR)], timeout=180)
        outs = {k: sf.read(d / f"out{k}.wav", dtype="float32", always_2d=True)[0].T.copy()
                for k in range(len(chains))}
        results.append((r, outs))
    return d, cases, chains, results


def test_pd_exits_cleanly(render):
    d, cases, chains, results = render
    for r, _ in results:
        assert r.returncode == 0, r.lines[-20:]
        assert r.errors == [], r.errors
        assert len(r.after("info0: latency")) == 1


def test_renders_equal_the_backend(render):
    d, cases, chains, results = render
    r, outs = results[0]
    checked = 0
    for name, path, method, B, x, k in cases:
        m = load_model(path)            # fresh, warmed up like the Pd object's model
        mp = m.methods[method]
        status = {ln.split()[0]: ln.split()[1:] for ln in r.after(f"info{k}:")}
        L = int(status["latency"][0])
        assert status["mode"] == (["inline"] if chains[k].obj.endswith(" 0") else ["sync"])
        assert L == B, (name, method, L)
        if method == "decode":
            ref = _blocks(m, method, x, B, mp.in_ratio)
        else:
            ref = _blocks(m, method, x, B, mp.in_ratio)
            if mp.out_ratio > 1:        # latent outputs are held for out_ratio samples
                ref = np.repeat(ref, mp.out_ratio, axis=1)
        got = outs[k][:, L:L + ref.shape[1]]
        assert got.shape == ref.shape, (name, method, got.shape, ref.shape)
        assert not outs[k][:, :L].any(), "output before the latency must be silent"
        np.testing.assert_array_equal(got, ref, err_msg=f"{name} {method} {chains[k].obj}")
        assert np.abs(ref).max() > 1e-4, (name, method)    # a real signal, not silence
        checked += 1
    assert checked == len(cases) >= 20


def test_two_renders_bit_identical(render):
    d, cases, chains, results = render
    (_, a), (_, b) = results
    for k in a:
        assert a[k].tobytes() == b[k].tobytes(), chains[k].obj


def test_live_mode_in_real_time(tmp_path):
    """Without -batch Pd runs in real time and [unravel~] picks live mode: latency 2 buffers;
    with no underrun the output is the sync render's, shifted by one more buffer. (The object
    loads its model in the background: the render starts at its `loaded`.)"""
    rng = np.random.default_rng(5)
    x = (0.3 * rng.standard_normal(FRAMES)).astype(np.float32)
    sf.write(tmp_path / "a.wav", x, SR, subtype="FLOAT")
    patch = render_patch(tmp_path / "live.pd", [Chain("unravel~ default forward 2048", 1, 1, "a.wav", "live.wav")],
                         FRAMES, wait_loaded=True)
    r = run_pd(patch, args=["-r", str(SR)], batch=False, timeout=60)
    assert r.returncode == 0 and r.errors == [], r.errors
    status = {ln.split()[0]: ln.split()[1:] for ln in r.after("info0:")}
    assert status["mode"] == ["live"]
    L = int(status["latency"][0])
    assert L == 4096
    y = sf.read(tmp_path / "live.wav", dtype="float32")[0]
    underruns = int(status["underruns"][0])
    print(f"live mode: {underruns} underruns")
    if underruns == 0:     # a loaded machine may be late: then only the checks above hold
        m = load_model(DEFAULT_MODEL)
        ref = _blocks(m, "forward", x[None], 2048, 1)[0]
        np.testing.assert_array_equal(y[L:L + len(ref)], ref)


class _Denormal(torch.nn.Module):
    """forward adds a path through denormal numbers (x * 1e-39): flushed to zero it adds 0
    (output x), kept it adds ~x / 10."""

    def __init__(self):
        super().__init__()
        self.register_buffer("forward_params", torch.tensor([1, 1, 1, 1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + (x * 1e-39) * 1e38


def test_denormals_flushed_as_in_the_backend(tmp_path):
    """Issue 14: models run with denormals flushed to zero in the backend (Model.run) and in
    [unravel~] (its model thread and inline in the DSP thread), bit for bit the same."""
    torch.jit.save(torch.jit.script(_Denormal()), str(tmp_path / "den.ts"))
    x = np.linspace(-1, 1, 4096, dtype=np.float32)
    sf.write(tmp_path / "x.wav", x, SR, subtype="FLOAT")
    patch = render_patch(tmp_path / "den.pd", [Chain("unravel~ den forward 1024", 1, 1, "x.wav", "y.wav"),
                                               Chain("unravel~ den forward 0", 1, 1, "x.wav", "z.wav")], 4096)
    r = run_pd(patch, args=["-r", str(SR)], timeout=60)
    assert r.returncode == 0 and r.errors == [], r.errors
    xt = torch.from_numpy(x)[None, None]
    plain = lambda: torch.jit.load(str(tmp_path / "den.ts"))(xt)[0, 0].numpy()
    assert np.abs(plain() - x).max() > 0.04      # without flushing the denormals count
    ref = load_model(tmp_path / "den.ts").run("forward", xt)[0, 0].numpy()
    np.testing.assert_array_equal(ref, x)        # the backend flushes them
    assert np.abs(plain() - x).max() > 0.04      # and gives the thread its plain mode back
    for k, name in enumerate(("y.wav", "z.wav")):     # worker thread, and inline in the DSP thread
        L = int(r.after(f"info{k}: latency")[0])
        assert L == (1024, 64)[k]
        y = sf.read(tmp_path / name, dtype="float32")[0]
        assert len(y) >= L + 4096
        np.testing.assert_array_equal(y[L:L + 4096], ref)
