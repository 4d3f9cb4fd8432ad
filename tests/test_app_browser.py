"""`unravel app` in a real browser: start the page on a loopback port, drive every tab with
Playwright and Debian's chromium, check the audio each Generate produces, screenshot each tab
into tests/_out/. No request may leave the machine."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from unravel import app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = Path(__file__).resolve().parent / "_out"
RATIO = 2048
START_TIMEOUT = 120   # seconds for the server to answer (imports torch and gradio)
RUN_TIMEOUT = 150_000  # milliseconds for one Generate

pytest.importorskip("gradio", reason="the [app] extra (gradio) is not installed: run make setup")
playwright_api = pytest.importorskip("playwright.sync_api",
                                     reason="playwright is not installed: run make setup")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing and could not be installed here (Debian: apt-get install "
                "chromium; make setup does it when run as root)", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(url: str) -> bytes:
    """GET from the local server only, ignoring any proxy settings."""
    assert url.startswith("http://127.0.0.1:"), url
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=30) as r:
        return r.read()


def tiny_checkpoint(path: Path) -> Path:
    """A small untrained 8-dim diffusion checkpoint (latent length 32) for the models folder."""
    import torch

    from unravel.diffusion import save_checkpoint
    from unravel.diffusion.vdiffusion import SMALL_PRESETS, DiffusionModel
    torch.manual_seed(0)
    return save_checkpoint(path, DiffusionModel(8, **SMALL_PRESETS["tiny"]), latent_length=32,
                           epoch=0)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`unravel app` in a subprocess on a free loopback port; yields (url, out dir)."""
    tmp = tmp_path_factory.mktemp("app")
    tiny_checkpoint(tmp / "tiny.pt")
    port = free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1",
               GRADIO_TEMP_DIR=str(tmp / "gradio"), NO_PROXY="127.0.0.1", no_proxy="127.0.0.1",
               PYTHONUNBUFFERED="1")
    log = (tmp / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "unravel.cli", "app", "--port", str(port),
                             "--models", str(tmp), "--out", str(tmp / "out")],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"unravel app exited ({proc.returncode}):\n{(tmp / 'server.log').read_text()}")
            try:
                fetch(url)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"unravel app did not answer in {START_TIMEOUT} s:\n"
                                f"{(tmp / 'server.log').read_text()}")
                time.sleep(0.5)
        yield url, tmp / "out"
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def browser_page(server):
    """A chromium page on the app; every request that is not to the loopback server is
    refused and recorded in page.outside."""
    url, _ = server
    SHOTS.mkdir(exist_ok=True)
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.outside = []

        def local_only(route):
            if route.request.url.startswith((url, "data:", "blob:")):
                route.continue_()
            else:
                page.outside.append(route.request.url)
                route.abort()

        page.route("**/*", local_only)
        page.goto(url)
        page.wait_for_selector("#d-generate", timeout=60_000)
        yield page
        browser.close()


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def set_number(page, selector: str, value) -> None:
    """Type a number and leave the field, so that the page has it before the next click (on a
    busy machine a click right after Enter could still send the old value)."""
    box = page.locator(f"{selector} input[type=number]")
    box.fill(str(value))
    box.press("Enter")
    box.blur()
    page.wait_for_timeout(300)


def generate(page, button: str, result: str) -> str:
    """Click a Generate button; wait until the result's download link is new; return its URL."""
    link = page.locator(f"{result} a[download]").first
    before = link.get_attribute("href") if link.count() else None
    page.click(button)
    page.wait_for_function(
        """([sel, before]) => { const a = document.querySelector(sel + ' a[download]');
                                return a && a.href !== before; }""",
        arg=[result, before], timeout=RUN_TIMEOUT)
    return page.locator(f"{result} a[download]").first.get_attribute("href")


def audio_at(url: str) -> tuple[np.ndarray, int]:
    return sf.read(io.BytesIO(fetch(url)), dtype="float32", always_2d=True)


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"app-{name}.png"), full_page=True)


def test_diffusion_tab(browser_page):
    from unravel.diffusion import load_checkpoint
    page = browser_page
    open_tab(page, "Diffusion")
    page.locator("#d-ckpt input").click()                # the models folder's checkpoint is offered
    assert page.get_by_role("option", name="tiny.pt").count() == 1
    page.get_by_role("option", name="default (bundled)").click()
    # as Black Latents: Seed B and the lerp factor only once "Lerp between seeds" is ticked
    seed_b, factor = page.locator("#d-seed-b"), page.locator("#d-lerp-factor")
    assert not seed_b.is_visible() and not factor.is_visible()
    assert page.locator("#d-seed-a").inner_text().startswith("Seed")
    assert "Seed A" not in page.locator("#d-seed-a").inner_text()
    page.locator("#d-lerp input").check()
    seed_b.wait_for(state="visible")
    factor.wait_for(state="visible")
    assert "Seed A" in page.locator("#d-seed-a").inner_text()
    assert "how far towards seed B" in factor.inner_text()          # help text on the slider
    page.locator("#d-lerp input").uncheck()
    seed_b.wait_for(state="hidden")
    page.get_by_text("Advanced").click()
    page.get_by_text("scale of the starting noise").wait_for(state="visible")   # help text
    assert page.locator("#d-arch input").input_value() == "auto"    # the architecture field
    set_number(page, "#d-steps", 2)
    set_number(page, "#d-seed-a", 1234)
    href = generate(page, "#d-generate", "#d-audio")
    y, sr = audio_at(href)
    length = load_checkpoint("default").latent_length
    assert sr == 44100 and y.shape[0] == length * RATIO
    assert np.abs(y).max() > 1e-3
    command = page.locator("#d-command").inner_text()
    assert "unravel diffuse -c default -m default --seed 1234 --steps 2" in command
    assert page.locator("#d-latents img").count() == 1
    shot(page, "diffusion")


def test_unravel_tab(browser_page):
    page = browser_page
    open_tab(page, "UnRAVEl")
    set_number(page, "#u-points", 8)
    href = generate(page, "#u-generate", "#u-audio")
    y, sr = audio_at(href)
    assert y.shape[0] == 4 * (1 + 2 + 3 + 5 + 8) * RATIO and y.shape[0] / sr > 3   # 4 loops of fibo(8)
    links = [a.get_attribute("href") for a in page.locator("#u-out a[download]").all()]
    assert [h.rsplit("/", 1)[1].split(".", 1)[1] for h in links] == ["wav", "latent.wav", "npy"]
    z = np.load(io.BytesIO(fetch(links[2])))
    assert z.shape[:2] == (1, 8) and y.shape[0] == z.shape[2] * RATIO and sr == 44100
    lw, rate = audio_at(links[1])
    assert lw.shape == (z.shape[2], 8) and rate == 21
    assert page.locator("#u-plot img").count() == 1     # the statistics plot is shown
    loop_frames = sf.info(str(app.BUNDLED_LOOP)).frames // RATIO
    assert f"8 dims, {loop_frames} frames" in page.locator("#u-table").inner_text()
    shot(page, "unravel")


def test_unravel_upload_replaces_the_bundled_loop(browser_page, tmp_path):
    page = browser_page
    open_tab(page, "UnRAVEl")
    mine = tmp_path / "mine.wav"
    sf.write(mine, 0.3 * np.sin(np.arange(5 * 44100) * 0.05), 44100)
    page.set_input_files("#u-files input[type=file]", str(mine))
    page.click("#u-encode")
    table = page.locator("#u-table")
    table.filter(has_text=f"8 dims, {5 * 44100 // RATIO} frames").wait_for(timeout=RUN_TIMEOUT)


def test_bending_tab(browser_page):
    page = browser_page
    open_tab(page, "Bending")
    set_number(page, "#b-offset", 0.05)
    href = generate(page, "#b-generate", "#b-audio")
    bent, sr = audio_at(href)
    loop, _ = sf.read(app.BUNDLED_LOOP, always_2d=True)
    assert sr == 44100 and bent.shape[0] == loop.shape[0]
    shot(page, "bending")
    restored_href = generate(page, "#b-restore", "#b-audio")
    restored, _ = audio_at(restored_href)
    assert not np.allclose(restored, bent, atol=1e-3)
    page.click("#b-save")
    page.wait_for_selector("#b-model a[download]", timeout=RUN_TIMEOUT)
    assert page.locator("#b-model a[download]").get_attribute("download").endswith(".ts")


def test_bending_your_own_audio(browser_page, tmp_path):
    page = browser_page
    open_tab(page, "Bending")
    mine = tmp_path / "mine.wav"
    sf.write(mine, 0.3 * np.sin(np.arange(30000) * 0.04), 44100)
    page.set_input_files("#b-source input[type=file]", str(mine))
    set_number(page, "#b-offset", 0.03)
    bent, sr = audio_at(generate(page, "#b-generate", "#b-audio"))
    unbent, _ = audio_at(page.locator("#b-unbent a[download]").first.get_attribute("href"))
    assert bent.shape[0] == unbent.shape[0] == 30000                 # the upload, both ways
    assert not np.allclose(bent, unbent, atol=1e-3)
    shot(page, "bending-own")


def test_bending_channels_and_morph_controls(browser_page):
    page = browser_page
    open_tab(page, "Bending")
    page.click("#b-channels")                                       # open the accordion
    page.get_by_label("ablate").first.check()
    unbent, _ = audio_at(generate(page, "#b-restore", "#b-audio"))
    ablated, _ = audio_at(generate(page, "#c-generate", "#b-audio"))
    assert not np.allclose(ablated, unbent, atol=1e-3)
    command = lambda: " ".join(page.locator("#b-cmd .cm-content").inner_text().split())  # noqa: E731
    assert command().startswith("unravel channels -m default --layer decoder.net.0.weight --op ablate")
    page.click("#b-morph")
    page.locator("#m-other input").fill("default4")
    page.locator("#m-other input").press("Enter")
    morphed, _ = audio_at(generate(page, "#m-generate", "#b-audio"))
    assert not np.allclose(morphed, ablated, atol=1e-3)
    page.wait_for_selector("#m-summary :text('layers matched')", timeout=RUN_TIMEOUT)
    assert command().startswith("unravel morph default default4 --t 0.5 -o default-morph.ts")
    shot(page, "bending-channels-morph")


def test_errors_show_on_the_page_and_it_lives_on(browser_page, tmp_path):
    page = browser_page
    open_tab(page, "UnRAVEl")
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF not really a wav file")
    page.set_input_files("#u-files input[type=file]", str(bad))
    page.click("#u-generate")
    toast = page.locator(".toast-body").filter(has_text="broken.wav")
    toast.wait_for(timeout=RUN_TIMEOUT)
    assert "broken.wav: not a readable audio file" in toast.inner_text()
    assert "/" not in toast.inner_text().split("broken.wav")[0]   # the user's name, not gradio's path
    page.wait_for_timeout(600)                # let the message finish fading in
    shot(page, "error")
    open_tab(page, "Bending")
    set_number(page, "#b-spread", 0.5)
    y, _ = audio_at(generate(page, "#b-generate", "#b-audio"))
    assert y.shape[0] > 0
    assert page.outside == []                 # nothing but the loopback server was asked
