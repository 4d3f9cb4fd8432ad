"""What a TorchScript model file holds, read without torch: where a model spec points
(`resolve_model`, the bundled models) and each method's nn~ shape (`method_params`), read
from the file's zip archive, so that [unravel~] knows its inlets and outlets at once while
torch is imported and the model loaded in the background."""

from __future__ import annotations

import io
import math
import os
import pathlib
import pickle
import zipfile
from typing import Sequence

from unravel.errors import UnravelError
from unravel.methods import MethodParams

DATA_DIR = pathlib.Path(__file__).resolve().parent / "data"
DEFAULT_MODEL = DATA_DIR / "default.ts"
BUNDLED = {"default": DEFAULT_MODEL, "default4": DATA_DIR / "default4.ts"}


def resolve_model(spec: str | os.PathLike, search: Sequence[os.PathLike] = ()) -> pathlib.Path:
    """'default'/'default4' -> the bundled models; otherwise a path, '.ts' optional, looked up
    as given (absolute or relative to cwd), then in each search dir."""
    s = os.fspath(spec)
    if s in BUNDLED:
        p = BUNDLED[s]
        if not p.is_file():
            raise UnravelError(f"{s}: bundled model {p} is missing (re-make it, see {DATA_DIR / 'README.md'})")
        return p
    names = [s] if s.endswith(".ts") else [s, s + ".ts"]
    dirs = [pathlib.Path.cwd()] + [pathlib.Path(d) for d in search]
    for d in dirs:
        for name in names:
            p = d / pathlib.Path(name).expanduser()
            if p.is_file():
                return p.resolve()
    raise UnravelError(f"{s}: model file not found")


# --------------------------------------------------------------------------- the archive

# torch's storage classes -> struct codes of their elements
_CODES = {"LongStorage": "q", "IntStorage": "i", "ShortStorage": "h", "CharStorage": "b",
          "ByteStorage": "B", "FloatStorage": "f", "DoubleStorage": "d"}


class _Anything:
    """Whatever the pickle builds that is not a tensor (modules, their classes): its state."""

    def __init__(self, *args, **kw):
        self.state = None

    def __setstate__(self, state):
        self.state = state


class _StorageType:
    def __init__(self, code: str):
        self.code = code


class _Tensor:
    """A tensor of the archive, read only when asked (`values`)."""

    def __init__(self, read, code: str | None, offset: int, n: int):
        self.read, self.code, self.offset, self.n = read, code, offset, n

    def values(self) -> list | None:
        if self.code is None:
            return None
        return list(memoryview(self.read()).cast(self.code)[self.offset:self.offset + self.n])


def _rebuild(storage, offset, size, stride, *rest) -> _Tensor:
    read, code = storage if storage is not None else (None, None)
    return _Tensor(read, code, int(offset), math.prod(size))


class _Reader(pickle.Unpickler):
    """data.pkl of a TorchScript archive: tensors as _Tensor, everything else as _Anything."""

    def __init__(self, z: zipfile.ZipFile, prefix: str):
        super().__init__(io.BytesIO(z.read(prefix + "data.pkl")))
        self.z, self.prefix = z, prefix

    def find_class(self, module: str, name: str):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild
        if module == "torch" and name.endswith("Storage"):
            return _StorageType(_CODES.get(name, ""))
        return _Anything

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and isinstance(pid[1], _StorageType)
                and pid[1].code):
            return None
        key = f"{self.prefix}data/{pid[2]}"
        return (lambda: self.z.read(key)), pid[1].code


def method_params(path: str | os.PathLike) -> dict[str, MethodParams]:
    """{method: MethodParams} from the `<method>_params` buffers of the model's top module
    (what nn~ reads; not checked); {} when the file declares none or is not a TorchScript
    archive this reader knows."""
    try:
        with zipfile.ZipFile(path) as z:
            pkls = [n for n in z.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            if len(pkls) != 1:
                return {}
            root = _Reader(z, pkls[0][:-len("data.pkl")]).load()
            state = getattr(root, "state", None)
            if not isinstance(state, dict):
                return {}
            out = {}
            for key, value in state.items():
                if isinstance(key, str) and key.endswith("_params") and isinstance(value, _Tensor):
                    v = value.values()
                    if v is not None and len(v) == 4 and all(float(x).is_integer() for x in v):
                        out[key[:-len("_params")]] = MethodParams(*(int(x) for x in v))
            return out
    except (OSError, zipfile.BadZipFile, pickle.UnpicklingError, EOFError, ValueError,
            TypeError, AttributeError, IndexError, KeyError):
        return {}


def shape(spec: str, method: str) -> tuple[int, int] | None:
    """The (input, output) channel counts of `method` of model `spec` (forward when the
    model lacks it, as nn~ falls back), or None when the file does not say."""
    try:
        params = method_params(resolve_model(spec))
    except UnravelError:
        return None
    p = params.get(method) or params.get("forward")
    return (p.in_channels, p.out_channels) if p else None
