/* python3 of the runtime in the deken package (unravel/python/bin/python3, built by
   tools/pyruntime.py): the interpreter [unravel~]'s jobs run in (sys.executable).  It finds
   libpython in ../lib (RUNPATH $ORIGIN/../lib) and its home from where it lies, and runs
   isolated (-I: no PYTHONPATH, PYTHONHOME or user site-packages), so that only the
   runtime's own packages are imported. */
#include <Python.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    char **args = malloc((argc + 2) * sizeof(*args));
    int i;
    if (!args)
        return 1;
    args[0] = argv[0];
    args[1] = "-I";
    for (i = 1; i < argc; i++)
        args[i + 1] = argv[i];
    args[argc + 1] = 0;
    return Py_BytesMain(argc + 1, args);
}
