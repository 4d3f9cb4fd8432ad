"""The C ring buffer, model thread (t_engine), job thread and voices (t_voices) of native/
through cffi, without Pd.

The model call is a C function here (a gain with an optional delay), so the tests check the
threading and buffering code alone: sync mode equals the input delayed by one buffer, live
mode never blocks and counts underruns, latent inputs are read once per frame and latent
outputs are held, jobs come back in order, a group's round waits for its regular members
only and never longer than its deadline."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

cffi = pytest.importorskip("cffi")

NATIVE = pathlib.Path(__file__).resolve().parents[1] / "native"

CDEF = """
typedef struct { float *data; int nchans; uint64_t size; uint64_t mask; } t_ringbuf;
int ringbuf_init(t_ringbuf *r, int nchans, uint64_t size);
void ringbuf_free(t_ringbuf *r);
void ringbuf_write(t_ringbuf *r, int chan, uint64_t pos, const float *src, int n);
void ringbuf_read(const t_ringbuf *r, int chan, uint64_t pos, float *dst, int n);

typedef struct engine t_engine;
t_engine *test_engine_new(void);
void test_engine_free(t_engine *e);
int test_engine_setup(t_engine *e, int in_chans, int in_ratio, int out_chans, int out_ratio,
    int bufsize, int sync, int inline_mode, float gain, int sleep_us);
void engine_perform(t_engine *e, float **ins, int nins, float **outs, int nouts, int n);
unsigned engine_underruns(t_engine *e);
unsigned engine_processed(t_engine *e);
int test_engine_latency(t_engine *e);
long test_engine_ringframes(t_engine *e, int out);

typedef struct jobq t_jobq;
t_jobq *test_jobq_new(void);
int test_jobq_push(t_jobq *q, int value);
int test_jobq_pop(t_jobq *q);
int jobq_pending(t_jobq *q);
int jobq_stop(t_jobq *q, double timeout);
void jobq_free(t_jobq *q);
int worker_stop_all(double timeout);

typedef struct voices t_voices;
typedef struct voice t_voice;
t_voices *test_voices_new(double deadline, int result);
t_voice *test_voice_new(t_voices *g, int id);
int voices_run(t_voice *v);
void voices_leave(t_voice *v);
int voices_count(t_voices *g);
void voices_free(t_voices *g);
int test_nrounds(void);
int test_round(int k, int i);
"""

SOURCE = r"""
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "worker.h"

typedef struct { float gain; int sleep_us; int fin, fout, inch, outch; float *cin, *cout; } t_gain;

/* out = gain * (the first value of the input frame, copied to every output channel) */
static int gain_fn(void *ctx, const float *in, float *out)
{
    t_gain *g = (t_gain *)ctx;
    int c, i;
    if (g->sleep_us)
        usleep(g->sleep_us);
    for (c = 0; c < g->outch; c++)
        for (i = 0; i < g->fout; i++)
            out[c * g->fout + i] = g->gain * in[(c % g->inch) * g->fin + (i * g->fin) / g->fout];
    return 0;
}

static t_gain gains[16];
static int ngains;

t_engine *test_engine_new(void)
{
    t_engine *e = (t_engine *)calloc(1, sizeof(t_engine));
    if (engine_init(e) != 0) { free(e); return 0; }
    return e;
}

void test_engine_free(t_engine *e) { engine_free(e); free(e); }

int test_engine_setup(t_engine *e, int in_chans, int in_ratio, int out_chans, int out_ratio,
    int bufsize, int sync, int inline_mode, float gain, int sleep_us)
{
    t_gain *g = &gains[ngains++ % 16];
    int rc;
    g->gain = gain; g->sleep_us = sleep_us;
    g->fin = bufsize / in_ratio; g->fout = bufsize / out_ratio;
    g->inch = in_chans; g->outch = out_chans;
    engine_lock(e);
    rc = engine_configure(e, in_chans, in_ratio, out_chans, out_ratio, bufsize);
    engine_setmode(e, sync, inline_mode);
    free(g->cin); free(g->cout);        /* the model call's own buffers */
    g->cin = (float *)calloc((size_t)in_chans * g->fin, sizeof(float));
    g->cout = (float *)calloc((size_t)out_chans * g->fout, sizeof(float));
    engine_setfn(e, gain_fn, g, g->cin, g->cout);
    engine_unlock(e);
    return rc;
}

int test_engine_latency(t_engine *e) { return e->latency; }
long test_engine_ringframes(t_engine *e, int out) { return (long)(out ? e->out.size : e->in.size); }

static void job_fn(void *data) { int *v = (int *)data; *v = *v * 10; }
static void job_free(void *data) { free(data); }

t_jobq *test_jobq_new(void) { return jobq_new(job_fn, job_free); }
int test_jobq_push(t_jobq *q, int value)
{
    int *v = (int *)malloc(sizeof(int));
    *v = value;
    return jobq_push(q, v);
}
int test_jobq_pop(t_jobq *q)
{
    int *v = (int *)jobq_pop_done(q), r;
    if (!v) return -1;
    r = *v; free(v); return r;
}

/* a group's rounds as they ran: the members' ids, -1 after the last */
static int rounds[64][VOICES_MAX + 1], nrounds, round_result;

static void voices_fn(void *ctx, t_voice **batch, int n)
{
    int i, *r = rounds[__atomic_load_n(&nrounds, __ATOMIC_ACQUIRE) % 64];
    (void)ctx;
    for (i = 0; i < n; i++)
    {
        r[i] = (int)(intptr_t)batch[i]->owner;
        batch[i]->result = round_result;
    }
    r[n] = -1;
    __atomic_add_fetch(&nrounds, 1, __ATOMIC_ACQ_REL);
}

t_voices *test_voices_new(double deadline, int result)
{
    nrounds = 0;
    round_result = result;
    return voices_new(voices_fn, 0, deadline);
}

t_voice *test_voice_new(t_voices *g, int id)
{
    t_voice *v = (t_voice *)calloc(1, sizeof(t_voice));
    if (voices_join(g, v, (void *)(intptr_t)id) != 0) { free(v); return 0; }
    return v;
}

int test_nrounds(void) { return __atomic_load_n(&nrounds, __ATOMIC_ACQUIRE); }
int test_round(int k, int i) { return rounds[k % 64][i]; }
"""


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    d = tmp_path_factory.mktemp("cffi")
    ffi = cffi.FFI()
    ffi.cdef(CDEF)
    ffi.set_source("_unravel_worker_test", SOURCE,
                   sources=[str(NATIVE / "ringbuf.c"), str(NATIVE / "worker.c")],
                   include_dirs=[str(NATIVE)], extra_compile_args=["-std=gnu99", "-O1"],
                   libraries=["pthread"])
    so = ffi.compile(tmpdir=str(d), verbose=False)
    import importlib.util
    spec = importlib.util.spec_from_file_location("_unravel_worker_test", so)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.ffi, mod.lib


def test_ring_wraps(lib):
    ffi, L = lib
    r = ffi.new("t_ringbuf *")
    assert L.ringbuf_init(r, 2, 100) == 0
    assert r.size == 128
    data = np.arange(300, dtype=np.float32)
    for pos in range(0, 300, 50):   # write past the end several times
        L.ringbuf_write(r, 1, pos, ffi.cast("float *", ffi.from_buffer(data[pos:pos + 50])), 50)
    out = np.zeros(100, np.float32)
    L.ringbuf_read(r, 1, 200, ffi.cast("float *", ffi.from_buffer(out)), 100)
    assert np.array_equal(out, data[200:300])
    L.ringbuf_read(r, 0, 200, ffi.cast("float *", ffi.from_buffer(out)), 100)
    assert not out.any()
    L.ringbuf_free(r)


def _run(lib, e, x: np.ndarray, n: int, out_chans: int) -> np.ndarray:
    """Feed x (chans, frames) through engine_perform in vectors of n, return the outputs."""
    ffi, L = lib
    chans, frames = x.shape
    y = np.zeros((out_chans, frames), np.float32)
    ins = ffi.new("float *[]", max(chans, 1))
    outs = ffi.new("float *[]", out_chans)
    for t in range(0, frames, n):
        xs = [np.ascontiguousarray(x[c, t:t + n]) for c in range(chans)]
        ys = [np.zeros(n, np.float32) for _ in range(out_chans)]
        for c in range(chans):
            ins[c] = ffi.cast("float *", ffi.from_buffer(xs[c]))
        for c in range(out_chans):
            outs[c] = ffi.cast("float *", ffi.from_buffer(ys[c]))
        L.engine_perform(e, ins, chans, outs, out_chans, n)
        for c in range(out_chans):
            y[c, t:t + n] = ys[c]
    return y


@pytest.mark.parametrize("bufsize,n", [(256, 64), (64, 64), (16, 64), (1024, 128)])
def test_sync_is_input_delayed_by_one_buffer(lib, bufsize, n):
    ffi, L = lib
    e = L.test_engine_new()
    assert L.test_engine_setup(e, 1, 1, 1, 1, bufsize, 1, 0, 0.5, 0) == 0
    assert L.test_engine_latency(e) == bufsize
    x = np.random.default_rng(1).standard_normal((1, 40 * max(bufsize, n))).astype(np.float32)
    y = _run(lib, e, x, n, 1)
    assert np.array_equal(y[0, bufsize:], 0.5 * x[0, :-bufsize])
    assert not y[0, :bufsize].any()
    assert L.engine_underruns(e) == 0
    L.test_engine_free(e)


def test_inline_equals_sync(lib):
    ffi, L = lib
    x = np.random.default_rng(2).standard_normal((2, 8192)).astype(np.float32)
    ys = []
    for inline in (0, 1):
        e = L.test_engine_new()
        L.test_engine_setup(e, 2, 1, 2, 1, 512, 1, inline, 2.0, 0)
        ys.append(_run(lib, e, x, 64, 2))
        L.test_engine_free(e)
    assert np.array_equal(ys[0], ys[1])
    assert np.array_equal(ys[0][1, 512:], 2.0 * x[1, :-512])


def test_latent_in_once_per_frame_and_held_out(lib):
    ffi, L = lib
    ratio, B = 256, 1024
    # encode-like: 1 audio channel -> 3 latent channels held for `ratio` samples
    e = L.test_engine_new()
    L.test_engine_setup(e, 1, 1, 3, ratio, B, 1, 0, 1.0, 0)
    x = np.arange(8 * B, dtype=np.float32)[None]
    y = _run(lib, e, x, 64, 3)
    # output frame i of a block = input sample i*B/(B/ratio)... our gain_fn takes the input
    # at the start of each output frame; the held value spans `ratio` samples
    held = y[:, B:].reshape(3, -1, ratio)
    assert (held == held[:, :, :1]).all()
    assert np.array_equal(held[0, :, 0], x[0, :-B:ratio])
    L.test_engine_free(e)
    # decode-like: latent inputs read at the last sample of each frame
    e = L.test_engine_new()
    L.test_engine_setup(e, 2, ratio, 1, 1, B, 1, 0, 1.0, 0)
    z = np.stack([np.arange(8 * B, dtype=np.float32), -np.arange(8 * B, dtype=np.float32)])
    y = _run(lib, e, z, 64, 1)
    frames = y[0, B:].reshape(-1, ratio)
    assert np.array_equal(frames[:, 0], z[0, ratio - 1:-B:ratio])
    L.test_engine_free(e)


def test_latent_rings_hold_one_value_per_frame(lib):
    """Issue 14: a latent input or output ring keeps one value per latent frame (RAVE's 2048
    audio frames), not every audio frame; vectors that do not divide the ratio still read
    the last sample of each frame and hold each output value for the whole frame."""
    ffi, L = lib
    ratio, B = 2048, 4096
    e = L.test_engine_new()
    L.test_engine_setup(e, 8, ratio, 1, 1, B, 1, 0, 1.0, 0)     # decode-like
    assert L.test_engine_ringframes(e, 0) <= 32                 # 8 ch x 32 floats, not 8 x 32768
    assert L.test_engine_ringframes(e, 1) >= 4 * B + 16384      # the audio-rate output
    z = np.stack([np.arange(6 * B, dtype=np.float32) * (k + 1) for k in range(8)])
    y = _run(lib, e, z, 48, 1)
    frames = y[0, B:B + 4 * B].reshape(-1, ratio)
    assert np.array_equal(frames[:, 0], z[0, ratio - 1:4 * B:ratio])
    L.test_engine_free(e)
    e = L.test_engine_new()
    L.test_engine_setup(e, 1, 1, 8, ratio, B, 1, 0, 1.0, 0)     # encode-like
    assert L.test_engine_ringframes(e, 1) <= 32
    x = np.arange(6 * B, dtype=np.float32)[None]
    y = _run(lib, e, x, 48, 8)
    held = y[:, B:B + 4 * B].reshape(8, -1, ratio)
    assert (held == held[:, :, :1]).all()
    assert np.array_equal(held[0, :, 0], x[0, :4 * B:ratio])
    L.test_engine_free(e)


def test_live_never_blocks_and_counts_underruns(lib):
    ffi, L = lib
    e = L.test_engine_new()
    # the model takes 20 ms per buffer; we push 40 buffers as fast as we can
    L.test_engine_setup(e, 1, 1, 1, 1, 256, 0, 0, 1.0, 20000)
    assert L.test_engine_latency(e) == 512
    x = np.ones((1, 40 * 256), np.float32)
    import time
    t0 = time.perf_counter()
    y = _run(lib, e, x, 64, 1)
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.4          # 40 buffers x 20 ms would be 0.8 s if we waited
    assert L.engine_underruns(e) > 0
    assert set(np.unique(y)) <= {0.0, 1.0}     # silence or the right samples, never garbage
    L.test_engine_free(e)


def test_jobs_in_order_and_stop(lib):
    ffi, L = lib
    q = L.test_jobq_new()
    for v in range(1, 6):
        assert L.test_jobq_push(q, v) == 0
    import time
    deadline = time.time() + 5
    got = []
    while L.jobq_pending(q) and time.time() < deadline:   # pending counts undelivered items
        v = L.test_jobq_pop(q)
        if v >= 0:
            got.append(v)
        time.sleep(0.001)
    assert got == [10, 20, 30, 40, 50]
    assert L.test_jobq_pop(q) == -1 and L.jobq_pending(q) == 0
    assert L.jobq_stop(q, 1.0) == 0
    assert L.test_jobq_push(q, 7) != 0      # stopped: refuses
    L.jobq_free(q)
    e = L.test_engine_new()
    L.test_engine_setup(e, 1, 1, 1, 1, 64, 1, 0, 1.0, 0)
    assert L.worker_stop_all(1.0) == 0      # what the atexit handler does
    L.test_engine_free(e)                   # and freeing after that is still fine


def _voices_round(L, members, ids) -> tuple[list[int], float]:
    """The blocks of `ids` handed over at once from their own threads (as model threads do):
    what each voices_run returned, and the seconds until the last returned."""
    import threading
    import time
    got = {}
    def run(i):
        got[i] = L.voices_run(members[i])
    threads = [threading.Thread(target=run, args=(i,)) for i in ids]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [got[i] for i in ids], time.monotonic() - t0


def _rounds(L) -> list[list[int]]:
    out = []
    for k in range(L.test_nrounds()):
        r, i = [], 0
        while L.test_round(k, i) >= 0:
            r.append(L.test_round(k, i))
            i += 1
        out.append(sorted(r))
    return out


def test_voices_round_waits_for_regular_members_only(lib):
    ffi, L = lib
    g = L.test_voices_new(2.0, 0)               # a deadline no round here should reach
    members = [L.test_voice_new(g, i) for i in range(4)]
    assert L.voices_count(g) == 4
    res, t = _voices_round(L, members, [0, 1, 2, 3])
    assert res == [0] * 4 and _rounds(L) == [[0, 1, 2, 3]] and t < 1.5
    # member 3 misses a round: the round waits for it until the deadline, then runs without it
    res, t = _voices_round(L, members, [0, 1, 2])
    assert res == [0] * 3 and _rounds(L)[-1] == [0, 1, 2] and t >= 2.0
    # from then on it is not waited for: the next round runs as soon as the others are in
    res, t = _voices_round(L, members, [0, 1, 2])
    assert _rounds(L)[-1] == [0, 1, 2] and t < 1.5
    # its block comes again, alone (a round of its own, after the deadline): from then on it
    # is waited for again, and the next round has all four
    res, t = _voices_round(L, members, [3])
    assert res == [0] and _rounds(L)[-1] == [3]
    for _ in range(3):
        res, t = _voices_round(L, members, [0, 1, 2, 3])
        assert _rounds(L)[-1] == [0, 1, 2, 3] and t < 1.5
    # a member that stops coming (an object disabled) with one other left: one round waits
    # for it, then none
    g2 = L.test_voices_new(2.0, 0)
    pair = [L.test_voice_new(g2, i) for i in (10, 11)]
    _voices_round(L, pair, [0, 1])
    res, t = _voices_round(L, pair, [0])
    assert res == [0] and t >= 2.0
    res, t = _voices_round(L, pair, [0])
    assert res == [0] and t < 1.5
    for v in pair:
        L.voices_leave(v)
    L.voices_free(g2)
    # one leaves: the others' rounds no longer wait for it
    L.voices_leave(members[1])
    assert L.voices_count(g) == 3 and L.voices_run(members[1]) == 1   # in no group: alone
    res, t = _voices_round(L, members, [0, 2, 3])
    assert _rounds(L)[-1] == [0, 2, 3] and t < 1.5
    for i in (0, 2, 3):
        L.voices_leave(members[i])
    L.voices_free(g)


def test_voices_result_and_stop(lib):
    ffi, L = lib
    g = L.test_voices_new(0.05, 1)              # every member told to play alone
    members = [L.test_voice_new(g, i) for i in range(2)]
    res, _ = _voices_round(L, members, [0, 1])
    assert res == [1, 1]
    assert L.worker_stop_all(1.0) == 0          # stops the group's thread too
    assert L.voices_run(members[0]) == -1       # a stopped group runs nothing
    for v in members:
        L.voices_leave(v)
    L.voices_free(g)
