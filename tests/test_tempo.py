"""unravel.tempo: loop lengths, BPM table, nearest k."""

from __future__ import annotations

import pytest

from unravel import tempo
from unravel.errors import UnravelError


def test_k11_at_44100():
    t = tempo.loop(11, 44100, 2048)
    assert round(t.bpm, 2) == 117.45
    assert round(t.double, 2) == 234.91
    assert t.seconds == pytest.approx(11 * 2048 / 44100)
    assert tempo.frame_rate(44100, 2048) == pytest.approx(21.533, abs=1e-3)


def test_table_values():
    rows = tempo.table(44100, 2048)
    ks = [t.k for t in rows]
    assert ks == list(range(ks[0], ks[-1] + 1))
    for t in rows:
        assert t.bpm == pytest.approx(60 * 44100 / 2048 / t.k)
        assert 40 <= t.bpm <= 240
    assert ks[0] == 6 and ks[-1] == 32   # 215.3 BPM .. 40.4 BPM
    rows48 = tempo.table(48000, 1024, 100, 200)
    assert all(100 <= t.bpm <= 200 for t in rows48)
    assert [t.k for t in rows48] == [k for k in range(1, 100) if 100 <= 60 * 48000 / 1024 / k <= 200]


@pytest.mark.parametrize("bpm", [60.0, 117.0, 120.0, 128.0, 174.0, 90.5])
def test_nearest(bpm):
    t, err = tempo.nearest(bpm, 44100, 2048)
    assert err == pytest.approx(t.bpm - bpm)
    for k in range(1, 200):
        assert abs(tempo.loop(k, 44100, 2048).bpm - bpm) >= abs(err) - 1e-12


def test_nearest_120():
    t, err = tempo.nearest(120, 44100, 2048)
    assert t.k == 11 and err == pytest.approx(-2.546, abs=1e-3)


def test_errors():
    with pytest.raises(UnravelError):
        tempo.nearest(0, 44100, 2048)
    with pytest.raises(UnravelError):
        tempo.loop(0, 44100, 2048)
    with pytest.raises(UnravelError):
        tempo.table(44100, 0)
