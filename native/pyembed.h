/* pyembed: the embedded CPython interpreter and every call into unravel.bridge.
   Pd types appear only as t_atom for argument conversion; no outlets, no classes, no
   symbols made (gensym belongs to Pd's thread).  Functions that run Python take the GIL
   themselves and return 0 on success or -1 with the exception's last line in err.  Pd's
   thread calls none of them during a performance: control calls run on the object's control
   thread (pycall_run), jobs on its job thread (pyjob_run), model calls on its model thread
   (pyrunner_process); what they answer comes back as plain C data (t_pymsg). */
#ifndef UNRAVEL_PYEMBED_H
#define UNRAVEL_PYEMBED_H

#include "m_pd.h"
#include "firstpath.h"

#define PYERR_SIZE 1000
#define PYNAME_SIZE 64

typedef void (*t_pyreply)(void *owner, t_symbol *sel, int argc, t_atom *argv);

/* ---- a list of messages as plain C data, readable on any thread ---- */
typedef struct pyatom {
    char *s;                /* a symbol's text, or 0 for a float */
    t_float f;
} t_pyatom;

typedef struct pymsg {
    struct pymsg *next;
    char *sel;
    int argc;
    t_pyatom *argv;
} t_pymsg;

t_pymsg *pymsg_new(const char *sel, int argc, const t_atom *argv);
void pymsg_send(const t_pymsg *m, t_pyreply reply, void *owner);    /* Pd's thread: each one */
const t_pymsg *pymsg_find(const t_pymsg *m, const char *sel);      /* the first with sel */
void pymsg_free(t_pymsg *m);                                        /* the whole list */

/* ---- a Pd array's values as plain C data, readable on any thread: what a job reads (on
   Pd's thread, `set` being the name after input-array) and what it writes ---- */
typedef struct pyvec {
    struct pyvec *next;
    char *set;
    char *name;             /* the array's */
    long n;
    float *data;
} t_pyvec;

t_pyvec *pyvec_new(const char *set, const char *name, long n);  /* data not set; 0: no memory */
void pyvec_free(t_pyvec *v);                                        /* the whole list */

/* start the interpreter once per process (later calls return the first result); torch is
   imported later, by the first call that needs the bridge, on the thread that makes it.
   home: a runtime's folder (PYTHONHOME), where the environment's PYTHON* variables and the
   user's site-packages are ignored; "" or 0: python's own */
int pyembed_start(const char *python, const char *libpython, const char *home, char *err);

/* the input and output channel counts of `method` (forward when the model lacks it) of
   model `spec`, read from the file without torch (unravel.archive.shape): 0, or -1 when
   the file does not say */
int pyembed_shape(const char *spec, const char *method, int *nin, int *nout);

/* how model `spec` plays `method` at `bufsize` through a first path before torch is
   imported (unravel.firstpath.plan, no torch): 0, or -1 when it cannot */
int pyembed_firstplan(const char *spec, const char *method, int bufsize, t_firstplan *p);

/* where a selector that the C side does not handle itself goes: the bridge's routes(),
   read once per process by the first call that imports the bridge (on the thread that
   makes it, GIL held) */
enum {
    PYROUTE_UNKNOWN = -1,   /* the bridge is not imported yet */
    PYROUTE_CONTROL,        /* bridge.control on the object's control thread (also every
                               selector when the bridge cannot be imported) */
    PYROUTE_JOB,            /* an UnRAVEl job (bridge.run_job), behind the control calls */
    PYROUTE_REGISTRY        /* a registry message: a job that needs no model */
};
int pyembed_route(const char *sel);     /* any thread; never takes the GIL or waits */
/* import the bridge on this thread if no thread has (the GIL: it may wait, and the import
   takes seconds): 0 when the routes are known, else -1 with err set */
int pyembed_importbridge(char *err);

/* a bridge.Session (made by bridge.control), counted: the object, its box and each of its
   calls and jobs hold one reference; the last unref frees it (GIL) */
typedef struct pysession t_pysession;
void pysession_ref(t_pysession *s);
void pysession_unref(t_pysession *s);

/* the session a control thread's calls use: set by the first `load` of an empty object, so
   that calls queued behind it find it (only the control thread reads and writes it) */
typedef struct pybox {
    t_pysession *session;   /* a reference, or 0 */
} t_pybox;

/* a method's shape: the model's <method>_params and what the bridge derives */
typedef struct _methodparams {
    int in_chans, in_ratio, out_chans, out_ratio;
    int block;              /* the smallest buffer the method takes without padding */
    int sr;                 /* the model's sample rate */
} t_methodparams;

/* the model call the model thread makes (a t_engine_fn) on the runner's own buffers */
typedef struct pyrunner t_pyrunner;
float *pyrunner_in(t_pyrunner *r);
float *pyrunner_out(t_pyrunner *r);
int pyrunner_process(void *runner, const float *in, float *out);
int pyrunner_takeerror(t_pyrunner *r, char *err);   /* 1 if an error was waiting */
/* `poly`: the members of the runner's group (0: it plays alone) and the items of its last
   call, as its model thread last wrote them (any thread) */
void pyrunner_voices(t_pyrunner *r, int *members, int *items);
void pyrunner_free(t_pyrunner *r);                  /* takes the GIL */

/* a control call (bridge.control): made on Pd's thread, run on the control thread, read
   back on Pd's thread.  It holds Python objects only between its run and the moment Pd's
   thread takes its runner and session (or a release call frees them). */
typedef struct pycall {
    /* the call, set on Pd's thread */
    t_pysession *session;   /* a reference, or 0: the box's (`load` makes it) */
    t_pybox *box;           /* the object's box (0: none) */
    t_pymsg *msg;           /* selector and arguments; 0: only a runner, or only releases */
    char dir[MAXPDSTRING];
    float *values;          /* set_weights from an array: its copy (malloc), handed over */
    long nvalues;
    char key[MAXPDSTRING];  /* for jobq_push_key ('' : never coalesced) */
    char array[MAXPDSTRING];    /* get_weights: the array the floats go to */
    int want;               /* make the runner below after the message */
    char method[PYNAME_SIZE];
    int bufsize, dspn, nin, nout, keep;
    int poly;               /* share the model's calls with the group (live mode) */
    int tell;               /* for the caller: what to post once its runner is installed */
    t_pymsg *after;         /* for Pd's thread once the calls before it ran: a job, a bang */
    int route;              /* msg's route was not known on Pd's thread: the control thread
                               finds it, and hands a job or registry message back as after */
    /* what to free on the control thread instead */
    t_pyrunner *release_runner;
    t_pysession *release_session;
    t_pybox *release_box;
    /* results */
    int failed;
    char err[PYERR_SIZE];
    t_pysession *newsession;    /* `load` on an empty object: the new session (a reference) */
    t_pymsg *replies;       /* for the info outlet */
    t_pymsg *status;        /* bridge Session.status_info(), for `bang` */
    t_pymsg *notes;         /* lines for Pd's window */
    t_pyrunner *runner;     /* with want: the new runner */
    char usedmethod[PYNAME_SIZE];
    t_methodparams mp;
    int usedbufsize, block;
} t_pycall;

t_pycall *pycall_new(t_pysession *s, const char *sel, int argc, const t_atom *argv,
    const char *dir);
void pycall_run(void *call);        /* control thread */
void pycall_free(void *call);       /* frees what is left (the GIL only if Python objects are) */

/* an UnRAVEl job: made on Pd's thread, run on the job thread, replied on Pd's thread;
   s may be 0 for the model registry's messages (bridge.registry_message).  It takes the
   arrays it reads (`inputs`, any number, 0 for none) and Pd's sample rate. */
typedef struct pyjob t_pyjob;
t_pyjob *pyjob_new(t_pysession *s, const char *name, int argc, t_atom *argv, const char *dir,
    t_pyvec *inputs, float sr, char *err);
void pyjob_run(void *job);
const char *pyjob_name(const t_pyjob *j);
const t_pyvec *pyjob_outputs(const t_pyjob *j);  /* the arrays a finished job writes */
void pyjob_reply(t_pyjob *j, t_pyreply reply, void *owner);
void pyjob_free(void *job);
void pyjob_cancel(t_pysession *s);       /* stop the session's running job (its object is freed) */
void pyjob_cancel_all(void);    /* raise in every running job (at exit: threads keep their
                                   Python thread state from then on) */

#endif
