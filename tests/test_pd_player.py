"""[chns0n]'s array sets (issue 21, part 2) in real `pd` processes: `arrays <name>` plays the
arrays <name>-0 .. <name>-(D-1), one frame per 2048 samples; a new set, or the playing set
rewritten, is heard from the next loop boundary on, sample-exact; `now` switches at once;
`loop <frames>` sets the loop length; `loop <n>` comes out at each boundary.

Each test records the player's D channels (float32 wav) and the logical time of each message
from its right outlet, and compares them with `expected`, a frame-by-frame model of the
player. The schedule's times are in samples from Render and multiples of 64 (one block), so
an event lands at that exact sample of the recording; none falls on a frame tick (a multiple
of 2048)."""

from __future__ import annotations

import copy
import pathlib

import numpy as np
import pytest
import soundfile as sf

from pdrun import BUILD, Patch, run_pd

pytestmark = pytest.mark.skipif(not (BUILD / "unravel~.pd_linux").exists(),
                                reason="the external is not built (make setup)")

RATIO, BLOCK, D = 2048, 64, 4


def bpm(frames: int, beats: int = 0, sr: int = 44100) -> float:
    """The player's BPM of a loop of `frames`: `beats` in it (0: about 2 a second, the
    nearest whole number; issue 25)."""
    seconds = frames * RATIO / sr
    return 60 * (beats or max(1, int(2 * seconds + 0.5))) / seconds


def _set(base: int, frames: int) -> list[list[float]]:
    """D arrays of `frames` values, base + 10 k + i: every channel and frame its own value."""
    return [[float(base + 10 * k + i) for i in range(frames)] for k in range(D)]


SETS = {"A": _set(100, 4), "B": _set(200, 3)}


def expected(sets: dict, events: list[tuple[int, tuple]], samples: int,
             first: str = "A") -> tuple[np.ndarray, list[tuple[int, int]]]:
    """What the player plays for `samples` samples after `arrays <first>` then `render 1`, with
    `events` ((sample, action)) on the way, and its `loop <n>` messages as (sample, n).
    Actions: ('arrays', name), ('now',), ('loop', frames), ('write', name, k, values)
    (array k of a set rewritten), ('open', frames) (a file of those D x frames values), ('drop',
    name) (the set's arrays deleted)."""
    sets = copy.deepcopy(sets)
    state = {"tables": None, "len": 0, "follow": None, "loop": 0}

    def take(name: str) -> None:
        if name not in sets:                 # gone: keep what plays, stop reading it
            state["follow"] = None
            return
        state["tables"] = copy.deepcopy(sets[name])
        state["len"] = state["loop"] or len(sets[name][0])

    take(first)                              # not rendering yet: at once
    state["follow"], amode = first, True
    out = np.zeros((samples, D), np.float32)
    messages, cnt, count, cur = [], 0, 0, 0
    pending = sorted(events, key=lambda e: e[0])
    for b in range(samples // BLOCK):
        t = b * BLOCK
        while pending and pending[0][0] == t:
            action = pending.pop(0)[1]
            if action[0] == "arrays" and action[1] in sets:
                state["follow"], amode = action[1], True
            elif action[0] == "now" and state["follow"]:
                take(state["follow"])
            elif action[0] == "loop":
                state["loop"] = action[1]
            elif action[0] == "write":
                sets[action[1]][action[2]] = list(action[3])
            elif action[0] == "drop":
                del sets[action[1]]
            elif action[0] == "open":
                state["tables"] = [[float(300 + 10 * k + i) for i in range(action[1])] for k in range(D)]
                state["len"], state["follow"], amode = action[1], None, False
        assert not pending or pending[0][0] > t, pending[0]
        if t % RATIO == 0:                   # a frame tick
            cur = cnt % state["len"]
            if cur == 0:                     # a loop boundary
                if state["follow"]:
                    take(state["follow"])
                if amode:
                    messages.append((t, count))
                count += 1
            cnt = (cur + 1) % state["len"]
        out[t:t + BLOCK] = [tab[min(cur, len(tab) - 1)] for tab in state["tables"]]
    return out, messages


def player_patch(folder: pathlib.Path, events: list[tuple[int, str]], samples: int,
                 chains: list[tuple[str, ...]] = (), hidden: dict | None = None) -> pathlib.Path:
    """[ch4ns0n pl] with the sets of SETS ([array define]s) and those of `hidden` (in a
    subpatch [pd sets]), filled, then `arrays A` and `render 1` ~10 ms after load; recorded
    from then for `samples` samples into out.wav. Each event (sample, message box text, e.g.
    '; pl arrays B', or '; in arrays B' into its inlet) is sent that many samples after
    Render; `chains`: more objects, each tuple connected in a chain. The right outlet prints
    'at: <samples since Render>' then 'info: <message>'."""
    p = Patch()
    if hidden:
        p.lines.append("#N canvas 0 50 450 300 sets 0")
        p.lines += [f"#X obj 10 {10 + 30 * i} array define {name}-{k} {len(values)}"
                    for i, (name, k, values) in enumerate(
                        (n, k, v) for n, arrays in hidden.items() for k, v in enumerate(arrays))]
        p.obj("pd sets", "restore")
    lb = p.obj("loadbang")
    pl = p.obj("ch4ns0n pl")
    p.connect(p.obj("r in"), 0, pl, 0)              # '; in <message>': into its inlet
    for name, arrays in SETS.items():
        for k, values in enumerate(arrays):
            p.obj(f"array define {name}-{k} {len(values)}")
    for chain in chains:
        objs = [p.obj(text) for text in chain]
        for a, b in zip(objs, objs[1:]):
            p.connect(a, 0, b, 0)
    for c in range(D):
        p.obj(f"table out{c} {samples}")
    snake = p.obj(f"snake~ out {D}")
    p.connect(pl, 0, snake, 0)
    rec = p.obj("r rec")
    for c in range(D):
        w = p.obj(f"tabwrite~ out{c}")
        p.connect(snake, c, w, 0)
        p.connect(rec, 0, w, 0)
    timer = p.obj("timer 1 samp")
    p.connect(rec, 0, timer, 0)
    tab = p.obj("t a b")
    p.connect(pl, 1, tab, 0)
    p.connect(tab, 1, timer, 1)
    p.connect(timer, 0, p.obj("print at"), 0)
    p.connect(tab, 0, p.obj("print info"), 0)
    start = p.obj("delay 10")
    p.connect(lb, 0, start, 0)
    go = p.obj("t b b")
    p.connect(start, 0, go, 0)
    every = dict(SETS, **(hidden or {}))
    fill = "; ".join(f"{name}-{k} 0 {' '.join(f'{v:g}' for v in values)}"
                     for name, arrays in every.items() for k, values in enumerate(arrays))
    p.connect(go, 1, p.msg(f"; pd dsp 1; {fill}; rec bang; pl arrays A; pl render 1"), 0)
    for at, text in events:
        d = p.obj(f"delay {at} 1 samp")
        p.connect(go, 0, d, 0)
        p.connect(d, 0, p.msg(text), 0)
    end = p.obj(f"delay {samples + BLOCK} 1 samp")
    p.connect(go, 0, end, 0)
    names = " ".join(f"out{c}" for c in range(D))
    p.connect(end, 0, p.msg(f"; pl render 0; wr write -wave -bytes 4 out.wav {names}; pd quit"), 0)
    p.connect(p.obj("r wr"), 0, p.obj("soundfiler"), 0)
    return p.write(folder / "player.pd")


def run_player(folder: pathlib.Path, events, samples: int, batch: bool, **kw):
    """(recording (samples, D), [(sample, message)...] from the right outlet during it, the
    result, out.wav's bytes) of one Pd run of player_patch."""
    folder.mkdir(parents=True, exist_ok=True)
    patch = player_patch(folder, events, samples, **kw)
    res = run_pd(patch, args=["-r", "44100"], batch=batch, timeout=60)
    assert res.returncode == 0, res.lines
    y, _ = sf.read(folder / "out.wav", dtype="float32", always_2d=True)
    at = [int(round(float(v))) for v in res.after("at:")]
    info = res.after("info:")
    assert len(at) == len(info), res.lines
    msgs = [(t, m) for t, m in zip(at, info) if t < samples]      # those in the recording
    return y, msgs, res, (folder / "out.wav").read_bytes()


def changes(y: np.ndarray) -> list[int]:
    """The samples where y changes."""
    return [int(i) + 1 for i in np.nonzero(np.any(y[1:] != y[:-1], axis=1))[0]]


# --------------------------------------------------------------- switching at loop boundaries

LOOP_A, LOOP_B = 4 * RATIO, 3 * RATIO          # A: 4 frames (8192 samples), B: 3 (6144)
# B plays from 16384 (2 loops of A), its loops start at 22528, 28672, 34816
SWITCH = [                                     # (sample, message box, model actions)
    (12352, "; pl arrays B", [("arrays", "B")]),                      # in A's loop 1
    (25600, "; B-0 const 77", [("write", "B", 0, [77.0] * 3)]),       # in B's loop 1
    (25664, "; wb1 260 261 262", [("write", "B", 1, [260.0, 261.0, 262.0])]),  # [array set]
    (30784, "; pl loop 2", [("loop", 2)]),                            # 2 frames from 34816
    (44032, "; pl arrays A; pl now", [("arrays", "A"), ("now",)]),    # 1024 samples in a frame
    (48128, "; pl loop 0", [("loop", 0)]),                            # A's 4 frames from 51200
]
SWITCH_SAMPLES = 32 * RATIO
BOUNDARIES = [0, 8192, 16384, 22528, 28672, 34816, 38912, 43008, 47104, 51200, 59392]


@pytest.fixture(scope="module")
def switch_runs(tmp_path_factory):
    """The SWITCH schedule in real time, then twice under -batch; and the model's answer."""
    events = [(at, text) for at, text, _ in SWITCH]
    runs = {name: run_player(tmp_path_factory.mktemp(name), events, SWITCH_SAMPLES, batch,
                             chains=[("r wb1", "array set B-1")])
            for name, batch in (("live", False), ("batch1", True), ("batch2", True))}
    actions = [(at, a) for at, _, acts in SWITCH for a in acts]
    return runs, expected(SETS, actions, SWITCH_SAMPLES)


RUNS = ["live", "batch1"]


@pytest.mark.parametrize("run", RUNS)
def test_arrays_switch_at_the_next_loop_boundary(switch_runs, run):
    """`arrays B` asked for in A's loop 1 is heard from the boundary after it, a multiple of
    A's loop (4 x 2048 samples) from Render; every sample is the model's: no loop cut, no
    silent block."""
    runs, (want, _) = switch_runs
    y, _, res, _ = runs[run]
    assert res.errors == [], res.lines
    assert LOOP_A < SWITCH[0][0] < 2 * LOOP_A
    assert changes(y[:, :1] >= 200)[0] == 2 * LOOP_A
    assert np.all(y != 0)
    np.testing.assert_array_equal(y, want)


@pytest.mark.parametrize("run", RUNS)
def test_rewriting_the_playing_set_is_heard_at_the_next_boundary(switch_runs, run):
    """B rewritten mid-loop (a message to B-0, [array set B-1]): the old values play to the
    end of that loop, the new ones from the boundary on."""
    runs, _ = switch_runs
    y = runs[run][0]
    asked, boundary = SWITCH[1][0], 28672
    assert boundary - LOOP_B < asked < boundary
    assert changes(y[:, :1] == 77) == [boundary, SWITCH[4][0]]      # until `now` plays A
    assert set(y[asked:boundary, 0]) == {201.0, 202.0}            # frames 1, 2 as they were
    assert y[boundary - 1, 1] == 212 and y[boundary, 1] == 260


@pytest.mark.parametrize("run", RUNS)
def test_loop_messages_at_each_boundary(switch_runs, run):
    """`loop <n>` out of the right outlet at each boundary, at its sample, n from 0 at Render;
    `loop 2` and `loop 0` change the loop length from the next boundary; `now` sends none."""
    runs, (_, want_msgs) = switch_runs
    msgs = runs[run][1]
    assert [t for t, _ in want_msgs] == BOUNDARIES
    assert msgs == [(t, f"loop {n}") for t, n in want_msgs]


def test_now_switches_at_once_keeping_the_position(switch_runs):
    """`arrays A; now` 1024 samples into frame 0 of a 2-frame loop: A's frame 0 from that
    sample, A's frame 1 at the next frame tick."""
    runs, _ = switch_runs
    y = runs["batch1"][0]
    at = SWITCH[4][0]
    assert (y[at - 1, 0], y[at, 0], y[at + 1023, 0], y[at + 1024, 0]) == (77, 100, 100, 101)


def test_batch_runs_are_bit_identical_and_equal_the_live_run(switch_runs):
    runs, _ = switch_runs
    assert runs["batch1"][3] == runs["batch2"][3]
    assert runs["batch1"][1] == runs["batch2"][1]
    np.testing.assert_array_equal(runs["live"][0], runs["batch1"][0])
    assert runs["live"][1] == runs["batch1"][1]


def test_loop_lengths_through_the_inlet(tmp_path):
    """Through the inlet: `loop 1` makes every frame a boundary; `arrays B` with `now` switches
    at once; `loop 0` gives the set's own length (3) back from the next boundary."""
    events = [(BLOCK, "; in loop 1", [("loop", 1)]),
              (12352, "; in arrays B; in now", [("arrays", "B"), ("now",)]),
              (14400, "; in loop 0", [("loop", 0)])]
    samples = 12 * RATIO
    y, msgs, res, _ = run_player(tmp_path, [(a, t) for a, t, _ in events], samples, batch=True)
    assert res.errors == [], res.lines
    want, want_msgs = expected(SETS, [(a, e) for a, _, acts in events for e in acts], samples)
    np.testing.assert_array_equal(y, want)
    assert msgs == [(t, f"loop {n}") for t, n in want_msgs]
    assert [t for t, _ in msgs] == [0, 8192, 10240, 12288, 14336, 16384, 22528]


# --------------------------------------------------------------- files and sets alternate

def test_a_file_and_arrays_alternate(tmp_path):
    """A latent wav opened while A plays plays at once (as before); `arrays A` mid-file-loop
    takes over at the file's loop boundary, `loop <n>` from there (n counts the file's loops
    too); `open` again (an absolute path this time) mid-loop plays the file at once; a file's
    loops send nothing."""
    frames = 5
    loop_f = frames * RATIO
    z = np.array([[300 + 10 * k + i for k in range(D)] for i in range(frames)], np.float64)
    sf.write(tmp_path / "z.latent.wav", z, 21, subtype="DOUBLE")
    events = [(BLOCK, "; pl open z.latent.wav", ("open", frames)),
              (loop_f + 2 * RATIO + BLOCK, "; pl arrays A", ("arrays", "A")),
              (2 * loop_f + LOOP_A + RATIO + 128, f"; pl open {tmp_path}/z.latent.wav",   # absolute
               ("open", frames))]
    samples = 2 * loop_f + LOOP_A + 2 * loop_f
    y, msgs, res, _ = run_player(tmp_path, [(a, t) for a, t, _ in events], samples, batch=True)
    assert res.errors == [], res.lines
    want, want_msgs = expected(SETS, [(a, e) for a, _, e in events], samples)
    np.testing.assert_array_equal(y, want)
    assert changes(y[:, :1] < 300) == [events[0][0], 2 * loop_f, events[2][0]]
    loaded = f"loaded {frames} {bpm(frames):g} {2 * bpm(frames):g}"
    assert msgs == [(0, "loop 0"), (BLOCK, loaded), (2 * loop_f, "loop 2"),
                    (2 * loop_f + LOOP_A, "loop 3"), (events[2][0], loaded)]
    assert [(t, f"loop {n}") for t, n in want_msgs] == [m for m in msgs if m[1] != loaded]


# --------------------------------------------------------------- errors

def test_a_missing_array_is_one_line_and_the_set_plays_on(tmp_path):
    """`arrays C` (2 arrays for a 4-channel player) and `arrays nothing`: one line each naming
    [chns0n] and the missing array; A plays on, its loops counted. A set deleted while it plays
    ([pd sets] cleared): one line at the next boundary, and its last reading plays on."""
    hidden = {"S": _set(400, 4), "C": [[1.0] * 4, [2.0] * 4]}
    events = [(LOOP_A + RATIO + BLOCK, "; pl arrays C"),
              (LOOP_A + 2 * RATIO + BLOCK, "; pl arrays nothing"),
              (2 * LOOP_A + RATIO + BLOCK, "; pl arrays S"),
              (3 * LOOP_A + RATIO + BLOCK, "; pd-sets clear")]
    samples = 5 * LOOP_A
    y, msgs, res, _ = run_player(tmp_path, events, samples, batch=True, hidden=hidden)
    assert [ln for ln in res.lines if "chns0n" in ln] == [
        "chns0n: arrays C: no array C-2 (this player reads 4: C-0 .. C-3)",
        "chns0n: arrays nothing: no array nothing-0 (this player reads 4: nothing-0 .. nothing-3)",
        "chns0n: arrays S: no array S-0 (this player reads 4: S-0 .. S-3)"]
    # and Pd's own line for each ([array size] looking for the array), nothing else
    assert res.errors == ["error: array: couldn't find named array 'C-2'",
                          "error: array: couldn't find named array 'nothing-0'",
                          "error: array: couldn't find named array 'S-0'"]
    want, want_msgs = expected(dict(SETS, S=hidden["S"]),
                               [(events[2][0], ("arrays", "S")), (events[3][0], ("drop", "S"))],
                               samples)
    np.testing.assert_array_equal(y, want)
    assert changes(y[:, :1] >= 400) == [3 * LOOP_A]          # S from its boundary, kept after
    assert msgs == [(t, f"loop {n}") for t, n in want_msgs]
    assert [t for t, _ in msgs] == [0, LOOP_A, 2 * LOOP_A, 3 * LOOP_A, 4 * LOOP_A]


def test_loops_then_open_reports_one_loop(tmp_path):
    """File mode as before the array sets: 'loops 4, open <file>' (as examples/2-composition
    sends it) reports and shows one of the 4 loops: 'loaded 19 <bpm> <double>' for 76 frames."""
    sf.write(tmp_path / "z.latent.wav", np.zeros((76, D)), 21, subtype="FLOAT")
    y, msgs, res, _ = run_player(tmp_path, [(BLOCK, "; in loops 4, open z.latent.wav")], 4 * RATIO,
                                 batch=True)
    assert res.errors == [], res.lines
    assert msgs == [(0, "loop 0"), (BLOCK, f"loaded 19 {bpm(19):g} {2 * bpm(19):g}")]
    assert np.all(y[BLOCK:] == 0) and np.all(y[:BLOCK] > 0)


def test_beats_gives_the_bundled_loops_tempo(tmp_path):
    """Issue 25: the bundled loop (172 frames, 8 s at 180 BPM) shows about 120 BPM by default
    (2 beats a second: 16) and 180 BPM after 'beats 24'; 'beats 0' goes back to the default."""
    wav = BUILD / "examples" / "loop4.latent.wav"     # this player has 4 dims
    events = [(BLOCK, f"; in open {wav}"), (2 * BLOCK, f"; in beats 24, open {wav}"),
              (3 * BLOCK, f"; in beats 0, open {wav}")]
    _, msgs, res, _ = run_player(tmp_path, events, 4 * BLOCK, batch=True)
    assert res.errors == [], res.lines
    shown = [m for _, m in msgs if m.startswith("loaded")]
    assert shown == [f"loaded 172 {b:g} {2 * b:g}" for b in (bpm(172), bpm(172, 24), bpm(172))]
    assert abs(bpm(172, 24) - 180) < 0.3 and abs(bpm(172) - 120) < 0.2
