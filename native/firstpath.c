/* firstpath: see firstpath.h.  Each first path has a job queue (worker.c) with two items:
   its load, then, once the object lets it go, its free; so worker_stop_all stops it at exit
   like every other thread that may be inside torch. */
#define _GNU_SOURCE
#include <dlfcn.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "firstpath.h"
#include "worker.h"

#define FIRSTPATH_MAX 64    /* files with a first path open at once */
#ifdef __APPLE__
#define LIBSUFFIX ".dylib"
#else
#define LIBSUFFIX ".so"
#endif

struct firstpath {
    t_firstplan plan;
    void *model;            /* unravel_first_load's; 0 until loaded */
    float *in, *out;
    int state;              /* 0 loading, 1 ready, -1 failed (atomic) */
    int loaded;             /* the load item ran: the next item frees */
    int told;               /* the failure was reported */
    char err[1000];
    t_jobq *q;
};

/* unravel_first.so, loaded once per process by the first load */
static struct {
    pthread_mutex_t mutex;
    int tried;
    char err[1000];
    const char *(*torch)(void);
    void *(*load)(const char *, const char *, int, int, int, int, char *, int);
    int (*run)(void *, const float *, float *);
    void (*free)(void *);
} first_lib = {PTHREAD_MUTEX_INITIALIZER, 0, "", 0, 0, 0, 0};

static const char *first_busy[FIRSTPATH_MAX];   /* Pd's thread: the files open */

/* dlopen a library of torch's, or the cause in first_lib.err */
static void *firstpath_dlopen(const char *dir, const char *name)
{
    char path[2048];
    void *h;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (!(h = dlopen(path, RTLD_NOW | RTLD_LOCAL)))
        snprintf(first_lib.err, sizeof(first_lib.err), "%s", dlerror());
    return h;
}

/* torch's libraries from where the plan's Python has them, then unravel_first.so from
   beside this library, once; 0 when it is usable */
static int firstpath_loadlib(const t_firstplan *p)
{
    char dir[1024], *slash;
    Dl_info info;
    void *h;
    pthread_mutex_lock(&first_lib.mutex);
    if (!first_lib.tried)
    {
        first_lib.tried = 1;
        snprintf(dir, sizeof(dir), "%s", "");
        if (dladdr((void *)firstpath_open, &info) && info.dli_fname)
            snprintf(dir, sizeof(dir), "%s", info.dli_fname);
        if ((slash = strrchr(dir, '/')))
            *slash = 0;
        if (firstpath_dlopen(p->torchlib, "libc10" LIBSUFFIX) &&
            firstpath_dlopen(p->torchlib, "libtorch_cpu" LIBSUFFIX) &&
            (h = firstpath_dlopen(dir, "unravel_first.so")))
        {
            first_lib.torch = (const char *(*)(void))dlsym(h, "unravel_first_torch");
            *(void **)&first_lib.load = dlsym(h, "unravel_first_load");
            *(void **)&first_lib.run = dlsym(h, "unravel_first_run");
            *(void **)&first_lib.free = dlsym(h, "unravel_first_free");
            if (!first_lib.torch || !first_lib.load || !first_lib.run || !first_lib.free)
                snprintf(first_lib.err, sizeof(first_lib.err),
                    "unravel_first.so lacks its functions");
            else if (strcmp(first_lib.torch(), p->torchversion))
                snprintf(first_lib.err, sizeof(first_lib.err), "unravel_first.so was built "
                    "for torch %s, not %s", first_lib.torch(), p->torchversion);
        }
    }
    pthread_mutex_unlock(&first_lib.mutex);
    return *first_lib.err ? -1 : 0;
}

/* the queue's two items: the load, then the free */
static void firstpath_job(void *data)
{
    t_firstpath *f = (t_firstpath *)data;
    const t_firstplan *p = &f->plan;
    if (f->loaded)
    {
        if (f->model)
            first_lib.free(f->model);
        free(f->in);
        free(f->out);
        free(f);
#ifdef __GLIBC__
        malloc_trim(0);     /* the model's memory back to the system, not kept by this
                               thread's arena */
#endif
        return;
    }
    f->loaded = 1;
    if (firstpath_loadlib(p) != 0)
        snprintf(f->err, sizeof(f->err), "%s", first_lib.err);
    else if ((f->model = first_lib.load(p->path, p->method, p->in_chans,
        p->bufsize / p->in_ratio, p->out_chans, p->bufsize / p->out_ratio, f->err,
        sizeof(f->err))))
    {
        __atomic_store_n(&f->state, 1, __ATOMIC_RELEASE);
        return;
    }
    __atomic_store_n(&f->state, -1, __ATOMIC_RELEASE);
}

int firstpath_busy(const char *path)
{
    int i;
    for (i = 0; i < FIRSTPATH_MAX; i++)
        if (first_busy[i] && !strcmp(first_busy[i], path))
            return 1;
    return 0;
}

t_firstpath *firstpath_open(const t_firstplan *plan, char *err, int errsize)
{
    t_firstpath *f;
    int i, slot = -1;
    for (i = 0; i < FIRSTPATH_MAX && slot < 0; i++)
        if (!first_busy[i])
            slot = i;
    if (slot < 0 || plan->bufsize <= 0 || plan->in_ratio <= 0 || plan->out_ratio <= 0)
    {
        snprintf(err, errsize, "no room for another first path");
        return 0;
    }
    if (!(f = (t_firstpath *)calloc(1, sizeof(t_firstpath))) ||
        !(f->in = (float *)calloc((size_t)plan->in_chans * (plan->bufsize / plan->in_ratio),
            sizeof(float))) ||
        !(f->out = (float *)calloc((size_t)plan->out_chans * (plan->bufsize / plan->out_ratio),
            sizeof(float))) ||
        !(f->q = jobq_new(firstpath_job, 0)))
    {
        snprintf(err, errsize, "out of memory");
        goto fail;
    }
    f->plan = *plan;
    if (jobq_push(f->q, f) != 0)
    {
        snprintf(err, errsize, "cannot start its thread");
        goto fail;
    }
    first_busy[slot] = f->plan.path;
    return f;
fail:
    if (f)
    {
        if (f->q)
            jobq_free(f->q);
        free(f->in);
        free(f->out);
        free(f);
    }
    return 0;
}

int firstpath_ready(t_firstpath *f, char *err, int errsize)
{
    int s = __atomic_load_n(&f->state, __ATOMIC_ACQUIRE);
    if (s < 0 && !f->told)
    {
        f->told = 1;
        snprintf(err, errsize, "%s", f->err);
    }
    else if (err && errsize)
        *err = 0;
    return s;
}

const t_firstplan *firstpath_plan(t_firstpath *f)
{
    return &f->plan;
}

float *firstpath_in(t_firstpath *f)
{
    return f->in;
}

float *firstpath_out(t_firstpath *f)
{
    return f->out;
}

int firstpath_process(void *ctx, const float *in, float *out)
{
    t_firstpath *f = (t_firstpath *)ctx;
    return first_lib.run(f->model, in, out);
}

void firstpath_close(t_firstpath *f)
{
    t_jobq *q = f->q;
    int i;
    for (i = 0; i < FIRSTPATH_MAX; i++)
        if (first_busy[i] == f->plan.path)
            first_busy[i] = 0;
    if (jobq_push(q, f) != 0)
    {   /* no thread (stopped at exit): leaked rather than freed under a load */
        jobq_free(q);
        return;
    }
    jobq_finish(q);     /* the thread frees f, then the queue */
}
