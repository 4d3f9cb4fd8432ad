/* worker: see worker.h */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "worker.h"

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#endif

#define LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define INC(p) __atomic_add_fetch((p), 1, __ATOMIC_ACQ_REL)

/* ------------------------- registry for worker_stop_all ------------------------- */

#define MAXREG 4096
static pthread_mutex_t reg_mutex = PTHREAD_MUTEX_INITIALIZER;
static t_engine *reg_engines[MAXREG];
static t_jobq *reg_jobqs[MAXREG];
static t_voices *reg_voices[MAXREG];

static void reg_add(void **table, void *p)
{
    int i;
    pthread_mutex_lock(&reg_mutex);
    for (i = 0; i < MAXREG; i++)
        if (!table[i])
        {
            table[i] = p;
            break;
        }
    pthread_mutex_unlock(&reg_mutex);
}

static void reg_remove(void **table, void *p)
{
    int i;
    pthread_mutex_lock(&reg_mutex);
    for (i = 0; i < MAXREG; i++)
        if (table[i] == p)
            table[i] = 0;
    pthread_mutex_unlock(&reg_mutex);
}

/* ------------------------------------ engine ------------------------------------ */

static void timeout_in(struct timespec *ts, double seconds)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += (time_t)seconds;
    ts->tv_nsec += (long)((seconds - (time_t)seconds) * 1e9);
    if (ts->tv_nsec >= 1000000000L)
    {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Python runs in the floating-point mode plain Python has: Pd flushes denormals to zero in
   its threads (and ours inherit that), which would make numpy and torch code differ from the
   backend's.  fp_enter() clears flush-to-zero/denormals-are-zero and returns the previous
   mode for fp_leave().  The model itself runs with denormals flushed, on both sides alike:
   the backend's Model.run turns flushing on around the model call (issue 14). */
unsigned fp_enter(void)
{
#if defined(__SSE__) || defined(__x86_64__)
    unsigned csr = _mm_getcsr();
    _mm_setcsr(csr & ~0x8040u);
    return csr;
#elif defined(__aarch64__)
    unsigned long fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    __asm__ volatile("msr fpcr, %0" : : "r"(fpcr & ~(1ul << 24)));
    return (unsigned)fpcr;
#else
    return 0;
#endif
}

void fp_leave(unsigned mode)
{
#if defined(__SSE__) || defined(__x86_64__)
    _mm_setcsr(mode);
#elif defined(__aarch64__)
    unsigned long fpcr = mode;
    __asm__ volatile("msr fpcr, %0" : : "r"(fpcr));
#else
    (void)mode;
#endif
}

uint64_t engine_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000 + 1;
}

/* ms since the time in *since (0: none running) */
static uint64_t busy_ms(uint64_t *since)
{
    uint64_t t = LOAD(since);
    return t ? engine_now_ms() - t : 0;
}

/* process every complete block; run_mutex held */
static void engine_work_locked(t_engine *e)
{
    const uint64_t B = (uint64_t)e->bufsize;
    if (!e->ready)
        return;
    while (!LOAD(&e->stop))
    {
        uint64_t t = LOAD(&e->t_pub), k = e->next, start = k * B;
        int c, ok, fin, fout;
        if (start + B > t)
            break;
        /* live mode: skip a block whose output time has already passed */
        if (!e->sync && !e->inline_mode &&
            start + B + (uint64_t)e->latency + (uint64_t)LOAD(&e->last_n) <= t)
        {
            e->next = k + 1;
            STORE(&e->done, k + 1);
            continue;
        }
        fin = e->bufsize / e->in_ratio;
        fout = e->bufsize / e->out_ratio;
        for (c = 0; c < e->in_chans && e->cin; c++)
            ringbuf_read(&e->in, c, start / e->in_ratio, e->cin + (size_t)c * fin, fin);
        /* the audio thread overwrote the block while we copied it (live mode, very late) */
        ok = (LOAD(&e->t_pub) <= start + e->in.size * e->in_ratio);
        if (ok && e->fn)
        {
            unsigned fp = fp_enter();
            STORE(&e->busy_since, engine_now_ms());
            ok = (e->fn(e->ctx, e->cin, e->cout) == 0);
            STORE(&e->busy_since, 0);
            fp_leave(fp);
            INC(&e->processed);
            if (!ok)
                INC(&e->errors);
        }
        else
            ok = 0;
        for (c = 0; c < e->out_chans; c++)
        {
            if (ok)
                ringbuf_write(&e->out, c, start / e->out_ratio, e->cout + (size_t)c * fout, fout);
            else
                ringbuf_fill(&e->out, c, start / e->out_ratio, 0, fout);
        }
        e->next = k + 1;
        STORE(&e->done, k + 1);
        sem_post(&e->donesem);
    }
}

static void *engine_thread(void *arg)
{
    t_engine *e = (t_engine *)arg;
    while (!LOAD(&e->stop))
    {
        while (sem_wait(&e->work) != 0 && errno == EINTR)
            ;
        if (LOAD(&e->stop))
            break;
        pthread_mutex_lock(&e->run_mutex);
        if (!e->inline_mode)
            engine_work_locked(e);
        pthread_mutex_unlock(&e->run_mutex);
    }
    return 0;
}

int engine_init(t_engine *e)
{
    memset(e, 0, sizeof(*e));
    e->in_ratio = e->out_ratio = 1;
    e->sync = 1;
    pthread_mutex_init(&e->run_mutex, 0);
    sem_init(&e->work, 0, 0);
    sem_init(&e->donesem, 0, 0);
    if (pthread_create(&e->thread, 0, engine_thread, e) != 0)
        return -1;
    e->started = 1;
    reg_add((void **)reg_engines, e);
    return 0;
}

void engine_stop(t_engine *e)
{
    engine_stop_wait(e, -1);
}

/* join thread t within timeout s (< 0: forever); -1 if it has not ended by then */
static int join_within(pthread_t t, double timeout)
{
    struct timespec ts;
    if (timeout < 0)
    {
        pthread_join(t, 0);
        return 0;
    }
    timeout_in(&ts, timeout);
    return pthread_timedjoin_np(t, 0, &ts) == 0 ? 0 : -1;
}

int engine_stop_wait(t_engine *e, double timeout)
{
    if (!e->started)
        return 0;
    STORE(&e->stop, 1);
    sem_post(&e->work);
    sem_post(&e->donesem);
    if (join_within(e->thread, timeout) != 0)
        return -1;      /* still inside a model call: left running */
    e->started = 0;
    return 0;
}

/* the rings; not ready until engine_configure makes them again */
static void engine_freebuffers(t_engine *e)
{
    ringbuf_free(&e->in);
    ringbuf_free(&e->out);
    e->ready = 0;
}

void engine_free(t_engine *e)
{
    reg_remove((void **)reg_engines, e);
    engine_stop(e);
    engine_freebuffers(e);
    pthread_mutex_destroy(&e->run_mutex);
    sem_destroy(&e->work);
    sem_destroy(&e->donesem);
}

void engine_lock(t_engine *e)
{
    pthread_mutex_lock(&e->run_mutex);
}

int engine_trylock(t_engine *e)
{
    return pthread_mutex_trylock(&e->run_mutex) == 0 ? 0 : -1;
}

int engine_timedlock(t_engine *e, double timeout)
{
    struct timespec ts;
    timeout_in(&ts, timeout);
    return pthread_mutex_timedlock(&e->run_mutex, &ts) == 0 ? 0 : -1;
}

void engine_unlock(t_engine *e)
{
    pthread_mutex_unlock(&e->run_mutex);
}

static void engine_setlatency(t_engine *e)
{
    e->latency = (e->sync || e->inline_mode) ? e->bufsize : 2 * e->bufsize;
}

void engine_reset(t_engine *e)
{
    e->t = 0;
    e->aligned = 0;
    e->last_underrun_block = UINT64_MAX;
    e->next = 0;
    STORE(&e->t_pub, 0);
    STORE(&e->done, 0);
    ringbuf_clear(&e->in);
    ringbuf_clear(&e->out);
    while (sem_trywait(&e->donesem) == 0)
        ;
}

int engine_configure(t_engine *e, int in_chans, int in_ratio, int out_chans, int out_ratio,
    int bufsize)
{
    engine_freebuffers(e);
    if (in_chans < 1 || out_chans < 1 || in_ratio < 1 || out_ratio < 1 || bufsize < 1 ||
        bufsize % in_ratio || bufsize % out_ratio)
        return -1;
    e->in_chans = in_chans;
    e->out_chans = out_chans;
    e->in_ratio = in_ratio;
    e->out_ratio = out_ratio;
    e->bufsize = bufsize;
    /* the rings hold one value per in_ratio (out_ratio) audio frames: what the model reads
       (writes); at the latent rate of a RAVE model 2048 times less than at audio rate */
    if (ringbuf_init(&e->in, in_chans, ENGINE_SPAN(bufsize) / in_ratio + 1) ||
        ringbuf_init(&e->out, out_chans, ENGINE_SPAN(bufsize) / out_ratio + 1))
    {
        engine_freebuffers(e);
        return -1;
    }
    engine_setlatency(e);
    engine_reset(e);
    e->ready = 1;
    return 0;
}

void engine_setfn(t_engine *e, t_engine_fn fn, void *ctx, float *cin, float *cout)
{
    e->fn = fn;
    e->ctx = ctx;
    e->cin = fn ? cin : 0;
    e->cout = fn ? cout : 0;
}

void engine_setmode(t_engine *e, int sync, int inline_mode)
{
    e->sync = sync;
    e->inline_mode = inline_mode;
    engine_setlatency(e);
    engine_reset(e);
}

/* audio thread: input frames [t, t + n) of channel c (src 0: zeros) into the in ring, which
   keeps the last frame of every in_ratio frames (what the model reads of a latent input) */
static void engine_putinput(t_engine *e, int c, uint64_t t, const float *src, int n)
{
    const uint64_t r = (uint64_t)e->in_ratio;
    uint64_t i;
    if (r == 1)
    {
        if (src)
            ringbuf_write(&e->in, c, t, src, n);
        else
            ringbuf_fill(&e->in, c, t, 0, n);
        return;
    }
    for (i = (r - 1 - t % r); i < (uint64_t)n; i += r)
        ringbuf_fill(&e->in, c, (t + i) / r, src ? src[i] : 0, 1);
}

/* audio thread: output frames [t, t + n) of channel c from the out ring, which holds one
   value per out_ratio frames (held for all of them) */
static void engine_getoutput(t_engine *e, int c, uint64_t t, float *dst, int n)
{
    const uint64_t r = (uint64_t)e->out_ratio;
    int i;
    if (r == 1)
    {
        ringbuf_read(&e->out, c, t, dst, n);
        return;
    }
    for (i = 0; i < n; i++)
        dst[i] = ringbuf_get(&e->out, c, (t + i) / r);
}

void engine_align(t_engine *e, uint64_t now)
{
    if (e->aligned || !e->ready)
        return;
    e->aligned = 1;
    if (e->t == 0 && !e->sync && !e->inline_mode)
    {   /* frames before `now`'s place are silence in the first block */
        e->t = now % (uint64_t)e->bufsize;
        STORE(&e->t_pub, e->t);
    }
}

void engine_perform(t_engine *e, float **ins, int nins, float **outs, int nouts, int n)
{
    const uint64_t B = (uint64_t)e->bufsize;
    uint64_t t0, t1, blk;
    int64_t p0, plast;
    int c, skip;
    if (!e->ready || n > ENGINE_MAXVEC)
    {
        for (c = 0; c < nouts; c++)
            memset(outs[c], 0, n * sizeof(float));
        return;
    }
    t0 = e->t;
    for (c = 0; c < e->in_chans; c++)
        engine_putinput(e, c, t0, c < nins ? ins[c] : 0, n);
    t1 = e->t = t0 + n;
    STORE(&e->last_n, n);
    STORE(&e->t_pub, t1);
    if (t1 / B != t0 / B)
    {
        if (e->inline_mode)
        {
            pthread_mutex_lock(&e->run_mutex);
            engine_work_locked(e);
            pthread_mutex_unlock(&e->run_mutex);
        }
        else
            sem_post(&e->work);
    }
    /* output frames [t0, t1) show model frames [t0 - latency, t1 - latency) */
    p0 = (int64_t)t0 - e->latency;
    plast = (int64_t)t1 - 1 - e->latency;
    if (plast < 0)
    {
        for (c = 0; c < nouts; c++)
            memset(outs[c], 0, n * sizeof(float));
        return;
    }
    blk = (uint64_t)plast / B;
    if (LOAD(&e->done) <= blk)
    {
        if (e->sync && !e->inline_mode && !e->stalled)
        {
            /* bounded: a model call that never returns must not hang Pd (the object
               reports it); until a block is done again, no more waiting */
            struct timespec ts;
            timeout_in(&ts, ENGINE_SYNCWAIT);
            while (LOAD(&e->done) <= blk && !LOAD(&e->stop))
                if (sem_timedwait(&e->donesem, &ts) != 0 && errno == ETIMEDOUT)
                {
                    e->stalled = 1;
                    break;
                }
        }
        else if (e->stalled && LOAD(&e->busy_since) == 0)
            e->stalled = 0;
        if (LOAD(&e->done) <= blk)
        {
            if (blk != e->last_underrun_block)
            {
                e->last_underrun_block = blk;
                INC(&e->underruns);
            }
            for (c = 0; c < nouts; c++)
                memset(outs[c], 0, n * sizeof(float));
            return;
        }
    }
    skip = p0 < 0 ? (int)-p0 : 0;
    for (c = 0; c < nouts; c++)
    {
        if (c < e->out_chans)
        {
            if (skip)
                memset(outs[c], 0, skip * sizeof(float));
            engine_getoutput(e, c, (uint64_t)(p0 + skip), outs[c] + skip, n - skip);
        }
        else
            memset(outs[c], 0, n * sizeof(float));
    }
}

unsigned engine_underruns(t_engine *e)
{
    return LOAD(&e->underruns);
}

unsigned engine_errors(t_engine *e)
{
    return LOAD(&e->errors);
}

unsigned engine_processed(t_engine *e)
{
    return LOAD(&e->processed);
}

uint64_t engine_busy_ms(t_engine *e)
{
    return busy_ms(&e->busy_since);
}

/* ------------------------------------ voices ------------------------------------ */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* every regular member's block is in (mutex held) */
static int voices_allin(t_voices *g)
{
    t_voice *v;
    for (v = g->members; v; v = v->next)
        if (v->regular && !v->waiting)
            return 0;
    return 1;
}

/* the next round runs now: every regular member's block is in, or the deadline passed
   (mutex held) */
static int voices_ready(t_voices *g)
{
    if (!g->nbatch || g->running)
        return 0;
    return voices_allin(g) || now_ns() >= g->first_ns + (uint64_t)(g->deadline * 1e9);
}

static void *voices_thread(void *arg)
{
    t_voices *g = (t_voices *)arg;
    t_voice *run[VOICES_MAX], *v;
    int n, i, missed;
    pthread_mutex_lock(&g->mutex);
    while (!g->stop)
    {
        if (!voices_ready(g))
        {
            if (g->nbatch)
            {   /* until the deadline, or until the last regular member comes */
                uint64_t t = g->first_ns + (uint64_t)(g->deadline * 1e9);
                struct timespec ts;
                ts.tv_sec = (time_t)(t / 1000000000u);
                ts.tv_nsec = (long)(t % 1000000000u);
                pthread_cond_timedwait(&g->work, &g->mutex, &ts);
            }
            else
                pthread_cond_wait(&g->work, &g->mutex);
            continue;
        }
        n = g->nbatch;
        /* the round waited in vain for regular members (with a regular one in: a straggler
           alone waits for the others' next blocks, which are not late) */
        missed = 0;
        if (!voices_allin(g))
            for (i = 0; i < n; i++)
                missed |= g->batch[i]->regular;
        for (i = 0; i < n; i++)
        {
            run[i] = g->batch[i];
            run[i]->waiting = 0;
            run[i]->inround = 1;
        }
        g->nbatch = 0;
        g->first_ns = 0;
        g->running = 1;
        pthread_mutex_unlock(&g->mutex);
        g->fn(g->ctx, run, n);
        pthread_mutex_lock(&g->mutex);
        g->running = 0;
        g->rounds++;
        /* who missed it is not waited for until its block comes again (a block in any
           round, its own included, makes a member regular) */
        for (v = g->members; v; v = v->next)
            if (v->inround)
                v->regular = 1;
            else if (missed && !v->waiting)
                v->regular = 0;
        for (i = 0; i < n; i++)
        {
            run[i]->inround = 0;
            run[i]->done = 1;
        }
        pthread_cond_broadcast(&g->done);
    }
    pthread_cond_broadcast(&g->done);
    pthread_mutex_unlock(&g->mutex);
    return 0;
}

t_voices *voices_new(t_voices_fn fn, void *ctx, double deadline)
{
    pthread_condattr_t attr;
    t_voices *g = (t_voices *)calloc(1, sizeof(t_voices));
    if (!g)
        return 0;
    g->fn = fn;
    g->ctx = ctx;
    g->deadline = deadline;
    pthread_mutex_init(&g->mutex, 0);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&g->work, &attr);
    pthread_condattr_destroy(&attr);
    pthread_cond_init(&g->done, 0);
    reg_add((void **)reg_voices, g);
    return g;
}

int voices_join(t_voices *g, t_voice *v, void *owner)
{
    int rc = -1;
    pthread_mutex_lock(&g->mutex);
    if (!g->stop && g->nmembers < VOICES_MAX)
    {
        memset(v, 0, sizeof(*v));
        v->group = g;
        v->owner = owner;
        v->regular = 1;
        v->next = g->members;
        g->members = v;
        g->nmembers++;
        rc = 0;
    }
    pthread_mutex_unlock(&g->mutex);
    return rc;
}

void voices_leave(t_voice *v)
{
    t_voices *g = v->group;
    t_voice **p;
    int i, j;
    if (!g)
        return;
    pthread_mutex_lock(&g->mutex);
    while (v->inround)
        pthread_cond_wait(&g->done, &g->mutex);
    for (i = j = 0; i < g->nbatch; i++)
        if (g->batch[i] != v)
            g->batch[j++] = g->batch[i];
    g->nbatch = j;
    for (p = &g->members; *p; p = &(*p)->next)
        if (*p == v)
        {
            *p = v->next;
            g->nmembers--;
            break;
        }
    v->group = 0;
    v->waiting = 0;
    pthread_cond_signal(&g->work);      /* the others may all be in now */
    pthread_mutex_unlock(&g->mutex);
}

int voices_count(t_voices *g)
{
    int n;
    pthread_mutex_lock(&g->mutex);
    n = g->nmembers;
    pthread_mutex_unlock(&g->mutex);
    return n;
}

int voices_run(t_voice *v)
{
    t_voices *g = v->group;
    int rc;
    if (!g)
        return 1;
    pthread_mutex_lock(&g->mutex);
    if (g->stop)
    {
        pthread_mutex_unlock(&g->mutex);
        return -1;
    }
    /* the thread starts here, at the first block, with a model thread's priority (the
       control thread that makes a group runs below the audio: nice is inherited) */
    if (!g->started && pthread_create(&g->thread, 0, voices_thread, g) == 0)
        g->started = 1;
    if (!g->started)
    {
        pthread_mutex_unlock(&g->mutex);
        return 1;       /* no thread: it plays alone */
    }
    v->done = 0;
    v->waiting = 1;
    g->batch[g->nbatch++] = v;
    if (g->nbatch == 1)
        g->first_ns = now_ns();
    /* the group's thread wakes for the first block (the deadline starts) and the last */
    if (g->nbatch == 1 || voices_ready(g))
        pthread_cond_signal(&g->work);
    while (!v->done && !g->stop)
        pthread_cond_wait(&g->done, &g->mutex);
    rc = v->done ? v->result : -1;
    pthread_mutex_unlock(&g->mutex);
    return rc;
}

/* stop the thread, wait up to timeout s (< 0: forever); -1 if it is still in a round */
static int voices_stop_wait(t_voices *g, double timeout)
{
    pthread_mutex_lock(&g->mutex);
    g->stop = 1;
    pthread_cond_broadcast(&g->work);
    pthread_cond_broadcast(&g->done);
    pthread_mutex_unlock(&g->mutex);
    if (!g->started)
        return 0;
    if (join_within(g->thread, timeout) != 0)
        return -1;
    g->started = 0;
    return 0;
}

void voices_free(t_voices *g)
{
    if (!g)
        return;
    reg_remove((void **)reg_voices, g);
    voices_stop_wait(g, -1);
    pthread_mutex_destroy(&g->mutex);
    pthread_cond_destroy(&g->work);
    pthread_cond_destroy(&g->done);
    free(g);
}

/* ------------------------------------- jobq ------------------------------------- */

static void jobq_destroy(t_jobq *q)
{
    t_jobq_item *it;
    reg_remove((void **)reg_jobqs, q);
    while ((it = q->done))
    {
        q->done = it->next;
        if (q->freefn)
            q->freefn(it->data);
        free(it);
    }
    pthread_mutex_destroy(&q->mutex);
    pthread_cond_destroy(&q->cond);
    free(q);
}

/* drop the queued items; mutex held */
static void jobq_droptodo(t_jobq *q)
{
    t_jobq_item *it;
    while ((it = q->todo))
    {
        q->todo = it->next;
        if (q->freefn)
            q->freefn(it->data);
        free(it);
    }
}

static void *jobq_thread(void *arg)
{
    t_jobq *q = (t_jobq *)arg;
    int orphan;
#ifdef SYS_gettid
    if (q->nice)
        setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), q->nice);
#endif
    fp_enter();
    pthread_mutex_lock(&q->mutex);
    for (;;)
    {
        t_jobq_item *it, **tail;
        while (!q->stop && !q->todo)
            pthread_cond_wait(&q->cond, &q->mutex);
        if (q->stop && !(q->drain && q->todo))
            break;
        it = q->todo;
        q->todo = it->next;
        it->next = 0;
        q->running++;
        STORE(&q->busy_since, engine_now_ms());
        pthread_mutex_unlock(&q->mutex);
        q->fn(it->data);
        pthread_mutex_lock(&q->mutex);
        STORE(&q->busy_since, 0);
        q->running--;
        for (tail = &q->done; *tail; tail = &(*tail)->next)
            ;
        *tail = it;
        pthread_cond_broadcast(&q->cond);
    }
    q->finished = 1;
    orphan = q->orphan;
    pthread_cond_broadcast(&q->cond);
    pthread_mutex_unlock(&q->mutex);
    if (orphan)
        jobq_destroy(q);
    return 0;
}

t_jobq *jobq_new(t_jobq_fn fn, t_jobq_fn freefn)
{
    t_jobq *q = (t_jobq *)calloc(1, sizeof(t_jobq));
    if (!q)
        return 0;
    q->fn = fn;
    q->freefn = freefn;
    q->nice = JOBQ_NICE;
    pthread_mutex_init(&q->mutex, 0);
    pthread_cond_init(&q->cond, 0);
    reg_add((void **)reg_jobqs, q);
    return q;
}

void jobq_setnice(t_jobq *q, int nice)
{
    q->nice = nice;
}

int jobq_push(t_jobq *q, void *data)
{
    return jobq_push_key(q, data, 0);
}

int jobq_push_key(t_jobq *q, void *data, const char *key)
{
    t_jobq_item *it, **tail;
    int err = 0;
    pthread_mutex_lock(&q->mutex);
    for (it = q->todo; it && it->next; it = it->next)
        ;
    if (key && !q->stop && it && it->key && !strcmp(it->key, key))
    {   /* the last queued item, same key: take its place */
        void *old = it->data;
        it->data = data;
        it->key = key;
        pthread_mutex_unlock(&q->mutex);
        if (q->freefn)
            q->freefn(old);
        return 0;
    }
    pthread_mutex_unlock(&q->mutex);
    if (!(it = (t_jobq_item *)calloc(1, sizeof(*it))))
        return -1;
    it->data = data;
    it->key = key;
    pthread_mutex_lock(&q->mutex);
    if (q->stop)
        err = -1;
    else if (!q->started)
    {
        if (pthread_create(&q->thread, 0, jobq_thread, q) == 0)
        {
            pthread_detach(q->thread);
            q->started = 1;
        }
        else
            err = -1;
    }
    if (!err)
    {
        for (tail = &q->todo; *tail; tail = &(*tail)->next)
            ;
        *tail = it;
        pthread_cond_signal(&q->cond);
    }
    pthread_mutex_unlock(&q->mutex);
    if (err)
        free(it);
    return err;
}

void *jobq_pop_done(t_jobq *q)
{
    t_jobq_item *it;
    void *data = 0;
    pthread_mutex_lock(&q->mutex);
    if ((it = q->done))
    {
        q->done = it->next;
        data = it->data;
        free(it);
    }
    pthread_mutex_unlock(&q->mutex);
    return data;
}

int jobq_pending(t_jobq *q)
{
    int n = 0;
    t_jobq_item *it;
    pthread_mutex_lock(&q->mutex);
    for (it = q->todo; it; it = it->next)
        n++;
    for (it = q->done; it; it = it->next)
        n++;
    n += q->running;
    pthread_mutex_unlock(&q->mutex);
    return n;
}

/* wait up to timeout s (mutex held) until the thread has ended, or with `idle` until nothing
   is queued or running either; 0 if so */
static int jobq_waitfor(t_jobq *q, int idle, double timeout)
{
    struct timespec ts;
    timeout_in(&ts, timeout);
    while (!q->finished && (idle ? (q->todo || q->running) : q->started))
        if (pthread_cond_timedwait(&q->cond, &q->mutex, &ts) == ETIMEDOUT)
            return -1;
    return 0;
}

int jobq_wait_idle(t_jobq *q, double timeout)
{
    int rc;
    pthread_mutex_lock(&q->mutex);
    rc = jobq_waitfor(q, 1, timeout);
    pthread_mutex_unlock(&q->mutex);
    return rc;
}

uint64_t jobq_busy_ms(t_jobq *q)
{
    return busy_ms(&q->busy_since);
}

int jobq_stop(t_jobq *q, double timeout)
{
    int rc;
    pthread_mutex_lock(&q->mutex);
    q->stop = 1;
    jobq_droptodo(q);
    pthread_cond_broadcast(&q->cond);
    rc = jobq_waitfor(q, 0, timeout);
    pthread_mutex_unlock(&q->mutex);
    return rc;
}

/* tell the queue's thread to stop: after what is queued (`drain`) or dropping it; 1 when
   no thread runs (the caller frees the queue), else 0 (the thread frees it as it ends) */
static int jobq_close(t_jobq *q, int drain)
{
    int now;
    pthread_mutex_lock(&q->mutex);
    q->stop = 1;
    if (drain)
        q->drain = 1;
    else
        jobq_droptodo(q);
    now = (!q->started || q->finished);
    if (!now)
        q->orphan = 1;
    pthread_cond_broadcast(&q->cond);
    pthread_mutex_unlock(&q->mutex);
    return now;
}

void jobq_free(t_jobq *q)
{
    if (jobq_close(q, 0))
        jobq_destroy(q);
}

void jobq_finish(t_jobq *q)
{
    if (jobq_close(q, 1))
    {   /* no thread ever ran: run what is queued here */
        t_jobq_item *it;
        while ((it = q->todo))
        {
            q->todo = it->next;
            q->fn(it->data);
            if (q->freefn)
                q->freefn(it->data);
            free(it);
        }
        jobq_destroy(q);
    }
}

int worker_stop_all(double timeout)
{
    int i, rc = 0;
    pthread_mutex_lock(&reg_mutex);
    /* the groups first: the model threads of their members wait for their rounds */
    for (i = 0; i < MAXREG; i++)
        if (reg_voices[i] && voices_stop_wait(reg_voices[i], rc ? 0 : timeout) != 0)
            rc = -1;
    for (i = 0; i < MAXREG; i++)
    {
        /* after one thread did not stop, wait for no other: the caller leaves at once */
        if (reg_engines[i] && engine_stop_wait(reg_engines[i], rc ? 0 : timeout) != 0)
            rc = -1;
        if (reg_jobqs[i] && jobq_stop(reg_jobqs[i], rc ? 0 : timeout) != 0)
            rc = -1;
    }
    pthread_mutex_unlock(&reg_mutex);
    return rc;
}
