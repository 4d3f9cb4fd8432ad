"""unravel.generator.Stream: the frames of generate / generate_files, pulled in any pieces."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from unravel.operations import GENERATE
from unravel import generator, stats
from unravel.errors import UnravelError

PATTERNS = ["fibo", "orale", "blender", "swapper", "default"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Two latent files of 4 dims with different scales."""
    d = tmp_path_factory.mktemp("lat")
    rng = np.random.default_rng(1)
    scale = np.array([1.0, 2.0, 0.5, 3.0])[:, None]
    np.save(d / "a.npy", (rng.normal(size=(4, 90)) * scale)[None].astype(np.float32))
    np.save(d / "b.npy", rng.normal(size=(1, 4, 40)).astype(np.float32))
    return [d / "a.npy", d / "b.npy"]


def pieces(stream: generator.Stream, total: int, seed: int) -> np.ndarray:
    """`total` frames pulled from `stream` in uneven pieces (some empty), joined."""
    rng = np.random.default_rng(seed)
    got, left = [], total
    while left:
        n = min(left, int(rng.integers(0, 12)))
        z = stream.frames(n)
        assert z.shape == (stream.dims, n) and z.dtype == np.float32
        got.append(z)
        left -= n
    return np.concatenate(got, axis=1)


@pytest.mark.parametrize("pattern,dist", [(p, d) for p in PATTERNS for d in ("normal", "correlation")])
def test_frames_in_pieces_are_the_files_of_generate_files(tmp_path, inputs, pattern, dist):
    kw = dict(pattern=pattern, dist=dist, iqr=dist == "normal", points=4, loops=2, seed=7)
    made = generator.generate_files(GENERATE.settings(inputs=inputs, output=tmp_path, files=3, **kw))
    files = [np.load(p)[0] for p in made]
    s = stats.read(inputs).stats
    # one file's worth in pieces is the whole file, as generate makes it from the same latents
    z = np.concatenate([np.load(p)[0] for p in inputs], axis=1)
    one = pieces(generator.Stream(s, **kw), files[0].shape[1], seed=1)
    assert one.tobytes() == files[0].tobytes() == generator.generate(z, **kw).tobytes()
    # the stream goes on across file ends exactly as --files 3 writes file after file
    stream = generator.Stream(s, **kw)
    assert stream.file_frames == files[0].shape[1]
    assert pieces(stream, 3 * stream.file_frames, seed=2).tobytes() == np.concatenate(files, axis=1).tobytes()
    assert stream.files == 3


def test_file_hands_out_the_rest_of_the_current_file(inputs, tmp_path):
    kw = dict(pattern="orale", dist="uniform", points=3, loops=1, seed=4)
    made = generator.generate_files(GENERATE.settings(inputs=inputs, output=tmp_path, files=3, **kw))
    files = [np.load(p)[0] for p in made]
    stream = generator.Stream(stats.read(inputs).stats, **kw)
    head = stream.frames(5)
    assert np.array_equal(np.concatenate([head, stream.file()], axis=1), files[0])
    assert np.array_equal(stream.file(), files[1])        # then the next whole file
    assert np.array_equal(next(iter(stream)), files[2])   # iterating yields files
    # skip: --skip I --files 1 is file I of the stream
    [again] = generator.generate_files(GENERATE.settings(inputs=inputs, output=tmp_path / "skip", files=1, skip=2, **kw))
    assert np.load(again).tobytes() == np.load(made[2]).tobytes()
    # as many files as asked for, each its own array
    stream = generator.Stream(stats.read(inputs).stats, **kw)
    assert all(np.array_equal(a, b) for a, b in zip(itertools.islice(stream, 3), files, strict=True))


def test_stream_errors(inputs):
    s = stats.read(inputs).stats
    stream = generator.Stream(s, points=3)
    assert stream.frames(0).shape == (4, 0) and stream.files == 0
    with pytest.raises(UnravelError, match="frames must be >= 0"):
        stream.frames(-1)
    with pytest.raises(UnravelError, match="unknown pattern"):
        generator.Stream(s, pattern="zigzag")
    with pytest.raises(UnravelError, match="seed must be >= 0"):
        generator.Stream(s, seed=-1)
