"""The online model registry nn~ downloads from: list, download and remove models.

The same API as nn~ 1.6 (IRCAM's RAVE model API):
`GET <root>available_models` answers JSON `{source: {model: {name: {...}}}}`, each model
named by its card `source/model/name`; `GET <root>download_model?model=<card>` answers the
TorchScript file. A download lands in the patch's folder as `<name>.ts` (the card's last part,
or the name given). The root is `UNRAVEL_REGISTRY_URL` when set (tests serve a local copy),
else nn~'s. Standard library only; the Pd object runs these on its job thread.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
import zipfile

from unravel.errors import UnravelError

DEFAULT_ROOT = "https://play.forum.ircam.fr/rave-vst-api/"
TIMEOUT = 30.0          # seconds without an answer before giving up
CHUNK = 1 << 16

_downloading: set[pathlib.Path] = set()     # targets being written by this process
_downloading_lock = threading.Lock()


def api_root() -> str:
    """The registry's base URL, ending with '/'."""
    root = os.environ.get("UNRAVEL_REGISTRY_URL") or DEFAULT_ROOT
    return root if root.endswith("/") else root + "/"


def _open(cmd: str, url: str):
    """GET `url`; any network failure is one UnravelError naming the command and the cause."""
    try:
        return urllib.request.urlopen(url, timeout=TIMEOUT)
    except urllib.error.HTTPError as e:
        raise UnravelError(f"{cmd}: the model registry answered {e.code} {e.reason} for {url}")
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise UnravelError(f"{cmd}: cannot reach the model registry at {api_root()} ({reason})")


def available_models(cmd: str = "print_available_models") -> list[str]:
    """Every model card `source/model/name` the registry offers, in its order."""
    with _open(cmd, api_root() + "available_models") as resp:
        try:
            tree = json.loads(resp.read().decode("utf-8"))
        except (ValueError, UnicodeDecodeError, OSError) as e:
            raise UnravelError(f"{cmd}: the model registry sent no valid model list ({e})")
    if not isinstance(tree, dict):
        raise UnravelError(f"{cmd}: the model registry sent no valid model list")
    cards = []
    for source, models in tree.items():
        for model, names in (models.items() if isinstance(models, dict) else []):
            for name in (names if isinstance(names, (dict, list)) else []):
                if isinstance(name, str):
                    cards.append(f"{source}/{model}/{name}")
    return cards


def _plain_name(cmd: str, name: str) -> str:
    """A file name for the models folder: no folders, no '..', not hidden."""
    if not name or "/" in name or "\\" in name or name.startswith(".") or "\0" in name:
        raise UnravelError(f"{cmd}: '{name}' is not a plain model name")
    return name


def target_path(cmd: str, folder: str | os.PathLike, spec: str) -> pathlib.Path:
    """Where model `spec` lives in `folder`: a card (`a/b/name`) or a name gives
    `folder/name.ts` (as nn~); absolute paths and '..' are refused."""
    if spec.startswith("/") or spec.startswith("~") or ".." in spec.split("/"):
        raise UnravelError(f"{cmd}: '{spec}' must name a model in the patch folder "
                           f"(no absolute path, no '..')")
    name = _plain_name(cmd, spec.split("/")[-1])
    if not name.endswith(".ts"):
        name += ".ts"
    return pathlib.Path(folder) / name


def download(card: str, folder: str | os.PathLike, name: str = "") -> list[str]:
    """Download model `card` into `folder` as `<name or the card's last part>.ts`, atomically
    (a temporary file renamed at the end: nothing is left when the transfer fails). Returns
    the lines to post, as nn~ does; a non-empty file already there is kept."""
    cmd = "download"
    target = target_path(cmd, folder, _plain_name(cmd, name) if name else card)
    if card not in available_models(cmd):
        raise UnravelError(f"{cmd}: model '{card}' is not in the registry "
                           f"(print_available_models lists them)")
    if target.exists() and target.stat().st_size > 0:
        return [f"model {target} seems to be already downloaded."]
    with _downloading_lock:
        if target in _downloading:
            return [f"model {card} is already downloading."]
        _downloading.add(target)
    try:
        _fetch(card, target)
    finally:
        with _downloading_lock:
            _downloading.discard(target)
    return [f"downloading model {card}...", f"model {card} downloaded at {target}"]


def _fetch(card: str, target: pathlib.Path) -> None:
    """Stream the model into a hidden temporary file beside `target`, check it is whole
    (the announced length, a complete zip archive as TorchScript files are), then rename."""
    cmd = "download"
    url = api_root() + "download_model?model=" + urllib.parse.quote(card, safe="/")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    except OSError as e:
        raise UnravelError(f"{cmd}: cannot write in {target.parent} ({e.strerror or e})")
    try:
        with os.fdopen(fd, "wb") as f, _open(cmd, url) as resp:
            expected = resp.headers.get("Content-Length")
            got = 0
            while True:
                try:
                    block = resp.read(CHUNK)
                except (OSError, ValueError) as e:     # includes http.client.IncompleteRead
                    raise UnravelError(f"{cmd}: {card}: the connection dropped ({e})")
                if not block:
                    break
                f.write(block)
                got += len(block)
        if expected is not None and expected.isdigit() and got != int(expected):
            raise UnravelError(f"{cmd}: {card}: the connection dropped after {got} of "
                               f"{expected} bytes")
        if got == 0 or not zipfile.is_zipfile(tmp):
            raise UnravelError(f"{cmd}: {card}: the registry sent no TorchScript model")
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def remove(spec: str, folder: str | os.PathLike) -> list[str]:
    """Delete the model file `spec` names in `folder` (nothing outside it, nothing but a
    file). Returns the line to post, as nn~ does."""
    cmd = "remove"
    target = target_path(cmd, folder, spec)
    if not target.is_file():
        raise UnravelError(f"{cmd}: could not find model {spec} in {folder}")
    try:
        target.unlink()
    except OSError as e:
        raise UnravelError(f"{cmd}: cannot delete {target} ({e.strerror or e})")
    return [f"model {spec} deleted."]
