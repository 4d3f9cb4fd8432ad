"""unravel.registry's path rules: a model name maps to <folder>/<name>.ts and never leaves the
folder (the network side is tested through Pd in test_pd_nn_parity.py)."""

from __future__ import annotations

import pytest

from unravel import registry
from unravel.errors import UnravelError


@pytest.mark.parametrize("spec,name", [("ircam/rave/nasa", "nasa.ts"), ("nasa", "nasa.ts"),
                                       ("nasa.ts", "nasa.ts"), ("a/b/my.model", "my.model.ts")])
def test_target_path(tmp_path, spec, name):
    assert registry.target_path("remove", tmp_path, spec) == tmp_path / name


@pytest.mark.parametrize("spec", ["../x", "a/../../x", "/etc/hostname", "~/x", "", "a/", ".hidden",
                                  "a/..", "x\\y"])
def test_target_path_refuses_other_folders(tmp_path, spec):
    with pytest.raises(UnravelError, match="^remove: "):
        registry.target_path("remove", tmp_path, spec)


def test_root_from_the_environment(monkeypatch):
    monkeypatch.setenv("UNRAVEL_REGISTRY_URL", "http://127.0.0.1:9/api")
    assert registry.api_root() == "http://127.0.0.1:9/api/"
    monkeypatch.delenv("UNRAVEL_REGISTRY_URL")
    assert registry.api_root() == registry.DEFAULT_ROOT


# --------------------------------------------------------------------------- against a local registry

import http.server  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import stat  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.parse  # noqa: E402

from unravel import limits  # noqa: E402

MODEL = b"PK" + bytes(200)          # stands for a model: a zip archive is all download checks
CATALOG = {"ircam": {"rave": {"nasa": {}, "drip": {}, "slowdrip": {}, "big": {}, "endless": {}},
                     "evil\nerror: [unravel~]: fake": {"x\x1b[31m": {}}}}


def _zip_bytes() -> bytes:
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("model/data.pkl", b"x" * 100)
    return buf.getvalue()


ZIP = _zip_bytes()


class Hostile(http.server.BaseHTTPRequestHandler):
    """A registry that answers well for `nasa` and badly for the rest: `drip` sends one byte
    every 0.2 s (`slowdrip` every 5 s), `big` announces more than the cap, `endless` streams
    without end; the list at
    /endless/ never ends, /loop/ redirects to itself."""

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        root, _, call = url.path.rpartition("/")
        if root == "/loop":
            self.send_response(302)
            self.send_header("Location", self.path)
            self.end_headers()
            return
        if call == "available_models":
            if root == "/endless":
                return self._stream(b"[" + b" " * 65536, content_length=None)
            return self._send(json.dumps(CATALOG).encode())
        card = urllib.parse.parse_qs(url.query).get("model", [""])[0]
        if card in ("ircam/rave/drip", "ircam/rave/slowdrip"):
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            try:
                for _ in range(1000):
                    self.wfile.write(b"P")
                    self.wfile.flush()
                    time.sleep(0.2 if card == "ircam/rave/drip" else 5.0)
            except OSError:
                pass
            return
        if card == "ircam/rave/big":
            self.send_response(200)
            self.send_header("Content-Length", str(10**12))
            self.end_headers()
            return
        if card == "ircam/rave/endless":
            return self._stream(b"PK" + bytes(65534), content_length=None)
        self._send(ZIP)

    def _send(self, body: bytes):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, block: bytes, content_length):
        self.send_response(200)
        self.end_headers()
        try:
            while True:
                self.wfile.write(block)
        except OSError:
            pass

    def log_message(self, *args):
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass            # a client that hangs up on an endless answer is expected


@pytest.fixture(scope="module")
def server():
    s = QuietServer(("127.0.0.1", 0), Hostile)
    s.daemon_threads = True
    threading.Thread(target=s.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{s.server_address[1]}/"
    s.shutdown()
    s.server_close()


@pytest.fixture
def reg(server, monkeypatch):
    monkeypatch.setenv("UNRAVEL_REGISTRY_URL", server)
    monkeypatch.setenv("no_proxy", "*")
    return server


def test_download_whole_through_the_safe_writer(tmp_path, reg):
    assert registry.download("ircam/rave/nasa", tmp_path)[-1].endswith("nasa.ts")
    assert (tmp_path / "nasa.ts").read_bytes() == ZIP
    assert registry.download("ircam/rave/nasa", tmp_path)[0].endswith("seems to be already downloaded.")
    (tmp_path / "nasa.ts").write_bytes(b"mine")
    registry.download("ircam/rave/nasa", tmp_path, force=True)       # force replaces a file
    assert (tmp_path / "nasa.ts").read_bytes() == ZIP
    assert os.listdir(tmp_path) == ["nasa.ts"]


def _make(kind: str, path):
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "chardev":
        try:
            os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("mknod needs root")
    elif kind == "dangling":
        os.symlink(path.parent / "nowhere", path)
    elif kind == "symlink":
        (path.parent / "real").write_bytes(b"")
        os.symlink(path.parent / "real", path)
    elif kind == "empty":
        path.write_bytes(b"")


@pytest.mark.parametrize("kind", ["chardev", "fifo", "dangling", "symlink", "empty"])
def test_download_replaces_nothing_but_a_file_with_force(tmp_path, reg, kind):
    target = tmp_path / "nasa.ts"
    _make(kind, target)
    before = os.lstat(target)
    for force in ([False] if kind == "empty" else [False, True]):
        with pytest.raises(UnravelError, match="^download: .*nasa.ts: "):
            registry.download("ircam/rave/nasa", tmp_path, force=force)
        after = os.lstat(target)
        assert (after.st_mode, after.st_ino, after.st_size) == (before.st_mode, before.st_ino, before.st_size)
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]      # no temp file


def test_download_stall_times_out(tmp_path, reg, monkeypatch):
    """One byte every 0.2 s: under the minimum rate, so it fails after one window."""
    monkeypatch.setattr(limits, "DOWNLOAD_STALL", 1.0)
    t = time.monotonic()
    with pytest.raises(UnravelError, match="^download: ircam/rave/drip stalled"):
        registry.download("ircam/rave/drip", tmp_path)
    assert time.monotonic() - t < 4
    assert os.listdir(tmp_path) == []


def test_download_size_cap(tmp_path, reg, monkeypatch):
    with pytest.raises(UnravelError, match="more than the"):
        registry.download("ircam/rave/big", tmp_path)                  # announced
    monkeypatch.setattr(limits, "MAX_DOWNLOAD_BYTES", 1 << 20)
    with pytest.raises(UnravelError, match="more than the 1048576 bytes allowed"):
        registry.download("ircam/rave/endless", tmp_path)              # streamed
    assert os.listdir(tmp_path) == []


def test_model_list_cap(server, monkeypatch):
    monkeypatch.setenv("UNRAVEL_REGISTRY_URL", server + "endless/")
    monkeypatch.setattr(limits, "MAX_MODEL_LIST_BYTES", 1 << 20)
    with pytest.raises(UnravelError, match="^print_available_models: the model list is more than"):
        registry.available_models()


def test_cards_printable(reg):
    cards = registry.available_models()
    assert "ircam/rave/nasa" in cards
    assert all(c.isprintable() for c in cards), cards
    assert "ircam/evil?error: [unravel~]: fake/x?[31m" in cards


def test_redirect_loop_is_our_line(server, monkeypatch):
    monkeypatch.setenv("UNRAVEL_REGISTRY_URL", server + "loop/")
    with pytest.raises(UnravelError) as e:
        registry.available_models()
    assert str(e.value).startswith("print_available_models: the model registry redirects in a loop")
    assert str(e.value).isprintable()


def test_download_leaves_disk_space_free(tmp_path, reg, monkeypatch):
    """A download takes at most the folder's free space less the reserve."""
    import shutil
    free = shutil.disk_usage(tmp_path).free
    monkeypatch.setattr(limits, "DOWNLOAD_DISK_RESERVE", free - (1 << 20))
    with pytest.raises(UnravelError, match="download: ircam/rave/endless is more than the"):
        registry.download("ircam/rave/endless", tmp_path)
    assert os.listdir(tmp_path) == []
