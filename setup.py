"""Packs the Pd library's sources into the wheel as unravel/pdlib/ (CMakeLists.txt, native/,
pd/), so that `unravel pd-install` can build [unravel~] from a non-editable install too.
Everything else is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
PDLIB = ["CMakeLists.txt", "native", "pd"]


class BuildPyWithPdlib(build_py):
    """build_py, then copy the Pd library's sources into build_lib/unravel/pdlib."""

    def run(self) -> None:
        super().run()
        dst = Path(self.build_lib) / "unravel" / "pdlib"
        for name in PDLIB:
            src = ROOT / name
            if src.is_dir():
                shutil.copytree(src, dst / name, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__", "*.o"))
            elif src.is_file():
                dst.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst / name)


setup(cmdclass={"build_py": BuildPyWithPdlib})
