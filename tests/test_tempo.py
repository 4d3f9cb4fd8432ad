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


# UnRAVEl's README table at 44.1 kHz / 2048: k, BPM (truncated), double time (even k only)
ORIGINAL_TABLE = [(1, 1291.99, None), (2, 645.99, 1291.98), (3, 430.66, None), (4, 322.99, 645.98),
                  (5, 258.39, None), (6, 215.33, 430.66), (7, 184.57, None), (8, 161.49, 322.98),
                  (9, 143.55, None), (10, 129.19, 258.38), (11, 117.45, None), (12, 107.66, 215.32),
                  (13, 99.38, None), (14, 92.28, 184.56), (15, 86.13, None), (16, 80.74, 161.48),
                  (17, 75.99, None), (18, 71.77, 143.54), (19, 67.99, None), (20, 64.59, 129.18)]


def test_the_originals_table(capsys):
    from unravel import cli
    rows = tempo.original_table(44100, 2048)
    assert [(k, round(b, 2), d if d is None else round(d, 2)) for k, b, d in rows] == ORIGINAL_TABLE
    assert cli.main(["tempo", "--table", "original"]) == 0
    lines = capsys.readouterr().out.splitlines()[2:]
    assert [ln.split() for ln in lines] == [[str(k), f"{b:.2f}", "-" if d is None else f"{d:.2f}"]
                                            for k, b, d in ORIGINAL_TABLE]
    assert cli.main(["tempo", "--table", "original", "--k", "3"]) == 2   # one of them
