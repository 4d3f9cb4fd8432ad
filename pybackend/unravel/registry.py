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
import shutil
import stat
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile

from unravel import limits, safewrite
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


def printable(text: str) -> str:
    """`text` with every control character (newlines included) shown as '?': what the registry
    sends is printed on one line, never as lines of its own."""
    return "".join("?" if ord(c) < 32 or 127 <= ord(c) < 160 else c for c in str(text))


def _open(cmd: str, url: str):
    """GET `url`; any network failure is one UnravelError naming the command and the cause."""
    try:
        return urllib.request.urlopen(url, timeout=TIMEOUT)
    except urllib.error.HTTPError as e:
        if 300 <= e.code < 400:
            raise UnravelError(f"{cmd}: the model registry redirects in a loop or nowhere "
                               f"({e.code}) for {printable(url)}") from None
        raise UnravelError(f"{cmd}: the model registry answered {e.code} "
                           f"{printable(e.reason)} for {printable(url)}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise UnravelError(f"{cmd}: cannot reach the model registry at {printable(api_root())} "
                           f"({printable(reason)})") from None


def _transfer(cmd: str, url: str, write, cap: int, what: str) -> int:
    """GET `url` and hand its body to write(block), at most `cap` bytes; returns the bytes
    read. The body is read on a helper thread while this one watches it: a transfer that
    brings fewer than limits.DOWNLOAD_MIN_RATE bytes a second over any
    limits.DOWNLOAD_STALL seconds fails, and a job cancelled here (Pd quits, the object is
    freed) stops at once, so its caller removes what it wrote."""
    resp = _open(cmd, url)
    length = resp.headers.get("Content-Length")
    if length is not None and length.isdigit() and int(length) > cap:
        resp.close()
        raise UnravelError(f"{cmd}: {what} is {int(length)} bytes, more than the {cap} allowed")
    state = {"got": 0, "done": False, "error": None}
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                block = resp.read1(CHUNK)
                if not block:
                    break
                if state["got"] + len(block) > cap:
                    raise UnravelError(f"{cmd}: {what} is more than the {cap} bytes allowed")
                write(block)
                state["got"] += len(block)
        except BaseException as e:  # noqa: BLE001 - handed to the watching thread
            state["error"] = e
        finally:
            state["done"] = True

    t = threading.Thread(target=reader, name="unravel download", daemon=True)
    try:
        t.start()
        window_start, window_got = time.monotonic(), 0
        while not state["done"]:
            t.join(0.05)
            now = time.monotonic()
            if now - window_start >= limits.DOWNLOAD_STALL:
                if state["got"] - window_got < limits.DOWNLOAD_MIN_RATE * limits.DOWNLOAD_STALL:
                    raise UnravelError(f"{cmd}: {what} stalled (less than "
                                       f"{limits.DOWNLOAD_MIN_RATE} bytes a second for "
                                       f"{limits.DOWNLOAD_STALL:g} s)")
                window_start, window_got = now, state["got"]
    finally:
        stop.set()
        if not state["done"]:
            _shutdown(resp)
        t.join(1.0)
        resp.close()
    e = state["error"]
    if isinstance(e, UnravelError):
        raise e
    if e is not None:       # OSError, http.client.IncompleteRead, ...
        raise UnravelError(f"{cmd}: {what}: the connection dropped "
                           f"({printable(type(e).__name__)})") from None
    if length is not None and length.isdigit() and state["got"] != int(length):
        raise UnravelError(f"{cmd}: {what}: the connection dropped after {state['got']} of "
                           f"{length} bytes")
    return state["got"]


def _shutdown(resp) -> None:
    """Wake the reader thread out of a blocked read (its socket shut down)."""
    import socket
    try:
        sock = resp.fp.raw._sock      # http.client's socket (no public handle)
        sock.shutdown(socket.SHUT_RDWR)
    except (AttributeError, OSError):
        pass


def available_models(cmd: str = "print_available_models") -> list[str]:
    """Every model card `source/model/name` the registry offers, in its order (printable: no
    control characters)."""
    body = bytearray()
    _transfer(cmd, api_root() + "available_models", body.extend, limits.MAX_MODEL_LIST_BYTES,
              "the model list")
    try:
        tree = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise UnravelError(f"{cmd}: the model registry sent no valid model list "
                           f"({printable(e)})") from None
    if not isinstance(tree, dict):
        raise UnravelError(f"{cmd}: the model registry sent no valid model list")
    cards = []
    for source, models in tree.items():
        for model, names in (models.items() if isinstance(models, dict) else []):
            for name in (names if isinstance(names, (dict, list)) else []):
                if isinstance(name, str):
                    cards.append(printable(f"{source}/{model}/{name}"))
    return cards


def _plain_name(cmd: str, name: str) -> str:
    """A file name for the models folder: no folders, no '..', not hidden, no control
    characters."""
    if (not name or "/" in name or "\\" in name or name.startswith(".")
            or printable(name) != name):
        raise UnravelError(f"{cmd}: '{printable(name)}' is not a plain model name")
    return name


def target_path(cmd: str, folder: str | os.PathLike, spec: str) -> pathlib.Path:
    """Where model `spec` lives in `folder`: a card (`a/b/name`) or a name gives
    `folder/name.ts` (as nn~); absolute paths and '..' are refused."""
    if spec.startswith("/") or spec.startswith("~") or ".." in spec.split("/"):
        raise UnravelError(f"{cmd}: '{printable(spec)}' must name a model in the patch folder "
                           f"(no absolute path, no '..')")
    name = _plain_name(cmd, spec.split("/")[-1])
    if not name.endswith(".ts"):
        name += ".ts"
    return pathlib.Path(folder) / name


def download(card: str, folder: str | os.PathLike, name: str = "", force: bool = False) -> list[str]:
    """Download model `card` into `folder` as `<name or the card's last part>.ts` through the
    safe writer (whole or not at all; nothing but a regular file is ever replaced, and that
    only with `force`). Returns the lines to post, as nn~ does; without `force` a non-empty
    file already there is kept."""
    cmd = "download"
    target = target_path(cmd, folder, _plain_name(cmd, name) if name else card)
    if card not in available_models(cmd):
        raise UnravelError(f"{cmd}: model '{printable(card)}' is not in the registry "
                           f"(print_available_models lists them)")
    try:
        st = os.lstat(target)
    except OSError:
        st = None
    if st is not None and stat.S_ISREG(st.st_mode) and st.st_size > 0 and not force:
        return [f"model {target} seems to be already downloaded."]
    if st is not None:
        try:
            safewrite.check_target(target, force)
        except UnravelError as e:
            raise UnravelError(f"{cmd}: {printable(e)}".replace("--force", "force")) from None
    with _downloading_lock:
        if target in _downloading:
            return [f"model {card} is already downloading."]
        _downloading.add(target)
    try:
        safewrite.write_file(target, lambda tmp: _fetch(card, tmp), force=force)
    finally:
        with _downloading_lock:
            _downloading.discard(target)
    return [f"downloading model {card}...", f"model {card} downloaded at {target}"]


def _fetch(card: str, tmp: str) -> None:
    """Stream the model into the temporary file `tmp` and check it is whole (the announced
    length, at most limits.MAX_DOWNLOAD_BYTES and what leaves the disk
    limits.DOWNLOAD_DISK_RESERVE free, a complete zip archive as TorchScript files are)."""
    cmd = "download"
    url = api_root() + "download_model?model=" + urllib.parse.quote(card, safe="/")
    free = shutil.disk_usage(os.path.dirname(tmp) or ".").free - limits.DOWNLOAD_DISK_RESERVE
    with open(tmp, "wb") as f:
        got = _transfer(cmd, url, f.write, max(0, min(limits.MAX_DOWNLOAD_BYTES, free)), card)
    if got == 0 or not zipfile.is_zipfile(tmp):
        raise UnravelError(f"{cmd}: {card}: the registry sent no TorchScript model")


def remove(spec: str, folder: str | os.PathLike) -> list[str]:
    """Delete the model file `spec` names in `folder` (nothing outside it, nothing but a
    file). Returns the line to post, as nn~ does."""
    cmd = "remove"
    target = target_path(cmd, folder, spec)
    if not target.is_file():
        raise UnravelError(f"{cmd}: could not find model {printable(spec)} in {folder}")
    try:
        target.unlink()
    except OSError as e:
        raise UnravelError(f"{cmd}: cannot delete {target} ({e.strerror or e})")
    return [f"model {spec} deleted."]
