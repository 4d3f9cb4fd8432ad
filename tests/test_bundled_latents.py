"""The bundled latent wavs (pd/examples/loop.latent.wav, loop4.latent.wav) are what the bundled
models make of the bundled loop today: a fresh encode equals them, so they are never stale
(regenerate: unravel encode -m default[4] --latent-wav pd/examples/loop.wav)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from pdrun import ROOT
from unravel import pipeline
from unravel.model import load_model

EXAMPLES = ROOT / "pd" / "examples"


@pytest.mark.parametrize("model,bundled", [("default", "loop.latent.wav"), ("default4", "loop4.latent.wav")])
def test_bundled_latents_equal_a_fresh_encode(tmp_path, model, bundled):
    pipeline.encode_files(load_model(model), [EXAMPLES / "loop.wav"], tmp_path, latent_wav=True,
                          progress=False)
    fresh, sr = sf.read(tmp_path / "loop.latent.wav", dtype="float64")
    old, sr_old = sf.read(EXAMPLES / bundled, dtype="float64")
    assert sr == sr_old and fresh.shape == old.shape
    np.testing.assert_allclose(old, fresh, rtol=0, atol=1e-4)
