"""unravel.bridge without Pd: option parsing for jobs, the runner on C-like buffers, replies."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
import torch

from unravel import bridge, jobs
from unravel.errors import UnravelError
from unravel.model import load_model


def test_job_options_like_the_cli():
    o, _ = jobs.parse("generate", ["input", "a.npy", "--input", "b", "iqr", 1.0,
                                   "output", "/abs", "seed", 3.0, "bpm", 120.5], "/patch")
    assert o.inputs == [pathlib.Path("/patch/a.npy"), pathlib.Path("/patch/b")]
    assert o.output == pathlib.Path("/abs")
    assert o.iqr is True and o.seed == 3 and o.bpm == 120.5
    for bad, msg in [(["nope", 1.0], "unknown option 'nope'"), (["seed"], "needs a value"),
                     (["seed", 1.5], "integer"), (["seed", "x"], "integer"), ([3.0, 1.0], "option name"),
                     (["bpm", "fast"], "number"), (["seed", -1.0], "between 0 and"),
                     (["points", 4.0, "bpm", 120.0], "not both"), (["pattern", "nope"], "one of")]:
        with pytest.raises(UnravelError, match=msg):
            jobs.parse("generate", bad, "/patch")


def test_runner_writes_the_models_output_into_the_c_buffers(test_model_path):
    s = bridge.Session(str(test_model_path))
    assert s.params("encode")[:4] == [1, 1, 8, 2048]
    inbuf = bytearray(4 * 4096)
    outbuf = bytearray(4 * 8 * 2)
    r = s.runner("encode", memoryview(inbuf), 1, 4096, memoryview(outbuf), 8, 2)
    x = np.frombuffer(inbuf, np.float32)
    x[:] = np.random.default_rng(0).standard_normal(4096).astype(np.float32)
    r.process()
    ref = load_model(test_model_path).run("encode", torch.from_numpy(x.copy())[None, None])[0].numpy()
    np.testing.assert_array_equal(np.frombuffer(outbuf, np.float32).reshape(8, 2), ref)


def test_messages_reply_lists(test_model_path):
    s = bridge.Session(str(test_model_path))
    assert s.message("get", ["temperature"]) == [["attribute", "temperature", 1.0]]
    (sel, w), = s.message("get_weights", [s.bender.layers()[1]])
    assert sel == "layer" and w.dtype == np.float32
    with pytest.raises(UnravelError, match="unknown message"):
        s.message("nonsense", [])
    status = dict((r[0], r[1:]) for r in s.message("status", ["forward", 1, 4096, 4096, "sync", 0]))
    assert status["dim"] == [1, 1] and status["methods"] == ["forward", "encode", "decode"]
