/* dlopen the libtorch library first_output.cpp makes (libtorch with it), load a model, run
   its forward on one 2048-sample block twice; prints each step's seconds. */
#include <dlfcn.h>
#include <stdio.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    static float in[2048], out[2048];
    double t0 = now(), t1, t2, t3, t4;
    void *h, *m;
    void *(*load)(const char *);
    int (*forward)(void *, const float *, float *, int), i;
    if (argc < 3 || !(h = dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL)))
    {
        fprintf(stderr, "usage: first_output LIB MODEL (%s)\n", argc < 3 ? "" : dlerror());
        return 1;
    }
    t1 = now();
    load = (void *(*)(const char *))dlsym(h, "first_load");
    forward = (int (*)(void *, const float *, float *, int))dlsym(h, "first_forward");
    m = load(argv[2]);
    t2 = now();
    for (i = 0; i < 2048; i++)
        in[i] = (float)(i % 100) / 100.f - 0.5f;
    forward(m, in, out, 2048);
    t3 = now();
    forward(m, in, out, 2048);
    t4 = now();
    printf("dlopen libtorch %.3f s, load %.3f s, first call %.3f s, second %.3f s: "
        "first output %.3f s after the start\n", t1 - t0, t2 - t1, t3 - t2, t4 - t3, t3 - t0);
    return 0;
}
