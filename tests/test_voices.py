"""unravel.voices without Pd: the objects' runners of one model in a group, their blocks run
in rounds as the group's model thread runs them (`Group.round`, the runners that came), each
giving bit for bit what a private runner gives (VoiceFir: batch-exact arithmetic), also when
only some of them come to a round, when one joins late, and when one is bent (it leaves, its
state going on)."""

from __future__ import annotations

import numpy as np
import pytest

from toymodels import make_voice_model, make_state_leak_model
from unravel import bridge

B = 256


def _session(path) -> bridge.Session:
    return bridge.Session(str(path))


def _runner(s: bridge.Session, poly: bool) -> bridge.Runner:
    return s.prepare("forward", B, 64, 0, 0, False, poly)[0]


def _step(pairs, xs) -> None:
    """One block: the grouped runners in one round (those that left play alone), the private
    ones one by one."""
    for (g, p), x in zip(pairs, xs):
        g.inbuf[:] = x
        p.inbuf[:] = x
    grouped = [g for g, _ in pairs if g.voice is not None]
    if grouped:
        for g, res in zip(grouped, grouped[0].voice.group.round(grouped)):
            if res:
                g.process()
    for g, p in pairs:
        if g not in grouped:
            g.process()
        p.process()


@pytest.fixture(scope="module")
def voice_model(tmp_path_factory):
    return make_voice_model(tmp_path_factory.mktemp("voices") / "vfir.ts")


def test_group_plays_what_private_runners_play(voice_model):
    rng = np.random.default_rng(0)
    sessions = [(_session(voice_model), _session(voice_model)) for _ in range(4)]
    runners = [(_runner(g, True), _runner(p, False)) for g, p in sessions]
    group = runners[0][0].voice.group
    assert all(g.voice.group is group for g, _ in runners)
    blocks = lambda k: [(0.3 * rng.standard_normal(B)).astype(np.float32) for _ in range(k)]
    for _ in range(3):
        _step(runners[:3], blocks(3))                  # the fourth joins later
    for pick in ([0, 1, 2, 3], [1, 3], [3], [0, 2], [0, 1, 2, 3]):   # rounds of some of them
        _step([runners[i] for i in pick], blocks(len(pick)))
        assert [int(runners[i][0].voices[1]) for i in pick] == [len(pick)] * len(pick)  # one call
        for g, p in runners:
            np.testing.assert_array_equal(g.outbuf, p.outbuf)
    assert [int(g.voices[0]) for g, _ in runners] == [4] * 4
    assert group.rounds >= 8
    # bending one: it leaves (its state back into its model) and plays bent; the others stay
    for s in sessions[1]:
        s.msg_bend(["fir.weight", "spread", 0.5])
    for _ in range(3):
        _step(runners, blocks(4))
        for g, p in runners:
            np.testing.assert_array_equal(g.outbuf, p.outbuf)
    assert [int(g.voices[0]) for g, _ in runners] == [3, 0, 3, 3]
    assert runners[1][0].voice is None
    # a freed runner leaves too
    del runners[0], sessions[0]
    import gc
    gc.collect()
    assert len(group.members) == 2


def test_a_model_with_other_state_plays_alone(tmp_path):
    s = _session(make_state_leak_model(tmp_path / "counter.ts", "counter"))
    r, _, _, _, _, notes = s.prepare("forward", B, 64, 0, 0, False, True)
    assert r.voice is None
    assert any("not per voice" in n for n in notes), notes
