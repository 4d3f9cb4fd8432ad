/* firstpath: what a live [unravel~] plays from Pd's start until its own runner takes over.

   Importing torch takes about a second; libtorch alone loads and runs a model in a third of
   that.  While the bridge imports torch, a first path loads the object's model through
   unravel_first.so (firstpath_torch.cpp, beside the core) on a thread of its own and runs
   its method as the engine's model call (a t_engine_fn); the `load`'s runner takes over at
   a block boundary and the first path is closed.  What a model plays this way, and where
   torch's libraries are, is decided in Python without torch (unravel/firstpath.py).  No Pd
   and no Python in here. */
#ifndef UNRAVEL_FIRSTPATH_H
#define UNRAVEL_FIRSTPATH_H

typedef struct firstplan {
    char path[1024];        /* the model file */
    char method[64];
    int in_chans, in_ratio, out_chans, out_ratio;
    int bufsize;            /* B: frames per call, fitted as the runner fits it */
    char torchlib[1024];    /* the folder of torch's C++ libraries */
    char torchversion[64];  /* their torch's version */
} t_firstplan;

typedef struct firstpath t_firstpath;

/* start loading plan's model on a thread of its own; 0 when it cannot (unravel_first.so is
   missing or was built for another torch, no thread): err says why */
t_firstpath *firstpath_open(const t_firstplan *plan, char *err, int errsize);
/* 1 loaded and warmed up, 0 still loading, -1 failed (err: why, once) */
int firstpath_ready(t_firstpath *f, char *err, int errsize);
const t_firstplan *firstpath_plan(t_firstpath *f);
float *firstpath_in(t_firstpath *f);    /* the buffers the engine gives firstpath_process */
float *firstpath_out(t_firstpath *f);
int firstpath_process(void *f, const float *in, float *out);   /* a t_engine_fn */
/* let it go (no engine calls it any more): its thread frees it once it has loaded; never
   blocks */
void firstpath_close(t_firstpath *f);
/* the model files first paths are open on now (one each): Pd's thread only */
int firstpath_busy(const char *path);

#endif
