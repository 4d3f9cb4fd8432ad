"""Every input bounded before it is allocated (issue 26): compressed audio by its real
decoded size on every route (the CLI's encode, the Pd job, the page's UnRAVEl and Bending
tabs), `.npy` headers, architectures given as JSON, training's memory, the diffusion length
given on the command line; FIFOs refused at once."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
import soundfile as sf

from unravel import audio, latents, limits
from unravel.errors import UnravelError

SR = 44100


def bomb(path, seconds: int = 60):
    """`seconds` of silence as a compressed file (a few kB that decode to 10 MB a minute)."""
    fmt = path.suffix[1:].upper()
    with sf.SoundFile(path, "w", SR, 1, format=fmt) as f:
        for _ in range(seconds):
            f.write(np.zeros(SR, np.float32))
    return path


@pytest.mark.parametrize("suffix", [".flac", ".ogg"])
def test_compressed_audio_is_bounded_by_its_decoded_size(tmp_path, suffix):
    p = bomb(tmp_path / f"bomb{suffix}")
    assert p.stat().st_size < 20_000
    with pytest.raises(audio.TooMuchAudio, match=r"bomb.* decodes to more than 1 MB of audio"):
        audio.read(p, max_bytes=2**20)
    x, sr = audio.read(p, max_bytes=20 * 2**20)           # within the bound: the same samples
    ref, _ = sf.read(p, dtype="float32", always_2d=True)
    assert sr == SR and np.array_equal(x, ref.T)


def test_pyav_decoding_is_bounded(tmp_path):
    pytest.importorskip("av")
    p = bomb(tmp_path / "bomb.flac")
    with pytest.raises(audio.TooMuchAudio, match="decodes to more than 1 MB"):
        audio._read_with_av(p, "", 2**20)


def unknown_length(flac):
    """The FLAC file with its STREAMINFO's sample count 0 (unknown, as a stream's)."""
    b = bytearray(flac.read_bytes())
    fields = int.from_bytes(b[18:26], "big") & ~((1 << 36) - 1)
    b[18:26] = fields.to_bytes(8, "big")
    b[26:42] = bytes(16)                                   # no MD5 either
    flac.write_bytes(bytes(b))
    assert sf.info(flac).frames >= audio.UNKNOWN_FRAMES
    return flac


def test_a_header_that_does_not_say_its_length_is_decoded_within_the_bound(tmp_path):
    p = unknown_length(bomb(tmp_path / "bomb.flac"))
    assert audio.read(p)[0].shape == (1, 60 * SR)
    assert audio.load_size(p, SR, 1) == 0
    with pytest.raises(audio.TooMuchAudio):
        audio.read(p, max_bytes=2**20)


@pytest.fixture
def little_memory(monkeypatch):
    """A machine with 15 MB free: 1 MB of decoded audio per file."""
    monkeypatch.setattr(limits, "available_memory", lambda: 15 * 2**20)
    assert limits.audio_budget() == 2**20


def test_every_route_bounds_decoded_audio(tmp_path, little_memory):
    from unravel import app, jobs, pipeline
    from unravel.app import unravel_tab
    from unravel.model import load_model
    p = bomb(tmp_path / "bomb.ogg")
    model = load_model("default")
    out = tmp_path / "out"
    with pytest.raises(UnravelError, match="bomb.ogg"):                 # the CLI's encode
        pipeline.encode_files(model, [p], out)
    with pytest.raises(audio.TooMuchAudio):                              # the Pd job
        jobs.run_here(model, "encode", ["input", str(p), "output-array", "z"], str(tmp_path))
    with pytest.raises(UnravelError, match="bomb.ogg: 10 MB of decoded audio, more than this"):
        unravel_tab.check_upload(p, 1)                                   # the UnRAVEl tab
    unknown = unknown_length(bomb(tmp_path / "bomb.flac"))               # no length in its header
    with pytest.raises(UnravelError, match="bomb.flac: decodes to more than this page's limit of 1 MB"):
        unravel_tab.check_upload(unknown, 1)
    unravel_tab.check_upload(unknown, 11)
    with pytest.raises(UnravelError, match="decodes to more than 1 MB"):  # the Bending tab
        app.bend_listen(app.Library(None), "default", out, source=p, max_upload_mb=1)
    assert not out.exists() or list(out.iterdir()) == []


def huge_npy(path, shape=(1, 8, 2**39)):
    """A 24-byte `.npy` whose header claims `shape` (16 TB of float32)."""
    np.save(path, np.zeros((2, 3), np.float32))
    raw = path.read_bytes()
    n = int.from_bytes(raw[8:10], "little")
    header = raw[10:10 + n].decode("latin1").replace("(2, 3)", str(shape))
    path.write_bytes(raw[:10] + header[:n - 1].ljust(n - 1).encode("latin1") + b"\n" + bytes(24))
    return path


def test_npy_header_claiming_a_huge_shape_is_refused(tmp_path):
    p = huge_npy(tmp_path / "huge.npy")
    with pytest.raises(UnravelError, match=r"huge.npy: .npy header claims shape \(1, 8, 549755813888\)"):
        latents.read(p)
    from unravel.diffusion.prepare import load_latent_folder
    with pytest.raises(UnravelError, match="header claims"):
        load_latent_folder(tmp_path)


def test_architecture_json_is_bounded(tmp_path):
    from unravel.diffusion.checkpoint import read_arch_file
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"channels": [8] * 10**6, "factors": [1] * 10**6,
                               "items": [1] * 10**6, "attentions": [0] * 10**6}))
    with pytest.raises(UnravelError, match="big.json: an architecture file of more than"):
        read_arch_file(big)
    wide = tmp_path / "wide.json"
    wide.write_text(json.dumps({"channels": [2**20], "factors": [1], "items": [1],
                                "attentions": [0]}))
    with pytest.raises(UnravelError, match="a value of 1048576, more than the 8192"):
        read_arch_file(wide)
    deep = tmp_path / "deep.json"
    deep.write_text(json.dumps({k: [1] * 100 for k in ("factors", "items", "attentions")}
                               | {"channels": [8] * 100}))
    with pytest.raises(UnravelError, match="100 levels, more than the 32"):
        read_arch_file(deep)
    many = tmp_path / "many.json"
    many.write_text(json.dumps({"channels": [8, 8], "factors": [1, 1], "items": [200, 100],
                                "attentions": [0, 0]}))
    with pytest.raises(UnravelError, match="300 items, more than the 256"):
        read_arch_file(many)
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(UnravelError, match="not a regular file"):
        read_arch_file(fifo)


def test_training_memory_is_estimated_before_the_model_is_built(monkeypatch):
    from unravel.diffusion.train import check_training, training_memory
    from unravel.diffusion.vdiffusion import SMALL_PRESETS, check_arch
    arch = check_arch(SMALL_PRESETS["tiny"], "tiny")
    small = training_memory(arch, 8, 256, 1)
    assert training_memory(arch, 8, 256, 4) > small
    wide = check_arch({"channels": [8192] * 8, "factors": [1] * 8, "items": [32] * 8,
                       "attentions": [1] * 8, "attention_heads": 64, "attention_features": 64},
                      "wide")          # the most blocks allowed
    t = time.monotonic()
    assert training_memory(wide, 8, 256, 1) > 2**40          # 256 blocks of 8192^2 convs
    assert time.monotonic() - t < 30
    with pytest.raises(UnravelError, match="training on batches of 1 x 256 latent frames needs"):
        check_training(wide, 8, 256, 1)
