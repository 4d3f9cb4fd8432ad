"""Build unravel_first.so (native/firstpath_torch.cpp: the first path's model through libtorch
alone) against the torch this Python has, with torch's own C++ flags.

`make native` runs it with the venv's python (CMake then copies the library into the Pd
package folder); `make dist` with the runtime's. Usage: python native/build_firstpath.py OUT.so
Without the library a live [unravel~] stays silent until torch is imported, as before."""

import pathlib
import subprocess
import sys

import torch
from torch.utils import cpp_extension

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main(out: str) -> int:
    lib = cpp_extension.library_paths()[0]
    cmd = ["c++", "-O2", "-std=c++17", "-shared", "-fPIC", "-w", "-fvisibility=hidden",
           f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",
           f'-DUNRAVEL_TORCH_VERSION="{torch.__version__}"',
           *(f"-I{p}" for p in cpp_extension.include_paths()),
           str(ROOT / "native" / "firstpath_torch.cpp"), "-o", out + ".part",
           f"-L{lib}", "-ltorch_cpu", "-lc10"]
    # no RUNPATH: native/firstpath.c loads torch's libraries from where that Python has them
    pathlib.Path(out).parent.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(cmd)
    if r.returncode == 0:
        pathlib.Path(out + ".part").replace(out)
    return r.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
