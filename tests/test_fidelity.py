"""What a user of the original UnRAVEl and RAVE-Latent-Diffusion gets the same (issue 27):
each file of a folder encodes as if alone with a streaming export (encode, --jobs, prepare,
Pd's encode job)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from pdrun import BUILD, jobs_patch, run_pd
from toymodels import make_test_model
from unravel import pipeline
from unravel.diffusion.prepare import prepare_files
from unravel.model import Model, load_model
from unravel.operations import PREPARE


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
