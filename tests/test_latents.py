"""unravel.latents: .npy and latent wav files, layouts, exact round trips, errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf

from unravel import latents
from unravel.errors import UnravelError


@pytest.fixture
def z() -> np.ndarray:
    rng = np.random.default_rng(3)
    return (rng.normal(size=(8, 50)) * 3).astype(np.float32)  # values well outside +-1


def test_latent_rate():
    assert latents.latent_rate(44100, 2048) == 21
    assert latents.latent_rate(48000, 2048) == 23
    assert latents.latent_rate(100, 2048) == 1


def test_npy_layout(tmp_path, z):
    p = latents.write_npy(tmp_path / "a.npy", z)
    raw = np.load(p)
    assert raw.shape == (1, 8, 50) and raw.dtype == np.float32
    np.testing.assert_array_equal(latents.read(p), z)
    assert os.listdir(tmp_path) == ["a.npy"]


def test_npy_2d_layouts(tmp_path, z):
    np.save(tmp_path / "dt.npy", z.astype(np.float64))
    np.save(tmp_path / "td.npy", z.T)
    for name in ("dt.npy", "td.npy"):
        for dims in (None, 8):
            got = latents.read(tmp_path / name, dims)
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, z)
    # a short clip with more dims than frames: only the expected dims tell the layout
    short = z[:, :5]
    np.save(tmp_path / "short_td.npy", short.T)
    np.testing.assert_array_equal(latents.read(tmp_path / "short_td.npy", dims=8), short)


def test_wrong_shapes(tmp_path, z):
    np.save(tmp_path / "batch.npy", np.stack([z, z]))
    with pytest.raises(UnravelError, match=r"batch.npy: latent shape \(2, 8, 50\)"):
        latents.read(tmp_path / "batch.npy")
    np.save(tmp_path / "one.npy", z[0])
    with pytest.raises(UnravelError, match="one.npy: latent shape"):
        latents.read(tmp_path / "one.npy")
    latents.write_npy(tmp_path / "d8.npy", z)
    with pytest.raises(UnravelError, match="d8.npy: latents have 8 dims, 4 expected by model x"):
        latents.read(tmp_path / "d8.npy", dims=4, expected_by="model x")
    bad = z.copy()
    bad[1, 2] = np.nan
    np.save(tmp_path / "nan.npy", bad[None])
    with pytest.raises(UnravelError, match="nan.npy: latents contain NaN"):
        latents.read(tmp_path / "nan.npy")
    (tmp_path / "junk.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(UnravelError, match="junk.npy: not a readable .npy file"):
        latents.read(tmp_path / "junk.npy")
    np.save(tmp_path / "str.npy", np.array(["a", "b"]))
    with pytest.raises(UnravelError, match="str.npy: .npy does not hold real numbers"):
        latents.read(tmp_path / "str.npy")
    with pytest.raises(UnravelError, match="missing.npy: no such file"):
        latents.read(tmp_path / "missing.npy")
    (tmp_path / "x.txt").write_text("1 2 3")
    with pytest.raises(UnravelError, match="x.txt: not a latent file"):
        latents.read(tmp_path / "x.txt")


def test_latent_wav(tmp_path, z):
    p = latents.write_wav(tmp_path / "a.latent.wav", z, latents.latent_rate(44100, 2048))
    info = sf.info(p)
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (21, 8, 50, "DOUBLE")
    np.testing.assert_array_equal(latents.read(p), z)
    assert np.abs(latents.read(p)).max() > 1  # values beyond +-1 survive


def test_float32_latent_wav_readable(tmp_path, z):
    sf.write(tmp_path / "f.wav", z.T, 21, subtype="FLOAT")
    np.testing.assert_array_equal(latents.read(tmp_path / "f.wav", dims=8), z)
    p = latents.write_wav(tmp_path / "g.wav", z, 21, subtype="FLOAT")
    assert sf.info(p).subtype == "FLOAT"
    np.testing.assert_array_equal(latents.read(p), z)


def test_round_trip_npy_wav_exact(tmp_path, z):
    a = latents.write_npy(tmp_path / "a.npy", z)
    w = latents.write_wav(tmp_path / "a.latent.wav", latents.read(a), 21)
    b = latents.write_npy(tmp_path / "b.npy", latents.read(w))
    assert a.read_bytes() == b.read_bytes()


def test_no_overwrite(tmp_path, z):
    latents.write_npy(tmp_path / "a.npy", z)
    with pytest.raises(UnravelError, match="a.npy: already exists"):
        latents.write_npy(tmp_path / "a.npy", z * 0)
    np.testing.assert_array_equal(latents.read(tmp_path / "a.npy"), z)
    latents.write_npy(tmp_path / "a.npy", z * 0, force=True)
    assert not latents.read(tmp_path / "a.npy").any()


def test_corrupt_latent_wav(tmp_path):
    (tmp_path / "c.wav").write_bytes(b"RIFF1234WAVEfmt nonsense")
    with pytest.raises(UnravelError, match="c.wav: not a readable latent wav"):
        latents.read(tmp_path / "c.wav")


def test_json_and_stem(tmp_path):
    p = latents.write_json(tmp_path / "s.json", {"seed": 3, "argv": ["generate"]})
    assert json.loads(p.read_text()) == {"seed": 3, "argv": ["generate"]}
    assert latents.stem("x/a.latent.wav") == "a"
    assert latents.stem("a.b.npy") == "a.b"
    assert latents.stem("a.wav") == "a"
