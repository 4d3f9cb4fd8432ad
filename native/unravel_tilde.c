/* [unravel~]: run nn~-contract TorchScript models (RAVE) in Pd, bend their layers and run
   UnRAVEl jobs.  This file is the Pd glue only: the Python side is in pyembed.c, the model
   thread and ring buffers in worker.c / ringbuf.c.  See pd/unravel~-help.pd. */

#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "m_pd.h"
#include "g_canvas.h"      /* canvas_setcurrent: the [table]s jobs make */
#include "firstpath.h"
#include "pyembed.h"
#include "worker.h"

#if PD_FLOATSIZE != 32
#error "[unravel~] needs Pd with 32-bit floats"
#endif

#define MAXCHANS 256        /* signal inlets/outlets without -m */
#define MAXBUFSIZE (1 << 20)
#define JOBPOLL 10.         /* ms between looks at the job thread */
#define JOBSYNCWAIT 600.    /* s sync mode waits for a job before going on without it */
#define CTLPOLL 1.          /* ms between looks at the control thread */
#define WATCHPOLL 250.      /* ms between looks for a model that stopped answering */
#define STALLMS 3000        /* a model call or control call running this long: not answering */
#define LOADSTALLMS 30000   /* the same while a load runs (torch's import, a big model's file
                               and warm-up take seconds: 3.3 s for a capacity-64 RAVE) */
#define CALLWAIT 5.         /* s Pd's thread waits for a control call in sync mode */
#define CREATEWAIT 30.      /* s it waits for the creation's model */
#define MAXENGINEMB 1024    /* the most memory (MB) one object's buffers may take */

static t_class *unravel_class;
/* from unravel.cfg, read by the loader (unravel_loader.c) */
static char unravel_python[MAXPDSTRING], unravel_libpython[MAXPDSTRING], unravel_cfg[MAXPDSTRING];
static char unravel_home[MAXPDSTRING];      /* the package's own runtime, or "" */
static int unravel_batch;   /* Pd was started with -batch */

typedef struct _unravel {
    t_object x_obj;
    t_float x_f;
    t_canvas *x_canvas;
    t_symbol *x_dir;            /* the patch folder */
    t_pysession *x_session;     /* 0: no model loaded */
    t_symbol *x_method;
    t_methodparams x_mp;        /* x_method's shape */
    int x_srwarned;             /* the Pd rate we last warned about */
    int x_multi;                /* -m: one multichannel inlet and outlet */
    int x_enabled;
    int x_gpu;                  /* -g/-gpu or 'gpu 1': the model runs on the GPU */
    int x_bufsize;              /* 0: the model runs in the DSP thread */
    int x_sync;                 /* -1 automatic (sync under -batch), 0 live, 1 sync */
    int x_poly;                 /* -p or 'poly 1': share the model's calls (live mode) */
    int x_polyon;               /* the installed runner was asked to share them */
    int x_nin, x_nout;          /* signal inlets and outlets */
    t_outlet *x_info;
    /* DSP */
    t_engine *x_engine;         /* the model thread and its rings (0: none) */
    t_pyrunner *x_runner;       /* the model call it makes */
    t_firstpath *x_first;       /* live mode, before torch is imported: plays until the
                                   load's runner takes over (firstpath.h) */
    int x_firston;              /* x_first is the engine's model call */
    int x_firstend;             /* the load ended without a runner: close x_first */
    int x_dspn;                 /* Pd's block size at the last dsp call */
    int x_nins, x_nouts;        /* vectors in x_ins/x_outs */
    int x_insize, x_outsize;    /* their allocated lengths */
    float **x_ins, **x_outs;
    t_clock *x_errclock;
    unsigned x_errseen;
    char x_lasterr[PYERR_SIZE];     /* the model error printed last (printed once per cause) */
    /* control calls: everything that needs Python, off Pd's thread */
    t_jobq *x_ctl;
    t_clock *x_ctlclock;        /* takes finished calls back, installs their runners */
    t_pycall *x_install;        /* a finished call whose runner waits for a block boundary */
    int x_modechange;           /* the engine's mode waits for a block boundary */
    t_pymsg *x_status;          /* the model's part of the `bang` replies */
    t_pybox *x_box;             /* the session the control thread's calls use */
    int x_loading;              /* `load` calls not yet back (messages behind them wait) */
    int x_routing;              /* calls not yet back that find their message's route */
    int x_stalled;              /* the model stopped answering (reported once) */
    t_clock *x_watchclock;
    /* jobs */
    t_jobq *x_jobs;
    t_clock *x_jobclock;
    t_pymsg *x_jobwait;         /* jobs not yet handed to the job thread, in order */
    t_pd **x_tables;            /* the [table]s jobs made for their output arrays */
    int x_ntables;
} t_unravel;

static int unravel_startpython(t_unravel *x);
static void unravel_exithook(void);
static void unravel_ctltick(t_unravel *x);
static void unravel_setupengine(t_unravel *x, int tell);
static void unravel_closefirst(t_unravel *x);
static void unravel_after(void *owner, t_symbol *s, int argc, t_atom *argv);
static void unravel_behind(t_unravel *x, t_symbol *s, int argc, t_atom *argv);

/* ------------------------------ small helpers ------------------------------ */

static int unravel_ispow2(int n)
{
    return n > 0 && !(n & (n - 1));
}

/* the smallest power of two >= n */
static int unravel_pow2ceil(int n)
{
    int b = 1;
    while (b < n)
        b *= 2;
    return b;
}

static int unravel_issync(t_unravel *x)
{
    return x->x_sync < 0 ? unravel_batch : x->x_sync;
}

/* pause the model thread between two blocks: in sync mode wait for it (bounded), in live
   mode only if it is between two blocks now; 0 when paused */
static int unravel_lockengine(t_unravel *x)
{
    return unravel_issync(x) ? engine_timedlock(x->x_engine, ENGINE_SYNCWAIT) :
        engine_trylock(x->x_engine);
}

/* the model file, as the last call reported it */
static const char *unravel_modelname(t_unravel *x)
{
    const t_pymsg *m = pymsg_find(x->x_status, "model");
    return m && m->argc && m->argv[0].s ? m->argv[0].s : "model";
}

static int unravel_isload(const t_pycall *c)
{
    return c->msg && !strcmp(c->msg->sel, "load");
}

/* what a call that changed the object's settings posts once its runner plays (t_pycall.tell) */
enum { TELL_NONE, TELL_LOAD, TELL_METHOD, TELL_BUFSIZE };

/* the mode a buffer size runs in, as `bang` replies it */
static const char *unravel_mode(t_unravel *x, int bufsize)
{
    return bufsize == 0 ? "inline" : unravel_issync(x) ? "sync" : "live";
}

/* the one line a settled `load`, `method` or `bufsize` posts (nn~ posts its loads) */
static void unravel_tell(t_unravel *x, const t_pycall *c)
{
    const t_methodparams *p = &c->mp;
    if (c->tell == TELL_LOAD)
        post("[unravel~]: loaded model %s (method %s, dim %d %d)", unravel_modelname(x),
            c->usedmethod, p->in_chans, p->out_chans);
    else if (c->tell == TELL_METHOD)
        post("[unravel~]: method %s (dim %d %d, ratio %d %d)", c->usedmethod, p->in_chans,
            p->out_chans, p->in_ratio, p->out_ratio);
    else if (c->tell == TELL_BUFSIZE)
        post("[unravel~]: bufsize %d (mode %s)", c->usedbufsize,
            unravel_mode(x, c->usedbufsize));
}

static t_garray *unravel_findarray(t_unravel *x, t_symbol *name, const char *what)
{
    t_garray *a = (t_garray *)pd_findbyclass(name, garray_class);
    if (!a)
        pd_error(x, "[unravel~]: %s: no array named '%s'", what, name->s_name);
    return a;
}

static int unravel_needsession(t_unravel *x, const char *what)
{
    if (!x->x_session && !x->x_loading)
    {
        pd_error(x, "[unravel~]: %s: no model loaded (use 'load <model>')", what);
        return 0;
    }
    return 1;
}

/* a reply goes out of the info outlet; `post <line>` goes to Pd's window instead, and
   `error <line>` as an error line */
static void unravel_reply(void *owner, t_symbol *sel, int argc, t_atom *argv)
{
    t_unravel *x = (t_unravel *)owner;
    if (sel == gensym("post") && argc == 1 && argv[0].a_type == A_SYMBOL)
    {
        post("[unravel~]: %s", atom_getsymbol(argv)->s_name);
        return;
    }
    if (sel == gensym("error") && argc == 1 && argv[0].a_type == A_SYMBOL)
    {
        pd_error(x, "[unravel~]: %s", atom_getsymbol(argv)->s_name);
        return;
    }
    if (sel == gensym("saved") && argc == 1 && argv[0].a_type == A_SYMBOL)
        post("[unravel~]: saved %s", atom_getsymbol(argv)->s_name);
    outlet_anything(x->x_info, sel, argc, argv);
}

/* find a model next to the patch, then on Pd's path ('.ts' optional); 0 if not found */
static int unravel_findmodel(t_unravel *x, const char *spec, char *path)
{
    char dir[MAXPDSTRING], *name, withts[MAXPDSTRING];
    const char *tries[2];
    int i, fd, n = 0;
    size_t len = strlen(spec);
    tries[n++] = spec;
    if (len < 3 || strcmp(spec + len - 3, ".ts"))
    {
        snprintf(withts, sizeof(withts), "%s.ts", spec);
        tries[n++] = withts;
    }
    for (i = 0; i < n; i++)
    {
        if ((fd = canvas_open(x->x_canvas, tries[i], "", dir, &name, MAXPDSTRING, 1)) >= 0)
        {
            sys_close(fd);
            snprintf(path, MAXPDSTRING, "%s/%s", dir, name);
            return 1;
        }
    }
    return 0;
}

/* ------------------------------ control calls ------------------------------ */

/* Everything that needs Python runs on the object's control thread, in order: Pd's thread
   only queues the call (pycall_new: plain C data) and takes the answer back on a clock
   (unravel_ctltick).  A runner that a call made is installed at the next block boundary of
   the model thread (unravel_apply); until then the old one plays.  In sync mode (under
   -batch) Pd's thread waits for each call (bounded), so renders stay deterministic. */

static void unravel_setstalled(t_unravel *x, const char *what, double seconds)
{
    if (x->x_stalled)
        return;
    x->x_stalled = 1;
    pd_error(x, "[unravel~]: %s: the model has not answered for %.1f s (%s); messages that "
        "need it wait (live mode) or are refused (sync mode) until it answers",
        unravel_modelname(x), seconds, what);
}

/* look for a model that stopped answering, and for one that answers again */
static void unravel_watchtick(t_unravel *x)
{
    uint64_t model = x->x_engine ? engine_busy_ms(x->x_engine) : 0;
    uint64_t ctl = jobq_busy_ms(x->x_ctl);
    int sync = x->x_engine && x->x_engine->stalled;
    if (model > STALLMS || sync)
        unravel_setstalled(x, "a model call never returned", model / 1000.);
    else if (ctl > (x->x_loading ? LOADSTALLMS : STALLMS))
        unravel_setstalled(x, "a message to it never returned", ctl / 1000.);
    else if (x->x_stalled && !model && !ctl)
    {
        x->x_stalled = 0;
        post("[unravel~]: the model answers again");
    }
    clock_delay(x->x_watchclock, WATCHPOLL);
}

/* queue call c (taking it); in sync mode wait for it and take its answer at once */
static void unravel_call(t_unravel *x, t_pycall *c, const char *what)
{
    if (!c)
    {
        pd_error(x, "[unravel~]: %s: out of memory", what);
        return;
    }
    if (x->x_stalled && unravel_issync(x) && (c->msg || c->want))
    {   /* live mode queues it: Pd's thread never waits there */
        pd_error(x, "[unravel~]: %s: refused: the model is not answering", what);
        goto drop;
    }
    if (jobq_push_key(x->x_ctl, c, *c->key ? c->key : 0) != 0)
    {
        pd_error(x, "[unravel~]: %s: cannot start the control thread", what);
        goto drop;
    }
    if (unravel_issync(x))
    {
        if (jobq_wait_idle(x->x_ctl, CALLWAIT) != 0)
            unravel_setstalled(x, what, CALLWAIT);
        unravel_ctltick(x);
    }
    else
        clock_delay(x->x_ctlclock, 0);
    return;
drop:
    if (unravel_isload(c) && x->x_loading > 0)
        x->x_loading--;
    if (c->route && x->x_routing > 0)
        x->x_routing--;
    pycall_free(c);
}

/* free a runner, a session reference and/or a box on the control thread (they hold
   Python) */
static void unravel_release(t_unravel *x, t_pyrunner *r, t_pysession *s, t_pybox *box)
{
    t_pycall *c;
    if (!r && !s && !box)
        return;
    if (!(c = pycall_new(0, 0, 0, 0, "")))
        return;     /* out of memory: leaked */
    c->release_runner = r;
    c->release_session = s;
    c->release_box = box;
    if (jobq_push(x->x_ctl, c) != 0)
    {
        c->release_runner = 0;
        c->release_session = 0;
        c->release_box = 0;
        pycall_free(c);
    }
}

/* free a finished call that holds a runner nobody installs */
static void unravel_dropcall(t_unravel *x, t_pycall *c)
{
    unravel_release(x, c->runner, 0, 0);
    c->runner = 0;
    pycall_free(c);
}

/* a call for the object's model, with the runner of its method wanted afterwards (want) */
static t_pycall *unravel_newcall(t_unravel *x, t_symbol *s, int argc, t_atom *argv, int want)
{
    t_pycall *c = pycall_new(x->x_session, s ? s->s_name : 0, argc, argv, x->x_dir->s_name);
    if (c)
        c->box = x->x_box;
    if (c && want)
    {
        c->want = 1;
        snprintf(c->method, sizeof(c->method), "%s", x->x_method->s_name);
        c->bufsize = x->x_bufsize;
        c->dspn = x->x_dspn;
        c->nin = x->x_multi ? 0 : x->x_nin;
        c->nout = x->x_multi ? 0 : x->x_nout;
        /* sync mode plays alone: its renders stay exact and the same run to run */
        c->poly = x->x_poly && !unravel_issync(x);
    }
    return c;
}

/* the runner of call c into the engine (engine locked); returns the runner it replaces */
static t_pyrunner *unravel_install(t_unravel *x, t_pycall *c)
{
    t_engine *e = x->x_engine;
    t_methodparams *p = &c->mp;
    t_pyrunner *old = x->x_runner;
    int B = c->block, inl = (c->usedbufsize == 0), sync = inl ? 0 : unravel_issync(x);
    double mb = (double)(p->in_chans + p->out_chans) * (4. * B + ENGINE_MAXVEC) *
        sizeof(float) / 1048576.;
    if (mb > MAXENGINEMB)
    {
        pd_error(x, "[unravel~]: %s: %d+%d channels at bufsize %d need %.0f MB of buffers "
            "(limit %d MB)", c->usedmethod, p->in_chans, p->out_chans, B, mb, MAXENGINEMB);
        return 0;
    }
    /* the same shape in live mode: no reset, the new model takes over at this block */
    if (sync || !e->ready || e->in_chans != p->in_chans || e->in_ratio != p->in_ratio ||
        e->out_chans != p->out_chans || e->out_ratio != p->out_ratio || e->bufsize != B ||
        e->inline_mode != inl || e->sync != sync || c->poly != x->x_polyon)
    {   /* (poly on or off: the blocks start again, lined up with the other objects') */
        if (engine_configure(e, p->in_chans, p->in_ratio, p->out_chans, p->out_ratio, B) != 0)
        {
            pd_error(x, "[unravel~]: cannot allocate buffers of %d frames", B);
            engine_setfn(e, 0, 0, 0, 0);
            x->x_runner = 0;
            return old;
        }
        engine_setmode(e, sync, inl);
    }
    engine_setfn(e, pyrunner_process, c->runner, pyrunner_in(c->runner),
        pyrunner_out(c->runner));
    x->x_runner = c->runner;
    x->x_polyon = c->poly;
    c->runner = 0;
    /* what the call settled (a fallback method, a rounded size) unless a newer wish came */
    if (!strcmp(c->method, x->x_method->s_name))
        x->x_method = gensym(c->usedmethod);
    if (c->bufsize == x->x_bufsize)
        x->x_bufsize = c->usedbufsize;
    x->x_mp = c->mp;
    x->x_lasterr[0] = 0;
    return old;
}

/* ------------------------------ the first path ------------------------------ */

/* live mode, while torch is not imported yet: a load's model and the object's method through
   libtorch alone (firstpath.h) until the load's runner takes over, when nothing plays yet
   (made with a model, or empty); one object per model file, not with -m (its outlet count
   comes from the load) or -g */
static void unravel_openfirst(t_unravel *x, const char *spec)
{
    char err[1000];
    t_firstplan plan;
    if (unravel_issync(x) || x->x_multi || x->x_gpu || !x->x_bufsize ||
        pyembed_route("load") != PYROUTE_UNKNOWN ||
        pyembed_firstplan(spec, x->x_method->s_name, x->x_bufsize, &plan) != 0 ||
        firstpath_busy(plan.path))
        return;
    if (!(x->x_first = firstpath_open(&plan, err, sizeof(err))))
        logpost(x, PD_DEBUG, "[unravel~]: %s: no first path: %s", spec, err);
}

/* the first path's model into the engine once it is loaded (between two blocks) */
static void unravel_startfirst(t_unravel *x)
{
    t_engine *e = x->x_engine;
    t_firstpath *f = x->x_first;
    const t_firstplan *p = firstpath_plan(f);
    char err[1000];
    int state = firstpath_ready(f, err, sizeof(err));
    if (state < 0)
    {
        logpost(x, PD_DEBUG, "[unravel~]: no first path: %s", err);
        unravel_closefirst(x);
        return;
    }
    if (state == 0 || x->x_firston || x->x_runner || !e || engine_trylock(e))
        return;
    if (engine_configure(e, p->in_chans, p->in_ratio, p->out_chans, p->out_ratio,
        p->bufsize) == 0)
    {
        engine_setmode(e, 0, 0);
        engine_setfn(e, firstpath_process, f, firstpath_in(f), firstpath_out(f));
        x->x_firston = 1;
    }
    engine_unlock(e);
    unravel_exithook();     /* after libtorch's first calls: before their destructors */
}

/* the engine no longer calls it */
static void unravel_closefirst(t_unravel *x)
{
    if (x->x_first)
        firstpath_close(x->x_first);
    x->x_first = 0;
    x->x_firston = 0;
    x->x_firstend = 0;
}

/* install what waits for a block boundary: the model thread is between two blocks when the
   lock is free (sync mode: wait for it, bounded); else try again at the next tick */
static void unravel_apply(t_unravel *x)
{
    t_engine *e = x->x_engine;
    t_pycall *c = x->x_install;
    t_pyrunner *old = 0;
    int oldout = x->x_mp.out_chans, loaded = 0;
    if (x->x_first && !c && !x->x_modechange && !x->x_firstend)
    {
        unravel_startfirst(x);
        return;
    }
    if (!c && !x->x_modechange && !x->x_firstend)
        return;
    if (!e)
    {
        x->x_install = 0;
        x->x_modechange = 0;
        if (c)
            unravel_dropcall(x, c);
        return;
    }
    if (unravel_lockengine(x))
    {
        if (unravel_issync(x))
            unravel_setstalled(x, "a model call never returned", ENGINE_SYNCWAIT);
        return;
    }
    if (x->x_firston)
    {   /* whatever comes next (the load's runner, a new shape, an error) ends it */
        engine_setfn(e, 0, 0, 0, 0);
        x->x_firston = 0;
    }
    if (c)
    {
        x->x_install = 0;
        old = unravel_install(x, c);
        loaded = unravel_isload(c);
    }
    if (x->x_modechange && e->ready)
    {
        int inl = (x->x_bufsize == 0);
        engine_setmode(e, inl ? 0 : unravel_issync(x), inl);
    }
    x->x_modechange = 0;
    engine_unlock(e);
    unravel_closefirst(x);
    if (c)
    {
        unravel_exithook();     /* after the runner's first Python: see there */
        if (old != x->x_runner)
            unravel_release(x, old, 0, 0);
        if (c->tell && x->x_runner && !c->runner)
            unravel_tell(x, c);     /* installed: it plays from this block on */
        if (loaded)
        {   /* the new model plays from this block on */
            t_atom a;
            SETSYMBOL(&a, gensym(unravel_modelname(x)));
            outlet_anything(x->x_info, gensym("loaded"), 1, &a);
        }
        unravel_dropcall(x, c);     /* its runner, if it was not installed */
        if (x->x_multi && oldout != x->x_mp.out_chans)
            canvas_update_dsp();
    }
}

/* write the floats of call c's `layer` reply into its array (get_weights <layer> <array>) */
/* array a (named name) resized to n points, its values to write (then garray_redraw);
   0 with an error line naming `what` when it cannot be */
static t_word *unravel_resize(t_unravel *x, t_garray *a, long n, const char *what,
    const char *name)
{
    t_word *vec;
    int size;
    if (garray_npoints(a) != n)
        garray_resize_long(a, n);
    if (!garray_getfloatwords(a, &size, &vec) || size != n)
    {
        pd_error(x, "[unravel~]: %s: cannot resize the array '%s' to %ld", what, name, n);
        return 0;
    }
    return vec;
}

static void unravel_toarray(t_unravel *x, t_pycall *c)
{
    const t_pymsg *m = pymsg_find(c->replies, "layer");
    t_garray *a;
    t_word *vec;
    int i;
    if (!m || !(a = unravel_findarray(x, gensym(c->array), "get_weights")) ||
        !(vec = unravel_resize(x, a, m->argc, "get_weights", c->array)))
        return;
    for (i = 0; i < m->argc; i++)
        vec[i].w_float = m->argv[i].s ? 0 : m->argv[i].f;
    garray_redraw(a);
}

/* a finished call's answer, on Pd's thread */
static void unravel_take(t_unravel *x, t_pycall *c)
{
    const t_pymsg *gpu;
    if (unravel_isload(c) && x->x_loading > 0)
        x->x_loading--;
    if (c->route && x->x_routing > 0)
        x->x_routing--;
    if (unravel_isload(c) && x->x_first && (c->failed || !c->runner))
        x->x_firstend = 1;
    if (c->newsession)
    {
        unravel_release(x, 0, x->x_session, 0);
        x->x_session = c->newsession;
        c->newsession = 0;
    }
    if (c->status)
    {
        pymsg_free(x->x_status);
        x->x_status = c->status;
        c->status = 0;
        if ((gpu = pymsg_find(x->x_status, "gpu")) && gpu->argc && !gpu->argv[0].s)
            x->x_gpu = (gpu->argv[0].f != 0);
    }
    pymsg_send(c->notes, unravel_reply, x);
    if (c->notes)
        c->tell = TELL_NONE;    /* its notes said what changed */
    pymsg_send(c->after, unravel_after, x);
    if (c->failed)
        pd_error(x, "[unravel~]: %s", c->err);
    else if (*c->array)
        unravel_toarray(x, c);
    else
        pymsg_send(c->replies, unravel_reply, x);
    if (c->runner && !c->failed)
    {   /* installed at the next block boundary; a newer one replaces it */
        if (x->x_install)
            unravel_dropcall(x, x->x_install);
        x->x_install = c;
        if (c->poly != (x->x_poly && !unravel_issync(x)))
            unravel_setupengine(x, TELL_NONE);  /* `poly` came while it was made (a load) */
        return;
    }
    unravel_dropcall(x, c);
}

static void unravel_ctltick(t_unravel *x)
{
    t_pycall *c;
    while ((c = (t_pycall *)jobq_pop_done(x->x_ctl)))
        unravel_take(x, c);
    unravel_apply(x);
    if (!unravel_issync(x) && (jobq_pending(x->x_ctl) || x->x_install || x->x_modechange ||
        x->x_first))
        clock_delay(x->x_ctlclock, CTLPOLL);
}

/* ------------------------------ the DSP engine ------------------------------ */

/* a new runner for the current method and buffer size (or the mode alone, without a model);
   `tell`: what it posts once it plays */
static void unravel_setupengine(t_unravel *x, int tell)
{
    t_pycall *c;
    if (!x->x_engine)
        return;
    if (x->x_session)
    {
        if ((c = unravel_newcall(x, 0, 0, 0, 1)))
            c->tell = tell;
        unravel_call(x, c, x->x_method->s_name);
    }
    else
    {
        x->x_modechange = 1;
        unravel_ctltick(x);
    }
}

/* every DSP start renders the same from sample 0: the positions go back to zero between two
   blocks (in live mode, if a block runs now, the engine goes on where it is) */
static void unravel_resetengine(t_unravel *x)
{
    t_engine *e = x->x_engine;
    if (!e || unravel_lockengine(x))
        return;
    engine_reset(e);
    engine_unlock(e);
}

static t_int *unravel_perform(t_int *w)
{
    t_unravel *x = (t_unravel *)(w[1]);
    int n = (int)(w[2]), c;
    if (x->x_enabled && (x->x_runner || x->x_firston))
    {
        if (x->x_polyon)    /* the blocks of a group's objects end in the same tick */
            engine_align(x->x_engine,
                (uint64_t)llround(clock_gettimesincewithunits(0, 1, 1)));
        engine_perform(x->x_engine, x->x_ins, x->x_nins, x->x_outs, x->x_nouts, n);
    }
    else
        for (c = 0; c < x->x_nouts; c++)
            memset(x->x_outs[c], 0, n * sizeof(float));
    if (x->x_engine && engine_errors(x->x_engine) != x->x_errseen)
    {
        x->x_errseen = engine_errors(x->x_engine);
        clock_delay(x->x_errclock, 0);
    }
    return (w + 3);
}

static int unravel_growvectors(float ***v, int *size, int n)
{
    if (n <= *size)
        return 1;
    *v = (float **)resizebytes(*v, *size * sizeof(float *), n * sizeof(float *));
    *size = n;
    return *v != 0;
}

static void unravel_dsp(t_unravel *x, t_signal **sp)
{
    int n = sp[0]->s_n, i, nin, nout, outch = x->x_session ? x->x_mp.out_chans : 1;
    if (x->x_multi)
    {
        nin = sp[0]->s_nchans;
        nout = outch;
        signal_setmultiout(&sp[1], nout);
        if (!unravel_growvectors(&x->x_ins, &x->x_insize, nin) ||
            !unravel_growvectors(&x->x_outs, &x->x_outsize, nout))
            return;
        for (i = 0; i < nin; i++)
            x->x_ins[i] = sp[0]->s_vec + (size_t)i * n;
        for (i = 0; i < nout; i++)
            x->x_outs[i] = sp[1]->s_vec + (size_t)i * n;
    }
    else
    {
        nin = x->x_nin;
        nout = x->x_nout;
        if (!unravel_growvectors(&x->x_ins, &x->x_insize, nin) ||
            !unravel_growvectors(&x->x_outs, &x->x_outsize, nout))
            return;
        for (i = 0; i < nin; i++)
            x->x_ins[i] = sp[i]->s_vec;     /* the first channel of each inlet */
        for (i = 0; i < nout; i++)
        {
            signal_setmultiout(&sp[nin + i], 1);
            x->x_outs[i] = sp[nin + i]->s_vec;
        }
    }
    x->x_nins = nin;
    x->x_nouts = nout;
    if (x->x_session && x->x_mp.sr && (int)sp[0]->s_sr != x->x_mp.sr &&
        (int)sp[0]->s_sr != x->x_srwarned)
    {
        post("[unravel~]: warning: Pd runs at %d Hz, the model at %d Hz (no resampling: "
            "pitch and time change)", (int)sp[0]->s_sr, x->x_mp.sr);
        x->x_srwarned = (int)sp[0]->s_sr;
    }
    if (x->x_dspn != n)
    {
        x->x_dspn = n;
        if (x->x_bufsize == 0)
            unravel_setupengine(x, TELL_NONE);
    }
    unravel_resetengine(x);
    dsp_add(unravel_perform, 2, x, (t_int)n);
}

static void unravel_errtick(t_unravel *x)
{
    char err[PYERR_SIZE];
    if (x->x_runner && pyrunner_takeerror(x->x_runner, err) && strcmp(err, x->x_lasterr))
    {
        pd_error(x, "[unravel~]: %s (output is silent while this lasts)", err);
        memcpy(x->x_lasterr, err, PYERR_SIZE);
    }
}

/* ------------------------------ model and method ------------------------------ */

/* nn~'s GPU switch: the session moves the model to the GPU or back to the CPU; without a GPU
   nn~'s line is posted and the model stays on the CPU.  An object without a model keeps the
   wish for its first 'load'. */
static void unravel_gpu(t_unravel *x, t_floatarg f)
{
    t_atom a;
    x->x_gpu = (f != 0);
    if (!x->x_session && !x->x_loading)     /* behind a first load: the call waits for it */
        return;
    SETFLOAT(&a, x->x_gpu);
    unravel_call(x, unravel_newcall(x, gensym("gpu"), 1, &a, 0), "gpu");
}

static void unravel_method(t_unravel *x, t_symbol *s, int argc, t_atom *argv)
{
    t_pycall *c;
    (void)s;
    if (!unravel_needsession(x, "method"))
        return;
    if (argc != 1 || argv[0].a_type != A_SYMBOL)
    {
        pd_error(x, "[unravel~]: method: usage: method <name>");
        return;
    }
    x->x_method = atom_getsymbol(argv);     /* the wish; the call settles it */
    if ((c = unravel_newcall(x, 0, 0, 0, 1)))
        c->tell = TELL_METHOD;
    unravel_call(x, c, "method");
}

/* load <model>: the current model plays until the new one is ready and takes over at a
   block boundary (reply `loaded <path>`); the method stays if the new model has it */
static void unravel_load(t_unravel *x, t_symbol *s, int argc, t_atom *argv)
{
    char path[MAXPDSTRING];
    t_atom a;
    t_pycall *c;
    if (argc != 1 || argv[0].a_type != A_SYMBOL)
    {
        pd_error(x, "[unravel~]: load: usage: load <model>");
        return;
    }
    if (!unravel_startpython(x))
        return;
    SETSYMBOL(&a, unravel_findmodel(x, atom_getsymbol(argv)->s_name, path) ? gensym(path) :
        atom_getsymbol(argv));
    if ((c = unravel_newcall(x, s, 1, &a, 1)))
    {
        c->keep = 1;
        c->tell = TELL_LOAD;
    }
    if (!x->x_session && !x->x_runner && !x->x_first)
        unravel_openfirst(x, atom_getsymbol(&a)->s_name);   /* nothing plays yet */
    x->x_loading++;
    unravel_call(x, c, "load");
    if (x->x_gpu)
        unravel_gpu(x, 1);
}

/* ------------------------------ control messages ------------------------------ */

/* as nn~: disabled, the buffers stand still; enabled again, sound resumes at once from
   where it stopped (no reset, no extra buffer of latency) */
/* a message's one 0|1 argument, or -1 after one error line with its usage */
static int unravel_onoff(t_unravel *x, int argc, t_atom *argv, const char *usage)
{
    if (argc != 1 || argv[0].a_type != A_FLOAT || !isfinite(atom_getfloat(argv)))
    {
        pd_error(x, "[unravel~]: %s", usage);
        return -1;
    }
    return atom_getfloat(argv) != 0;
}

static void unravel_enable(t_unravel *x, t_symbol *s, int argc, t_atom *argv)
{
    int on = unravel_onoff(x, argc, argv, "enable: usage: enable 0|1");
    (void)s;
    if (on >= 0)
        x->x_enabled = on;
}

/* nn~'s `gpu 0|1` (no argument: 0, as nn~'s float method); anything else: our usage line */
static void unravel_gpumsg(t_unravel *x, t_symbol *s, int argc, t_atom *argv)
{
    int on = argc ? unravel_onoff(x, argc, argv, "gpu: usage: gpu 0|1") : 0;
    (void)s;
    if (on >= 0)
        unravel_gpu(x, on);
}

static void unravel_sync(t_unravel *x, t_symbol *s, int argc, t_atom *argv)
{
    int on = unravel_onoff(x, argc, argv, "sync: usage: sync 0|1 (0 live, 1 sync)");
    (void)s;
    if (on < 0)
        return;
    x->x_sync = on;
    x->x_modechange = 1;
    if (unravel_issync(x) && jobq_wait_idle(x->x_ctl, CALLWAIT) != 0)  /* from now on in order */
        unravel_setstalled(x, "sync", CALLWAIT);
    unravel_ctltick(x);
    if (x->x_poly && x->x_session)  /* poly plays alone in sync mode: a runner for the mode */
        unravel_setupengine(x, TELL_NONE);
    post("[unravel~]: sync %d (mode %s)", on, unravel_mode(x, x->x_bufsize));
}

/* poly 0|1: share the model's calls with the other objects of its file, method and bufsize
   (live mode; each keeps its own state: unravel.voices) or run them alone */
static void unravel_poly(t_unravel *x, t_symbol *s, int argc, t_atom *argv)
{
    int on = unravel_onoff(x, argc, argv, "poly: usage: poly 0|1");
    (void)s;
    if (on < 0 || on == x->x_poly)
        return;
    x->x_poly = on;
    unravel_setupengine(x, TELL_NONE);
}

/* as nn~: any size is rounded (to a power of two, at least the method's ratio) and the size
   used is posted; 0 runs the model inline */
static void unravel_bufsize(t_unravel *x, t_symbol *s, int argc, t_atom *argv)
{
    t_float f;
    int n;
    (void)s;
    if (argc != 1 || argv[0].a_type != A_FLOAT)
    {
        pd_error(x, "[unravel~]: bufsize: usage: bufsize <frames, or 0 for inline>");
        return;
    }
    f = atom_getfloat(argv);
    n = (f >= 0 && f <= MAXBUFSIZE) ? (int)f : -1;     /* no out-of-range float to int */
    if (n < 0 || (t_float)n != f)
    {
        pd_error(x, "[unravel~]: bufsize: %g is not a whole number from 0 to %d", f, MAXBUFSIZE);
        return;
    }
    if (n && !unravel_ispow2(n) && !x->x_session && !x->x_loading)
    {   /* with a model the bridge rounds it to the method's ratio too (Session.prepare) */
        int b = unravel_pow2ceil(n);
        post("[unravel~]: bufsize %d -> %d (a power of two)", n, b);
        n = b;
    }
    else if (!x->x_session && !x->x_loading)
        post("[unravel~]: bufsize %d (mode %s)", n, unravel_mode(x, n));
    x->x_bufsize = n;
    unravel_setupengine(x, TELL_BUFSIZE);
}

/* the reply `sel` of the model's part of the status (kept from the last call) */
static void unravel_modelstatus(t_unravel *x, const char *sel)
{
    const t_pymsg *m = pymsg_find(x->x_status, sel);
    t_pymsg one;
    if (!m)
        return;
    one = *m;
    one.next = 0;
    pymsg_send(&one, unravel_reply, x);
}

/* `poly <wish> <members> <items>`: the members of its group (0: it plays alone) and how
   many blocks its last model call ran */
static void unravel_polystatus(t_unravel *x)
{
    t_atom a[3];
    int members, items;
    pyrunner_voices(x->x_runner, &members, &items);
    SETFLOAT(a, x->x_poly);
    SETFLOAT(a + 1, members);
    SETFLOAT(a + 2, items);
    outlet_anything(x->x_info, gensym("poly"), 3, a);
}

/* the status, answered here: C's own values and the model's part kept from the last call */
static void unravel_bang(t_unravel *x)
{
    static const char *model1[] = {"gpu", "model", "methods"}, *model2[] = {"sr", "shared"};
    t_atom a[2];
    t_engine *e = x->x_engine;
    /* a runner waiting for a block boundary: what the object takes then */
    t_pycall *next = x->x_install;
    t_methodparams *p = next ? &next->mp : &x->x_mp;
    int bufsize = next ? next->usedbufsize : x->x_bufsize;
    int inl = (bufsize == 0), i, ready = !next && e && e->ready;
    if (!x->x_session && x->x_loading)
    {   /* the first load is under way (a live object made with a model): answer after it */
        unravel_behind(x, &s_bang, 0, 0);
        return;
    }
    SETFLOAT(a, x->x_session ? 1 : 0);
    outlet_anything(x->x_info, gensym("loaded"), 1, a);
    SETFLOAT(a, x->x_enabled);
    outlet_anything(x->x_info, gensym("enabled"), 1, a);
    if (!x->x_session)
        return;
    for (i = 0; i < 3; i++)
        unravel_modelstatus(x, model1[i]);
    SETSYMBOL(a, next ? gensym(next->usedmethod) : x->x_method);
    outlet_anything(x->x_info, gensym("method"), 1, a);
    unravel_modelstatus(x, "attributes");
    SETFLOAT(a, bufsize);
    outlet_anything(x->x_info, gensym("bufsize"), 1, a);
    SETFLOAT(a, p->in_chans);
    SETFLOAT(a + 1, p->out_chans);
    outlet_anything(x->x_info, gensym("dim"), 2, a);
    SETFLOAT(a, p->in_ratio);
    SETFLOAT(a + 1, p->out_ratio);
    outlet_anything(x->x_info, gensym("ratio"), 2, a);
    SETFLOAT(a, ready ? e->latency : (inl || unravel_issync(x) ? 1 : 2) *
        (bufsize ? bufsize : p->block));
    outlet_anything(x->x_info, gensym("latency"), 1, a);
    SETSYMBOL(a, gensym(inl ? "inline" : unravel_issync(x) ? "sync" : "live"));
    outlet_anything(x->x_info, gensym("mode"), 1, a);
    SETFLOAT(a, e ? engine_underruns(e) : 0);
    outlet_anything(x->x_info, gensym("underruns"), 1, a);
    unravel_polystatus(x);
    for (i = 0; i < 2; i++)
        unravel_modelstatus(x, model2[i]);
}

/* a burst of edits to one thing (a slider) keeps the newest: the key of a coalescing call */
static void unravel_setkey(t_pycall *c, t_symbol *s, int argc, t_atom *argv)
{
    if (!c || !argc || argv[0].a_type != A_SYMBOL)
        return;
    if (s == gensym("bend") && argc >= 2 && argv[1].a_type == A_SYMBOL)
        snprintf(c->key, sizeof(c->key), "bend %s %s %d", atom_getsymbol(argv)->s_name,
            atom_getsymbol(argv + 1)->s_name, argc);
    else if (s == gensym("channels") && argc >= 2)  /* a scale moving at control rate */
        snprintf(c->key, sizeof(c->key), "channels %s %s", atom_getsymbol(argv)->s_name,
            atom_getsymbol(argv + 1)->s_name);
    else if (s == gensym("output") && argc >= 2)    /* an output op's value, the same */
        snprintf(c->key, sizeof(c->key), "output %s %s", atom_getsymbol(argv)->s_name,
            atom_getsymbol(argv + 1)->s_name);
    else if (s == gensym("morph") && argc >= 2)     /* t moving at control rate */
        snprintf(c->key, sizeof(c->key), "morph %s %s", atom_getsymbol(argv)->s_name,
            argc > 2 ? atom_getsymbol(argv + 2)->s_name : "");
    else if (s == gensym("set_weights") || s == gensym("set") || s == gensym("restore"))
        snprintf(c->key, sizeof(c->key), "%s %s", s->s_name, atom_getsymbol(argv)->s_name);
}

/* a message for bridge.control, on the control thread */
static void unravel_control(t_unravel *x, t_symbol *s, int argc, t_atom *argv)
{
    t_pycall *c;
    if (!unravel_needsession(x, s->s_name))
        return;
    c = unravel_newcall(x, s, argc, argv, 0);
    unravel_setkey(c, s, argc, argv);
    unravel_call(x, c, s->s_name);
}

/* get_weights <layer> <array>: the floats go into the array when the call is back */
static void unravel_get_weights(t_unravel *x, t_symbol *s, int argc, t_atom *argv)
{
    t_pycall *c;
    if (argc == 2 && argv[0].a_type == A_SYMBOL && argv[1].a_type == A_SYMBOL)
    {
        if (!unravel_needsession(x, s->s_name) ||
            !unravel_findarray(x, atom_getsymbol(argv + 1), "get_weights"))
            return;
        if ((c = unravel_newcall(x, s, 1, argv, 0)))
            snprintf(c->array, sizeof(c->array), "%s", atom_getsymbol(argv + 1)->s_name);
        unravel_call(x, c, s->s_name);
        return;
    }
    unravel_control(x, s, argc, argv);
}

/* set_weights <layer> <array>: a copy of the array goes with the call */
static void unravel_set_weights(t_unravel *x, t_symbol *s, int argc, t_atom *argv)
{
    if (argc == 2 && argv[0].a_type == A_SYMBOL && argv[1].a_type == A_SYMBOL)
    {
        t_garray *a;
        t_pycall *c;
        t_word *vec;
        int size, i;
        if (!unravel_needsession(x, s->s_name) ||
            !(a = unravel_findarray(x, atom_getsymbol(argv + 1), "set_weights")))
            return;
        if (!garray_getfloatwords(a, &size, &vec))
        {
            pd_error(x, "[unravel~]: set_weights: array '%s' has no floats",
                atom_getsymbol(argv + 1)->s_name);
            return;
        }
        if (!(c = unravel_newcall(x, s, 1, argv, 0)) ||
            !(c->values = (float *)malloc((size ? size : 1) * sizeof(float))))
        {
            pycall_free(c);
            pd_error(x, "[unravel~]: set_weights: out of memory");
            return;
        }
        for (i = 0; i < size; i++)
            c->values[i] = vec[i].w_float;
        c->nvalues = size;
        unravel_setkey(c, s, argc, argv);
        unravel_call(x, c, s->s_name);
        return;
    }
    unravel_control(x, s, argc, argv);
}

/* ------------------------------ UnRAVEl jobs ------------------------------ */

/* Latents and audio in Pd arrays: a job reads the sets named after `input-array` when it
   starts, and writes the arrays it made when it ends, in one go, before its reply.  A set
   is the array <name> when there is one, else <name>-0, <name>-1, ... (the job checks how
   many it needs). */

/* option name k (`-`/`_` alike, leading dashes optional) is `want` */
static int unravel_isoption(const char *k, const char *want)
{
    while (*k == '-')
        k++;
    for (; *k && *want; k++, want++)
        if (*k != *want && !(*k == '_' && *want == '-'))
            return 0;
    return !*k && !*want;
}

/* append the values of array `name` (if it is a float array) to *tail as part of `set`;
   0 when there is no such array, -1 out of memory */
static int unravel_readarray(t_symbol *name, const char *set, t_pyvec ***tail)
{
    t_garray *a = (t_garray *)pd_findbyclass(name, garray_class);
    t_word *vec;
    int n, i;
    if (!a || !garray_getfloatwords(a, &n, &vec))
        return 0;
    if (!(**tail = pyvec_new(set, name->s_name, n)))
        return -1;
    for (i = 0; i < n; i++)
        (**tail)->data[i] = vec[i].w_float;
    *tail = &(**tail)->next;
    return 1;
}

/* the arrays of every `input-array <set>` in a job's arguments; -1 out of memory */
static int unravel_readsets(int argc, t_atom *argv, t_pyvec **vecs)
{
    t_pyvec **tail = vecs;
    char name[MAXPDSTRING];
    int i, k, got = 0;
    *vecs = 0;
    for (i = 0; i + 1 < argc && got >= 0; i += 2)
    {
        const char *set;
        if (argv[i].a_type != A_SYMBOL || argv[i + 1].a_type != A_SYMBOL ||
            !unravel_isoption(argv[i].a_w.w_symbol->s_name, "input-array"))
            continue;
        set = argv[i + 1].a_w.w_symbol->s_name;
        if ((got = unravel_readarray(argv[i + 1].a_w.w_symbol, set, &tail)))
            continue;
        for (k = 0; ; k++)
        {
            snprintf(name, sizeof(name), "%s-%d", set, k);
            if ((got = unravel_readarray(gensym(name), set, &tail)) <= 0)
                break;
        }
    }
    if (got < 0)
    {
        pyvec_free(*vecs);
        *vecs = 0;
    }
    return got < 0 ? -1 : 0;
}

/* a new array `name` of n points: a [table] of this object's patch (without a box), freed
   with the object */
static t_garray *unravel_newtable(t_unravel *x, t_symbol *name, long n)
{
    t_atom a[2];
    t_pd *table, **more;
    if (!(more = (t_pd **)resizebytes(x->x_tables, x->x_ntables * sizeof(t_pd *),
        (x->x_ntables + 1) * sizeof(t_pd *))))
        return 0;
    x->x_tables = more;
    SETSYMBOL(&a[0], name);
    SETFLOAT(&a[1], n);
    pd_this->pd_newest = 0;
    canvas_setcurrent(x->x_canvas);
    typedmess(&pd_objectmaker, gensym("table"), 2, a);
    canvas_unsetcurrent(x->x_canvas);
    if (!(table = pd_newest()))
        return 0;
    x->x_tables[x->x_ntables++] = table;
    return (t_garray *)pd_findbyclass(name, garray_class);
}

/* write a finished job's arrays, made or resized as needed */
static void unravel_writearrays(t_unravel *x, const char *job, const t_pyvec *v)
{
    for (; v; v = v->next)
    {
        t_symbol *name = gensym(v->name);
        t_garray *a = (t_garray *)pd_findbyclass(name, garray_class);
        t_word *vec;
        long i;
        if (!a && !(a = unravel_newtable(x, name, v->n)))
        {
            pd_error(x, "[unravel~]: %s: cannot make the array '%s'", job, v->name);
            continue;
        }
        if (!(vec = unravel_resize(x, a, v->n, job, v->name)))
            continue;
        for (i = 0; i < v->n; i++)
            vec[i].w_float = v->data[i];
        garray_redraw(a);
    }
}

static void unravel_jobreply(void *owner, t_symbol *sel, int argc, t_atom *argv);

static int unravel_isregistry(t_symbol *s)
{
    return pyembed_route(s->s_name) == PYROUTE_REGISTRY;
}

/* hand one waiting job (`reply` form, for pymsg_send) to the job thread: the model it uses
   and the arrays it reads are taken now.  In sync mode (-batch) Pd waits for it, so that it
   answers at the same logical time in every run. */
static void unravel_startone(void *owner, t_symbol *s, int argc, t_atom *argv)
{
    t_unravel *x = (t_unravel *)owner;
    t_pysession *session = unravel_isregistry(s) ? 0 : x->x_session;
    char err[PYERR_SIZE];
    t_pyjob *job;
    t_pyvec *inputs;
    if (!session && !unravel_isregistry(s))
    {
        pd_error(x, "[unravel~]: %s: no model loaded (use 'load <model>')", s->s_name);
        return;
    }
    if (unravel_readsets(argc, argv, &inputs) != 0)
    {
        pd_error(x, "[unravel~]: %s: out of memory reading the arrays", s->s_name);
        return;
    }
    if (!(job = pyjob_new(session, s->s_name, argc, argv, x->x_dir->s_name, inputs,
        sys_getsr(), err)))
    {
        pd_error(x, "[unravel~]: %s: %s", s->s_name, err);
        return;
    }
    if (jobq_push(x->x_jobs, job) != 0)
    {
        pd_error(x, "[unravel~]: %s: cannot start the job thread", s->s_name);
        pyjob_free(job);
        return;
    }
    if (unravel_issync(x))
        jobq_wait_idle(x->x_jobs, JOBSYNCWAIT);
    clock_delay(x->x_jobclock, JOBPOLL);
}

/* jobs run one at a time, in the order they were sent: the next one starts when the job
   thread is idle, after the one before it wrote its arrays */
static void unravel_startjobs(t_unravel *x)
{
    while (x->x_jobwait && !jobq_pending(x->x_jobs))
    {
        t_pymsg *m = x->x_jobwait;
        x->x_jobwait = m->next;
        m->next = 0;
        pymsg_send(m, unravel_startone, x);
        pymsg_free(m);
    }
}

static void unravel_jobtick(t_unravel *x)
{
    void *job;
    while ((job = jobq_pop_done(x->x_jobs)))
    {
        unravel_writearrays(x, pyjob_name((t_pyjob *)job), pyjob_outputs((t_pyjob *)job));
        pyjob_reply((t_pyjob *)job, unravel_jobreply, x);
        pyjob_free(job);
    }
    unravel_startjobs(x);
    if (jobq_pending(x->x_jobs) || x->x_jobwait)
        clock_delay(x->x_jobclock, JOBPOLL);
}

/* queue message s as a job (a registry message needs no model) */
static void unravel_pushjob(t_unravel *x, t_symbol *s, int argc, t_atom *argv)
{
    t_pymsg *m = pymsg_new(s->s_name, argc, argv), **tail = &x->x_jobwait;
    if (!m)
    {
        pd_error(x, "[unravel~]: %s: out of memory", s->s_name);
        return;
    }
    while (*tail)
        tail = &(*tail)->next;
    *tail = m;
    unravel_startjobs(x);
}

/* what waited behind the control calls sent before it (`reply` form, for pymsg_send): a
   job goes to the job thread (it sees the model the bends and loads before it made), a
   `bang` behind an object's first load answers with the model loaded */
static void unravel_after(void *owner, t_symbol *s, int argc, t_atom *argv)
{
    t_unravel *x = (t_unravel *)owner;
    if (s == &s_bang)
        unravel_bang(x);
    else if (unravel_isregistry(s) || unravel_needsession(x, s->s_name))
        unravel_pushjob(x, s, argc, argv);
}

/* send message s to unravel_after once the control calls queued before it have run */
static void unravel_behind(t_unravel *x, t_symbol *s, int argc, t_atom *argv)
{
    t_pycall *c;
    if ((c = pycall_new(0, 0, 0, 0, "")) && !(c->after = pymsg_new(s->s_name, argc, argv)))
    {
        pycall_free(c);
        c = 0;
    }
    unravel_call(x, c, s->s_name);
}

static void unravel_job(t_unravel *x, t_symbol *s, int argc, t_atom *argv)
{
    if (unravel_needsession(x, s->s_name))
        unravel_behind(x, s, argc, argv);
}

/* ------------------------------ nn~'s model registry ------------------------------ */

/* print_available_models, download <card> [name], remove <name>: no model needed; the
   network and file work runs on the job thread (bridge.registry_message) */
static void unravel_registry(t_unravel *x, t_symbol *s, int argc, t_atom *argv)
{
    if (unravel_startpython(x))
        unravel_pushjob(x, s, argc, argv);
}

/* ------------------------------ message routing ------------------------------ */

/* a message whose route Pd's thread does not know yet (live mode, before any thread
   imported the bridge), and every message behind one: the control thread finds the route,
   in order with the calls before and after it (pycall_run) */
static void unravel_routecall(t_unravel *x, t_symbol *s, int argc, t_atom *argv)
{
    t_pycall *c = unravel_newcall(x, s, argc, argv, 0);
    if (c)
    {
        c->route = 1;
        x->x_routing++;
    }
    unravel_call(x, c, s->s_name);
}

/* every selector C does not handle itself goes where the bridge's routes() say: a job
   behind the control calls, a registry message to the job thread (no model needed),
   anything else to bridge.control, so that a new message or job needs no change here.
   The routes are read once per process, by the thread that imports the bridge (torch):
   until then sync mode imports it here (Pd's thread may wait there), live mode lets the
   control thread find the route. */
static void unravel_anything(t_unravel *x, t_symbol *s, int argc, t_atom *argv)
{
    char err[PYERR_SIZE];
    int route = pyembed_route(s->s_name);
    if (route == PYROUTE_UNKNOWN && !unravel_startpython(x))
        return;
    if (route == PYROUTE_UNKNOWN && unravel_issync(x))
    {
        if (pyembed_importbridge(err) != 0)
        {
            pd_error(x, "[unravel~]: %s", err);
            return;
        }
        unravel_exithook();     /* after torch's import: before its destructors */
        route = pyembed_route(s->s_name);
    }
    if (route == PYROUTE_UNKNOWN || x->x_routing)
        unravel_routecall(x, s, argc, argv);
    else if (route == PYROUTE_REGISTRY)
        unravel_registry(x, s, argc, argv);
    else if (route == PYROUTE_JOB)
        unravel_job(x, s, argc, argv);
    else
        unravel_control(x, s, argc, argv);
}

/* a finished job answers on the info outlet (`done <job> ...` or `error <job> <reason>`);
   a registry message's lines also go to Pd's window as nn~ posts them, its failure as one
   error line */
static void unravel_jobreply(void *owner, t_symbol *sel, int argc, t_atom *argv)
{
    t_unravel *x = (t_unravel *)owner;
    int i;
    if (argc >= 1 && argv[0].a_type == A_SYMBOL && unravel_isregistry(atom_getsymbol(argv)))
    {
        if (sel == gensym("error"))
            pd_error(x, "[unravel~]: %s", argc > 1 ? atom_getsymbol(argv + 1)->s_name :
                "failed");
        else
            for (i = 1; i < argc; i++)
                post("%s", atom_getsymbol(argv + i)->s_name);
    }
    else if (sel == gensym("error") && argc >= 2)
    {   /* a failed job on the console too: an unconnected outlet is no silent failure */
        const char *name = atom_getsymbol(argv)->s_name, *err = atom_getsymbol(argv + 1)->s_name;
        size_t len = strlen(name);
        if (!strncmp(err, name, len) && err[len] == ':')
            pd_error(x, "[unravel~]: %s", err);
        else
            pd_error(x, "[unravel~]: %s: %s", name, err);
    }
    unravel_reply(owner, sel, argc, argv);
}

/* ------------------------------ start-up ------------------------------ */

static void unravel_quitwatch_stop(void);

static void unravel_atexit(void)
{
    /* pd quit calls exit(): stop the threads before torch's static destructors run */
    unravel_quitwatch_stop();
}

/* `pd quit` calls exit() at once, and libtorch's static objects are destroyed by exit
   handlers registered after ours (some are made lazily, during DSP): a worker still inside
   torch would crash.  So a small receiver bound to "pd" (bindings are called newest first,
   before Pd's own) stops every thread when `quit` or `exit` arrives; the atexit handler
   covers the other ways out. */
static t_class *unravel_quitwatch_class;

static void unravel_quitwatch_stop(void)
{
    pyjob_cancel_all();
    if (worker_stop_all(2.) != 0)
    {
        /* a job that does not stop: leave without running exit handlers under its feet */
        fflush(stdout);
        fflush(stderr);
        _exit(0);
    }
}

static void unravel_quitwatch_anything(t_pd *w, t_symbol *s, int argc, t_atom *argv)
{
    (void)w;
    (void)argc;
    (void)argv;
    if (s == gensym("quit") || s == gensym("exit"))
        unravel_quitwatch_stop();
}

static void unravel_quitwatch_start(void)
{
    static t_pd *watch;
    if (watch)
        return;
    unravel_quitwatch_class = class_new(gensym("unravel~ quit watch"), 0, 0, sizeof(t_pd),
        CLASS_PD, 0);
    class_addanything(unravel_quitwatch_class, (t_method)unravel_quitwatch_anything);
    watch = pd_new(unravel_quitwatch_class);
    pd_bind(watch, gensym("pd"));
}

/* register the exit handler again after new Python code ran (libraries and static objects
   made since then have their destructors registered later, and exit handlers run newest
   first); bounded, since each registration stays */
static void unravel_exithook(void)
{
    static int count;
    if (count < 64 && atexit(unravel_atexit) == 0)
        count++;
}

static int unravel_startpython(t_unravel *x)
{
    static int registered;
    char err[PYERR_SIZE];
    if (pyembed_start(unravel_python, unravel_libpython, unravel_home, err) != 0)
    {
        pd_error(x, "[unravel~]: %s (the Python named in %s): run 'unravel pd-install' with "
            "the Python that has unravel installed", err, unravel_cfg);
        return 0;
    }
    if (!registered)
    {
        unravel_exithook();     /* after torch's import: before its destructors */
        unravel_quitwatch_start();
        registered = 1;
    }
    return 1;
}

static void unravel_free(t_unravel *x)
{
    t_pyrunner *runner = x->x_runner;
    t_pysession *session = x->x_session;
    int i, stuck = 0;
    if (x->x_engine)
    {
        if (engine_stop_wait(x->x_engine, 1.) == 0)
        {
            engine_free(x->x_engine);
            free(x->x_engine);
        }
        else    /* inside a model call that never returns: what it uses stays (leaked) */
            runner = 0, session = 0, stuck = 1;
    }
    if (!(stuck && x->x_firston))
        unravel_closefirst(x);
    if (x->x_session)
        pyjob_cancel(x->x_session);     /* its job ends soon and frees what it holds */
    if (x->x_jobs)
        jobq_free(x->x_jobs);
    if (x->x_ctl)
    {
        if (x->x_install)
            unravel_dropcall(x, x->x_install);
        unravel_release(x, runner, session, x->x_box);
        jobq_finish(x->x_ctl);          /* the control thread runs what is queued, then ends */
    }
    pymsg_free(x->x_status);
    clock_free(x->x_errclock);
    clock_free(x->x_jobclock);
    pymsg_free(x->x_jobwait);
    for (i = 0; i < x->x_ntables; i++)
        pd_free(x->x_tables[i]);
    freebytes(x->x_tables, x->x_ntables * sizeof(t_pd *));
    clock_free(x->x_ctlclock);
    clock_free(x->x_watchclock);
    if (x->x_ins)
        freebytes(x->x_ins, x->x_insize * sizeof(float *));
    if (x->x_outs)
        freebytes(x->x_outs, x->x_outsize * sizeof(float *));
}

/* the creation's model, loaded on the control thread while Pd's thread waits (bounded: a
   model whose warm-up never returns leaves the object empty); 0 (one error line) if it
   cannot be used.  Its runner is installed once the engine exists. */
static int unravel_opennew(t_unravel *x, t_symbol *model, int bufsize)
{
    char path[MAXPDSTRING];
    t_atom a;
    t_pycall *c;
    int gpu = x->x_gpu;
    if (!unravel_startpython(x))
        return 0;
    SETSYMBOL(&a, unravel_findmodel(x, model->s_name, path) ? gensym(path) : model);
    x->x_bufsize = bufsize;
    if (!(c = unravel_newcall(x, gensym("load"), 1, &a, 1)))
        return 0;
    c->nin = c->nout = 0;
    if (jobq_push(x->x_ctl, c) != 0)
    {
        pycall_free(c);
        return 0;
    }
    if (jobq_wait_idle(x->x_ctl, CREATEWAIT) != 0)
    {
        unravel_setstalled(x, "loading it", CREATEWAIT);
        return 0;
    }
    if (!(c = (t_pycall *)jobq_pop_done(x->x_ctl)))
        return 0;
    pymsg_free(c->msg);         /* no `loaded` reply at creation */
    c->msg = 0;
    if (c->failed)
    {
        pd_error(x, "[unravel~]: %s (the object starts empty: 'load <model>' later)", c->err);
        pycall_free(c);
        return 0;
    }
    unravel_take(x, c);         /* the session, its status; the runner waits in x_install */
    x->x_method = gensym(x->x_install ? x->x_install->usedmethod : x->x_method->s_name);
    if (x->x_install)
        x->x_mp = x->x_install->mp;
    x->x_gpu = gpu;
    return x->x_session != 0;
}

/* live mode: the object's inlets and outlets without loading the model (with -m one each,
   else what the file declares, read without torch), so that the model loads on the control
   thread while the patch opens and plays; 0 when they cannot be known so (then it loads
   here, as in sync mode) */
static int unravel_shapelater(t_unravel *x, t_symbol *model)
{
    char path[MAXPDSTRING];
    if (unravel_issync(x) || !unravel_startpython(x))
        return 0;
    if (x->x_multi)
        x->x_nin = x->x_nout = 1;
    else if (pyembed_shape(unravel_findmodel(x, model->s_name, path) ? path : model->s_name,
        x->x_method->s_name, &x->x_nin, &x->x_nout) != 0)
        return 0;
    return 1;
}

static void *unravel_new(t_symbol *s, int argc, t_atom *argv)
{
    t_unravel *x = (t_unravel *)pd_new(unravel_class);
    t_symbol *model = 0;
    int bufsize = 4096, i, nargs = 0, later = 0;
    (void)s;
    x->x_canvas = canvas_getcurrent();
    x->x_dir = canvas_getdir(x->x_canvas);
    x->x_enabled = 1;
    x->x_sync = -1;
    x->x_method = gensym("forward");
    x->x_mp.in_chans = x->x_mp.in_ratio = x->x_mp.out_chans = x->x_mp.out_ratio = 1;
    x->x_mp.block = 1;
    x->x_errclock = clock_new(x, (t_method)unravel_errtick);
    x->x_jobclock = clock_new(x, (t_method)unravel_jobtick);
    x->x_ctlclock = clock_new(x, (t_method)unravel_ctltick);
    x->x_watchclock = clock_new(x, (t_method)unravel_watchtick);
    x->x_jobs = jobq_new(pyjob_run, pyjob_free);
    x->x_ctl = jobq_new(pycall_run, pycall_free);
    x->x_box = (t_pybox *)calloc(1, sizeof(t_pybox));
    if (!x->x_jobs || !x->x_ctl || !x->x_box)
    {
        pd_error(x, "[unravel~]: out of memory");
        goto fail;
    }
    if (unravel_batch)      /* Pd's thread waits for them: no audio to give way to */
    {
        jobq_setnice(x->x_jobs, 0);
        jobq_setnice(x->x_ctl, 0);
    }
    for (i = 0; i < argc; i++)
    {
        t_symbol *a = atom_getsymbol(argv + i);
        if (argv[i].a_type == A_SYMBOL && a->s_name[0] == '-' && a->s_name[1])
        {
            if (!strcmp(a->s_name, "-m"))
                x->x_multi = 1;
            else if (!strcmp(a->s_name, "-d"))
                x->x_enabled = 0;
            else if (!strcmp(a->s_name, "-sync"))
                x->x_sync = 1;
            else if (!strcmp(a->s_name, "-live"))
                x->x_sync = 0;
            else if (!strcmp(a->s_name, "-g") || !strcmp(a->s_name, "-gpu"))     /* nn~'s */
                x->x_gpu = 1;
            else if (!strcmp(a->s_name, "-p"))
                x->x_poly = 1;
            else
                pd_error(x, "[unravel~]: unknown flag '%s' (flags: -m -g -d -p -sync -live)",
                    a->s_name);
            continue;
        }
        if (nargs == 0 && argv[i].a_type == A_SYMBOL)
            model = a;
        else if (nargs == 1 && argv[i].a_type == A_SYMBOL)
            x->x_method = a;
        else if ((nargs == 1 || nargs == 2) && argv[i].a_type == A_FLOAT)
        {   /* [unravel~ m 2048]: no method */
            t_float f = atom_getfloat(argv + i);
            bufsize = (f >= 0 && f <= MAXBUFSIZE && f == (int)f) ? (int)f : -1;
            nargs = 2;
        }
        else
        {
            pd_error(x, "[unravel~]: ignoring extra argument (usage: [unravel~ <flags> <model> "
                "<method> <bufsize>])");
        }
        nargs++;
    }
    if (bufsize < 0 || bufsize > MAXBUFSIZE)
    {
        pd_error(x, "[unravel~]: bufsize is not 0 or a power of two up to %d; using 4096",
            MAXBUFSIZE);
        bufsize = 4096;
    }
    else if (bufsize && !unravel_ispow2(bufsize))
    {
        int b = unravel_pow2ceil(bufsize);
        post("[unravel~]: bufsize %d -> %d (a power of two)", bufsize, b);  /* as nn~ does */
        bufsize = b;
    }
    x->x_bufsize = bufsize;
    if (model && (later = unravel_shapelater(x, model)))
        ;   /* `load` below, once the object is made */
    else if (model && unravel_opennew(x, model, bufsize))
    {
        x->x_nin = x->x_mp.in_chans;
        x->x_nout = x->x_mp.out_chans;
    }
    else
    {
        /* no model (none given, or it failed: one error line): as nn~, an empty object with
           one signal inlet and outlet and the info outlet; 'load' one later */
        x->x_nin = x->x_nout = 1;
    }
    if (x->x_multi)
        x->x_nin = x->x_nout = 1;
    if (x->x_nin > MAXCHANS || x->x_nout > MAXCHANS)
    {
        pd_error(x, "[unravel~]: %d inputs and %d outputs are too many without -m",
            x->x_nin, x->x_nout);
        goto fail;
    }
    for (i = 1; i < x->x_nin; i++)
        inlet_new(&x->x_obj, &x->x_obj.ob_pd, &s_signal, &s_signal);
    for (i = 0; i < x->x_nout; i++)
        outlet_new(&x->x_obj, &s_signal);
    x->x_info = outlet_new(&x->x_obj, 0);
    if (!(x->x_engine = (t_engine *)malloc(sizeof(t_engine))) || engine_init(x->x_engine) != 0)
    {
        free(x->x_engine);
        x->x_engine = 0;
        pd_error(x, "[unravel~]: cannot start the worker thread");
        goto fail;
    }
    if (x->x_install)
        unravel_apply(x);
    if (x->x_session && x->x_gpu)
        unravel_gpu(x, 1);
    if (later)
    {   /* plays its first path, or silence, until the model takes over and replies
           `loaded <model>` */
        t_atom a;
        SETSYMBOL(&a, model);
        unravel_load(x, gensym("load"), 1, &a);
    }
    clock_delay(x->x_watchclock, WATCHPOLL);
    return x;
fail:
    pd_free((t_pd *)x);     /* calls unravel_free */
    return 0;
}

/* Pd keeps no public batch flag: look for -batch among the process's own arguments */
static int unravel_isbatch(void)
{
    static const char *withvalue[] = {"-open", "-send", "-path", "-lib", "-helppath",
        "-audiobuf", "-blocksize", "-r", "-sleepgrain", "-schedlib", "-extraflags"};
    char buf[16384];
    FILE *f = fopen("/proc/self/cmdline", "rb");
    size_t n, i = 0, k;
    if (!f)
        return 0;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    while (i < n)
    {
        const char *arg = buf + i;
        if (!strcmp(arg, "-batch"))
            return 1;
        i += strlen(arg) + 1;
        for (k = 0; k < sizeof(withvalue) / sizeof(*withvalue); k++)
            if (!strcmp(arg, withvalue[k]) && i < n)
                i += strlen(buf + i) + 1;
    }
    return 0;
}

/* called by the loader (unravel~.pd_linux) once it has loaded libpython; home: the
   package's own runtime (python/), or "" */
__attribute__((visibility("default"))) void unravel_core_setup(const char *python,
    const char *libpython, const char *cfg, const char *home)
{
    snprintf(unravel_home, sizeof(unravel_home), "%s", home);
    snprintf(unravel_python, sizeof(unravel_python), "%s", python);
    snprintf(unravel_libpython, sizeof(unravel_libpython), "%s", libpython);
    snprintf(unravel_cfg, sizeof(unravel_cfg), "%s", cfg);
    unravel_batch = unravel_isbatch();
    unravel_class = class_new(gensym("unravel~"), (t_newmethod)unravel_new,
        (t_method)unravel_free, sizeof(t_unravel), CLASS_MULTICHANNEL, A_GIMME, 0);
    CLASS_MAINSIGNALIN(unravel_class, t_unravel, x_f);
    class_addmethod(unravel_class, (t_method)unravel_dsp, gensym("dsp"), A_CANT, 0);
    class_addbang(unravel_class, unravel_bang);
    class_addmethod(unravel_class, (t_method)unravel_enable, gensym("enable"), A_GIMME, 0);
    class_addmethod(unravel_class, (t_method)unravel_sync, gensym("sync"), A_GIMME, 0);
    class_addmethod(unravel_class, (t_method)unravel_bufsize, gensym("bufsize"), A_GIMME, 0);
    class_addmethod(unravel_class, (t_method)unravel_poly, gensym("poly"), A_GIMME, 0);
    class_addmethod(unravel_class, (t_method)unravel_load, gensym("load"), A_GIMME, 0);
    class_addmethod(unravel_class, (t_method)unravel_method, gensym("method"), A_GIMME, 0);
    class_addmethod(unravel_class, (t_method)unravel_get_weights, gensym("get_weights"),
        A_GIMME, 0);
    class_addmethod(unravel_class, (t_method)unravel_set_weights, gensym("set_weights"),
        A_GIMME, 0);
    class_addmethod(unravel_class, (t_method)unravel_gpumsg, gensym("gpu"), A_GIMME, 0);
    class_addanything(unravel_class, (t_method)unravel_anything);   /* the bridge's routes */
    post("[unravel~] 0.1.0: RAVE models, layers and UnRAVEl in Pd");
}
