/* worker: the per-object model thread (t_engine) and the job thread (t_jobq).
   No Pd and no Python in here: the model call is a function pointer, so pytest can drive
   this code through cffi (tests/test_ringbuf.py).

   The audio thread writes every input frame into the `in` ring at position t and reads
   output frame t - latency from the `out` ring (at a method's rates: a ring of a latent
   input or output holds one value per in_ratio or out_ratio frames).  Each time t
   crosses a multiple of B (bufsize) it posts the worker, which runs the model on that
   block and writes the block's output at the same positions.  Sync mode: latency B, and
   the audio thread waits (on a semaphore) until the block it must play is done, so
   renders are bit-identical.  Live mode: latency 2B, the audio thread never waits; a
   block that is not done plays as silence and counts one underrun.  Inline mode
   (bufsize 0): the audio thread runs the model itself.  The audio side never allocates
   and never takes a lock except in inline mode. */
#ifndef UNRAVEL_WORKER_H
#define UNRAVEL_WORKER_H

#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include "ringbuf.h"

/* run the model on one buffer.  in: in_chans * (bufsize / in_ratio) floats, channel after
   channel (latent inputs already reduced to one value per frame); out: out_chans *
   (bufsize / out_ratio) floats.  Returns 0 on success; on failure the engine outputs zeros. */
#define ENGINE_MAXVEC 16384    /* largest Pd vector the rings take (block~ sizes) */
/* audio frames the rings span: live mode's latency 2B, the block being worked on, one of
   slack, and the largest vector */
#define ENGINE_SPAN(bufsize) (4 * (uint64_t)(bufsize) + ENGINE_MAXVEC)

typedef int (*t_engine_fn)(void *ctx, const float *in, float *out);

#define ENGINE_SYNCWAIT 3.      /* s the audio thread waits for a block in sync mode */

typedef struct engine {
    /* configuration: set by the control thread between engine_lock()/engine_unlock() */
    int in_chans, in_ratio, out_chans, out_ratio;
    int bufsize;            /* B: frames per model call */
    int sync;               /* 1: the audio thread waits for the worker at buffer boundaries */
    int inline_mode;        /* 1: the audio thread runs the model itself (bufsize 0) */
    int latency;            /* frames: B in sync/inline mode, 2B in live mode */
    int ready;              /* rings allocated */
    t_engine_fn fn;
    void *ctx;
    t_ringbuf in, out;      /* audio-rate rings, 4B + ENGINE_MAXVEC frames */
    float *cin, *cout;      /* the buffers fn sees (its own: engine_setfn) */
    /* audio thread */
    uint64_t t;             /* frames written so far */
    uint64_t last_underrun_block;
    /* shared (atomic access) */
    uint64_t t_pub;         /* t, published to the worker */
    uint64_t done;          /* blocks finished by the worker */
    int last_n;             /* the audio thread's last vector size */
    unsigned underruns;
    unsigned errors;        /* failed model calls */
    unsigned processed;     /* model calls made */
    uint64_t busy_since;    /* ms (engine_now_ms) the running model call started; 0: none */
    int stalled;            /* sync mode: a block timed out; no waiting until one is done */
    int aligned;            /* engine_align ran since the last reset */
    /* worker */
    uint64_t next;          /* next block to process */
    int stop;
    int started;
    pthread_t thread;
    pthread_mutex_t run_mutex;  /* held while the worker processes; the control thread takes it
                                   to pause the worker */
    sem_t work, donesem;
} t_engine;

int engine_init(t_engine *e);           /* starts the worker thread; 0 on success */
void engine_stop(t_engine *e);          /* stop and join the thread (idempotent) */
/* stop, wait up to timeout s (< 0: forever) for the thread; -1 if it is still in a model call */
int engine_stop_wait(t_engine *e, double timeout);
void engine_free(t_engine *e);          /* engine_stop, then free everything */

void engine_lock(t_engine *e);          /* pause the worker (waits for the block it runs) */
int engine_trylock(t_engine *e);        /* 0: paused, between two blocks; -1: a block runs */
int engine_timedlock(t_engine *e, double timeout);  /* 0: paused; -1: not within timeout s */
void engine_unlock(t_engine *e);
/* the following four need the engine locked */
int engine_configure(t_engine *e, int in_chans, int in_ratio, int out_chans, int out_ratio,
    int bufsize);                        /* allocates the rings; 0 on success; resets */
/* the model call and its buffers (in_chans * bufsize / in_ratio floats in, out_chans *
   bufsize / out_ratio out), which stay the caller's; fn 0: silence */
void engine_setfn(t_engine *e, t_engine_fn fn, void *ctx, float *cin, float *cout);
void engine_setmode(t_engine *e, int sync, int inline_mode);   /* resets */
void engine_reset(t_engine *e);         /* positions to zero, rings cleared */

/* audio thread, live mode, before the first engine_perform after a reset: start at `now`'s
   place in a block (now: a clock of audio frames that every object shares), so that the
   blocks of every object so aligned end in the same DSP tick (poly: unravel.voices) */
void engine_align(t_engine *e, uint64_t now);

/* audio thread: copy n frames in and n frames out.  Never allocates; waits only in sync mode. */
void engine_perform(t_engine *e, float **ins, int nins, float **outs, int nouts, int n);

unsigned engine_underruns(t_engine *e);
unsigned engine_errors(t_engine *e);
unsigned engine_processed(t_engine *e);
uint64_t engine_now_ms(void);           /* a monotonic clock in ms */
uint64_t engine_busy_ms(t_engine *e);   /* how long the running model call has run (0: none) */

/* ---- voices: the engines of one group (poly) served by one model thread ----
   Each member's model thread (its engine's fn) hands its block over with voices_run and
   waits; the group's thread runs one call for the members that came (fn), when every regular
   member is in or `deadline` s after the first came.  A member a round waited for in vain
   is not regular until its block comes again: no round waits longer than the deadline.  fn
   sets each member's `result` (0 played, 1 plays alone from now on, -1 failed); it runs
   without the group's mutex, one round at a time. */
#define VOICES_MAX 64   /* members of a group (RAVE's streaming caches hold 64 items) */

typedef struct voice {
    struct voices *group;   /* 0: in none */
    void *owner;            /* for fn (the member's runner) */
    int regular;            /* rounds wait for its block (see above) */
    int waiting;            /* its block waits for the next round */
    int inround;            /* its block is in the round that runs */
    int done;               /* its round ran (result set) */
    int result;
    struct voice *next;     /* the group's members */
} t_voice;

typedef void (*t_voices_fn)(void *ctx, t_voice **batch, int n);

typedef struct voices {
    t_voices_fn fn;
    void *ctx;
    double deadline;
    t_voice *members;
    int nmembers;
    t_voice *batch[VOICES_MAX];     /* the blocks of the next round, as they come */
    int nbatch;
    uint64_t first_ns;      /* when the first block of the round came (0: none yet) */
    int running;            /* fn runs */
    unsigned rounds;
    int stop;
    pthread_mutex_t mutex;
    pthread_cond_t work;    /* the group's thread: a block came, or stop */
    pthread_cond_t done;    /* the members: a round ran, or stop */
    pthread_t thread;
    int started;
} t_voices;

/* its thread starts at the first block (a model thread's priority) */
t_voices *voices_new(t_voices_fn fn, void *ctx, double deadline);
int voices_join(t_voices *g, t_voice *v, void *owner);  /* 0 on success */
void voices_leave(t_voice *v);          /* waits for a round that has it; nothing if in none */
int voices_count(t_voices *g);          /* members */
/* the member's model thread: its block in, wait for its round; the result fn gave it
   (-1: the group stopped; 1 also when no thread can be made) */
int voices_run(t_voice *v);
void voices_free(t_voices *g);          /* stops and joins the thread; no members left */

/* ---- job thread: runs fn(data) for each pushed item, one at a time, in order ---- */
typedef void (*t_jobq_fn)(void *data);

typedef struct jobq_item {
    struct jobq_item *next;
    void *data;
    const char *key;        /* jobq_push_key: the item's key (owned by data) */
} t_jobq_item;

typedef struct jobq {
    t_jobq_fn fn;
    t_jobq_fn freefn;       /* frees an item's data that is never delivered */
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    t_jobq_item *todo, *done;
    int running;            /* items taken but not finished */
    int stop;
    int started;            /* the (detached) thread exists */
    int finished;           /* the thread has left its loop */
    int orphan;             /* the owner is gone: the thread frees the queue */
    int nice;               /* the thread's nice value (JOBQ_NICE unless jobq_setnice) */
    int drain;              /* with orphan: run what is queued first (jobq_finish) */
    uint64_t busy_since;    /* ms the running item started; 0: none */
    pthread_t thread;
} t_jobq;

/* the control and job threads run at a lower priority than Pd's thread and the model
   thread (Linux: nice is per thread), so their work never takes the CPU from the audio */
#define JOBQ_NICE 10

t_jobq *jobq_new(t_jobq_fn fn, t_jobq_fn freefn);   /* the thread starts at the first push */
/* before the first push: the thread's nice value.  0 where Pd's thread waits for the queue
   (-batch): a thread Pd waits for must not yield to every other process on the machine */
void jobq_setnice(t_jobq *q, int nice);
int jobq_push(t_jobq *q, void *data);   /* 0 on success */
/* push, or, when the last queued item (not yet running) has the same key, take its place
   (its data freed with freefn): a burst of edits to one thing keeps the newest */
int jobq_push_key(t_jobq *q, void *data, const char *key);
int jobq_wait_idle(t_jobq *q, double timeout);  /* 0 when nothing is queued or running */
uint64_t jobq_busy_ms(t_jobq *q);       /* how long the running item has run (0: none) */
void *jobq_pop_done(t_jobq *q);         /* next finished item's data, or 0 */
int jobq_pending(t_jobq *q);            /* items queued, running or not yet popped */
/* stop: drop queued items, wait up to timeout s for the running one; 0 if the thread ended */
int jobq_stop(t_jobq *q, double timeout);
/* never blocks: a job still running finishes on its thread, which then frees the queue */
void jobq_free(t_jobq *q);
/* never blocks: the thread runs every queued item, frees the finished ones, then the queue */
void jobq_finish(t_jobq *q);

/* run code in plain Python's floating-point mode (no flush-to-zero, which Pd's threads use):
   fp_enter() returns the previous mode for fp_leave() */
unsigned fp_enter(void);
void fp_leave(unsigned mode);

/* every live engine and job queue, so an atexit handler can stop them all */
int worker_stop_all(double timeout);    /* 0 if every thread was joined */

#endif
