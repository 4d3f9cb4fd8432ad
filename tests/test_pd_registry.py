"""nn~'s registry messages against a hostile local registry on 127.0.0.1, through a real Pd:
a card name with an injected newline prints on one line (no fake error lines), and `pd quit`
during a download that drips leaves no temporary file."""

from __future__ import annotations

import threading

import pytest

from pdrun import BUILD, Patch, run_pd
from test_registry import Hostile, QuietServer

pytestmark = pytest.mark.skipif(not (BUILD / "unravel~.pd_linux").exists(),
                                reason="the external is not built (make setup)")


@pytest.fixture(scope="module")
def hostile():
    s = QuietServer(("127.0.0.1", 0), Hostile)
    s.daemon_threads = True
    threading.Thread(target=s.serve_forever, daemon=True).start()
    yield {"UNRAVEL_REGISTRY_URL": f"http://127.0.0.1:{s.server_address[1]}/",
           "no_proxy": "*", "NO_PROXY": "*"}
    s.shutdown()
    s.server_close()


def test_quit_during_a_dripping_download(tmp_path, hostile):
    p = Patch()
    lb = p.obj("loadbang")
    u = p.obj("unravel~")
    p.connect(u, 1, p.obj("print reply"), 0)
    m = p.msg("print_available_models, download ircam/rave/slowdrip")
    p.connect(lb, 0, m, 0)
    p.connect(m, 0, u, 0)
    dl = p.obj("delay 8000")   # the bridge imports torch first
    p.connect(lb, 0, dl, 0)
    p.connect(dl, 0, p.msg("; pd quit"), 0)
    r = run_pd(p.write(tmp_path / "drip.pd"), env=hostile, batch=False, timeout=60)
    assert r.returncode == 0
    assert sorted(f.name for f in tmp_path.iterdir()) == ["drip.pd"]     # no temporary file
    assert "ircam/evil?error: [unravel~]: fake/x?[31m" in r.lines, r.lines
    assert not any("fake" in ln for ln in r.errors), r.errors
    assert r.errors == [], r.errors
