/* pyembed: the embedded CPython interpreter and every call into unravel.bridge.
   Pd types appear only as t_atom/t_symbol for argument conversion; no outlets, no classes.
   Every function takes the GIL itself (PyGILState_Ensure) and returns 0 on success or -1
   with the exception's last line in err. */
#ifndef UNRAVEL_PYEMBED_H
#define UNRAVEL_PYEMBED_H

#include "m_pd.h"

#define PYERR_SIZE 1000

typedef void (*t_pyreply)(void *owner, t_symbol *sel, int argc, t_atom *argv);
typedef void (*t_pyfloats)(void *owner, const float *v, long n);

/* start the interpreter once per process (later calls return the first result) */
int pyembed_start(const char *python, const char *libpython, char *err);

typedef struct pysession t_pysession;
t_pysession *pysession_new(const char *spec, const char *dir, char *err);
void pysession_free(t_pysession *s);
int pysession_load(t_pysession *s, const char *spec, const char *dir, char *err);
/* s.gpu(on): the model to the GPU (on) or the CPU; note: '' or the line to post (no GPU) */
int pysession_gpu(t_pysession *s, int on, char *note, char *err);
/* p: in_chans in_ratio out_chans out_ratio block (the smallest unpadded buffer) sr */
int pysession_params(t_pysession *s, const char *method, int p[6], char *err);
int pysession_hasmethod(t_pysession *s, const char *method);
/* s.message(sel, args): replies go to reply(owner, ...) */
int pysession_message(t_pysession *s, const char *sel, int argc, t_atom *argv,
    t_pyreply reply, void *owner, char *err);
int pysession_get_weights(t_pysession *s, const char *layer, t_pyfloats fn, void *owner,
    char *err);
/* v: the caller's scratch copy, handed to Python writable (torch warns on read-only arrays) */
int pysession_set_weights(t_pysession *s, const char *layer, float *v, long n, char *err);

/* the model call the worker thread makes: a t_engine_fn */
typedef struct pyrunner t_pyrunner;
t_pyrunner *pyrunner_new(t_pysession *s, const char *method, float *in, int in_chans,
    int in_frames, float *out, int out_chans, int out_frames, char *err);
int pyrunner_process(void *runner, const float *in, float *out);
int pyrunner_takeerror(t_pyrunner *r, char *err);   /* 1 if an error was waiting */
void pyrunner_free(t_pyrunner *r);

/* an UnRAVEl job: made on Pd's thread, run on the job thread, replied on Pd's thread;
   s may be 0 for the model registry's messages (bridge.registry_message) */
typedef struct pyjob t_pyjob;
t_pyjob *pyjob_new(t_pysession *s, const char *name, int argc, t_atom *argv, const char *dir,
    char *err);
void pyjob_run(void *job);
void pyjob_reply(t_pyjob *j, t_pyreply reply, void *owner);
void pyjob_free(void *job);
void pyjob_cancel(t_pysession *s);       /* stop the session's running job (its object is freed) */
void pyjob_cancel_all(void);    /* raise in every running job (at exit: threads keep their
                                   Python thread state from then on) */

#endif
