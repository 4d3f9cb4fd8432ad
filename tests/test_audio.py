"""unravel.audio: reading every libsndfile format, resampling, mixing, atomic writes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from unravel import audio, safewrite
from unravel.errors import UnravelError

FORMATS = [("wav", "WAV", "FLOAT", True), ("flac", "FLAC", "PCM_24", True),
           ("aiff", "AIFF", "PCM_24", True), ("ogg", "OGG", "VORBIS", False)]
if "MP3" in sf.available_formats():
    FORMATS.append(("mp3", "MP3", "MPEG_LAYER_III", False))


def tone(freq: float, sr: int, seconds: float, channels: int = 1, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    x = amp * np.sin(2 * np.pi * freq * t)
    return np.stack([x * (1 - 0.3 * c) for c in range(channels)]).astype(np.float32)


def peak_freq(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spec)])


@pytest.mark.parametrize("ext,fmt,subtype,lossless", FORMATS)
def test_read_formats(tmp_path, ext, fmt, subtype, lossless):
    x = tone(440, 44100, 1.0, channels=2)
    path = tmp_path / f"t.{ext}"
    sf.write(path, x.T, 44100, format=fmt, subtype=subtype)
    y, sr = audio.read(path)
    assert sr == 44100 and y.dtype == np.float32 and y.shape[0] == 2
    if lossless:
        assert y.shape == x.shape
        np.testing.assert_allclose(y, x, atol=1e-6)
    else:  # lossy codecs add delay/padding; the content is the same tone
        assert abs(y.shape[1] - x.shape[1]) < 0.1 * 44100
        assert abs(peak_freq(y[0], sr) - 440) < 3
        assert abs(np.sqrt(np.mean(y[1] ** 2)) / np.sqrt(np.mean(y[0] ** 2)) - 0.7) < 0.05


@pytest.mark.parametrize("sr_in,sr_out", [(48000, 44100), (22050, 44100), (44100, 32000), (44100, 44100)])
def test_resample_length_and_frequency(sr_in, sr_out):
    x = tone(1000, sr_in, 0.5, channels=2)
    y = audio.resample(x, sr_in, sr_out)
    assert y.shape == (2, round(x.shape[1] * sr_out / sr_in)) and y.dtype == np.float32
    assert abs(peak_freq(y[0], sr_out) - 1000) < 2 * sr_out / y.shape[1]
    # amplitude kept (away from the edges)
    mid = y[0, y.shape[1] // 4: 3 * y.shape[1] // 4]
    assert abs(np.max(np.abs(mid)) - 0.5) < 0.01


def test_resample_filters_aliases():
    """A tone above the new Nyquist frequency is removed, not folded down."""
    x = tone(15000, 44100, 0.5)
    y = audio.resample(x, 44100, 22050)
    assert np.sqrt(np.mean(y ** 2)) < 0.01 * np.sqrt(np.mean(x ** 2))


def test_mix():
    st = np.stack([np.ones(5), 3 * np.ones(5)]).astype(np.float32)
    np.testing.assert_array_equal(audio.mix(st, 1), 2 * np.ones((1, 5)))
    mono = np.arange(5, dtype=np.float32)[None]
    np.testing.assert_array_equal(audio.mix(mono, 2), np.stack([mono[0], mono[0]]))
    quad = np.arange(20, dtype=np.float32).reshape(4, 5)
    np.testing.assert_array_equal(audio.mix(quad, 2), quad[:2])
    np.testing.assert_array_equal(audio.mix(st, 3), st[[0, 1, 0]])
    assert audio.mix(st, 2) is st


def test_load_resamples_and_mixes(tmp_path):
    x = tone(300, 48000, 0.25, channels=2)
    sf.write(tmp_path / "a.wav", x.T, 48000, subtype="FLOAT")
    y = audio.load(tmp_path / "a.wav", 44100, 1)
    assert y.shape == (1, round(x.shape[1] * 44100 / 48000))
    assert abs(peak_freq(y[0], 44100) - 300) < 5


def test_write_atomic_no_overwrite(tmp_path):
    x = tone(440, 8000, 0.1, channels=2)
    p = audio.write(tmp_path / "o.wav", x, 8000)
    info = sf.info(p)
    assert (info.samplerate, info.channels, info.subtype) == (8000, 2, "FLOAT")
    np.testing.assert_array_equal(sf.read(p, dtype="float32")[0].T, x)
    with pytest.raises(UnravelError, match="o.wav: already exists"):
        audio.write(tmp_path / "o.wav", x * 0, 8000)
    np.testing.assert_array_equal(sf.read(p, dtype="float32")[0].T, x)
    audio.write(tmp_path / "o.wav", x * 0, 8000, force=True)
    assert np.all(sf.read(p)[0] == 0)
    assert sorted(os.listdir(tmp_path)) == ["o.wav"]
    assert oct(os.stat(p).st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def test_atomic_write_failure_leaves_nothing(tmp_path):
    def boom(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise RuntimeError("writer failed")
    # any failure of the writer (torch's raise RuntimeError) is one error line (issue 15)
    with pytest.raises(UnravelError, match=r"x.bin: cannot write \(writer failed\)"):
        safewrite.write_file(tmp_path / "x.bin", boom)
    assert os.listdir(tmp_path) == []

    def interrupted(tmp):
        Path(tmp).write_bytes(b"half")
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        safewrite.write_file(tmp_path / "x.bin", interrupted)
    assert os.listdir(tmp_path) == []


def test_unwritable_output(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UnravelError, match="cannot create output folder"):
        audio.write(tmp_path / "file" / "sub" / "o.wav", np.zeros((1, 10)), 8000)
    with pytest.raises(UnravelError, match="not a folder"):
        safewrite.check_writable_dir(tmp_path / "file")


def test_bad_files(tmp_path):
    with pytest.raises(UnravelError, match="missing.wav: no such file"):
        audio.read(tmp_path / "missing.wav")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk" * 3)
    with pytest.raises(UnravelError, match="bad.wav: not a readable audio file") as e:
        audio.read(bad)
    assert "\n" not in str(e.value)
    txt = tmp_path / "notes.flac"
    txt.write_text("hello")
    with pytest.raises(UnravelError, match="notes.flac: not a readable audio file"):
        audio.read(txt)


def write_aac(path, x, sr):
    """Encode (channels, n) float32 audio to AAC with PyAV (.m4a: MP4 container, .aac: ADTS)."""
    import av
    layout = "stereo" if x.shape[0] == 2 else "mono"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=sr, layout=layout)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x), format="fltp", layout=layout)
        frame.rate = sr
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)


@pytest.mark.parametrize("ext", [".m4a", ".aac"])
def test_read_aac_with_pyav(tmp_path, ext, monkeypatch):
    pytest.importorskip("av")  # the dev extra installs it
    sr = 44100
    t = np.arange(sr) / sr
    x = np.stack([0.4 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 440 * t)]).astype(np.float32)
    path = tmp_path / f"tone{ext}"
    write_aac(path, x, sr)
    with pytest.raises(sf.LibsndfileError):
        sf.read(path)                                   # libsndfile cannot read it
    y, rate = audio.read(path)
    assert rate == sr and y.dtype == np.float32 and y.shape[0] == 2
    assert sr <= y.shape[1] <= sr + 4096                # plus the encoder's priming frames
    rms = np.sqrt(np.mean(y[:, 4096:40000] ** 2, axis=1))
    np.testing.assert_allclose(rms, [0.4 / np.sqrt(2), 0.2 / np.sqrt(2)], rtol=0.1)
    # without PyAV the error names the extra to install
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(UnravelError, match=f"tone{ext}: libsndfile cannot read {ext} files; "
                                           "install the optional extra for it: pip install 'unravel\\[av\\]'"):
        audio.read(path)


def find_audio(inputs: list) -> list[Path]:
    """The files audio.scan_audio finds (without their output names)."""
    return [p for p, _ in audio.scan_audio(inputs)]


def test_find_audio(tmp_path):
    for name in ["b.wav", "a.flac", "c.txt", "d.MP3"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    extra = tmp_path / "sub" / "z.ogg"
    extra.write_bytes(b"")
    found = find_audio([tmp_path, extra])
    assert [p.name for p in found] == ["a.flac", "b.wav", "d.MP3", "z.ogg"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UnravelError, match="empty: folder has no audio files"):
        find_audio([empty])
    with pytest.raises(UnravelError, match="nope: no such file or folder"):
        find_audio([tmp_path / "nope"])


def test_free_name(tmp_path):
    assert audio.free_name(tmp_path, "g", [".npy", ".json"]) == "g-001"
    (tmp_path / "g-001.json").write_text("{}")
    assert audio.free_name(tmp_path, "g", [".npy", ".json"]) == "g-002"


@pytest.mark.parametrize("subtype", ["FLOAT", "DOUBLE"])
def test_float_wav_same_bytes(tmp_path, subtype):
    """Float wavs carry no time stamp: the same samples give the same file, read back exactly."""
    x = (np.random.default_rng(0).normal(size=(8, 300)) * 2).astype(np.float32)
    a = audio.write(tmp_path / "a.wav", x, 21, subtype=subtype)
    import time
    time.sleep(1.1)
    b = audio.write(tmp_path / "b.wav", x, 21, subtype=subtype)
    assert a.read_bytes() == b.read_bytes()
    info = sf.info(a)
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (21, 8, 300, subtype)
    np.testing.assert_array_equal(sf.read(a, dtype="float32")[0].T, x)
