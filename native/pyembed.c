/* pyembed: see pyembed.h */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include "pyembed.h"
#include "worker.h"

static int py_state;                /* 0 not tried, 1 running, -1 failed */
static char py_starterr[PYERR_SIZE];
static char py_python[PYERR_SIZE];  /* the interpreter, for error lines */
static PyObject *py_archive;        /* unravel.archive: what a model file holds (no torch) */
static PyObject *py_bridge;         /* unravel.bridge, imported by the first call (py_getbridge) */
static PyObject *py_cancelled;      /* bridge.Cancelled: raised in jobs to stop them */
static char py_bridgeerr[PYERR_SIZE];   /* why it could not be imported */

/* bridge.routes(), as plain C data: written once with the GIL held, before py_routestate
   says so; read on any thread without the GIL */
typedef struct pyroute {
    char *name;
    int kind;               /* PYROUTE_JOB or PYROUTE_REGISTRY */
} t_pyroute;
static t_pyroute *py_routes;
static int py_nroutes;
static int py_routestate;   /* 0 not read yet, 1 read, -1 the bridge cannot be imported */

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

int pyembed_start(const char *python, const char *libpython, const char *home, char *err)
{
    t_pyenter g;
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
    /* torch's import looks for out-of-tree device backends in every installed package's
       entry points (0.05-0.1 s of the first sound); unravel runs on the CPU, CUDA or MPS
       only. Kept where the user set it (issue 24). */
    setenv("TORCH_DEVICE_BACKEND_AUTOLOAD", "0", 0);
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
            if (!PyStatus_Exception(status) && home && *home)
            {
                config.use_environment = 0;
                config.user_site_directory = 0;
                status = PyConfig_SetBytesString(&config, &config.home, home);
            }
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
    /* only what a model file holds: torch is imported by the first call (py_getbridge), on
       the thread that makes it, not here on Pd's */
    snprintf(py_python, sizeof(py_python), "%s", python && *python ? python : "python");
    if (!(py_archive = PyImport_ImportModule("unravel.archive")))
    {
        char msg[PYERR_SIZE];
        py_fetcherr(msg);
        snprintf(py_starterr, PYERR_SIZE, "cannot import unravel with %s: %s", py_python, msg);
        py_leave(g);
        seterr(err, py_starterr);
        return -1;
    }
    py_leave(g);
    py_state = 1;
    return 0;
}

static char *py_strdup(const char *s);

/* publish bridge.routes() {"jobs": [names], "registry": [names]} (GIL held; runs no Python
   code, so no other thread gets in); -1 with a Python error set when it is malformed */
static int py_setroutes(PyObject *routes)
{
    static const char *keys[] = {"jobs", "registry"};
    static const int kinds[] = {PYROUTE_JOB, PYROUTE_REGISTRY};
    PyObject *names[2];
    t_pyroute *r;
    Py_ssize_t i, n = 0;
    int k;
    if (py_routestate == 1)
        return 0;
    for (k = 0; k < 2; k++)
    {
        names[k] = PyDict_Check(routes) ? PyDict_GetItemString(routes, keys[k]) : 0;
        if (!names[k] || !PyList_Check(names[k]))
        {
            PyErr_Format(PyExc_TypeError, "routes() has no list '%s'", keys[k]);
            return -1;
        }
        n += PyList_GET_SIZE(names[k]);
    }
    if (!(r = (t_pyroute *)calloc(n ? n : 1, sizeof(*r))))
    {
        PyErr_NoMemory();
        return -1;
    }
    for (n = 0, k = 0; k < 2; k++)
        for (i = 0; i < PyList_GET_SIZE(names[k]); i++, n++)
        {
            PyObject *v = PyList_GET_ITEM(names[k], i);
            const char *name = PyUnicode_Check(v) ? PyUnicode_AsUTF8(v) : 0;
            if (!name || !(r[n].name = py_strdup(name)))
            {
                while (n--)
                    free(r[n].name);
                free(r);
                if (!PyErr_Occurred())
                    PyErr_Format(PyExc_TypeError, "routes(): a name is not a str");
                return -1;
            }
            r[n].kind = kinds[k];
        }
    py_routes = r;      /* kept for the process */
    py_nroutes = (int)n;
    __atomic_store_n(&py_routestate, 1, __ATOMIC_RELEASE);
    return 0;
}

int pyembed_route(const char *sel)
{
    int i, state = __atomic_load_n(&py_routestate, __ATOMIC_ACQUIRE);
    if (state != 1)
        return state ? PYROUTE_CONTROL : PYROUTE_UNKNOWN;
    for (i = 0; i < py_nroutes; i++)
        if (!strcmp(py_routes[i].name, sel))
            return py_routes[i].kind;
    return PYROUTE_CONTROL;
}

/* unravel.bridge (GIL held): imported and initialised by the first call that needs it,
   which reads its routes; 0 with err set when it cannot be (said again by every later
   call) */
static PyObject *py_getbridge(char *err)
{
    PyObject *mod, *cancelled = 0, *r = 0, *routes = 0;
    if (py_bridge)
        return py_bridge;
    if (!*py_bridgeerr)
    {
        if ((mod = PyImport_ImportModule("unravel.bridge")) &&
            (cancelled = PyObject_GetAttrString(mod, "Cancelled")) &&
            (r = PyObject_CallMethod(mod, "init", NULL)) &&
            (routes = PyObject_CallMethod(mod, "routes", NULL)) && !py_bridge &&
            py_setroutes(routes) == 0)
        {   /* another thread may have finished first while this one imported */
            py_bridge = mod;
            py_cancelled = cancelled;
            mod = cancelled = 0;
        }
        if (!py_bridge && PyErr_Occurred())
        {
            char msg[PYERR_SIZE];
            py_fetcherr(msg);
            snprintf(py_bridgeerr, PYERR_SIZE, "cannot import unravel.bridge with %s: %s",
                py_python, msg);
            __atomic_store_n(&py_routestate, -1, __ATOMIC_RELEASE);
        }
        PyErr_Clear();
        Py_XDECREF(routes);
        Py_XDECREF(r);
        Py_XDECREF(cancelled);
        Py_XDECREF(mod);
    }
    if (!py_bridge)
        seterr(err, py_bridgeerr);
    return py_bridge;
}

int pyembed_importbridge(char *err)
{
    t_pyenter g;
    int ok;
    if (py_state != 1)
    {
        seterr(err, "Python is not started");
        return -1;
    }
    g = py_enter();
    ok = py_getbridge(err) != 0;
    py_leave(g);
    return ok ? 0 : -1;
}

int pyembed_shape(const char *spec, const char *method, int *nin, int *nout)
{
    t_pyenter g;
    PyObject *r;
    int ok = -1;
    if (py_state != 1)
        return -1;
    g = py_enter();
    r = PyObject_CallMethod(py_archive, "shape", "ss", spec, method);
    if (r && PyArg_ParseTuple(r, "ii", nin, nout) && *nin >= 1 && *nout >= 1 &&
        *nin <= PY_MAXPARAM && *nout <= PY_MAXPARAM)
        ok = 0;
    PyErr_Clear();
    Py_XDECREF(r);
    py_leave(g);
    return ok;
}

int pyembed_firstplan(const char *spec, const char *method, int bufsize, t_firstplan *p)
{
    t_pyenter g;
    PyObject *mod, *r = 0;
    const char *path, *m, *lib, *version;
    int ok = -1;
    if (py_state != 1)
        return -1;
    g = py_enter();
    if ((mod = PyImport_ImportModule("unravel.firstpath")))
        r = PyObject_CallMethod(mod, "plan", "ssi", spec, method, bufsize);
    if (r && r != Py_None && PyArg_ParseTuple(r, "ssiiiiiss", &path, &m, &p->in_chans,
        &p->in_ratio, &p->out_chans, &p->out_ratio, &p->bufsize, &lib, &version) &&
        p->in_chans >= 1 && p->out_chans >= 1 && p->in_ratio >= 1 && p->out_ratio >= 1 &&
        p->in_chans <= PY_MAXPARAM && p->out_chans <= PY_MAXPARAM &&
        p->in_ratio <= PY_MAXPARAM && p->out_ratio <= PY_MAXPARAM && p->bufsize >= 1 &&
        p->bufsize <= PY_MAXPARAM && strlen(path) < sizeof(p->path) &&
        strlen(m) < sizeof(p->method) && strlen(lib) < sizeof(p->torchlib) &&
        strlen(version) < sizeof(p->torchversion))
    {
        strcpy(p->path, path);
        strcpy(p->method, m);
        strcpy(p->torchlib, lib);
        strcpy(p->torchversion, version);
        ok = 0;
    }
    PyErr_Clear();
    Py_XDECREF(r);
    Py_XDECREF(mod);
    py_leave(g);
    return ok;
}

/* ------------------------------ messages ------------------------------ */

static char *py_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = (char *)malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static t_pymsg *pymsg_alloc(const char *sel, int argc)
{
    t_pymsg *m = (t_pymsg *)calloc(1, sizeof(*m));
    if (!m)
        return 0;
    m->sel = py_strdup(sel);
    m->argv = (t_pyatom *)calloc(argc ? argc : 1, sizeof(t_pyatom));
    if (!m->sel || !m->argv)
    {
        pymsg_free(m);
        return 0;
    }
    m->argc = argc;
    return m;
}

t_pymsg *pymsg_new(const char *sel, int argc, const t_atom *argv)
{
    t_pymsg *m = pymsg_alloc(sel, argc);
    int i;
    if (!m)
        return 0;
    for (i = 0; i < argc; i++)
    {
        if (argv[i].a_type == A_SYMBOL)
            m->argv[i].s = py_strdup(argv[i].a_w.w_symbol->s_name);
        else if (argv[i].a_type == A_FLOAT)
            m->argv[i].f = argv[i].a_w.w_float;
        else
            m->argv[i].s = py_strdup("");
    }
    return m;
}

/* Pd's thread: the message's arguments as atoms (a: m->argc of them) */
static void pymsg_atoms(const t_pymsg *m, t_atom *a)
{
    int i;
    for (i = 0; i < m->argc; i++)
    {
        if (m->argv[i].s)
            SETSYMBOL(a + i, gensym(m->argv[i].s));
        else
            SETFLOAT(a + i, m->argv[i].f);
    }
}

void pymsg_send(const t_pymsg *m, t_pyreply reply, void *owner)
{
    for (; m; m = m->next)
    {
        t_atom *a = (t_atom *)getbytes((m->argc ? m->argc : 1) * sizeof(t_atom));
        if (!a)
            continue;
        pymsg_atoms(m, a);
        reply(owner, gensym(m->sel), m->argc, a);
        freebytes(a, (m->argc ? m->argc : 1) * sizeof(t_atom));
    }
}

const t_pymsg *pymsg_find(const t_pymsg *m, const char *sel)
{
    for (; m; m = m->next)
        if (!strcmp(m->sel, sel))
            return m;
    return 0;
}

void pymsg_free(t_pymsg *m)
{
    while (m)
    {
        t_pymsg *next = m->next;
        int i;
        for (i = 0; m->argv && i < m->argc; i++)
            free(m->argv[i].s);
        free(m->argv);
        free(m->sel);
        free(m);
        m = next;
    }
}

/* ------------------------------ arrays ------------------------------ */

t_pyvec *pyvec_new(const char *set, const char *name, long n)
{
    t_pyvec *v = (t_pyvec *)calloc(1, sizeof(*v));
    if (!v)
        return 0;
    v->set = py_strdup(set);
    v->name = py_strdup(name);
    v->data = (float *)malloc((n > 0 ? n : 1) * sizeof(float));
    v->n = n;
    if (!v->set || !v->name || !v->data)
    {
        pyvec_free(v);
        return 0;
    }
    return v;
}

void pyvec_free(t_pyvec *v)
{
    while (v)
    {
        t_pyvec *next = v->next;
        free(v->set);
        free(v->name);
        free(v->data);
        free(v);
        v = next;
    }
}

/* the vectors as {set: [(name, float32 bytes), ...]} (GIL held) */
static PyObject *py_fromvecs(const t_pyvec *v)
{
    PyObject *dict = PyDict_New();
    for (; dict && v; v = v->next)
    {
        PyObject *list = PyDict_GetItemString(dict, v->set), *item;
        if (!list)
        {
            if (!(list = PyList_New(0)) || PyDict_SetItemString(dict, v->set, list) != 0)
            {
                Py_XDECREF(list);
                Py_CLEAR(dict);
                break;
            }
            Py_DECREF(list);
        }
        item = Py_BuildValue("(sy#)", v->name, (const char *)v->data,
            (Py_ssize_t)(v->n * sizeof(float)));
        if (!item || PyList_Append(list, item) != 0)
            Py_CLEAR(dict);
        Py_XDECREF(item);
    }
    return dict;
}

/* [(name, float32 bytes), ...] as vectors (GIL held); 0 with a Python error set */
static t_pyvec *py_tovecs(PyObject *list, int *ok)
{
    t_pyvec *first = 0, **tail = &first;
    Py_ssize_t i, n = PySequence_Size(list);
    *ok = n >= 0;
    for (i = 0; *ok && i < n; i++)
    {
        PyObject *item = PySequence_GetItem(list, i);
        const char *name, *bytes;
        Py_ssize_t len;
        *ok = item && PyArg_ParseTuple(item, "sy#", &name, &bytes, &len) &&
            (*tail = pyvec_new("", name, (long)(len / sizeof(float))));
        if (*ok)
        {
            memcpy((*tail)->data, bytes, (*tail)->n * sizeof(float));
            tail = &(*tail)->next;
        }
        else if (!PyErr_Occurred())
            PyErr_NoMemory();
        Py_XDECREF(item);
    }
    if (!*ok)
    {
        pyvec_free(first);
        first = 0;
    }
    return first;
}

/* a message's arguments as a Python list of str and float (GIL held) */
static PyObject *py_fromargs(const t_pymsg *m)
{
    PyObject *list = PyList_New(m ? m->argc : 0);
    int i;
    if (!list)
        return 0;
    for (i = 0; m && i < m->argc; i++)
    {
        PyObject *v = m->argv[i].s ?
            PyUnicode_DecodeUTF8(m->argv[i].s, strlen(m->argv[i].s), "replace") :
            PyFloat_FromDouble(m->argv[i].f);
        if (!v)
        {
            Py_DECREF(list);
            return 0;
        }
        PyList_SET_ITEM(list, i, v);
    }
    return list;
}

/* atoms for one value: a number, a str, or a float32 buffer (numpy array) */
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

static t_pyatom *py_putvalue(PyObject *v, t_pyatom *a)
{
    if (PyUnicode_Check(v))
    {
        const char *s = PyUnicode_AsUTF8(v);
        if (!s)
            PyErr_Clear();
        a->s = py_strdup(s ? s : "");
        return a + 1;
    }
    if (PyFloat_Check(v) || PyLong_Check(v))
    {
        double d = PyFloat_AsDouble(v);
        if (PyErr_Occurred())
            PyErr_Clear(), d = 0;
        a->f = (t_float)d;
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
                    a[i].f = f[i];
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
        a->s = py_strdup(c ? c : "?");
        Py_XDECREF(s);
    }
    return a + 1;
}

/* a list of replies [selector, values...] (GIL held) as messages; `prefix` (or 0) is put
   in front of every reply's values */
static t_pymsg *py_tomsgs(PyObject *replies, const char *prefix)
{
    PyObject *seq = PySequence_Fast(replies, "replies must be a list");
    t_pymsg *first = 0, **tail = &first;
    Py_ssize_t i, nr;
    if (!seq)
    {
        PyErr_Clear();
        return 0;
    }
    nr = PySequence_Fast_GET_SIZE(seq);
    for (i = 0; i < nr; i++)
    {
        PyObject *item = PySequence_Fast(PySequence_Fast_GET_ITEM(seq, i), "a reply is a list");
        Py_ssize_t j, k;
        long natoms = prefix ? 1 : 0;
        const char *sel;
        t_pymsg *m;
        t_pyatom *p;
        if (!item || PySequence_Fast_GET_SIZE(item) < 1 ||
            !PyUnicode_Check(PySequence_Fast_GET_ITEM(item, 0)) ||
            !(sel = PyUnicode_AsUTF8(PySequence_Fast_GET_ITEM(item, 0))))
        {
            Py_XDECREF(item);
            PyErr_Clear();
            continue;
        }
        k = PySequence_Fast_GET_SIZE(item);
        for (j = 1; j < k; j++)
            natoms += py_countvalue(PySequence_Fast_GET_ITEM(item, j));
        if ((m = pymsg_alloc(sel, (int)natoms)))
        {
            p = m->argv;
            if (prefix)
                (p++)->s = py_strdup(prefix);
            for (j = 1; j < k; j++)
                p = py_putvalue(PySequence_Fast_GET_ITEM(item, j), p);
            *tail = m;
            tail = &m->next;
        }
        Py_DECREF(item);
    }
    Py_DECREF(seq);
    return first;
}

/* one message of one symbol (no GIL needed) */
static t_pymsg *py_textmsg(const char *sel, const char *text)
{
    t_pymsg *m = pymsg_alloc(sel, 1);
    if (m)
        m->argv[0].s = py_strdup(text);
    return m;
}

/* ------------------------------ thread states ------------------------------ */

/* Give a worker, control or job thread one lasting Python thread state, so that each later
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

/* --------------------------------- session --------------------------------- */

struct pysession {
    PyObject *obj;      /* a bridge.Session */
    int refs;
};

static t_pysession *pysession_wrap(PyObject *obj)
{
    t_pysession *s = (t_pysession *)calloc(1, sizeof(*s));
    if (s)
    {
        s->obj = obj;
        s->refs = 1;
    }
    return s;
}

void pysession_ref(t_pysession *s)
{
    if (s)
        __atomic_add_fetch(&s->refs, 1, __ATOMIC_ACQ_REL);
}

void pysession_unref(t_pysession *s)
{
    t_pyenter g;
    if (!s || __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    g = py_enter();
    Py_XDECREF(s->obj);
    py_leave(g);
    free(s);
}

/* --------------------------------- runner --------------------------------- */

struct pyrunner {
    PyObject *obj;              /* the bridge.Runner */
    PyObject *process;          /* its bound method process() */
    Py_buffer inb, outb;        /* its own buffers, held */
    Py_buffer voicesb;          /* its `voices` (int32: group members, items), if any */
    int hasvoices;
    struct pygroup *group;      /* poly: its group (0: it plays alone) */
    t_voice voice;              /* its place in the group, from its first block on */
    float *in, *out;
    long nout;
    char name[PYERR_SIZE / 2];  /* "<model file>: <method>", for the non-finite error */
    pthread_mutex_t mutex;      /* guards err */
    int haserr;
    char err[PYERR_SIZE];
};

static void pyrunner_seterr(t_pyrunner *r, const char *msg);

/* ------------------------------ voices groups ------------------------------ */

/* the C side of a voices.Group: its model thread (t_voices) runs the group's rounds */
typedef struct pygroup {
    PyObject *obj;              /* the voices.Group */
    t_voices *voices;
    int refs;                   /* runners of the group (GIL held) */
    struct pygroup *next;
} t_pygroup;
static t_pygroup *py_groups;    /* read and written with the GIL held */

/* the group's model thread: one call for the blocks that came (voices.Group.round) */
static void pygroup_round(void *ctx, t_voice **batch, int n)
{
    t_pygroup *pg = (t_pygroup *)ctx;
    PyObject *list, *res = 0;
    t_pyenter g;
    int i, ok = 0;
    py_threadenter();
    g = py_enter();
    if ((list = PyList_New(n)))
    {
        for (i = 0; i < n; i++)
        {
            PyObject *o = ((t_pyrunner *)batch[i]->owner)->obj;
            Py_INCREF(o);
            PyList_SET_ITEM(list, i, o);
        }
        res = PyObject_CallMethod(pg->obj, "round", "O", list);
        Py_DECREF(list);
    }
    if (res && PyList_Check(res) && PyList_GET_SIZE(res) == n)
    {
        for (i = 0; i < n; i++)
            batch[i]->result = (int)PyLong_AsLong(PyList_GET_ITEM(res, i));
        ok = !PyErr_Occurred();
    }
    if (!ok)
    {
        char msg[PYERR_SIZE];
        if (PyErr_Occurred())
            py_fetcherr(msg);
        else
            seterr(msg, "bad reply from voices.Group.round");
        for (i = 0; i < n; i++)
        {
            pyrunner_seterr((t_pyrunner *)batch[i]->owner, msg);
            batch[i]->result = -1;
        }
    }
    Py_XDECREF(res);
    py_leave(g);
}

/* r takes the group of its bridge.Runner's voice, made at its first runner (GIL held); it
   joins at its first block (pyrunner_process), so that a runner made but never installed
   is never waited for */
static void pyrunner_joingroup(t_pyrunner *r)
{
    PyObject *voice = PyObject_GetAttrString(r->obj, "voice"), *group = 0, *deadline = 0;
    t_pygroup *pg;
    if (!voice || voice == Py_None || !(group = PyObject_GetAttrString(voice, "group")))
        goto done;
    for (pg = py_groups; pg && pg->obj != group; pg = pg->next)
        ;
    if (!pg && (deadline = PyObject_GetAttrString(group, "deadline")) &&
        (pg = (t_pygroup *)calloc(1, sizeof(*pg))))
    {
        if (!(pg->voices = voices_new(pygroup_round, pg, PyFloat_AsDouble(deadline))))
        {
            free(pg);
            pg = 0;
        }
        else
        {
            pg->obj = group;
            Py_INCREF(group);
            pg->next = py_groups;
            py_groups = pg;
        }
    }
    if (pg)
    {
        pg->refs++;
        r->group = pg;
    }
    else
        Py_XDECREF(PyObject_CallMethod(r->obj, "leave_group", 0));
done:
    PyErr_Clear();
    Py_XDECREF(voice);
    Py_XDECREF(group);
    Py_XDECREF(deadline);
}

/* r leaves its group (any thread, the GIL held or not: a round that has r is waited for);
   the last runner frees the group */
static void pyrunner_leavegroup(t_pyrunner *r)
{
    t_pygroup *pg = r->group, **p;
    PyThreadState *ts;
    t_pyenter g;
    int last = 0;
    if (!pg)
        return;
    ts = PyGILState_Check() ? PyEval_SaveThread() : 0;
    voices_leave(&r->voice);
    r->group = 0;
    g = py_enter();
    if (--pg->refs == 0)
    {
        for (p = &py_groups; *p; p = &(*p)->next)
            if (*p == pg)
            {
                *p = pg->next;
                break;
            }
        Py_DECREF(pg->obj);
        last = 1;
    }
    py_leave(g);
    if (last)
    {
        voices_free(pg->voices);    /* its thread ends: it takes the GIL to leave Python */
        free(pg);
    }
    if (ts)
        PyEval_RestoreThread(ts);
}

/* a t_pyrunner over a bridge.Runner (GIL held); 0 with err set */
static t_pyrunner *pyrunner_wrap(PyObject *obj, char *err)
{
    t_pyrunner *r = (t_pyrunner *)calloc(1, sizeof(*r));
    PyObject *inbuf = 0, *outbuf = 0, *name = 0, *voices = 0;
    int ok = 0;
    if (!r)
    {
        seterr(err, "out of memory");
        return 0;
    }
    if ((r->process = PyObject_GetAttrString(obj, "process")) &&
        (name = PyObject_GetAttrString(obj, "name")) && PyUnicode_Check(name) &&
        (inbuf = PyObject_GetAttrString(obj, "inbuf")) &&
        (outbuf = PyObject_GetAttrString(obj, "outbuf")) &&
        PyObject_GetBuffer(inbuf, &r->inb, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) == 0)
    {
        if (PyObject_GetBuffer(outbuf, &r->outb, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) == 0)
            ok = 1;
        else
            PyBuffer_Release(&r->inb);
    }
    if (!ok)
    {
        py_fetcherr(err);
        Py_XDECREF(r->process);
        free(r);
        r = 0;
    }
    else
    {
        r->obj = obj;
        Py_INCREF(obj);
        r->in = (float *)r->inb.buf;
        r->out = (float *)r->outb.buf;
        r->nout = (long)(r->outb.len / sizeof(float));
        snprintf(r->name, sizeof(r->name), "%s", PyUnicode_AsUTF8(name));
        pthread_mutex_init(&r->mutex, 0);
        if ((voices = PyObject_GetAttrString(obj, "voices")) &&
            PyObject_GetBuffer(voices, &r->voicesb, PyBUF_C_CONTIGUOUS) == 0)
            r->hasvoices = (r->voicesb.len >= 2 * (Py_ssize_t)sizeof(int32_t));
        if (voices && !r->hasvoices && r->voicesb.obj)
            PyBuffer_Release(&r->voicesb);
        Py_XDECREF(voices);
        PyErr_Clear();
        pyrunner_joingroup(r);
    }
    Py_XDECREF(name);
    Py_XDECREF(inbuf);
    Py_XDECREF(outbuf);
    return r;
}

float *pyrunner_in(t_pyrunner *r)
{
    return r->in;
}

float *pyrunner_out(t_pyrunner *r)
{
    return r->out;
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
    if (r->group)
    {   /* its block goes into the group's next round (a full group: it plays alone) */
        rc = r->voice.group || voices_join(r->group->voices, &r->voice, r) == 0 ?
            voices_run(&r->voice) : 1;
        if (rc < 0)
            return -1;
        if (rc == 0)
            goto played;
        rc = 0;
        pyrunner_leavegroup(r);     /* it plays alone from now on */
    }
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
played:
    if (!rc && !allfinite(r->out, r->nout))
    {
        char msg[PYERR_SIZE];
        snprintf(msg, PYERR_SIZE, "%s output is not finite (NaN or infinite values)", r->name);
        pyrunner_seterr(r, msg);
        rc = -1;
    }
    return rc;
}

void pyrunner_voices(t_pyrunner *r, int *members, int *items)
{
    const int32_t *v = r && r->hasvoices ? (const int32_t *)r->voicesb.buf : 0;
    *members = v ? __atomic_load_n(v, __ATOMIC_RELAXED) : 0;
    *items = v ? __atomic_load_n(v + 1, __ATOMIC_RELAXED) : 0;
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
    pyrunner_leavegroup(r);
    g = py_enter();
    PyBuffer_Release(&r->inb);
    PyBuffer_Release(&r->outb);
    if (r->hasvoices)
        PyBuffer_Release(&r->voicesb);
    Py_XDECREF(r->process);
    Py_XDECREF(r->obj);
    py_leave(g);
    pthread_mutex_destroy(&r->mutex);
    free(r);
}

/* ------------------------------- control calls ------------------------------- */

t_pycall *pycall_new(t_pysession *s, const char *sel, int argc, const t_atom *argv,
    const char *dir)
{
    t_pycall *c = (t_pycall *)calloc(1, sizeof(*c));
    if (!c)
        return 0;
    if (sel && !(c->msg = pymsg_new(sel, argc, argv)))
    {
        free(c);
        return 0;
    }
    c->session = s;
    pysession_ref(s);
    snprintf(c->dir, sizeof(c->dir), "%s", dir ? dir : "");
    return c;
}

/* the prepared runner (runner, method, params, bufsize, block, notes) into c (GIL held) */
static int pycall_takeprepared(t_pycall *c, PyObject *prep)
{
    PyObject *method, *params, *notes;
    int i, p[6];
    if (!PyTuple_Check(prep) || PyTuple_GET_SIZE(prep) != 6)
        return -1;
    method = PyTuple_GET_ITEM(prep, 1);
    params = PyTuple_GET_ITEM(prep, 2);
    notes = PyTuple_GET_ITEM(prep, 5);
    if (!PyUnicode_Check(method) || !PySequence_Check(params) || PySequence_Size(params) != 6)
        return -1;
    for (i = 0; i < 6; i++)
    {
        PyObject *v = PySequence_GetItem(params, i);
        p[i] = v ? (int)PyLong_AsLong(v) : 0;
        Py_XDECREF(v);
        /* the bridge checks the model's values; never divide by a bad one here */
        if (PyErr_Occurred() || (i < 5 && (p[i] < 1 || p[i] > PY_MAXPARAM)))
            return -1;
    }
    c->mp.in_chans = p[0];
    c->mp.in_ratio = p[1];
    c->mp.out_chans = p[2];
    c->mp.out_ratio = p[3];
    c->mp.block = p[4];
    c->mp.sr = p[5];
    snprintf(c->usedmethod, sizeof(c->usedmethod), "%s", PyUnicode_AsUTF8(method));
    c->usedbufsize = (int)PyLong_AsLong(PyTuple_GET_ITEM(prep, 3));
    c->block = (int)PyLong_AsLong(PyTuple_GET_ITEM(prep, 4));
    if (PyErr_Occurred() || c->block < 1 || c->block % c->mp.in_ratio ||
        c->block % c->mp.out_ratio)
        return -1;
    if (PySequence_Check(notes))
    {
        Py_ssize_t k, n = PySequence_Size(notes);
        t_pymsg **tail = &c->notes;
        for (k = 0; k < n; k++)
        {
            PyObject *v = PySequence_GetItem(notes, k);
            const char *t = v && PyUnicode_Check(v) ? PyUnicode_AsUTF8(v) : 0;
            if (t && (*tail = py_textmsg("post", t)))
                tail = &(*tail)->next;
            Py_XDECREF(v);
        }
        PyErr_Clear();
    }
    c->runner = pyrunner_wrap(PyTuple_GET_ITEM(prep, 0), c->err);
    return c->runner ? 0 : -1;
}

/* a call whose route Pd's thread did not know is a job with a session (without one,
   bridge.control says that no model is loaded) or a registry message */
static int pycall_isjob(const t_pycall *c)
{
    int route = pyembed_route(c->msg->sel);
    return route == PYROUTE_REGISTRY || (route == PYROUTE_JOB && c->session);
}

void pycall_run(void *call)
{
    t_pycall *c = (t_pycall *)call;
    t_pyenter g;
    PyObject *args = 0, *values = 0, *want = 0, *r = 0;
    py_threadenter();
    pyrunner_free(c->release_runner);   /* (without the GIL: it may wait for a round) */
    c->release_runner = 0;
    g = py_enter();
    if (c->release_session)
        pysession_unref(c->release_session);
    c->release_session = 0;
    if (c->release_box)
    {
        pysession_unref(c->release_box->session);
        free(c->release_box);
    }
    c->release_box = 0;
    if (!c->session && c->box && c->box->session)
    {
        c->session = c->box->session;
        pysession_ref(c->session);
    }
    if (!c->msg && !c->want)
        goto done;
    if (c->route && py_getbridge(c->err) && pycall_isjob(c))
    {   /* Pd's thread queues it as a job (unravel_after), as if it had waited behind */
        c->after = c->msg;
        c->msg = 0;
        goto done;
    }
    args = py_fromargs(c->msg);
    if (c->values)
        values = PyMemoryView_FromMemory((char *)c->values, (Py_ssize_t)c->nvalues *
            sizeof(float), PyBUF_WRITE);
    else
        values = Py_None, Py_INCREF(Py_None);
    want = c->want ? Py_BuildValue("(siiiiii)", c->method, c->bufsize, c->dspn, c->nin,
        c->nout, c->keep, c->poly) : (Py_INCREF(Py_None), Py_None);
    if (!py_getbridge(c->err))
        c->failed = 1;
    else if (args && values && want)
        r = PyObject_CallMethod(py_bridge, "control", "OsOsOO", c->session ? c->session->obj :
            Py_None, c->msg ? c->msg->sel : "", args, c->dir, values, want);
    if (!r && !c->failed)
    {
        py_fetcherr(c->err);
        c->failed = 1;
    }
    else if (!PyTuple_Check(r) || PyTuple_GET_SIZE(r) != 4)
    {
        seterr(c->err, "bad reply from the bridge");
        c->failed = 1;
    }
    else
    {
        PyObject *session = PyTuple_GET_ITEM(r, 0), *prep = PyTuple_GET_ITEM(r, 2);
        if (!c->session || session != c->session->obj)
        {
            Py_INCREF(session);
            if (!(c->newsession = pysession_wrap(session)))
                Py_DECREF(session);
            else if (c->box)
            {   /* the calls behind this one use it */
                pysession_unref(c->box->session);
                c->box->session = c->newsession;
                pysession_ref(c->newsession);
            }
        }
        c->replies = py_tomsgs(PyTuple_GET_ITEM(r, 1), 0);
        c->status = py_tomsgs(PyTuple_GET_ITEM(r, 3), 0);
        if (prep != Py_None && pycall_takeprepared(c, prep) != 0)
        {
            if (!*c->err)
            {
                if (PyErr_Occurred())
                    py_fetcherr(c->err);
                else
                    seterr(c->err, "bad runner from the bridge");
            }
            PyErr_Clear();
            c->failed = 1;
        }
    }
    Py_XDECREF(r);
    Py_XDECREF(args);
    Py_XDECREF(values);
    Py_XDECREF(want);
done:
    py_leave(g);
}

void pycall_free(void *call)
{
    t_pycall *c = (t_pycall *)call;
    if (!c)
        return;
    pyrunner_free(c->runner);
    pyrunner_free(c->release_runner);
    pysession_unref(c->release_session);
    pysession_unref(c->newsession);
    pysession_unref(c->session);
    pymsg_free(c->msg);
    pymsg_free(c->after);
    pymsg_free(c->replies);
    pymsg_free(c->status);
    pymsg_free(c->notes);
    free(c->values);
    free(c);
}

/* ----------------------------------- jobs ----------------------------------- */

struct pyjob {
    t_pysession *session;       /* a reference, or 0: a registry message */
    t_pymsg *args;
    t_pyvec *inputs;            /* the arrays after input-array, read on Pd's thread */
    float sr;                   /* Pd's sample rate */
    t_pymsg *result;            /* `done <name> ...`, made on the job thread */
    t_pyvec *outputs;           /* the arrays it writes, made on the job thread */
    char name[PYNAME_SIZE];
    char dir[MAXPDSTRING];
    char err[PYERR_SIZE];
    int failed;
    unsigned long ident;        /* the job thread while it runs */
    struct pyjob *nextrunning;
};

static pthread_mutex_t job_mutex = PTHREAD_MUTEX_INITIALIZER;
static t_pyjob *job_running;

t_pyjob *pyjob_new(t_pysession *s, const char *name, int argc, t_atom *argv, const char *dir,
    t_pyvec *inputs, float sr, char *err)
{
    t_pyjob *j = (t_pyjob *)calloc(1, sizeof(*j));
    if (!j || !(j->args = pymsg_new(name, argc, argv)))
    {
        free(j);
        pyvec_free(inputs);
        seterr(err, "out of memory");
        return 0;
    }
    j->inputs = inputs;
    j->sr = sr;
    j->session = s;
    pysession_ref(s);
    snprintf(j->name, sizeof(j->name), "%s", name);
    snprintf(j->dir, sizeof(j->dir), "%s", dir ? dir : "");
    return j;
}

void pyjob_run(void *job)
{
    t_pyjob *j = (t_pyjob *)job, **pp;
    t_pyenter g;
    PyObject *args = 0, *arrays = 0, *result = 0, *values = 0, *outputs = 0;
    py_threadenter();
    g = py_enter();
    pthread_mutex_lock(&job_mutex);
    j->ident = PyThread_get_thread_ident();
    j->nextrunning = job_running;
    job_running = j;
    pthread_mutex_unlock(&job_mutex);
    /* run_job(...) -> (values, [(array, float32 bytes), ...]) */
    if (!py_getbridge(j->err))
        j->failed = 1;
    else if ((args = py_fromargs(j->args)) && (arrays = py_fromvecs(j->inputs)))
        result = PyObject_CallMethod(py_bridge, "run_job", "OsOsOd", j->session ?
            j->session->obj : Py_None, j->name, args, j->dir, arrays, (double)j->sr);
    pyvec_free(j->inputs);
    j->inputs = 0;
    if (!result && !j->failed)
    {
        py_fetcherr(j->err);
        j->failed = 1;
    }
    else
    {
        /* the values as one reply ["done", values...]; pyjob_reply puts the name in */
        PyObject *flat = 0, *done = PyUnicode_FromString("done"), *one = 0;
        int ok = 0;
        if (PyArg_ParseTuple(result, "OO", &values, &outputs) &&
            (flat = PySequence_List(values)) && done &&
            PyList_Insert(flat, 0, done) == 0 && (one = Py_BuildValue("[O]", flat)) &&
            (j->result = py_tomsgs(one, 0)))
            j->outputs = py_tovecs(outputs, &ok);
        if (!ok)
        {
            seterr(j->err, "bad result");
            j->failed = 1;
        }
        PyErr_Clear();
        Py_XDECREF(one);
        Py_XDECREF(done);
        Py_XDECREF(flat);
    }
    Py_XDECREF(result);
    Py_XDECREF(arrays);
    Py_XDECREF(args);
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
    t_atom a[2];
    if (j->failed || !j->result)
    {
        SETSYMBOL(&a[0], gensym(j->name));
        SETSYMBOL(&a[1], gensym(j->failed ? j->err : "no result"));
        reply(owner, gensym("error"), 2, a);
        return;
    }
    {
        /* done <name> values...: the name goes in front of the values made on the job thread */
        t_pymsg *m = j->result;
        int n = m->argc;
        t_atom *v = (t_atom *)getbytes((n + 1) * sizeof(t_atom));
        if (!v)
            return;
        SETSYMBOL(v, gensym(j->name));
        pymsg_atoms(m, v + 1);
        reply(owner, gensym("done"), n + 1, v);
        freebytes(v, (n + 1) * sizeof(t_atom));
    }
}

const char *pyjob_name(const t_pyjob *j)
{
    return j->name;
}

const t_pyvec *pyjob_outputs(const t_pyjob *j)
{
    return j->failed ? 0 : j->outputs;
}

void pyjob_free(void *job)
{
    t_pyjob *j = (t_pyjob *)job;
    if (!j)
        return;
    pymsg_free(j->args);
    pymsg_free(j->result);
    pyvec_free(j->inputs);
    pyvec_free(j->outputs);
    pysession_unref(j->session);
    free(j);
}

/* raise bridge.Cancelled in the running jobs of session s (all jobs when s is 0) */
static void py_canceljobs(t_pysession *s)
{
    t_pyenter g = py_enter();
    t_pyjob *j;
    pthread_mutex_lock(&job_mutex);
    for (j = job_running; j; j = j->nextrunning)
        if ((!s || j->session == s) && py_cancelled)
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
    /* once: the second call (the exit handler after `quit`) must not wait for the GIL,
       which a thread stopped since then may hold */
    if (py_state != 1 || __atomic_exchange_n(&py_exiting, 1, __ATOMIC_ACQ_REL))
        return;
    py_canceljobs(0);
}
