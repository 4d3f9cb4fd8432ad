/* The [unravel~] loader: the file Pd loads (unravel~.pd_linux).  It has no Python in it, so
   the package folder works wherever it is copied.  It picks the Python to embed, first found:
     1. unravel.cfg beside itself (python= and libpython=, written by `unravel pd-install`
        or CMake; UNRAVEL_PYTHON in the environment overrides its python);
     2. the folder's own runtime, python/ (the full deken package): embedded with that home,
        isolated from the user's PYTHONPATH, PYTHONHOME and user site-packages;
     3. a Python that imports unravel: UNRAVEL_PYTHON, then python3 on PATH.
   It loads that libpython with its symbols global, then loads the core (unravel_core.so
   beside it, which leaves every Py* symbol to that libpython) and calls the core's setup. */
#define _GNU_SOURCE     /* dladdr */
#include <dlfcn.h>
#include <sys/stat.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "m_pd.h"

#ifndef UNRAVEL_PYVERSION
#error "UNRAVEL_PYVERSION (the Python the core is built for, e.g. \"3.11\") is not defined"
#endif

#define FIX "run 'unravel pd-install' with the Python that has unravel installed " \
    "(or 'make package' in the unravel clone)"

typedef void (*t_coresetup)(const char *python, const char *libpython, const char *cfg,
    const char *home);

/* the folder of this file, with a trailing '/' ("" if unknown) */
static void loader_dir(char *dir, size_t size)
{
    Dl_info info;
    char *slash;
    dir[0] = 0;
    if (!dladdr((void *)loader_dir, &info) || !info.dli_fname)
        return;
    snprintf(dir, size, "%s", info.dli_fname);
    if ((slash = strrchr(dir, '/')))
        slash[1] = 0;
    else
        dir[0] = 0;
}

/* python=... and libpython=... from the config file; 0 if it cannot be read */
static int loader_readconfig(const char *path, char *python, char *libpython, size_t size)
{
    char line[MAXPDSTRING];
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f))
    {
        char *v = strchr(line, '='), *end;
        if (line[0] == '#' || !v)
            continue;
        *v++ = 0;
        for (end = v + strlen(v); end > v && (end[-1] == '\n' || end[-1] == '\r'); )
            *--end = 0;
        if (!strcmp(line, "python"))
            snprintf(python, size, "%s", v);
        else if (!strcmp(line, "libpython"))
            snprintf(libpython, size, "%s", v);
    }
    fclose(f);
    return 1;
}

/* "3.11" from libpython's Py_GetVersion ("3.11.2 (main, ...)"); 0 if it has none */
static int loader_pyversion(void *lib, char *version, size_t size)
{
    const char *(*getversion)(void) = (const char *(*)(void))dlsym(lib, "Py_GetVersion");
    const char *v, *dot;
    if (!getversion || !(v = getversion()) || !(dot = strchr(v, '.')))
        return 0;
    snprintf(version, size, "%.*s", (int)(strspn(dot + 1, "0123456789") + (dot + 1 - v)), v);
    return 1;
}

/* the folder's own runtime (dir/python, see tools/pyruntime.py): its home, python and
   libpython; 0 if the folder has none */
static int loader_runtime(const char *dir, char *home, char *python, char *libpython,
    size_t size)
{
    char landmark[MAXPDSTRING];
    snprintf(landmark, sizeof(landmark), "%spython/lib/python%s/os.py", dir, UNRAVEL_PYVERSION);
    if (access(landmark, R_OK) != 0)
        return 0;
    snprintf(home, size, "%spython", dir);
    snprintf(python, size, "%s/bin/python3", home);
    snprintf(libpython, size, "%s/lib/libpython%s.so.1.0", home, UNRAVEL_PYVERSION);
    if (access(python, X_OK) != 0)      /* an unzipper that drops file modes (Tcl's) */
        chmod(python, 0755);
    return 1;
}

/* a Python that imports unravel: its sys.executable and libpython; 0 if `command` (a
   program name or path, run by the shell) is none */
static int loader_ask(const char *command, char *python, char *libpython, size_t size)
{
    char cmd[2 * MAXPDSTRING], *nl;
    FILE *p;
    int ok;
    if (strchr(command, '\''))
        return 0;
    snprintf(cmd, sizeof(cmd), "'%s' -c 'import sys, unravel.pdinstall as p; "
        "print(sys.executable); print(p.libpython())' 2>/dev/null", command);
    if (!(p = popen(cmd, "r")))
        return 0;
    ok = fgets(python, size, p) && fgets(libpython, size, p);
    if (pclose(p) != 0 || !ok)
        return 0;
    if ((nl = strchr(python, '\n')))
        *nl = 0;
    if ((nl = strchr(libpython, '\n')))
        *nl = 0;
    return *python && *libpython;
}

/* after a failure: one error line, and an [unravel~] class that creates nothing (so that
   Pd says "couldn't create" instead of loading this file again for every object) */
static void *loader_new(t_symbol *s, int argc, t_atom *argv)
{
    return 0;
}

static void loader_fail(const char *fmt, ...)
{
    char msg[4 * MAXPDSTRING];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    pd_error(0, "[unravel~]: %s", msg);
    class_new(gensym("unravel~"), (t_newmethod)loader_new, 0, sizeof(t_object), 0, A_GIMME, 0);
}

__attribute__((visibility("default"))) void unravel_tilde_setup(void)
{
    char dir[MAXPDSTRING], cfg[MAXPDSTRING], core[MAXPDSTRING], home[MAXPDSTRING] = "";
    char python[MAXPDSTRING] = "", libpython[MAXPDSTRING] = "", version[32];
    const char *env = getenv("UNRAVEL_PYTHON"), *from = cfg;
    void *lib, *corelib;
    t_coresetup setup;
    loader_dir(dir, sizeof(dir));
    snprintf(cfg, sizeof(cfg), "%sunravel.cfg", dir);
    snprintf(core, sizeof(core), "%sunravel_core.so", dir);
    if (loader_readconfig(cfg, python, libpython, sizeof(python)))
    {
        if (env && *env)
            snprintf(python, sizeof(python), "%s", env);
    }
    else if (loader_runtime(dir, home, python, libpython, sizeof(python)))
        from = home;
    else if (env && *env && loader_ask(env, python, libpython, sizeof(python)))
        from = "UNRAVEL_PYTHON";
    else if (loader_ask("python3", python, libpython, sizeof(python)))
        from = "python3 on PATH";
    else
    {
        loader_fail("cannot read %s, %spython holds no Python, and neither UNRAVEL_PYTHON "
            "nor python3 on PATH imports unravel: run 'unravel pd-install --config-only "
            "%.*s' with the Python that has unravel installed, or install unravel's deken "
            "package that carries its own Python", cfg, dir, (int)strlen(dir) - 1, dir);
        return;
    }
    if (!*libpython || !*python)
    {
        loader_fail("%s names no %s: %s", cfg, *python ? "libpython" : "python",
            FIX);
        return;
    }
    if (access(python, X_OK) != 0)
    {
        loader_fail("the Python %s named in %s is gone: %s", python,
            env && *env && from == cfg ? "UNRAVEL_PYTHON" : from, FIX);
        return;
    }
    if (!(lib = dlopen(libpython, RTLD_NOW | RTLD_GLOBAL)))
    {
        loader_fail("cannot load libpython %s named in %s (%s): %s", libpython,
            from, dlerror(), FIX);
        return;
    }
    if (!loader_pyversion(lib, version, sizeof(version)) || strcmp(version, UNRAVEL_PYVERSION))
    {
        loader_fail("%s names Python %s, but this [unravel~] is built for Python "
            "%s: %s", from, loader_pyversion(lib, version, sizeof(version)) ? version : "?",
            UNRAVEL_PYVERSION, FIX);
        return;
    }
    if (!(corelib = dlopen(core, RTLD_NOW | RTLD_LOCAL)))
    {
        loader_fail("cannot load %s (%s): %s", core, dlerror(), FIX);
        return;
    }
    if (!(setup = (t_coresetup)dlsym(corelib, "unravel_core_setup")))
    {
        loader_fail("%s has no unravel_core_setup: %s", core, FIX);
        return;
    }
    setup(python, libpython, from, home);
}
