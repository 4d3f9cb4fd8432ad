/* pyembed: see pyembed.h */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <math.h>
#include <string.h>
#include "pyembed.h"
#include "worker.h"

static int py_state;                /* 0 not tried, 1 running, -1 failed */
static char py_starterr[PYERR_SIZE];
static PyObject *py_bridge;         /* the module unravel.bridge */
static PyObject *py_session_class;
static PyObject *py_cancelled;      /* bridge.Cancelled: raised in jobs to stop them */

#define PY_MAXPARAM (1 << 20)       /* no channel count or ratio above this */

/* every call into Python: the GIL, and plain Python's floating-point mode (see fp_enter) */
typedef struct pyenter {
    PyGILState_STATE gil;
    unsigned fp;
} t_pyenter;

static t_pyenter py_enter(void)
{
    t_pyenter e;
    e.fp = fp_enter();
    e.gil = PyGILState_Ensure();
    return e;
}

static void py_leave(t_pyenter e)
{
    PyGILState_Release(e.gil);
    fp_leave(e.fp);
}

/* ---------------------------------- errors ---------------------------------- */

static void seterr(char *err, const char *msg)
{
    if (err)
        snprintf(err, PYERR_SIZE, "%s", msg);
}

/* the pending exception's last line into err (GIL held); clears the exception */
static void py_fetcherr(char *err)
{
    PyObject *type, *value, *tb, *str = 0;
    const char *name = "error", *msg = 0, *line, *end;
    char buf[PYERR_SIZE];
    PyErr_Fetch(&type, &value, &tb);
    if (!type)
    {
        seterr(err, "unknown Python error");
        return;
    }
    PyErr_NormalizeException(&type, &value, &tb);
    if (PyType_Check(type))
        name = ((PyTypeObject *)type)->tp_name;
    if (value && (str = PyObject_Str(value)))
        msg = PyUnicode_AsUTF8(str);
    if (!msg)
        PyErr_Clear();
    if (msg && *msg)
    {
        /* the last non-empty line */
        size_t len = strlen(msg);
        while (len && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
            len--;
        end = msg + len;
        line = end;
        while (line > msg && line[-1] != '\n')
            line--;
        /* the bridge turns every error into an UnravelError line; anything else (a bug)
           still gets one line, without Python's class name */
        if (strstr(name, "UnravelError"))
            snprintf(buf, sizeof(buf), "%.*s", (int)(end - line), line);
        else
            snprintf(buf, sizeof(buf), "unexpected error (%.*s)", (int)(end - line), line);
    }
    else
        snprintf(buf, sizeof(buf), "%s", strstr(name, "Cancelled") ||
            strstr(name, "KeyboardInterrupt") ? "cancelled" : "unexpected error");
    seterr(err, buf);
    Py_XDECREF(str);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
}

/* ---------------------------------- start ---------------------------------- */

int pyembed_start(const char *python, const char *libpython, char *err)
{
    t_pyenter g;
    PyObject *r;
    if (py_state == 1)
        return 0;
    if (py_state == -1)
    {
        seterr(err, py_starterr);
        return -1;
    }
    py_state = -1;
    if (libpython && *libpython)
    {
        /* make libpython's symbols global so numpy's and torch's extensions resolve them */
        if (!dlopen(libpython, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD))
            dlopen(libpython, RTLD_NOW | RTLD_GLOBAL);
    }
    if (!Py_IsInitialized())
    {
        PyStatus status;
        PyConfig config;
        PyConfig_InitPythonConfig(&config);
        config.install_signal_handlers = 0;
        config.parse_argv = 0;
        config.buffered_stdio = 0;
        if (python && *python)
        {
            status = PyConfig_SetBytesString(&config, &config.executable, python);
            if (!PyStatus_Exception(status))
                status = PyConfig_SetBytesString(&config, &config.program_name, python);
            if (PyStatus_Exception(status))
            {
                snprintf(py_starterr, PYERR_SIZE, "cannot configure Python %s", python);
                PyConfig_Clear(&config);
                seterr(err, py_starterr);
                return -1;
            }
        }
        status = Py_InitializeFromConfig(&config);
        PyConfig_Clear(&config);
        if (PyStatus_Exception(status))
        {
            snprintf(py_starterr, PYERR_SIZE, "cannot start Python %s (%s)",
                python ? python : "", status.err_msg ? status.err_msg : "unknown error");
            seterr(err, py_starterr);
            return -1;
        }
        /* release the GIL taken by initialization; every call below takes it back */
        PyEval_SaveThread();
    }
    g = py_enter();
    py_bridge = PyImport_ImportModule("unravel.bridge");
    if (py_bridge)
        py_session_class = PyObject_GetAttrString(py_bridge, "Session");
    if (py_session_class)
        py_cancelled = PyObject_GetAttrString(py_bridge, "Cancelled");
    if (!py_bridge || !py_session_class || !py_cancelled ||
        !(r = PyObject_CallMethod(py_bridge, "init", NULL)))
    {
        char msg[PYERR_SIZE];
        py_fetcherr(msg);
        snprintf(py_starterr, PYERR_SIZE, "cannot import unravel.bridge with %s: %s",
            python ? python : "python", msg);
        Py_CLEAR(py_bridge);
        py_leave(g);
        seterr(err, py_starterr);
        return -1;
    }
    Py_DECREF(r);
    py_leave(g);
    py_state = 1;
    return 0;
}

/* ------------------------------ conversions ------------------------------ */

static PyObject *py_fromatoms(int argc, t_atom *argv)
{
    PyObject *list = PyList_New(argc);
    int i;
    if (!list)
        return 0;
    for (i = 0; i < argc; i++)
    {
        PyObject *v;
        if (argv[i].a_type == A_FLOAT)
            v = PyFloat_FromDouble(argv[i].a_w.w_float);
        else if (argv[i].a_type == A_SYMBOL)
            v = PyUnicode_DecodeUTF8(argv[i].a_w.w_symbol->s_name,
                strlen(argv[i].a_w.w_symbol->s_name), "replace");
        else
        {
            Py_INCREF(Py_None);
            v = Py_None;
        }
        if (!v)
        {
            Py_DECREF(list);
            return 0;
        }
        PyList_SET_ITEM(list, i, v);
    }
    return list;
}

/* atoms for one value: a number, a str, or a float32 buffer (numpy array); n counts them */
static int py_countvalue(PyObject *v)
{
    if (PyUnicode_Check(v) || PyFloat_Check(v) || PyLong_Check(v))
        return 1;
    if (PyObject_CheckBuffer(v))
    {
        Py_buffer b;
        int n;
        if (PyObject_GetBuffer(v, &b, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        {
            PyErr_Clear();
            return 1;
        }
        n = (b.format && !strcmp(b.format, "f")) ? (int)(b.len / sizeof(float)) : 1;
        PyBuffer_Release(&b);
        return n;
    }
    return 1;
}

static t_atom *py_putvalue(PyObject *v, t_atom *a)
{
    if (PyUnicode_Check(v))
    {
        const char *s = PyUnicode_AsUTF8(v);
        SETSYMBOL(a, gensym(s ? s : ""));
        if (!s)
            PyErr_Clear();
        return a + 1;
    }
    if (PyFloat_Check(v) || PyLong_Check(v))
    {
        double d = PyFloat_AsDouble(v);
        if (PyErr_Occurred())
            PyErr_Clear(), d = 0;
        SETFLOAT(a, (t_float)d);
        return a + 1;
    }
    if (PyObject_CheckBuffer(v))
    {
        Py_buffer b;
        if (PyObject_GetBuffer(v, &b, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) == 0)
        {
            if (b.format && !strcmp(b.format, "f"))
            {
                const float *f = (const float *)b.buf;
                Py_ssize_t i, n = b.len / (Py_ssize_t)sizeof(float);
                for (i = 0; i < n; i++)
                    SETFLOAT(a + i, f[i]);
                PyBuffer_Release(&b);
                return a + n;
            }
            PyBuffer_Release(&b);
        }
        else
            PyErr_Clear();
    }
    {
        PyObject *s = PyObject_Str(v);
        const char *c = s ? PyUnicode_AsUTF8(s) : 0;
        if (!c)
            PyErr_Clear();
        SETSYMBOL(a, gensym(c ? c : "?"));
        Py_XDECREF(s);
    }
    return a + 1;
}

/* send each reply [selector, values...] of the list `replies` (GIL held) */
static int py_sendreplies(PyObject *replies, t_pyreply reply, void *owner, char *err)
{
    PyObject *seq = PySequence_Fast(replies, "replies must be a list");
    Py_ssize_t i, nr;
    if (!seq)
    {
        py_fetcherr(err);
        return -1;
    }
    nr = PySequence_Fast_GET_SIZE(seq);
    for (i = 0; i < nr; i++)
    {
        PyObject *item = PySequence_Fast(PySequence_Fast_GET_ITEM(seq, i), "a reply is a list");
        Py_ssize_t j, k;
        long natoms = 0;
        const char *sel;
        t_atom *atoms, *p;
        if (!item || PySequence_Fast_GET_SIZE(item) < 1 ||
            !PyUnicode_Check(PySequence_Fast_GET_ITEM(item, 0)))
        {
            Py_XDECREF(item);
            PyErr_Clear();
            continue;
        }
        sel = PyUnicode_AsUTF8(PySequence_Fast_GET_ITEM(item, 0));
        k = PySequence_Fast_GET_SIZE(item);
        for (j = 1; j < k; j++)
            natoms += py_countvalue(PySequence_Fast_GET_ITEM(item, j));
        atoms = (t_atom *)getbytes((natoms ? natoms : 1) * sizeof(t_atom));
        if (atoms)
        {
            p = atoms;
            for (j = 1; j < k; j++)
                p = py_putvalue(PySequence_Fast_GET_ITEM(item, j), p);
            reply(owner, gensym(sel ? sel : "?"), (int)(p - atoms), atoms);
            freebytes(atoms, (natoms ? natoms : 1) * sizeof(t_atom));
        }
        Py_DECREF(item);
    }
    Py_DECREF(seq);
    return 0;
}

/* --------------------------------- session --------------------------------- */

struct pysession {
    PyObject *obj;      /* a bridge.Session */
};

t_pysession *pysession_new(const char *spec, const char *dir, char *err)
{
    t_pyenter g;
    t_pysession *s;
    PyObject *obj;
    if (py_state != 1)
    {
        seterr(err, "Python is not running");
        return 0;
    }
    g = py_enter();
    obj = PyObject_CallFunction(py_session_class, "ss", spec, dir ? dir : "");
    if (!obj)
    {
        py_fetcherr(err);
        py_leave(g);
        return 0;
    }
    py_leave(g);
    s = (t_pysession *)getbytes(sizeof(*s));
    s->obj = obj;
    return s;
}

void pysession_free(t_pysession *s)
{
    t_pyenter g;
    if (!s)
        return;
    g = py_enter();
    Py_XDECREF(s->obj);
    py_leave(g);
    freebytes(s, sizeof(*s));
}

int pysession_load(t_pysession *s, const char *spec, const char *dir, char *err)
{
    t_pyenter g = py_enter();
    PyObject *r = PyObject_CallMethod(s->obj, "load", "ss", spec, dir ? dir : "");
    int rc = 0;
    if (!r)
        py_fetcherr(err), rc = -1;
    Py_XDECREF(r);
    py_leave(g);
    return rc;
}

int pysession_gpu(t_pysession *s, int on, char *note, char *err)
{
    t_pyenter g = py_enter();
    PyObject *r = PyObject_CallMethod(s->obj, "gpu", "i", on);
    const char *text = r ? PyUnicode_AsUTF8(r) : 0;
    int rc = 0;
    if (text)
        snprintf(note, PYERR_SIZE, "%s", text);
    else
        py_fetcherr(err), rc = -1;
    Py_XDECREF(r);
    py_leave(g);
    return rc;
}

int pysession_params(t_pysession *s, const char *method, int p[6], char *err)
{
    t_pyenter g = py_enter();
    PyObject *r = PyObject_CallMethod(s->obj, "params", "s", method);
    int rc = -1, i;
    if (r && PySequence_Check(r) && PySequence_Size(r) == 6)
    {
        rc = 0;
        for (i = 0; i < 6; i++)
        {
            PyObject *v = PySequence_GetItem(r, i);
            p[i] = v ? (int)PyLong_AsLong(v) : 0;
            Py_XDECREF(v);
        }
        if (PyErr_Occurred())
            rc = -1;
        /* the bridge checks the model's values; never divide by a bad one here */
        for (i = 0; i < 5 && !rc; i++)
            if (p[i] < 1 || p[i] > PY_MAXPARAM)
                rc = -1;
    }
    if (rc)
    {
        if (PyErr_Occurred())
            py_fetcherr(err);
        else
            snprintf(err, PYERR_SIZE, "%s: bad method parameters", method);
    }
    Py_XDECREF(r);
    py_leave(g);
    return rc;
}

int pysession_hasmethod(t_pysession *s, const char *method)
{
    int p[6];
    char err[PYERR_SIZE];
    return pysession_params(s, method, p, err) == 0;
}

int pysession_message(t_pysession *s, const char *sel, int argc, t_atom *argv,
    t_pyreply reply, void *owner, char *err)
{
    t_pyenter g = py_enter();
    PyObject *args = py_fromatoms(argc, argv), *r = 0;
    int rc = -1;
    if (args)
        r = PyObject_CallMethod(s->obj, "message", "sO", sel, args);
    if (r)
        rc = py_sendreplies(r, reply, owner, err);
    else
        py_fetcherr(err);
    Py_XDECREF(args);
    Py_XDECREF(r);
    py_leave(g);
    return rc;
}

int pysession_get_weights(t_pysession *s, const char *layer, t_pyfloats fn, void *owner,
    char *err)
{
    t_pyenter g = py_enter();
    PyObject *r = PyObject_CallMethod(s->obj, "get_weights", "s", layer);
    Py_buffer b;
    int rc = -1;
    if (r && PyObject_GetBuffer(r, &b, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) == 0)
    {
        if (b.format && !strcmp(b.format, "f"))
        {
            fn(owner, (const float *)b.buf, (long)(b.len / sizeof(float)));
            rc = 0;
        }
        else
            seterr(err, "get_weights: not float32 weights");
        PyBuffer_Release(&b);
    }
    else
        py_fetcherr(err);
    Py_XDECREF(r);
    py_leave(g);
    return rc;
}

int pysession_set_weights(t_pysession *s, const char *layer, float *v, long n, char *err)
{
    t_pyenter g = py_enter();
    PyObject *mv = PyMemoryView_FromMemory((char *)v, (Py_ssize_t)n * sizeof(float), PyBUF_WRITE);
    PyObject *r = mv ? PyObject_CallMethod(s->obj, "set_weights", "sO", layer, mv) : 0;
    int rc = 0;
    if (!r)
        py_fetcherr(err), rc = -1;
    Py_XDECREF(r);
    Py_XDECREF(mv);
    py_leave(g);
    return rc;
}

/* --------------------------------- runner --------------------------------- */

/* Give a worker or job thread one lasting Python thread state, so that each later
   PyGILState_Ensure only takes the GIL (instead of making and freeing a thread state on
   every buffer).  The state lives as long as the thread: the key's destructor deletes it
   when the thread ends (an object freed), except at exit, where threads are only stopped. */
static pthread_key_t py_threadkey;
static pthread_once_t py_threadonce = PTHREAD_ONCE_INIT;
static int py_exiting;              /* pyjob_cancel_all ran: the process is leaving */

static void py_threadexit(void *tstate)
{
    if (__atomic_load_n(&py_exiting, __ATOMIC_ACQUIRE))
        return;
    /* not PyGILState_Release: the C library has already cleared Python's own key here */
    PyEval_RestoreThread((PyThreadState *)tstate);
    PyThreadState_Clear((PyThreadState *)tstate);
    PyThreadState_DeleteCurrent();
}

static void py_threadmakekey(void)
{
    pthread_key_create(&py_threadkey, py_threadexit);
}

static void py_threadenter(void)
{
    pthread_once(&py_threadonce, py_threadmakekey);
    if (!pthread_getspecific(py_threadkey))
    {
        PyGILState_Ensure();
        pthread_setspecific(py_threadkey, PyEval_SaveThread());
    }
}

struct pyrunner {
    PyObject *process;          /* the bound method Runner.process */
    float *out;                 /* what process() writes: nout floats */
    long nout;
    char name[PYERR_SIZE / 2];  /* "<model file>: <method>", for the non-finite error */
    pthread_mutex_t mutex;      /* guards err */
    int haserr;
    char err[PYERR_SIZE];
};

t_pyrunner *pyrunner_new(t_pysession *s, const char *method, float *in, int in_chans,
    int in_frames, float *out, int out_chans, int out_frames, char *err)
{
    t_pyenter g = py_enter();
    t_pyrunner *r = 0;
    PyObject *inmv = PyMemoryView_FromMemory((char *)in,
        (Py_ssize_t)in_chans * in_frames * sizeof(float), PyBUF_WRITE);
    PyObject *outmv = PyMemoryView_FromMemory((char *)out,
        (Py_ssize_t)out_chans * out_frames * sizeof(float), PyBUF_WRITE);
    PyObject *obj = 0, *process = 0;
    if (inmv && outmv)
        obj = PyObject_CallMethod(s->obj, "runner", "sOiiOii", method, inmv, in_chans,
            in_frames, outmv, out_chans, out_frames);
    PyObject *name = 0;
    if (obj)
        process = PyObject_GetAttrString(obj, "process");
    if (process)
        name = PyObject_GetAttrString(obj, "name");
    if (!process || !name || !PyUnicode_Check(name))
    {
        py_fetcherr(err);
        Py_XDECREF(process);
    }
    else
    {
        r = (t_pyrunner *)getbytes(sizeof(*r));
        r->process = process;
        r->out = out;
        r->nout = (long)out_chans * out_frames;
        snprintf(r->name, sizeof(r->name), "%s", PyUnicode_AsUTF8(name));
        pthread_mutex_init(&r->mutex, 0);
    }
    Py_XDECREF(name);
    Py_XDECREF(obj);
    Py_XDECREF(inmv);
    Py_XDECREF(outmv);
    py_leave(g);
    return r;
}

/* keep the first error until pyrunner_takeerror */
static void pyrunner_seterr(t_pyrunner *r, const char *msg)
{
    pthread_mutex_lock(&r->mutex);
    if (!r->haserr)
    {
        seterr(r->err, msg);
        r->haserr = 1;
    }
    pthread_mutex_unlock(&r->mutex);
}

/* 1 if the n floats are all finite.  Checked here, not in Python: after a model call
   numpy's or torch's code for this is out of the CPU caches and costs ~3 % of a small
   model's call (bench/pd_render.py); this loop does not. */
static int allfinite(const float *v, long n)
{
    long i;
    for (i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return 0;
    return 1;
}

int pyrunner_process(void *runner, const float *in, float *out)
{
    t_pyrunner *r = (t_pyrunner *)runner;
    t_pyenter g;
    PyObject *res;
    int rc = 0;
    (void)in;
    (void)out;
    py_threadenter();
    g = py_enter();
    res = PyObject_CallNoArgs(r->process);
    if (!res)
    {
        char msg[PYERR_SIZE];
        py_fetcherr(msg);
        pyrunner_seterr(r, msg);
        rc = -1;
    }
    Py_XDECREF(res);
    py_leave(g);
    if (!rc && !allfinite(r->out, r->nout))
    {
        char msg[PYERR_SIZE];
        snprintf(msg, PYERR_SIZE, "%s output is not finite (NaN or infinite values)", r->name);
        pyrunner_seterr(r, msg);
        rc = -1;
    }
    return rc;
}

int pyrunner_takeerror(t_pyrunner *r, char *err)
{
    int had;
    pthread_mutex_lock(&r->mutex);
    had = r->haserr;
    if (had)
        seterr(err, r->err);
    r->haserr = 0;
    pthread_mutex_unlock(&r->mutex);
    return had;
}

void pyrunner_free(t_pyrunner *r)
{
    t_pyenter g;
    if (!r)
        return;
    g = py_enter();
    Py_XDECREF(r->process);
    py_leave(g);
    pthread_mutex_destroy(&r->mutex);
    freebytes(r, sizeof(*r));
}

/* ----------------------------------- jobs ----------------------------------- */

struct pyjob {
    PyObject *session, *args, *result;
    char name[64];
    char dir[MAXPDSTRING];
    char err[PYERR_SIZE];
    int failed;
    unsigned long ident;        /* the job thread while it runs */
    struct pyjob *nextrunning;
};

static pthread_mutex_t job_mutex = PTHREAD_MUTEX_INITIALIZER;
static t_pyjob *job_running;

t_pyjob *pyjob_new(t_pysession *s, const char *name, int argc, t_atom *argv, const char *dir,
    char *err)
{
    t_pyenter g = py_enter();
    PyObject *args = py_fromatoms(argc, argv);
    t_pyjob *j = 0;
    if (!args)
        py_fetcherr(err);
    else if (!(j = (t_pyjob *)calloc(1, sizeof(*j))))
    {
        Py_DECREF(args);
        seterr(err, "out of memory");
    }
    else
    {
        j->session = s ? s->obj : Py_None;  /* no session: the model registry's messages */
        Py_INCREF(j->session);
        j->args = args;
        snprintf(j->name, sizeof(j->name), "%s", name);
        snprintf(j->dir, sizeof(j->dir), "%s", dir ? dir : "");
    }
    py_leave(g);
    return j;
}

void pyjob_run(void *job)
{
    t_pyjob *j = (t_pyjob *)job, **pp;
    t_pyenter g;
    py_threadenter();
    g = py_enter();
    pthread_mutex_lock(&job_mutex);
    j->ident = PyThread_get_thread_ident();
    j->nextrunning = job_running;
    job_running = j;
    pthread_mutex_unlock(&job_mutex);
    j->result = PyObject_CallMethod(py_bridge, "run_job", "OsOs", j->session, j->name,
        j->args, j->dir);
    if (!j->result)
    {
        py_fetcherr(j->err);
        j->failed = 1;
    }
    pthread_mutex_lock(&job_mutex);
    for (pp = &job_running; *pp; pp = &(*pp)->nextrunning)
        if (*pp == j)
        {
            *pp = j->nextrunning;
            break;
        }
    pthread_mutex_unlock(&job_mutex);
    py_leave(g);
}

void pyjob_reply(t_pyjob *j, t_pyreply reply, void *owner)
{
    t_pyenter g = py_enter();
    t_atom a[2];
    if (j->failed || !j->result)
    {
        SETSYMBOL(&a[0], gensym(j->name));
        SETSYMBOL(&a[1], gensym(j->failed ? j->err : "no result"));
        reply(owner, gensym("error"), 2, a);
    }
    else
    {
        PyObject *list = PyList_New(0);
        char err[PYERR_SIZE];
        PyObject *name = PyUnicode_FromString(j->name);
        PyObject *done = PyUnicode_FromString("done");
        PyObject *seq = PySequence_List(j->result);
        if (list && name && done && seq)
        {
            if (PyList_Insert(seq, 0, name) == 0 && PyList_Insert(seq, 0, done) == 0 &&
                PyList_Append(list, seq) == 0)
                py_sendreplies(list, reply, owner, err);
        }
        PyErr_Clear();
        Py_XDECREF(seq);
        Py_XDECREF(done);
        Py_XDECREF(name);
        Py_XDECREF(list);
    }
    py_leave(g);
}

void pyjob_free(void *job)
{
    t_pyjob *j = (t_pyjob *)job;
    t_pyenter g;
    if (!j)
        return;
    g = py_enter();
    Py_XDECREF(j->session);
    Py_XDECREF(j->args);
    Py_XDECREF(j->result);
    py_leave(g);
    free(j);
}

/* raise bridge.Cancelled in the running jobs of session s (all jobs when s is 0) */
static void py_canceljobs(t_pysession *s)
{
    t_pyenter g = py_enter();
    t_pyjob *j;
    pthread_mutex_lock(&job_mutex);
    for (j = job_running; j; j = j->nextrunning)
        if (!s || j->session == s->obj)
            PyThreadState_SetAsyncExc(j->ident, py_cancelled);
    pthread_mutex_unlock(&job_mutex);
    py_leave(g);
}

void pyjob_cancel(t_pysession *s)
{
    if (py_state == 1 && s)
        py_canceljobs(s);
}

void pyjob_cancel_all(void)
{
    if (py_state != 1)
        return;
    __atomic_store_n(&py_exiting, 1, __ATOMIC_RELEASE);
    py_canceljobs(0);
}
