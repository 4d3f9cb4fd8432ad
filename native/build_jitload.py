"""Build unravel._jitload (native/jitload.cpp: torch::jit::load without the GIL) into
pybackend/unravel/ with torch's own C++ extension flags, for the torch installed here.

`make native` runs it with the venv's python; `python native/build_jitload.py`. Without it
unravel loads models with torch.jit.load (which holds the GIL while it reads the file)."""

import pathlib
import sys

from setuptools import setup
from torch.utils.cpp_extension import BuildExtension, CppExtension

ROOT = pathlib.Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    setup(name="unravel-jitload", script_args=[
        "build_ext", "--build-lib", str(ROOT / "pybackend" / "unravel"),
        "--build-temp", str(ROOT / "build" / "jitload")] + sys.argv[1:],
        ext_modules=[CppExtension("_jitload", [str(ROOT / "native" / "jitload.cpp")])],
        cmdclass={"build_ext": BuildExtension})
