#!/bin/sh
# Start-up through libtorch alone (issue 24): builds first_output.cpp against the venv's
# torch and times dlopen, load and the first calls of each MODEL, 3 runs each, against
# Python's `import torch` alone in the same run.
# Usage: sh bench/libtorch_start/run.sh [MODEL...]   (default: the bundled model)
set -e
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
py=${PY:-$root/.venv/bin/python}
t=$("$py" -c "import os, torch; print(os.path.dirname(torch.__file__))")
abi=$("$py" -c "import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))")
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
g++ -O2 -shared -fPIC -std=c++17 -w -D_GLIBCXX_USE_CXX11_ABI=$abi -I"$t/include" \
    -I"$t/include/torch/csrc/api/include" "$here/first_output.cpp" -o "$out/first.so" \
    -L"$t/lib" -ltorch -ltorch_cpu -lc10 -Wl,-rpath,"$t/lib"
gcc -O2 "$here/first_output.c" -o "$out/first" -ldl
[ $# -gt 0 ] || set -- "$root/pybackend/unravel/data/default.ts"
echo "load average $(cut -d' ' -f1-3 /proc/loadavg)"
for m in "$@"; do
    for i in 1 2 3; do
        echo "$(basename "$m"): $("$out/first" "$out/first.so" "$m")"
        echo "  python -c 'import torch' alone: $("$py" -c 'import time; t = time.perf_counter(); import torch; print(f"{time.perf_counter() - t:.3f} s")')"
    done
done
