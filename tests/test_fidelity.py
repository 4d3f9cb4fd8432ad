"""What a user of the original UnRAVEl and RAVE-Latent-Diffusion gets the same (issue 27):
each file of a folder encodes as if alone with a streaming export (encode, --jobs, prepare,
Pd's encode job); float32 statistics that draw the original generator's numbers bit for bit."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from pdrun import BUILD, jobs_patch, run_pd
from toymodels import make_test_model
from unravel import generator, pipeline, stats
from unravel.diffusion.prepare import prepare_files
from unravel.model import Model, load_model
from unravel.operations import GENERATE, PREPARE


@pytest.fixture(scope="module")
def stream_encoder(tmp_path_factory):
    """A model whose encode keeps streaming state between calls, and a folder of 3 files."""
    d = tmp_path_factory.mktemp("stream")
    path = make_test_model(d / "stream_enc.ts", streaming=True, decode_arg=True,
                           streaming_encode=True, seed=5)
    folder = d / "in"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i, seconds in enumerate((1.0, 0.7, 1.3)):
        sf.write(folder / f"f{i}.wav", 0.3 * rng.standard_normal(int(44100 * seconds)).astype(np.float32),
                 44100, subtype="FLOAT")
    return path, folder


def alone(path, wav) -> np.ndarray:
    """The latents of one file encoded alone in a fresh model (not shared with others)."""
    x, sr = sf.read(wav, dtype="float32", always_2d=True)
    return pipeline.encode_audio(Model(path, share=False), x.T, sr)


def test_the_model_keeps_state_between_calls(stream_encoder):
    path, folder = stream_encoder
    m = load_model(path)
    x = np.random.default_rng(0).standard_normal((1, 4096)).astype(np.float32)
    first, second = m.encode(x), m.encode(x)
    assert not np.array_equal(first, second)     # what the reset is for
    m.reset()
    assert np.array_equal(m.encode(x), first)


@pytest.mark.parametrize("jobs", [1, 2])
def test_each_file_of_a_folder_encodes_as_if_alone(tmp_path, stream_encoder, jobs):
    path, folder = stream_encoder
    m = load_model(path)
    m.encode(np.ones((1, 8192), np.float32))     # a model that ran before (a live object)
    out = pipeline.encode_files(m, [folder], tmp_path, progress=False, jobs=jobs)
    assert [p.name for p in out] == ["f0.npy", "f1.npy", "f2.npy"]
    for npy in out:
        ref = alone(path, folder / npy.with_suffix(".wav").name)
        assert np.array_equal(np.load(npy)[0], ref), npy.name


def test_prepare_each_file_as_if_alone(tmp_path, stream_encoder):
    path, _ = stream_encoder
    m = load_model(path)
    # 256-frame chunks: files of 256 * 2048 samples and more; two of them, encoded in a row
    long = tmp_path / "long"
    long.mkdir()
    rng = np.random.default_rng(2)
    for name in ("a", "b"):
        sf.write(long / f"{name}.wav", 0.3 * rng.standard_normal(256 * 2048 + 100).astype(np.float32),
                 44100, subtype="FLOAT")
    s = PREPARE.settings(inputs=[long], output=tmp_path / "all", latent_length=256)
    both = prepare_files(m, s)
    for name, npy in zip("ab", both):
        one = prepare_files(Model(path, share=False),
                            PREPARE.settings(inputs=[long / f"{name}.wav"], output=tmp_path / name,
                                             latent_length=256))
        assert np.array_equal(np.load(npy), np.load(one[0]))


@pytest.mark.skipif(not (BUILD / "unravel~.pd_linux").exists(), reason="the external is not built")
def test_pd_encode_job_each_file_as_if_alone(tmp_path, stream_encoder):
    path, folder = stream_encoder
    patch = jobs_patch(tmp_path / "enc.pd", [f"encode input {folder} output lat"],
                       obj=f"unravel~ {path} encode")
    r = run_pd(patch, timeout=120)
    assert r.returncode == 0, r.errors
    for i in range(3):
        ref = alone(path, folder / f"f{i}.wav")
        assert np.array_equal(np.load(tmp_path / "lat" / f"f{i}.npy")[0], ref)


# --------------------------------------------------------------- float32 statistics

def original_draws(paths, dist: str, iqr: bool, points: int, files: int, seed: int) -> list:
    """The blocks UnRAVEl's generator draws (issue 27's facts): the (1, D, T) float32 files
    joined on time; numpy's float32 mean and std over time, or with `iqr` the quartiles
    (each its own float32 percentile call) giving centre (Q1+Q3)/2, spread IQR/1.35 and
    bounds Q1 -/+ 1.5 IQR beyond Q1/Q3; the covariance outer(std, std) times numpy's
    correlation matrix; one default_rng(seed) for every file; each block cast to float32."""
    joined = np.concatenate([np.load(p) for p in paths], axis=2)
    if iqr:
        lo, hi = np.percentile(joined, 25, axis=2)[0], np.percentile(joined, 75, axis=2)[0]
        width = hi - lo
        centre, spread = (lo + hi) / 2, width / 1.35
        bounds = (lo - 1.5 * width, hi + 1.5 * width)
    else:
        centre, spread = joined.mean(axis=2)[0], joined.std(axis=2)[0]
        cov = np.outer(spread, spread) * np.corrcoef(joined[0])
    rng, dims, out = np.random.default_rng(seed), joined.shape[1], []
    for _ in range(files):
        if dist == "normal":
            block = rng.normal(centre, spread, size=(points, dims))
        elif dist == "uniform":
            block = rng.uniform(centre - 3 * spread, centre + 3 * spread, size=(points, dims))
        elif dist == "iqr-uniform":
            block = rng.uniform(bounds[0], bounds[1], size=(points, dims))
        else:
            block = rng.multivariate_normal(centre, cov, size=points)
        out.append(block.astype(np.float32))
    return out


@pytest.fixture(scope="module")
def latent_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("lat32")
    rng = np.random.default_rng(7)
    mix = rng.standard_normal((6, 6)).astype(np.float32)
    for name, frames in (("a", 53), ("b", 38)):
        z = (mix @ rng.standard_normal((6, frames)).astype(np.float32) + 0.3).astype(np.float32)
        np.save(d / f"{name}.npy", z[None])
    return [d / "a.npy", d / "b.npy"]


@pytest.mark.parametrize("dist,iqr", [("normal", False), ("uniform", False),
                                      ("correlation", False), ("normal", True),
                                      ("iqr-uniform", True)])
def test_float32_statistics_draw_the_originals_numbers(tmp_path, latent_files, dist, iqr):
    s = GENERATE.settings(inputs=latent_files, output=tmp_path, dist=dist, iqr=iqr, points=10,
                          files=3, seed=42, float32=True)
    made = generator.generate_files(s)
    for npy, block in zip(made, original_draws(latent_files, dist, iqr, 10, 3, 42)):
        assert np.array_equal(np.load(npy)[0].T, block), npy.name
    # the sidecar re-makes the file with the option
    side = json.loads(made[1].with_suffix(".json").read_text())
    assert "--float32" in side["argv"] and side["float32"] is True
    # float64 statistics draw other numbers, a float32 step or so away
    s64 = GENERATE.settings(inputs=latent_files, output=tmp_path / "64", dist=dist, iqr=iqr,
                            points=10, seed=42)
    g64 = np.load(generator.generate_files(s64)[0])[0].T
    np.testing.assert_allclose(g64, np.load(made[0])[0].T, rtol=1e-5, atol=1e-5)
    assert not np.array_equal(g64, np.load(made[0])[0].T)


def test_float32_statistics_as_numpy_computes_them(latent_files):
    z = np.concatenate([np.load(p)[0] for p in latent_files], axis=1)
    st = stats.compute(z, float32=True)
    assert st.mean.dtype == st.std.dtype == st.q1.dtype == np.float32
    assert np.array_equal(st.mean, np.mean(z[None], axis=2)[0])
    assert np.array_equal(st.q3, np.percentile(z[None], 75, axis=2)[0])
    assert np.array_equal(st.cov, np.outer(st.std, st.std) * np.corrcoef(z))
    # a constant dimension: correlation 0 with the others, 1 with itself, as in float64
    flat = np.concatenate([z, np.full((1, z.shape[1]), 0.5, np.float32)])
    c = stats.compute(flat, float32=True).corr
    assert np.array_equal(c[-1], [0.0] * 6 + [1.0]) and np.all(np.isfinite(c))


# --------------------------------------------------------------- formats

def pcm16_as_the_original(y: np.ndarray, tmp) -> np.ndarray:
    """The samples UnRAVEl's decoder writes for float audio `y` (n,) or (n, c): soundfile's
    default wav, 16-bit PCM, libsndfile clipping what is beyond -1..1."""
    sf.write(tmp / "original.wav", y, 44100)
    x = sf.read(tmp / "original.wav", dtype="int16")[0]
    loud = np.abs(y) >= 1
    assert np.all(x[loud] == np.where(y[loud] > 0, 32767, -32768))        # clipped
    return x


def test_latent_subtype_and_pcm16_from_the_command_line(tmp_path):
    from unravel import cli
    rng = np.random.default_rng(3)
    sf.write(tmp_path / "a.wav", 0.3 * rng.standard_normal(44100).astype(np.float32), 44100,
             subtype="FLOAT")
    for sub, name in (("float", "FLOAT"), ("double", "DOUBLE")):
        assert cli.main(["encode", "-m", "default", str(tmp_path / "a.wav"), "-o", str(tmp_path / sub),
                         "--latent-wav", "--latent-subtype", sub]) == 0
        lw = tmp_path / sub / "a.latent.wav"
        assert sf.info(lw).subtype == name
        z = np.load(tmp_path / sub / "a.npy")[0]
        assert np.array_equal(sf.read(lw, dtype="float32")[0].T, z)    # float32 latents: exact
    # latents large enough that the bundled model's audio goes beyond -1..1
    np.save(tmp_path / "loud.npy", 40 * np.load(tmp_path / "float" / "a.npy"))
    for sub in ("float", "pcm16"):
        assert cli.main(["decode", "-m", "default", str(tmp_path / "loud.npy"), "-o",
                         str(tmp_path / f"dec-{sub}"), "--subtype", sub]) == 0
    y = sf.read(tmp_path / "dec-float" / "loud.wav", dtype="float32")[0]
    assert sf.info(tmp_path / "dec-float" / "loud.wav").subtype == "FLOAT"
    assert np.abs(y).max() > 1.0                                    # some samples clip
    pcm = tmp_path / "dec-pcm16" / "loud.wav"
    assert sf.info(pcm).subtype == "PCM_16"
    assert np.array_equal(sf.read(pcm, dtype="int16")[0], pcm16_as_the_original(y, tmp_path))


def test_diffuse_formats(tmp_path):
    from unravel import diffusion
    from unravel.operations import DIFFUSE
    s = DIFFUSE.settings(seed=3, steps=2, latent_length=64, output=tmp_path)
    ref = diffusion.diffuse_files("default", s.replace(name="f"), tmp_path)[0]
    r = diffusion.diffuse_files("default", s.replace(name="p", subtype="pcm16"), tmp_path)[0]
    assert sf.info(ref.wav).subtype == "FLOAT" and sf.info(r.wav).subtype == "PCM_16"
    y = sf.read(ref.wav, dtype="float32")[0]
    assert np.array_equal(sf.read(r.wav, dtype="int16")[0], pcm16_as_the_original(y, tmp_path))
    a = diffusion.diffuse_files("default", s.replace(name="d", latent_wav=True), tmp_path)[0]
    b = diffusion.diffuse_files("default", s.replace(name="s", latent_wav=True,
                                                     latent_subtype="float"), tmp_path)[0]
    assert sf.info(a.latent_wav).subtype == "DOUBLE" and sf.info(b.latent_wav).subtype == "FLOAT"
    assert np.array_equal(sf.read(a.latent_wav, dtype="float32")[0], sf.read(b.latent_wav, dtype="float32")[0])


@pytest.mark.skipif(not (BUILD / "unravel~.pd_linux").exists(), reason="the external is not built")
def test_pd_jobs_formats(tmp_path):
    rng = np.random.default_rng(4)
    sf.write(tmp_path / "a.wav", 0.3 * rng.standard_normal(44100).astype(np.float32), 44100,
             subtype="FLOAT")
    patch = jobs_patch(tmp_path / "fmt.pd", ["encode input a.wav output lat latent-wav 1 latent-subtype float",
                                             "decode input lat/a.npy output dec subtype pcm16"])
    r = run_pd(patch, timeout=120)
    assert r.returncode == 0 and not r.errors, r.errors
    assert sf.info(tmp_path / "lat" / "a.latent.wav").subtype == "FLOAT"
    ref = pipeline.decode_files(load_model("default"), [tmp_path / "lat" / "a.npy"], tmp_path / "ref",
                                progress=False)
    y = sf.read(ref[0], dtype="float32")[0]
    assert np.array_equal(sf.read(tmp_path / "dec" / "a.wav", dtype="int16")[0], pcm16_as_the_original(y, tmp_path))


# --------------------------------------------------------------- resampling

def sinc_reference(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """torchaudio's default resampling written as its definition, in float64: output m (at
    time m/sr_out) is the sum over the inputs j (at j/sr_in, zero outside the signal) of
    x[j] * sinc(pi u) * cos(pi u / 12)^2 * c / sr_in, u = c * (j/sr_in - m/sr_out) clipped to
    +-6, c = 0.99 * min(sr_in, sr_out); ceil(n * sr_out / sr_in) outputs."""
    n = x.shape[1]
    c = 0.99 * min(sr_in, sr_out)
    m = np.arange(-(-n * sr_out // sr_in))[:, None]
    reach = int(np.ceil(6 * sr_in / c)) + 1            # inputs each side with |u| < 6
    j = m * sr_in // sr_out + np.arange(-reach, reach + 1)[None]
    u = np.clip(c * (j / sr_in - m / sr_out), -6, 6)
    w = np.sinc(u) * np.cos(np.pi * u / 12) ** 2 * c / sr_in
    inside = (j >= 0) & (j < n)
    xs = np.where(inside[None], x.astype(np.float64)[:, np.clip(j, 0, n - 1)], 0.0)
    return (xs * w[None]).sum(axis=2)


@pytest.mark.parametrize("sr_in,sr_out", [(48000, 44100), (44100, 48000), (22050, 44100),
                                          (44100, 32000), (16000, 44100)])
def test_sinc_resampler_is_torchaudios_kernel(sr_in, sr_out):
    from unravel import audio
    x = np.random.default_rng(sr_in + sr_out).uniform(-1, 1, (2, 3001)).astype(np.float32)
    y = audio.resample(x, sr_in, sr_out)
    ref = sinc_reference(x, sr_in, sr_out)
    assert y.dtype == np.float32 and y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-6)   # float32 kernel and sums


def test_encode_at_48k_resamples_with_the_sinc_kernel(tmp_path):
    rng = np.random.default_rng(9)
    x = (0.3 * rng.standard_normal((2, 48000))).astype(np.float32)
    sf.write(tmp_path / "a.wav", x.T, 48000, subtype="FLOAT")
    m = load_model("default")
    [npy] = pipeline.encode_files(m, [tmp_path / "a.wav"], tmp_path / "o", progress=False)
    mono = sinc_reference(x, 48000, 44100).mean(axis=0, keepdims=True).astype(np.float32)
    expect = m.encode(mono, whole_frames=False)
    assert np.abs(np.load(npy)[0] - expect).max() < 1e-5
    # poly: scipy's polyphase filter, other latents
    [poly] = pipeline.encode_files(m, [tmp_path / "a.wav"], tmp_path / "p", progress=False,
                                   resampler="poly")
    assert np.abs(np.load(poly)[0] - expect).max() > 1e-4


def test_a_rate_pair_whose_sinc_filter_is_too_large_is_refused():
    from unravel import audio
    from unravel.errors import UnravelError
    x = np.zeros((1, 100), np.float32)
    with pytest.raises(UnravelError, match="use the poly resampler"):
        audio.resample(x, 44101, 44100)
    assert audio.resample(x, 44101, 44100, "poly").shape == (1, 100)


# --------------------------------------------------------------- training noise

def test_training_noise_is_the_pinned_forks():
    """The fork RAVE-Latent-Diffusion installs (moiseshorta/audio-diffusion-pytorch c2fdd66,
    VDiffusion.forward) trains on noise = randn + 0.1 * randn; the augmentation (Flex'ed's
    train script) adds noise_std * randn to the training latents."""
    import numpy as np
    import torch
    from unravel.diffusion.train import sample_draws
    from unravel.diffusion.vdiffusion import VDiffusion
    sig, noise, aug = sample_draws(5, 2, 3, 16)([0, 7])
    for row, i in enumerate((0, 7)):
        key = np.random.SeedSequence([5, 3, i]).generate_state(1, np.uint64)[0]
        g = torch.Generator().manual_seed(int(key) & 0x7FFF_FFFF_FFFF_FFFF)
        assert torch.equal(sig[row:row + 1], torch.rand(1, generator=g))
        a, b = torch.randn(3, 16, generator=g), torch.randn(3, 16, generator=g)
        assert torch.equal(noise[row], a + 0.1 * b)
        assert torch.equal(aug[row], torch.randn(3, 16, generator=g))

    class Echo(torch.nn.Module):      # returns its input: the loss shows the noise
        def forward(self, x, sigmas):
            return x
    x = torch.randn(2, 3, 16)
    torch.manual_seed(11)
    loss = VDiffusion(Echo())(x)
    torch.manual_seed(11)
    sigmas = torch.rand(2)
    n = torch.randn_like(x) + 0.1 * torch.randn_like(x)
    assert torch.equal(loss, VDiffusion(Echo())(x, sigmas, n))


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="no ffmpeg command to make the reference")
def test_prepare_pcm16_is_the_originals_ffmpeg_route(tmp_path):
    """`prepare-diffusion --pcm16` of a 48 kHz stereo float file gives, bit for bit, the
    latents of the file `ffmpeg -i IN -ar SR -ac 1 OUT.wav` writes (what the original
    preprocessing reads), prepared as it is."""
    model = load_model("default")
    t = np.arange(int(48000 * 256 * model.ratio / model.sr * 2.2)) / 48000
    x = np.stack([0.6 * np.sin(2 * np.pi * 110 * t), 0.3 * np.sin(2 * np.pi * 330 * t + 1)]).T
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "a.wav", x.astype(np.float32), 48000, subtype="FLOAT")
    (tmp_path / "ref").mkdir()
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(tmp_path / "in" / "a.wav"), "-ar",
                    str(model.sr), "-ac", "1", str(tmp_path / "ref" / "a.wav")], check=True)
    assert sf.info(str(tmp_path / "ref" / "a.wav")).subtype == "PCM_16"
    ours = prepare_files(model, PREPARE.settings(inputs=[tmp_path / "in"], output=tmp_path / "o1",
                                                 pcm16=True))
    ref = prepare_files(model, PREPARE.settings(inputs=[tmp_path / "ref"], output=tmp_path / "o2"))
    assert len(ours) == len(ref) == 2
    assert all(np.array_equal(np.load(a), np.load(b)) for a, b in zip(ours, ref))
    plain = prepare_files(model, PREPARE.settings(inputs=[tmp_path / "in"], output=tmp_path / "o3"))
    assert not np.array_equal(np.load(plain[0]), np.load(ours[0]))   # the route matters
