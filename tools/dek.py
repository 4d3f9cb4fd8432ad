"""`make dist`: pack the Pd library folder (build/unravel) as a deken package.

Writes DIST/<name>.dek (a zip holding the folder unravel/, as deken names and lays out a
package for one platform; Pd's floats are 32-bit), its checksum DIST/<name>.dek.sha256 (the
hex SHA-256, as `deken package` writes it) and its object list DIST/<name>.dek.txt (one line
per object: name, a tab, what it does). <name> is
  unravel[v<version>](<OS>-<cpu>-32)           with --runtime PYTHON: the folder and, as
                                               unravel/python/, the Python runtime that
                                               tools/pyruntime.py wrote (plays as unpacked);
  unravel[v<version>-nopython](<OS>-<cpu>-32)  without: the folder only.

Neither holds unravel.cfg (it names a Python on the build machine). Without the runtime,
`unravel pd-install --config-only <folder>` points the library at a Python that has unravel
installed (the same minor version as the build's; the external says so otherwise).

usage: python tools/dek.py build/unravel dist [--runtime build/dist/python]"""

from __future__ import annotations

import hashlib
import platform
import re
import shutil
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OBJECTS = {
    "unravel~": "run RAVE (nn~-contract TorchScript) models, bend their layers, run UnRAVEl jobs",
    "bender": "a panel that bends the layers of an [unravel~] model while it plays",
    "chns0n": "loop a latent wav (D channels) into [unravel~ -m <model> decode]",
    "ch4ns0n": "[chns0n 4]: loop a 4-channel latent wav",
    "ch8ns0n": "[chns0n 8]: loop an 8-channel latent wav",
}
SKIP = {"unravel.cfg"}


def arch() -> str:
    """deken's OS-CPU-FLOATSIZE for this machine, e.g. Linux-amd64-32."""
    cpu = platform.machine().lower()
    cpu = {"x86_64": "amd64", "aarch64": "arm64", "i686": "i386"}.get(cpu, cpu)
    return f"{platform.system()}-{cpu}-32"


def version() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    return re.search(r'^version = "([^"]+)"', text, re.M).group(1)


def files(folder: Path, runtime: Path | None) -> list[tuple[str, Path]]:
    """(name in the archive, file) for the folder's files and the runtime's, sorted."""
    out = [(f"unravel/{f.relative_to(folder).as_posix()}", f) for f in folder.rglob("*")
           if f.is_file() and f.name not in SKIP and "__pycache__" not in f.parts]
    if runtime:
        out += [(f"unravel/python/{f.relative_to(runtime).as_posix()}", f)
                for f in Path(runtime).rglob("*") if f.is_file()]
    return sorted(out)


def pack(folder: Path, dist: Path, runtime: Path | None = None) -> Path:
    """Write the .dek, .dek.sha256 and .dek.txt; returns the .dek path."""
    folder, dist = Path(folder), Path(dist)
    if not (folder / "unravel~.pd_linux").exists() and not (folder / "unravel~.pd_darwin").exists():
        sys.exit(f"dek: {folder} holds no built [unravel~] (make package)")
    dist.mkdir(parents=True, exist_ok=True)
    if runtime and not (Path(runtime) / "bin" / "python3").is_file():
        sys.exit(f"dek: {runtime} holds no Python runtime (tools/pyruntime.py)")
    dek = dist / f"unravel[v{version()}{'' if runtime else '-nopython'}]({arch()}).dek"
    tmp = dek.with_name(dek.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for name, f in files(folder, runtime):
            info = zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0))
            info.external_attr = (0o100755 if f.stat().st_mode & 0o111 else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with f.open("rb") as src, z.open(info, "w") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    tmp.replace(dek)
    Path(f"{dek}.sha256").write_text(hashlib.sha256(dek.read_bytes()).hexdigest())
    Path(f"{dek}.txt").write_text("".join(f"{k}\t{v}\n" for k, v in OBJECTS.items()))
    return dek


if __name__ == "__main__":
    args = sys.argv[1:]
    runtime = None
    if len(args) == 4 and args[2] == "--runtime":
        runtime = Path(args.pop(3))
        args.pop(2)
    if len(args) != 2:
        sys.exit(__doc__.rsplit("usage: ", 1)[1])
    print("wrote", pack(Path(args[0]), Path(args[1]), runtime))
