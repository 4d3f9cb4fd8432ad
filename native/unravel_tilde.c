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
#include "pyembed.h"
#include "worker.h"

#if PD_FLOATSIZE != 32
#error "[unravel~] needs Pd with 32-bit floats"
#endif

#define MAXCHANS 256        /* signal inlets/outlets without -m */
#define MAXBUFSIZE (1 << 20)
#define JOBPOLL 10.         /* ms between looks at the job thread */
#define MAXENGINEMB 1024    /* the most memory (MB) one object's buffers may take */

static t_class *unravel_class;
/* from unravel.cfg, read by the loader (unravel_loader.c) */
static char unravel_python[MAXPDSTRING], unravel_libpython[MAXPDSTRING], unravel_cfg[MAXPDSTRING];
static int unravel_batch;   /* Pd was started with -batch */

typedef struct _unravel {
    t_object x_obj;
    t_float x_f;
    t_canvas *x_canvas;
    t_symbol *x_dir;            /* the patch folder */
    t_pysession *x_session;     /* 0: no model loaded */
    t_symbol *x_method;
    int x_params[6];            /* in_chans in_ratio out_chans out_ratio block sr of x_method */
    int x_srwarned;             /* the Pd rate we last warned about */
    int x_multi;                /* -m: one multichannel inlet and outlet */
    int x_enabled;
    int x_gpu;                  /* -g/-gpu or 'gpu 1': the model runs on the GPU */
    int x_bufsize;              /* 0: the model runs in the DSP thread */
    int x_sync;                 /* -1 automatic (sync under -batch), 0 live, 1 sync */
    int x_nin, x_nout;          /* signal inlets and outlets */
    t_outlet *x_info;
    /* DSP */
    t_engine x_engine;
    int x_engineok;
    t_pyrunner *x_runner;
    int x_dspn;                 /* Pd's block size at the last dsp call */
    int x_nins, x_nouts;        /* vectors in x_ins/x_outs */
    int x_insize, x_outsize;    /* their allocated lengths */
    float **x_ins, **x_outs;
    t_clock *x_errclock;
    unsigned x_errseen;
    char x_lasterr[PYERR_SIZE];     /* the model error printed last (printed once per cause) */
    /* jobs */
    t_jobq *x_jobs;
    t_clock *x_jobclock;
} t_unravel;

static int unravel_startpython(t_unravel *x);
static void unravel_exithook(void);

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

/* nn~'s rule for a buffer size: the next power of two, at least the method's largest
   ratio r (and a multiple of it) */
static int unravel_fitbufsize(int n, int r)
{
    int b = unravel_pow2ceil(n);
    while (b < r)
        b *= 2;
    if (b % r)
        b = r;
    return b;
}

static int unravel_issync(t_unravel *x)
{
    return x->x_sync < 0 ? unravel_batch : x->x_sync;
}

/* the smallest buffer the method takes: its largest ratio (the model's for forward) */
static int unravel_maxratio(t_unravel *x)
{
    return x->x_params[4];
}

static int unravel_needsession(t_unravel *x, const char *what)
{
    if (!x->x_session)
    {
        pd_error(x, "[unravel~]: %s: no model loaded (use 'load <model>')", what);
        return 0;
    }
    return 1;
}

/* a reply from Python goes out of the info outlet */
static void unravel_reply(void *owner, t_symbol *sel, int argc, t_atom *argv)
{
    t_unravel *x = (t_unravel *)owner;
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

/* ------------------------------ the DSP engine ------------------------------ */

/* (re)make the ring buffers and the Python runner for the current method and buffer size */
static void unravel_setupengine(t_unravel *x)
{
    t_engine *e = &x->x_engine;
    char err[PYERR_SIZE];
    int B, *p = x->x_params, inl;
    if (!x->x_engineok)
        return;
    engine_lock(e);
    engine_setfn(e, 0, 0);
    pyrunner_free(x->x_runner);
    x->x_runner = 0;
    if (x->x_session)
    {
        inl = (x->x_bufsize == 0);
        B = x->x_bufsize;
        if (inl)
        {
            B = unravel_pow2ceil(unravel_maxratio(x) > x->x_dspn ? unravel_maxratio(x) :
                x->x_dspn);
        }
        /* the rings hold 4 buffers plus a Pd vector per channel, both ways */
        double mb = (double)(p[0] + p[2]) * (4. * B + ENGINE_MAXVEC) * sizeof(float) / 1048576.;
        if (mb > MAXENGINEMB)
            pd_error(x, "[unravel~]: %s: %d+%d channels at bufsize %d need %.0f MB of buffers "
                "(limit %d MB)", x->x_method->s_name, p[0], p[2], B, mb, MAXENGINEMB);
        else if (engine_configure(e, p[0], p[1], p[2], p[3], B) != 0)
            pd_error(x, "[unravel~]: cannot allocate buffers of %d frames", B);
        else
        {
            engine_setmode(e, inl ? 0 : unravel_issync(x), inl);
            x->x_runner = pyrunner_new(x->x_session, x->x_method->s_name, e->cin, p[0],
                B / p[1], e->cout, p[2], B / p[3], err);
            x->x_lasterr[0] = 0;
            if (x->x_runner)
            {
                engine_setfn(e, pyrunner_process, x->x_runner);
                unravel_exithook();     /* after the runner's first Python: see there */
            }
            else
                pd_error(x, "[unravel~]: %s", err);
        }
    }
    engine_unlock(e);
}

static void unravel_resetengine(t_unravel *x)
{
    if (!x->x_engineok)
        return;
    engine_lock(&x->x_engine);
    engine_reset(&x->x_engine);
    engine_unlock(&x->x_engine);
}

static t_int *unravel_perform(t_int *w)
{
    t_unravel *x = (t_unravel *)(w[1]);
    int n = (int)(w[2]), c;
    if (x->x_enabled && x->x_runner)
        engine_perform(&x->x_engine, x->x_ins, x->x_nins, x->x_outs, x->x_nouts, n);
    else
        for (c = 0; c < x->x_nouts; c++)
            memset(x->x_outs[c], 0, n * sizeof(float));
    if (x->x_engineok && engine_errors(&x->x_engine) != x->x_errseen)
    {
        x->x_errseen = engine_errors(&x->x_engine);
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
    int n = sp[0]->s_n, i, nin, nout, outch = x->x_session ? x->x_params[2] : 1;
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
    if (x->x_session && x->x_params[5] && (int)sp[0]->s_sr != x->x_params[5] &&
        (int)sp[0]->s_sr != x->x_srwarned)
    {
        post("[unravel~]: warning: Pd runs at %d Hz, the model at %d Hz (no resampling: "
            "pitch and time change)", (int)sp[0]->s_sr, x->x_params[5]);
        x->x_srwarned = (int)sp[0]->s_sr;
    }
    if (x->x_dspn != n)
    {
        x->x_dspn = n;
        if (x->x_bufsize == 0)
            unravel_setupengine(x);
    }
    unravel_resetengine(x);     /* every DSP start renders the same from sample 0 */
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

/* nn~'s GPU switch: the session moves the model to the GPU (x_gpu) or back to the CPU;
   without a GPU it hands back nn~'s line, posted here, and the model stays on the CPU. An
   object without a model keeps the wish for its first 'load'. */
static void unravel_gpunote(t_unravel *x)
{
    char note[PYERR_SIZE], err[PYERR_SIZE];
    if (!x->x_session)
        return;
    if (pysession_gpu(x->x_session, x->x_gpu, note, err) != 0)
    {
        pd_error(x, "[unravel~]: gpu: %s", err);
        x->x_gpu = 0;
    }
    else if (*note)
    {
        post("[unravel~]: %s", note);
        x->x_gpu = 0;
    }
}

static void unravel_gpu(t_unravel *x, t_floatarg f)
{
    x->x_gpu = (f != 0);
    unravel_gpunote(x);
}

/* take the method's parameters; the object's channel counts stay (no -m: fixed inlets) */
static int unravel_usemethod(t_unravel *x, t_symbol *method)
{
    char err[PYERR_SIZE];
    int p[6];
    if (!pysession_hasmethod(x->x_session, method->s_name) && method != gensym("forward"))
    {   /* as nn~: a post, then forward */
        post("[unravel~]: method '%s' not found in the model, using forward instead",
            method->s_name);
        method = gensym("forward");
    }
    if (pysession_params(x->x_session, method->s_name, p, err) != 0)
    {
        pd_error(x, "[unravel~]: %s", err);
        return 0;
    }
    if (!x->x_multi && x->x_nin && (p[0] != x->x_nin || p[2] != x->x_nout))
        post("[unravel~]: warning: method '%s' takes %d and gives %d channels; this object "
            "has %d signal inlets and %d outlets (missing inputs are silent, extra outputs "
            "are dropped)", method->s_name, p[0], p[2], x->x_nin, x->x_nout);
    if (x->x_bufsize && x->x_bufsize % p[4])
    {
        int r = p[4], b = unravel_fitbufsize(x->x_bufsize, r);
        post("[unravel~]: bufsize %d -> %d for method '%s' (ratio %d)", x->x_bufsize, b,
            method->s_name, r);
        x->x_bufsize = b;
    }
    x->x_method = method;
    memcpy(x->x_params, p, sizeof(p));
    return 1;
}

static void unravel_method(t_unravel *x, t_symbol *s, int argc, t_atom *argv)
{
    int oldout = x->x_params[2];
    (void)s;
    if (!unravel_needsession(x, "method"))
        return;
    if (argc != 1 || argv[0].a_type != A_SYMBOL)
    {
        pd_error(x, "[unravel~]: method: usage: method <name>");
        return;
    }
    if (!unravel_usemethod(x, atom_getsymbol(argv)))
        return;
    unravel_setupengine(x);
    if (x->x_multi && oldout != x->x_params[2])
        canvas_update_dsp();
}

static void unravel_load(t_unravel *x, t_symbol *s, int argc, t_atom *argv)
{
    char path[MAXPDSTRING], err[PYERR_SIZE];
    const char *spec;
    t_symbol *method;
    int oldout = x->x_params[2];
    (void)s;
    if (argc != 1 || argv[0].a_type != A_SYMBOL)
    {
        pd_error(x, "[unravel~]: load: usage: load <model>");
        return;
    }
    if (!unravel_startpython(x))
        return;
    spec = atom_getsymbol(argv)->s_name;
    if (unravel_findmodel(x, spec, path))
        spec = path;
    if (x->x_session)
    {
        if (pysession_load(x->x_session, spec, x->x_dir->s_name, err) != 0)
        {
            pd_error(x, "[unravel~]: %s", err);
            return;
        }
    }
    else if (!(x->x_session = pysession_new(spec, x->x_dir->s_name, err)))
    {
        pd_error(x, "[unravel~]: %s", err);
        return;
    }
    /* keep the method if the new model has it, else forward, else its first */
    method = x->x_method;
    if (!pysession_hasmethod(x->x_session, method->s_name))
        method = gensym("forward");
    if (!pysession_hasmethod(x->x_session, method->s_name))
    {
        method = gensym("encode");
        if (!pysession_hasmethod(x->x_session, method->s_name))
            method = gensym("decode");
    }
    if (unravel_usemethod(x, method))
        unravel_setupengine(x);
    unravel_gpunote(x);
    if (x->x_multi && oldout != x->x_params[2])
        canvas_update_dsp();
}

/* ------------------------------ control messages ------------------------------ */

/* as nn~: disabled, the buffers stand still; enabled again, sound resumes at once from
   where it stopped (no reset, no extra buffer of latency) */
static void unravel_enable(t_unravel *x, t_symbol *s, int argc, t_atom *argv)
{
    (void)s;
    if (argc != 1 || argv[0].a_type != A_FLOAT || !isfinite(atom_getfloat(argv)))
    {
        pd_error(x, "[unravel~]: enable: usage: enable 0|1");
        return;
    }
    x->x_enabled = (atom_getfloat(argv) != 0);
}

static void unravel_sync(t_unravel *x, t_symbol *s, int argc, t_atom *argv)
{
    (void)s;
    if (argc != 1 || argv[0].a_type != A_FLOAT || !isfinite(atom_getfloat(argv)))
    {
        pd_error(x, "[unravel~]: sync: usage: sync 0|1 (0 live, 1 sync)");
        return;
    }
    x->x_sync = (atom_getfloat(argv) != 0);
    unravel_setupengine(x);
}

/* as nn~: any size is rounded (unravel_fitbufsize) and the size used is posted; 0 runs the
   model inline */
static void unravel_bufsize(t_unravel *x, t_symbol *s, int argc, t_atom *argv)
{
    t_float f;
    int n, b, r = x->x_session ? unravel_maxratio(x) : 1;
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
    b = n ? unravel_fitbufsize(n, r) : 0;
    if (b != n)
        post("[unravel~]: bufsize %d -> %d (a power of two, at least the ratio %d)", n, b, r);
    x->x_bufsize = b;
    unravel_setupengine(x);
}

static void unravel_bang(t_unravel *x)
{
    char err[PYERR_SIZE];
    t_atom a[6];
    t_engine *e = &x->x_engine;
    int inl = (x->x_bufsize == 0);
    if (!x->x_session)
    {
        SETFLOAT(a, 0);
        outlet_anything(x->x_info, gensym("loaded"), 1, a);
        SETFLOAT(a, x->x_enabled);
        outlet_anything(x->x_info, gensym("enabled"), 1, a);
        return;
    }
    SETSYMBOL(a, x->x_method);
    SETFLOAT(a + 1, x->x_enabled);
    SETFLOAT(a + 2, x->x_bufsize);
    SETFLOAT(a + 3, e->ready ? e->latency :
        (inl || unravel_issync(x) ? 1 : 2) * (x->x_bufsize ? x->x_bufsize : unravel_maxratio(x)));
    SETSYMBOL(a + 4, gensym(inl ? "inline" : unravel_issync(x) ? "sync" : "live"));
    SETFLOAT(a + 5, engine_underruns(e));
    if (pysession_message(x->x_session, "status", 6, a, unravel_reply, x, err) != 0)
        pd_error(x, "[unravel~]: %s", err);
}

/* messages handled entirely by the bridge */
static void unravel_forward(t_unravel *x, t_symbol *s, int argc, t_atom *argv)
{
    char err[PYERR_SIZE];
    if (!unravel_needsession(x, s->s_name))
        return;
    if (pysession_message(x->x_session, s->s_name, argc, argv, unravel_reply, x, err) != 0)
        pd_error(x, "[unravel~]: %s", err);
}

static t_garray *unravel_findarray(t_unravel *x, t_symbol *name, const char *what)
{
    t_garray *a = (t_garray *)pd_findbyclass(name, garray_class);
    if (!a)
        pd_error(x, "[unravel~]: %s: no array named '%s'", what, name->s_name);
    return a;
}

typedef struct _unravel_arraydest {
    t_unravel *owner;
    t_garray *array;
} t_unravel_arraydest;

static void unravel_toarray(void *owner, const float *v, long n)
{
    t_unravel_arraydest *d = (t_unravel_arraydest *)owner;
    t_word *vec;
    int size, i;
    garray_resize_long(d->array, n);
    if (!garray_getfloatwords(d->array, &size, &vec) || size != n)
    {
        pd_error(d->owner, "[unravel~]: get_weights: cannot resize the array to %ld", n);
        return;
    }
    for (i = 0; i < size; i++)
        vec[i].w_float = v[i];
    garray_redraw(d->array);
}

static void unravel_get_weights(t_unravel *x, t_symbol *s, int argc, t_atom *argv)
{
    char err[PYERR_SIZE];
    t_unravel_arraydest d;
    if (!unravel_needsession(x, s->s_name))
        return;
    if (argc == 2 && argv[0].a_type == A_SYMBOL && argv[1].a_type == A_SYMBOL)
    {
        if (!(d.array = unravel_findarray(x, atom_getsymbol(argv + 1), "get_weights")))
            return;
        d.owner = x;
        if (pysession_get_weights(x->x_session, atom_getsymbol(argv)->s_name, unravel_toarray,
            &d, err) != 0)
            pd_error(x, "[unravel~]: %s", err);
        return;
    }
    unravel_forward(x, s, argc, argv);
}

static void unravel_set_weights(t_unravel *x, t_symbol *s, int argc, t_atom *argv)
{
    char err[PYERR_SIZE];
    if (!unravel_needsession(x, s->s_name))
        return;
    if (argc == 2 && argv[0].a_type == A_SYMBOL && argv[1].a_type == A_SYMBOL)
    {
        t_garray *a;
        t_word *vec;
        int size, i;
        float *buf;
        if (!(a = unravel_findarray(x, atom_getsymbol(argv + 1), "set_weights")))
            return;
        if (!garray_getfloatwords(a, &size, &vec))
        {
            pd_error(x, "[unravel~]: set_weights: array '%s' has no floats",
                atom_getsymbol(argv + 1)->s_name);
            return;
        }
        buf = (float *)getbytes((size ? size : 1) * sizeof(float));
        for (i = 0; i < size; i++)
            buf[i] = vec[i].w_float;
        if (pysession_set_weights(x->x_session, atom_getsymbol(argv)->s_name, buf, size, err))
            pd_error(x, "[unravel~]: %s", err);
        freebytes(buf, (size ? size : 1) * sizeof(float));
        return;
    }
    unravel_forward(x, s, argc, argv);
}

/* ------------------------------ UnRAVEl jobs ------------------------------ */

static void unravel_jobreply(void *owner, t_symbol *sel, int argc, t_atom *argv);

static void unravel_jobtick(t_unravel *x)
{
    void *job;
    while ((job = jobq_pop_done(x->x_jobs)))
    {
        pyjob_reply((t_pyjob *)job, unravel_jobreply, x);
        pyjob_free(job);
    }
    if (jobq_pending(x->x_jobs))
        clock_delay(x->x_jobclock, JOBPOLL);
}

/* queue message s as a job of `session` (0: a job that needs no model) on the job thread */
static void unravel_pushjob(t_unravel *x, t_pysession *session, t_symbol *s, int argc,
    t_atom *argv)
{
    char err[PYERR_SIZE];
    t_pyjob *job;
    if (!(job = pyjob_new(session, s->s_name, argc, argv, x->x_dir->s_name, err)))
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
    clock_delay(x->x_jobclock, JOBPOLL);
}

static void unravel_job(t_unravel *x, t_symbol *s, int argc, t_atom *argv)
{
    if (unravel_needsession(x, s->s_name))
        unravel_pushjob(x, x->x_session, s, argc, argv);
}

/* ------------------------------ nn~'s model registry ------------------------------ */

/* print_available_models, download <card> [name], remove <name>: no model needed; the
   network and file work runs on the job thread (bridge.registry_message) */
static int unravel_isregistry(t_symbol *s)
{
    return s == gensym("print_available_models") || s == gensym("download") ||
        s == gensym("remove");
}

static void unravel_registry(t_unravel *x, t_symbol *s, int argc, t_atom *argv)
{
    if (unravel_startpython(x))
        unravel_pushjob(x, 0, s, argc, argv);
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
    if (pyembed_start(unravel_python, unravel_libpython, err) != 0)
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
    if (x->x_engineok)
        engine_free(&x->x_engine);
    pyrunner_free(x->x_runner);
    if (x->x_session)
        pyjob_cancel(x->x_session);     /* its job ends soon and frees what it holds */
    if (x->x_jobs)
        jobq_free(x->x_jobs);
    if (x->x_session)
        pysession_free(x->x_session);
    clock_free(x->x_errclock);
    clock_free(x->x_jobclock);
    if (x->x_ins)
        freebytes(x->x_ins, x->x_insize * sizeof(float *));
    if (x->x_outs)
        freebytes(x->x_outs, x->x_outsize * sizeof(float *));
}

/* the creation's model: 0 (one error line, the session freed) if it cannot be used */
static int unravel_opennew(t_unravel *x, t_symbol *model, t_symbol *method)
{
    char path[MAXPDSTRING], err[PYERR_SIZE];
    const char *spec = model->s_name;
    if (!unravel_startpython(x))
        return 0;
    if (unravel_findmodel(x, spec, path))
        spec = path;
    if (!(x->x_session = pysession_new(spec, x->x_dir->s_name, err)))
    {
        pd_error(x, "[unravel~]: %s (the object starts empty: 'load <model>' later)", err);
        return 0;
    }
    if (!unravel_usemethod(x, method))
    {
        pysession_free(x->x_session);
        x->x_session = 0;
        return 0;
    }
    unravel_gpunote(x);
    return 1;
}

static void *unravel_new(t_symbol *s, int argc, t_atom *argv)
{
    t_unravel *x = (t_unravel *)pd_new(unravel_class);
    t_symbol *model = 0, *method = gensym("forward");
    int bufsize = 4096, i, nargs = 0;
    (void)s;
    x->x_canvas = canvas_getcurrent();
    x->x_dir = canvas_getdir(x->x_canvas);
    x->x_enabled = 1;
    x->x_sync = -1;
    x->x_errclock = clock_new(x, (t_method)unravel_errtick);
    x->x_jobclock = clock_new(x, (t_method)unravel_jobtick);
    x->x_jobs = jobq_new(pyjob_run, pyjob_free);
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
            else
                pd_error(x, "[unravel~]: unknown flag '%s' (flags: -m -g -d -sync -live)",
                    a->s_name);
            continue;
        }
        if (nargs == 0 && argv[i].a_type == A_SYMBOL)
            model = a;
        else if (nargs == 1 && argv[i].a_type == A_SYMBOL)
            method = a;
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
    x->x_method = method;
    if (model && unravel_opennew(x, model, method))
    {
        x->x_nin = x->x_params[0];
        x->x_nout = x->x_params[2];
    }
    else
    {
        /* no model (none given, or it failed: one error line): as nn~, an empty object with
           one signal inlet and outlet and the info outlet; 'load' one later */
        x->x_nin = x->x_nout = 1;
        x->x_params[0] = x->x_params[1] = x->x_params[2] = x->x_params[3] = 1;
        x->x_params[4] = 1;
        x->x_params[5] = 0;
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
    if (engine_init(&x->x_engine) != 0)
    {
        pd_error(x, "[unravel~]: cannot start the worker thread");
        goto fail;
    }
    x->x_engineok = 1;
    unravel_setupengine(x);
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

/* called by the loader (unravel~.pd_linux) once it has loaded libpython */
__attribute__((visibility("default"))) void unravel_core_setup(const char *python,
    const char *libpython, const char *cfg)
{
    static const char *jobs[] = {"encode", "stats", "generate", "decode", "tempo", "diffuse"};
    static const char *forwarded[] = {"reload", "get", "set", "layers", "bend", "restore",
        "save"};
    size_t i;
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
    class_addmethod(unravel_class, (t_method)unravel_load, gensym("load"), A_GIMME, 0);
    class_addmethod(unravel_class, (t_method)unravel_method, gensym("method"), A_GIMME, 0);
    class_addmethod(unravel_class, (t_method)unravel_get_weights, gensym("get_weights"),
        A_GIMME, 0);
    class_addmethod(unravel_class, (t_method)unravel_set_weights, gensym("set_weights"),
        A_GIMME, 0);
    for (i = 0; i < sizeof(forwarded) / sizeof(*forwarded); i++)
        class_addmethod(unravel_class, (t_method)unravel_forward, gensym(forwarded[i]),
            A_GIMME, 0);
    for (i = 0; i < sizeof(jobs) / sizeof(*jobs); i++)
        class_addmethod(unravel_class, (t_method)unravel_job, gensym(jobs[i]), A_GIMME, 0);
    class_addmethod(unravel_class, (t_method)unravel_gpu, gensym("gpu"), A_FLOAT, 0);
    class_addmethod(unravel_class, (t_method)unravel_registry, gensym("print_available_models"),
        A_GIMME, 0);
    class_addmethod(unravel_class, (t_method)unravel_registry, gensym("download"), A_GIMME, 0);
    class_addmethod(unravel_class, (t_method)unravel_registry, gensym("remove"), A_GIMME, 0);
    post("[unravel~] 0.1.0: RAVE models, layers and UnRAVEl in Pd");
}
