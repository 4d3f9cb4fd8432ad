"""unravel.pipeline on real TorchScript models (bundled default and quirk models) and real audio files."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf

from unravel.operations import GENERATE
from unravel import cli, generator, latents, pipeline, stats
from unravel.errors import UnravelError
from unravel.model import DEFAULT_MODEL, load_model


def write_tone(path, sr, seconds, channels=1, freq=220.0, fmt=None, subtype=None):
    t = np.arange(int(sr * seconds)) / sr
    x = np.stack([0.4 * np.sin(2 * np.pi * freq * (c + 1) * t) for c in range(channels)])
    sf.write(path, x.T, sr, format=fmt, subtype=subtype)
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def default_model():
    return load_model("default")


@pytest.fixture(scope="module")
def models(quirk_models, default_model):
    return {"default": default_model,
            "stereo": load_model(quirk_models["stereo"]),
            "dims4": load_model(quirk_models["dims4"]),
            "sr48k": load_model(quirk_models["sr48k_sampling_rate"])}


@pytest.fixture(scope="module")
def encoded(tmp_path_factory, default_model):
    """Two audio files encoded with the default model."""
    d = tmp_path_factory.mktemp("enc")
    write_tone(d / "a.wav", 44100, 1.5, channels=2)
    write_tone(d / "b.flac", 22050, 1.0, freq=330.0)
    out = pipeline.encode_files(default_model, [d / "a.wav", d / "b.flac"], d / "lat",
                                latent_wav=True, progress=False)
    return out


def test_default_model_is_bundled():
    assert DEFAULT_MODEL.is_file()


def test_encode_shapes_and_latent_wav(encoded, default_model):
    a, b = encoded
    assert [p.name for p in encoded] == ["a.npy", "b.npy"]
    za, zb = np.load(a), np.load(b)
    # the raw length goes to the model (no padding): the toy model floors
    assert za.dtype == np.float32 and za.shape == (1, 8, int(1.5 * 44100) // 2048)
    assert zb.shape == (1, 8, 44100 // 2048)
    w = a.parent / "a.latent.wav"
    info = sf.info(w)
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (21, 8, "DOUBLE", za.shape[2])
    np.testing.assert_array_equal(latents.read(w), za[0])


@pytest.mark.parametrize("ext,fmt,subtype", [("ogg", "OGG", "VORBIS"), ("aiff", "AIFF", "PCM_16"),
                                             ("mp3", "MP3", "MPEG_LAYER_III")])
def test_encode_formats(tmp_path, models, ext, fmt, subtype):
    if fmt not in sf.available_formats():
        pytest.skip(f"libsndfile here does not write {fmt}")
    write_tone(tmp_path / f"x.{ext}", 32000, 1.0, fmt=fmt, subtype=subtype)
    [p] = pipeline.encode_files(models["dims4"], [tmp_path / f"x.{ext}"], tmp_path / "o", progress=False)
    z = np.load(p)
    assert z.shape[:2] == (1, 4) and abs(z.shape[2] - 44100 / 2048) <= 2


def test_encode_resamples_and_mixes(tmp_path, models):
    """A stereo 44.1 kHz file encoded by a 48 kHz mono model equals the model's encoding of
    the resampled channel mean (here with scipy's polyphase resampler, `resampler="poly"`;
    the default sinc kernel: tests/test_fidelity.py)."""
    m = models["sr48k"]
    x = write_tone(tmp_path / "s.wav", 44100, 1.0, channels=2, subtype="FLOAT")
    [p] = pipeline.encode_files(m, [tmp_path / "s.wav"], tmp_path / "o", progress=False,
                                resampler="poly")
    from scipy.signal import resample_poly
    mono = resample_poly(x.astype(np.float64).mean(0), 160, 147).astype(np.float32)
    expect = m.encode(mono[None], whole_frames=False)
    z = latents.read(p)
    assert z.shape == expect.shape == (8, 48000 // 2048)
    np.testing.assert_allclose(z, expect, atol=1e-4)


def test_encode_passes_the_raw_length(tmp_path, default_model):
    # UnRAVEl's encoder gives the model the file as long as it is; padding to whole frames
    # (what model.encode does by default) changes the frame count and the last frames
    import torch
    n = 10 * 2048 + 5
    x = np.random.default_rng(1).uniform(-0.5, 0.5, n).astype(np.float32)
    sf.write(tmp_path / "r.wav", x, 44100, subtype="FLOAT")
    [p] = pipeline.encode_files(default_model, [tmp_path / "r.wav"], tmp_path / "o", progress=False)
    with torch.inference_mode():
        direct = default_model.module.encode(torch.from_numpy(x)[None, None])[0].numpy()
    np.testing.assert_array_equal(latents.read(p), direct)
    assert direct.shape == (8, 10) and default_model.encode(x[None]).shape == (8, 11)


def test_encode_recursive_extensions_and_names(tmp_path, default_model):
    d = tmp_path / "lib"
    for sub in ("", "drums", "drums/kick", ".hidden"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    for name in ("a.wav", "drums/a.wav", "drums/kick/a.WAV", "drums/b.flac", ".hidden/c.wav",
                 "drums/.d.wav"):
        write_tone(d / name, 44100, 0.3, fmt="FLAC" if name.endswith("flac") else "WAV")
    (d / "drums" / "x.txt").write_text("no")
    out = pipeline.encode_files(default_model, [d], tmp_path / "o", progress=False)
    assert [p.name for p in out] == ["a.npy", "drums--a.npy", "drums--b.npy", "drums--kick--a.npy"]
    only = pipeline.encode_files(default_model, [d], tmp_path / "o2", progress=False, extensions=["flac"])
    assert [p.name for p in only] == ["drums--b.npy"]
    with pytest.raises(UnravelError, match="lib: folder has no audio files \\(.ogg\\)"):
        pipeline.encode_files(default_model, [d], tmp_path / "o3", extensions=[".ogg"])


def test_encode_folder_and_errors(tmp_path, default_model):
    d = tmp_path / "in"
    d.mkdir()
    write_tone(d / "b.wav", 44100, 0.5)
    write_tone(d / "a.aiff", 44100, 0.5, fmt="AIFF", subtype="PCM_16")
    (d / "readme.txt").write_text("not audio")
    out = pipeline.encode_files(default_model, [d], tmp_path / "o", progress=False)
    assert [p.name for p in out] == ["a.npy", "b.npy"]
    before = (tmp_path / "o" / "a.npy").read_bytes()
    with pytest.raises(UnravelError, match="a.npy: already exists"):
        pipeline.encode_files(default_model, [d], tmp_path / "o", progress=False)
    assert (tmp_path / "o" / "a.npy").read_bytes() == before
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UnravelError, match="empty: folder has no audio files"):
        pipeline.encode_files(default_model, [empty], tmp_path / "o2")
    (tmp_path / "dup").mkdir()
    write_tone(tmp_path / "dup" / "a.wav", 44100, 0.2)
    with pytest.raises(UnravelError, match="two inputs would write the same output"):
        pipeline.encode_files(default_model, [d / "a.aiff", tmp_path / "dup" / "a.wav"], tmp_path / "o3")
    assert not (tmp_path / "o3").exists() or os.listdir(tmp_path / "o3") == []
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage")
    with pytest.raises(UnravelError, match="bad.wav: not a readable audio file"):
        pipeline.encode_files(default_model, [bad], tmp_path / "o4")
    assert os.listdir(tmp_path / "o4") == []


def test_stats_files(encoded):
    d = stats.read(encoded).to_dict(iqr=True)
    z = np.concatenate([latents.read(p) for p in encoded], axis=1).astype(np.float64)
    assert d["files"] == [str(p) for p in encoded] and d["frames"] == z.shape[1]
    np.testing.assert_allclose(d["mean"], z.mean(1), rtol=1e-6)
    np.testing.assert_allclose(d["q3"], np.percentile(z, 75, axis=1), rtol=1e-6)
    np.testing.assert_allclose(d["covariance"], np.cov(z, bias=True), rtol=1e-6, atol=1e-9)
    json.dumps(d)
    # a folder holding a.npy and a.latent.wav counts each encoding once
    assert stats.read([encoded[0].parent]).to_dict()["frames"] == z.shape[1]


def same_bytes(files_a, files_b):
    return all(a.read_bytes() == b.read_bytes() for a, b in zip(files_a, files_b, strict=True))


def outputs(npy):
    return [npy, npy.with_name(npy.stem + ".latent.wav")]


@pytest.mark.parametrize("pattern", ["fibo", "orale", "blender", "swapper", "default"])
def test_generate_reproducible(tmp_path, encoded, pattern):
    kw = dict(pattern=pattern, dist="correlation", points=5, loops=2, files=2, seed=11)
    a = generator.generate_files(GENERATE.settings(inputs=encoded, output=tmp_path / "a", **kw))
    b = generator.generate_files(GENERATE.settings(inputs=encoded, output=tmp_path / "b", **kw))
    assert [p.name for p in a] == [f"{pattern}-correlation-001.npy", f"{pattern}-correlation-002.npy"]
    for pa, pb in zip(a, b):
        assert same_bytes(outputs(pa), outputs(pb))
    assert a[0].read_bytes() != a[1].read_bytes()      # file 1 continues the stream of seed 11
    c = generator.generate_files(GENERATE.settings(inputs=encoded, output=tmp_path / "c", **{**kw, "files": 1, "skip": 1}))
    assert same_bytes(outputs(c[0]), outputs(a[1]))
    rows = {"fibo": 2 * (1 + 2 + 3 + 5), "orale": 2 * 64 * 5, "blender": (5 * 8 + 1) * 2 * 5,
            "swapper": 2 * 5 * 5, "default": 2 * 5}[pattern]
    assert np.load(a[0]).shape == (1, 8, rows)
    info = sf.info(outputs(a[0])[1])
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (21, 8, "DOUBLE", rows)


def unravel_stats(paths):
    """Mean, std and covariance as UnRAVEl's generator computes them (float32 numpy on (1, D, T))."""
    all_data = np.concatenate([np.load(p) for p in paths], axis=2)
    mean, std = np.mean(all_data, axis=2)[0], np.std(all_data, axis=2)[0]
    cov = np.outer(std, std) * np.corrcoef(all_data[0])
    return mean, std, cov


@pytest.mark.parametrize("dist", ["normal", "correlation"])
def test_generate_files_one_stream_as_unravel(tmp_path, encoded, dist):
    # UnRAVEl's generator: rng = default_rng(seed); per file, blocks A (and B) drawn in turn
    made = generator.generate_files(GENERATE.settings(inputs=encoded, output=tmp_path, pattern="blender", dist=dist, points=2, files=3, seed=42))
    mean, std, cov = unravel_stats(encoded)
    rng = np.random.default_rng(42)
    for npy in made:
        if dist == "normal":
            a, b = (rng.normal(mean, std, size=(2, 8)).astype(np.float32) for _ in range(2))
        else:
            a, b = (rng.multivariate_normal(mean, cov, size=2).astype(np.float32) for _ in range(2))
        g = np.load(npy)[0].T
        assert g.shape == ((2 * 8 + 1) * 2, 8)
        np.testing.assert_allclose(g[:2], a, rtol=1e-4, atol=1e-5)     # state 0 is A
        np.testing.assert_allclose(g[-2:], b, rtol=1e-4, atol=1e-5)    # the last state is B
    side = json.loads(made[2].with_suffix(".json").read_text())
    assert side["seed"] == 42 and side["index"] == 2 and side["argv"][-6:-4] == ["--skip", "2"]


def test_generate_cli_prints_files_plot_and_fibo_steps(tmp_path, encoded, capsys):
    out = tmp_path / "g"
    png = tmp_path / "plot.png"
    assert cli.main(["generate", *map(str, encoded), "--pattern", "fibo", "--points", "10",
                     "--files", "2", "--plot", str(png), "-o", str(out)]) == 0
    printed = capsys.readouterr()
    names = ["fibo-normal-001.npy", "fibo-normal-001.latent.wav", "fibo-normal-001.json",
             "fibo-normal-002.npy", "fibo-normal-002.latent.wav", "fibo-normal-002.json"]
    assert printed.out.split() == [str(out / n) for n in names] + [str(png)]
    assert "fibo: 5 Fibonacci steps (1, 2, 3, 5, 8) from 10 points" in printed.err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "fibo-normal-001.json").read_text())["fibo_steps"] == [1, 2, 3, 5, 8]
    # an existing plot is not overwritten unless --force; nothing is generated then
    with pytest.raises(UnravelError, match="plot.png: already exists"):
        generator.generate_files(GENERATE.settings(inputs=encoded, output=tmp_path / "h", plot=png))
    assert not (tmp_path / "h").exists()
    assert cli.main(["generate", *map(str, encoded), "--pattern", "fibo", "--points", "55",
                     "--plot", str(png), "--force", "-o", str(out)]) == 0
    assert "Fibonacci steps" not in capsys.readouterr().err


def test_generate_sidecar_remakes_file(tmp_path, encoded):
    [p] = generator.generate_files(GENERATE.settings(inputs=encoded, output=tmp_path / "g", pattern="orale", dist="iqr-uniform", iqr=True, bpm=128, loops=1, seed=5, sr=48000, ratio=1024))
    side = json.loads(p.with_suffix(".json").read_text())
    assert side["seed"] == 5 and side["points"] == 22 and side["latent_rate"] == 46
    assert side["bpm"]["target"] == 128 and abs(side["bpm"]["error"]) < 3
    assert side["shape"] == list(np.load(p).shape)
    assert cli.main(side["argv"] + ["-o", str(tmp_path / "again")]) == 0
    again = tmp_path / "again" / side["npy"]
    assert same_bytes(outputs(p), outputs(again))
    assert sf.info(outputs(p)[1]).samplerate == 46


def test_generate_names_never_overwrite(tmp_path, encoded):
    a = generator.generate_files(GENERATE.settings(inputs=encoded, output=tmp_path, pattern="default", points=3))
    b = generator.generate_files(GENERATE.settings(inputs=encoded, output=tmp_path, pattern="default", points=3))
    assert [x.name for x in a + b] == ["default-normal-001.npy", "default-normal-002.npy"]
    assert a[0].read_bytes() == b[0].read_bytes()


def test_generate_errors(tmp_path, encoded):
    with pytest.raises(UnravelError, match="not both"):
        generator.generate_files(GENERATE.settings(inputs=encoded, output=tmp_path, points=3, bpm=120))
    with pytest.raises(UnravelError, match="pattern must be one of"):
        generator.generate_files(GENERATE.settings(inputs=encoded, output=tmp_path, pattern="zigzag"))
    np.save(tmp_path / "d4.npy", np.zeros((1, 4, 10), np.float32))
    with pytest.raises(UnravelError, match="d4.npy: latents have 4 dims, 8 expected"):
        generator.generate_files(GENERATE.settings(inputs=[encoded[0], tmp_path / "d4.npy"], output=tmp_path / "o"))
    assert not (tmp_path / "o").exists() or os.listdir(tmp_path / "o") == []


def test_decode(tmp_path, encoded, models):
    m = models["default"]
    [w] = pipeline.decode_files(m, [encoded[0]], tmp_path, progress=False)
    y, sr = sf.read(w, dtype="float32", always_2d=True)
    z = latents.read(encoded[0])
    assert sr == 44100 and y.shape == (z.shape[1] * 2048, 1) and sf.info(w).subtype == "FLOAT"
    np.testing.assert_allclose(y.T, m.decode(z), atol=1e-6)
    assert np.sqrt(np.mean(y ** 2)) > 1e-3
    # a 32-bit float latent wav decodes to the same audio
    sf.write(tmp_path / "f32.wav", z.T, 21, subtype="FLOAT")
    [w2] = pipeline.decode_files(m, [tmp_path / "f32.wav"], tmp_path / "o", progress=False)
    assert w2.name == "f32.wav"
    np.testing.assert_array_equal(sf.read(w2)[0], sf.read(w)[0])


def test_decode_stereo_and_4dims(tmp_path, models):
    rng = np.random.default_rng(0)
    latents.write_npy(tmp_path / "z4.npy", rng.normal(size=(4, 7)).astype(np.float32))
    [w] = pipeline.decode_files(models["dims4"], [tmp_path / "z4.npy"], tmp_path / "o4", progress=False)
    assert sf.info(w).frames == 7 * 2048
    latents.write_npy(tmp_path / "z8.npy", rng.normal(size=(8, 5)).astype(np.float32))
    [w] = pipeline.decode_files(models["stereo"], [tmp_path / "z8.npy"], tmp_path / "o8", progress=False)
    info = sf.info(w)
    assert (info.channels, info.frames, info.samplerate) == (2, 5 * 2048, 44100)


def test_decode_dims_mismatch(tmp_path, encoded, models):
    with pytest.raises(UnravelError, match=r"a.npy: latents have 8 dims, 4 expected by model dims4.ts"):
        pipeline.decode_files(models["dims4"], [encoded[0]], tmp_path / "o")
    assert os.listdir(tmp_path / "o") == []
    np.save(tmp_path / "batch.npy", np.zeros((2, 8, 4), np.float32))
    with pytest.raises(UnravelError, match=r"batch.npy: latent shape \(2, 8, 4\)"):
        pipeline.decode_files(models["default"], [encoded[0], tmp_path / "batch.npy"], tmp_path / "o")
    assert os.listdir(tmp_path / "o") == []   # checked before anything is written


def test_demo(tmp_path, monkeypatch, capsys):
    """`make demo`'s job: files under out/ relative to the current folder, non-silent audio."""
    from unravel import demo
    monkeypatch.chdir(tmp_path)
    files = demo.run()
    assert files["audio"] == __import__("pathlib").Path("out/demo.wav")
    assert files_here(tmp_path / "out") == ["demo.json", "demo.latent.wav", "demo.npy", "demo.wav",
                                            "loop.latent.wav", "loop.npy"]
    g = np.load("out/demo.npy")
    assert g.shape == (1, 8, demo.LOOPS * (1 + 2 + 3 + 5 + 8))     # fibo of 11 frames (117.45 BPM)
    np.testing.assert_array_equal(latents.read("out/demo.latent.wav"), g[0])
    y, sr = sf.read("out/demo.wav")
    assert sr == 44100 and len(y) == g.shape[2] * 2048 and np.sqrt(np.mean(y ** 2)) > 1e-3
    assert "out/demo.wav" in capsys.readouterr().out
    first = (tmp_path / "out" / "demo.npy").read_bytes()
    demo.run()                                                   # re-run: same seed, same bytes
    assert (tmp_path / "out" / "demo.npy").read_bytes() == first


def files_here(d):
    return sorted(p.name for p in d.iterdir())
