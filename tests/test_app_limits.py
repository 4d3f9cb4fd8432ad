"""`unravel app` over HTTP on 127.0.0.1 (issue 16): uploads are limited (`--max-upload-mb`,
default 300 MB of decoded audio, said on the page), and custom model and checkpoint paths
must lie in the `--models` folder, refused with the same message whether or not the file
exists elsewhere. The page runs as a real subprocess; the requests are the ones the page's
JavaScript makes (POST /gradio_api/upload, /gradio_api/call/<handler>)."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import numpy as np
import pytest
import soundfile as sf

from unravel.model import DEFAULT_MODEL

pytest.importorskip("gradio", reason="the [app] extra (gradio) is not installed: run make setup")

START_TIMEOUT = 120
LIMIT_MB = 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    """(status, body) of a request to the local server only, ignoring any proxy settings."""
    assert url.startswith("http://127.0.0.1:"), url
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with opener.open(req, timeout=120) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`unravel app --max-upload-mb 1 --models DIR` on a free loopback port; yields (url, dir)."""
    tmp = tmp_path_factory.mktemp("applimits")
    (tmp / "models").mkdir()
    port = free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1",
               GRADIO_TEMP_DIR=str(tmp / "gradio"), NO_PROXY="127.0.0.1", no_proxy="127.0.0.1",
               PYTHONUNBUFFERED="1")
    log = (tmp / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "unravel.cli", "app", "--port", str(port),
                             "--models", str(tmp / "models"), "--out", str(tmp / "out"),
                             "--max-upload-mb", str(LIMIT_MB)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"unravel app exited ({proc.returncode}):\n{(tmp / 'server.log').read_text()}")
            try:
                if request(url + "/")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"unravel app did not answer in {START_TIMEOUT} s")
            time.sleep(0.5)
        yield url, tmp
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def upload(url: str, name: str, content: bytes) -> tuple[int, bytes]:
    """POST one file to /gradio_api/upload as the page does (multipart, field `files`)."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; "
            f"filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    body += content + f"\r\n--{boundary}--\r\n".encode()
    return request(url + "/gradio_api/upload", body,
                   {"Content-Type": f"multipart/form-data; boundary={boundary}"})


def call(url: str, handler: str, data: list) -> tuple[str, str]:
    """Run a page handler through /gradio_api/call; (event, data) of its last message."""
    status, body = request(f"{url}/gradio_api/call/{handler}", json.dumps({"data": data}).encode(),
                           {"Content-Type": "application/json"})
    assert status == 200, body
    event_id = json.loads(body)["event_id"]
    status, body = request(f"{url}/gradio_api/call/{handler}/{event_id}")
    assert status == 200, body
    event, payload = "", ""
    for line in body.decode().splitlines():
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            payload = line.split(":", 1)[1].strip()
    return event, payload


def file_data(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


def wav_bytes(seconds: float, fmt: str = "WAV", subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(int(44100 * seconds), np.float32), 44100, format=fmt, subtype=subtype)
    return buf.getvalue()


def test_the_page_says_its_upload_limit(server):
    url, _ = server
    status, body = request(url + "/config")
    assert status == 200
    assert f"at most {LIMIT_MB} MB of decoded audio per file" in body.decode()


def test_an_upload_above_the_limit_is_refused_as_it_arrives(server):
    url, tmp = server
    status, body = upload(url, "big.wav", wav_bytes(15))      # 1.3 MB on the wire
    assert status == 413, body
    assert b"maximum allowed size" in body
    assert not list((tmp / "gradio").rglob("big.wav"))


def test_a_small_file_that_decodes_above_the_limit_is_refused(server):
    """15 s of silence: a few kB of FLAC, 2.5 MB of decoded samples."""
    url, tmp = server
    flac = wav_bytes(15, "FLAC")
    assert len(flac) < 100_000
    status, body = upload(url, "quiet.flac", flac)
    assert status == 200, body
    [path] = json.loads(body)
    event, message = call(url, "on_encode", ["default", [file_data(path)], False, None])
    assert event == "error"
    assert "quiet.flac: 3 MB of decoded audio" in message
    assert f"limit of {LIMIT_MB} MB (unravel app --max-upload-mb)" in message
    assert not list((tmp / "out").rglob("*.npy"))


def test_custom_paths_outside_the_models_folder_are_refused_alike(server):
    """An existing file outside --models and a missing one get the same message (no
    oracle); neither is read."""
    url, tmp = server
    outside = tmp / "outside.pt"
    outside.write_bytes(b"secret")
    messages = []
    for spec in (str(outside), str(tmp / "missing.pt"), "../outside.pt"):
        event, message = call(url, "on_diffuse", [spec, "default", 1, False, 2, 1.0, 1.0, 1,
                                                  1.0, 1, None, None])
        assert event == "error"
        messages.append(message.replace(json.dumps(spec)[1:-1], "SPEC"))
    assert messages[0] == messages[1] == messages[2]
    assert "not found among the bundled checkpoint and the checkpoints of the models folder" in messages[0]
    event, message = call(url, "on_diffuse", ["default", str(DEFAULT_MODEL), 1, False, 2, 1.0,
                                              1.0, 1, 1.0, 1, None, None])
    assert event == "error"
    assert "not found among the bundled models and the .ts files of the models folder" in message
    assert not list((tmp / "out").rglob("*.wav"))
