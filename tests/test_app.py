"""The functions behind each tab of `unravel app`, on the bundled default model and loop (no browser)."""

from __future__ import annotations

import shlex
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from unravel import app, cli, latents, modelinfo
from unravel.errors import UnravelError
from unravel.model import DEFAULT_MODEL, load_model

LOOP = app.BUNDLED_LOOP
RATIO = 2048


@pytest.fixture(scope="module")
def library():
    return app.Library(None)


def run_cli(command: str, monkeypatch, folder: Path) -> None:
    """Run one printed `unravel ...` command line in-process, from `folder`."""
    words = shlex.split(command)
    assert words[0] == "unravel"
    monkeypatch.chdir(folder)
    assert cli.main(words[1:]) == 0, command


def frames_of(path: Path) -> int:
    return sf.info(str(path)).frames


# ------------------------------------------------------------------ models on offer

def test_choices_list_bundled_and_folder_models(tmp_path):
    from unravel.diffusion import DEFAULT_CHECKPOINT
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "mine.ts").write_bytes(DEFAULT_MODEL.read_bytes())
    (tmp_path / "ckpt.pt").write_bytes(DEFAULT_CHECKPOINT.read_bytes())
    (tmp_path / "notes.txt").write_text("not a model")
    lib = app.Library(tmp_path)
    rave = lib.rave_choices()
    assert rave[0] == ("default (bundled)", "default")
    assert ("sub/mine.ts", str(tmp_path / "sub" / "mine.ts")) in rave
    assert all(v.endswith(".ts") or v.startswith("default") for _, v in rave)
    assert lib.diffusion_choices() == [("default (bundled)", "default"),
                                       ("ckpt.pt", str(tmp_path / "ckpt.pt"))]
    # a model is loaded once and shared; the bending copy is another object
    assert lib.model("default") is lib.model("default")
    assert lib.bender("default")[0] is not lib.model("default")
    with pytest.raises(UnravelError, match="not found"):
        lib.model("no-such-model")


# ------------------------------------------------------------------ Diffusion tab

def test_diffusion_generate_and_its_command(library, tmp_path, monkeypatch):
    from unravel.diffusion import load_checkpoint
    length = 2 * load_checkpoint("default").latent_length       # length_mult 2
    seen = []
    r = app.diffusion_generate(library, "default", "default", seed_a=7, steps=2,
                               length_mult=2, out_dir=tmp_path,
                               progress=lambda f, d: seen.append(f))
    z = np.load(r.latents)
    assert z.shape == (1, 8, length)
    assert frames_of(r.wav) == length * RATIO
    assert r.seconds == pytest.approx(length * RATIO / 44100)
    assert r.image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert seen == sorted(seen) and seen[-1] > 0.9       # progress only goes forward
    assert "--seed 7" in r.command and "--steps 2" in r.command
    assert "--device cpu" in r.command          # where the page ran it (the CLI's default is auto)
    # the command shown on the page makes the same audio and latents
    out = tmp_path / "cli"
    out.mkdir()
    run_cli(r.command.replace(str(tmp_path), str(out)), monkeypatch, tmp_path)
    [wav], [npy] = out.glob("*.wav"), out.glob("*.npy")
    assert wav.read_bytes() == r.wav.read_bytes()
    assert np.array_equal(np.load(npy), z)
    # another seed, other latents
    r2 = app.diffusion_generate(library, "default", "default", seed_a=8, steps=2,
                                out_dir=tmp_path)
    assert not np.allclose(np.load(r2.latents), z[..., :length // 2], atol=0.1)


def test_diffusion_lerp_factor_zero_is_seed_a(library, tmp_path, monkeypatch):
    a = app.diffusion_generate(library, "default", "default", seed_a=3, steps=2,
                               out_dir=tmp_path)
    lerp = app.diffusion_generate(library, "default", "default", seed_a=3, lerp=True,
                                  seed_b=4, lerp_factor=0.0, steps=2, out_dir=tmp_path)
    towards_b = app.diffusion_generate(library, "default", "default", seed_a=3, lerp=True,
                                       seed_b=4, lerp_factor=1.0, steps=2, out_dir=tmp_path)
    za, zl, zb = (np.load(r.latents) for r in (a, lerp, towards_b))
    np.testing.assert_allclose(zl, za, atol=1e-4)       # the slerp starts at A ...
    assert not np.allclose(zb[..., -4:], za[..., -4:], atol=1e-2)   # ... and ends elsewhere
    assert "--lerp --seed-a 3 --seed-b 4 --lerp-factor 0" in lerp.command
    out = tmp_path / "cli"
    out.mkdir()
    run_cli(towards_b.command.replace(str(tmp_path), str(out)), monkeypatch, tmp_path)
    [wav] = out.glob("*.wav")
    assert wav.read_bytes() == towards_b.wav.read_bytes()


def test_diffusion_architecture_field(library, tmp_path, monkeypatch):
    # a checkpoint that stores no architecture (as Flex'ed's), trained with another one
    import json

    import torch

    from unravel.diffusion import save_checkpoint
    from unravel.diffusion.vdiffusion import SMALL_PRESETS, DiffusionModel
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "flexlike.pt", DiffusionModel(8, **SMALL_PRESETS["tiny"]),
                           latent_length=32, epoch=0)
    obj = torch.load(ckpt, weights_only=True)
    del obj["arch"]
    torch.save(obj, ckpt)
    library = app.Library(tmp_path)   # custom checkpoints must lie in the models folder (issue 16)
    with pytest.raises(UnravelError, match="choose it in the Architecture field") as e:
        app.diffusion_generate(library, str(ckpt), "default", seed_a=1, steps=1, out_dir=tmp_path)
    assert "--arch" not in str(e.value)
    r = app.diffusion_generate(library, str(ckpt), "default", seed_a=1, steps=1, out_dir=tmp_path,
                               arch="tiny")
    assert np.load(r.latents).shape == (1, 8, 32) and "--arch tiny" in r.command
    out = tmp_path / "cli"
    out.mkdir()
    run_cli(r.command.replace(str(tmp_path / "flexlike.pt"), "CKPT").replace(str(tmp_path), str(out))
            .replace("CKPT", str(ckpt)), monkeypatch, tmp_path)
    [wav] = out.glob("*.wav")
    assert wav.read_bytes() == r.wav.read_bytes()
    # a JSON file works as well; "auto" is no architecture
    arch_json = tmp_path / "tiny.json"
    arch_json.write_text(json.dumps(SMALL_PRESETS["tiny"]))
    r2 = app.diffusion_generate(library, str(ckpt), "default", seed_a=1, steps=1,
                                out_dir=tmp_path / "j", arch=str(arch_json))
    assert np.array_equal(np.load(r2.latents), np.load(r.latents))
    with pytest.raises(UnravelError, match="Architecture field"):
        app.diffusion_generate(library, str(ckpt), "default", seed_a=1, steps=1,
                               out_dir=tmp_path, arch="auto")


def test_diffusion_errors_are_one_line(library, tmp_path, monkeypatch):
    with pytest.raises(UnravelError, match="4 dims"):      # 8-dim checkpoint, 4-dim decoder
        app.diffusion_generate(library, "default", "default4", seed_a=1, steps=1,
                               out_dir=tmp_path)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UnravelError, match="bad.pt"):
        app.diffusion_generate(library, str(bad), "default", seed_a=1, steps=1, out_dir=tmp_path)
    with pytest.raises(UnravelError, match="Seed A: give a whole number"):   # an emptied field
        app.diffusion_generate(library, "default", "default", seed_a=None, out_dir=tmp_path)
    monkeypatch.setitem(sys.modules, "unravel.diffusion", None)   # as if it were not installed
    with pytest.raises(UnravelError, match="diffusion backend not available"):
        app.diffusion_generate(library, "default", "default", seed_a=1, out_dir=tmp_path)


# ------------------------------------------------------------------ UnRAVEl tab

def test_encode_audio_writes_latents_and_statistics(library, tmp_path):
    r = app.encode_audio(library, "default", [LOOP, LOOP], tmp_path)   # the same file once
    assert len(r.latents) == 1
    z = latents.read(r.latents[0])
    model = library.model("default")
    x = app.audio.load(LOOP, model.sr, model.in_channels)
    assert np.array_equal(z, model.encode(x, whole_frames=False))      # the raw length, as UnRAVEl
    assert r.frames == z.shape[1] == frames_of(LOOP) // RATIO
    assert r.plot.read_bytes()[:4] == b"\x89PNG"
    assert r.table.startswith(f"8 dims, {r.frames} frames")
    # two different files with the same name both get encoded
    other = tmp_path / "elsewhere"
    other.mkdir()
    sf.write(other / "loop.wav", sf.read(LOOP)[0][: 44100], 44100)
    r2 = app.encode_audio(library, "default", [LOOP, other / "loop.wav"], tmp_path)
    assert len(r2.latents) == 2 and r2.frames == r.frames + 44100 // 2048   # raw length encoded
    with pytest.raises(UnravelError, match="no audio"):
        app.encode_audio(library, "default", [], tmp_path)
    with pytest.raises(UnravelError, match="nope.wav"):
        app.encode_audio(library, "default", [tmp_path / "nope.wav"], tmp_path)
    # an unreadable upload is named by its own name, not the page's copy's path
    bad = tmp_path / "gradio" / "0a1b2c" / "broken.wav"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"RIFF not really")
    with pytest.raises(UnravelError, match=r"^broken\.wav: not a readable audio file") as e:
        app.encode_audio(library, "default", [LOOP, bad], tmp_path)
    assert "0a1b2c" not in str(e.value)


def test_compose_points_bpm_seed_and_command(library, tmp_path, monkeypatch):
    enc = app.encode_audio(library, "default", [LOOP], tmp_path).latents
    r = app.compose(library, "default", enc, tmp_path, dist="normal", pattern="default",
                    points=11, loops=2, seed=5)
    assert frames_of(r.wav) == 22 * RATIO and r.seconds == pytest.approx(22 * RATIO / 44100)
    lw = sf.info(str(r.latent_wav))
    assert (lw.channels, lw.samplerate, lw.frames, lw.subtype) == (8, 21, 22, "DOUBLE")
    again = app.compose(library, "default", enc, tmp_path, points=11, loops=2, seed=5)
    other = app.compose(library, "default", enc, tmp_path, points=11, loops=2, seed=6)
    assert again.wav != r.wav and again.wav.read_bytes() == r.wav.read_bytes()
    assert other.wav.read_bytes() != r.wav.read_bytes()
    # a target tempo picks the nearest loop length: 11 frames = 117.45 BPM at 44.1 kHz / 2048
    by_bpm = app.compose(library, "default", enc, tmp_path, bpm=118, seed=5)
    assert np.load(by_bpm.latents).shape == (1, 8, 11)
    # the printed generate + decode commands make the same files
    fibo = app.compose(library, "default", enc, tmp_path, dist="correlation", pattern="fibo",
                       points=8, seed=9)
    out = tmp_path / "cli"
    command = fibo.command.replace(f"-o {tmp_path}", f"-o {out}")
    lines = command.splitlines()
    assert [shlex.split(c)[1] for c in lines] == ["generate", "decode"]
    assert "--device cpu" in lines[1]
    run_cli(lines[0], monkeypatch, tmp_path)
    run_cli(lines[1].replace(str(fibo.latents), str(out / fibo.latents.name)), monkeypatch, tmp_path)
    assert (out / fibo.latents.name).read_bytes() == fibo.latents.read_bytes()
    assert (out / fibo.wav.name).read_bytes() == fibo.wav.read_bytes()
    with pytest.raises(UnravelError, match="encode"):
        app.compose(library, "default", [], tmp_path)
    with pytest.raises(UnravelError, match="pattern"):
        app.compose(library, "default", enc, tmp_path, pattern="nope")


# ------------------------------------------------------------------ Bending tab

def test_bend_listen_restore_save(tmp_path, monkeypatch):
    library = app.Library(None)                   # its own bent copy, not shared with others
    layers = app.bend_layers(library, "default")
    assert layers[-1] == "pqmf.weight"            # the fixed filterbank comes last
    layer = app._pick_layer(layers)
    assert layer == "decoder.net.0.weight"
    shape = dict((l.name, l.shape) for l in modelinfo.layers(library.bender("default")[0].module))[layer]
    assert app.layer_info(library, "default", layer).startswith(
        f"`{layer}`: shape {' x '.join(map(str, shape))}, {int(np.prod(shape))} weights (learned)")
    plain = app.bend_listen(library, "default", tmp_path)
    assert frames_of(plain) == frames_of(LOOP)            # forward keeps the length
    r = app.bend_generate(library, "default", layer, offset=0.01, spread=1.5, randomize=300,
                          invert=True, percent=50, seed=4, out_dir=tmp_path)
    assert frames_of(r.wav) == frames_of(plain)
    bent = sf.read(r.wav)[0]
    assert not np.allclose(bent, sf.read(plain)[0], atol=1e-3)
    assert app.bend_settings(library, "default", layer) == dict(
        offset=0.01, spread=1.5, randomize=300.0, invert=True, zero=False, percent=50.0, seed=4)
    # the other tabs' model is not bent
    shared = library.model("default")
    x = app.audio.load(LOOP, shared.sr, shared.in_channels)
    assert np.array_equal(shared.forward(x)[0], sf.read(plain, dtype="float32")[0])
    # the same settings again give the same sound (seeded noise)
    r2 = app.bend_generate(library, "default", layer, offset=0.01, spread=1.5, randomize=300,
                           invert=True, percent=50, seed=4, out_dir=tmp_path)
    assert r2.wav.read_bytes() == r.wav.read_bytes()
    # saved model = the bent one; the printed bend commands make the same weights
    saved, command = app.bend_save(library, "default", tmp_path)
    reloaded = load_model(saved)
    assert np.array_equal(reloaded.forward(x), sf.read(r.wav, dtype="float32")[0][None])
    assert [shlex.split(c)[7] for c in command.splitlines()] == ["spread", "invert", "offset",
                                                                 "randomize"]
    assert all("--device cpu" in c for c in command.splitlines())
    out = tmp_path / "cli"
    out.mkdir()
    run_cli_lines = command.replace(str(tmp_path), str(out)).splitlines()
    for line in run_cli_lines:
        run_cli(line, monkeypatch, tmp_path)
    theirs = dict(torch.jit.load(str(out / saved.name)).named_parameters())
    ours = dict(reloaded.module.named_parameters())
    assert all(torch.equal(theirs[k], ours[k]) for k in ours)
    # restore: the original sound, bit for bit
    app.bend_restore(library, "default")
    assert app.bend_listen(library, "default", tmp_path).read_bytes() == plain.read_bytes()
    assert app.bend_command(library, "default", "x.ts").startswith("(no layer is bent")
    with pytest.raises(UnravelError, match="nope"):
        app.bend_generate(library, "default", "nope", offset=0.1, out_dir=tmp_path)


def test_bend_your_own_audio_against_the_unbent_model(tmp_path):
    library = app.Library(None)
    layer = app._pick_layer(app.bend_layers(library, "default"))
    t = np.arange(30000) / 44100
    mine = tmp_path / "upload" / "mine.wav"
    mine.parent.mkdir()
    sf.write(mine, 0.3 * np.sin(2 * np.pi * 330 * t), 44100)
    r = app.bend_generate(library, "default", layer, offset=0.02, out_dir=tmp_path / "o", source=mine)
    shared = library.model("default")
    x = app.audio.load(mine, shared.sr, shared.in_channels)
    assert frames_of(r.wav) == frames_of(r.unbent) == 30000          # the upload, not the loop
    np.testing.assert_array_equal(sf.read(r.unbent, dtype="float32")[0], shared.forward(x)[0])
    np.testing.assert_array_equal(sf.read(r.wav, dtype="float32")[0],
                                  library.bender("default")[0].forward(x)[0])
    assert not np.allclose(sf.read(r.wav)[0], sf.read(r.unbent)[0], atol=1e-3)
    # an unreadable upload is named by its own name, not the page's copy's path
    bad = tmp_path / "gradio" / "0a1b2c" / "broken.wav"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"RIFF not really")
    with pytest.raises(UnravelError, match=r"^broken\.wav: not a readable audio file") as e:
        app.bend_generate(library, "default", layer, out_dir=tmp_path / "o", source=bad)
    assert "0a1b2c" not in str(e.value)


def test_channel_controls_do_what_their_command_does(tmp_path, monkeypatch):
    """The page's channel controls call Bender.channels as `unravel channels` does: the printed
    command line makes the same weights, and the page plays the bent model."""
    library = app.Library(None)
    layer = "decoder.net.6.weight"
    plain = app.bend_listen(library, "default", tmp_path)
    r = app.channels_generate(library, "default", layer, "scale", 2, "list", "0, 5", out_dir=tmp_path)
    assert r.command == (f"unravel channels -m default --layer {layer} --op scale --amount 2 "
                         "--channels 0 5 --seed 0 -o default-channels.ts --device cpu")
    model, bender = library.bender("default")
    x = app.audio.load(LOOP, model.sr, model.in_channels)
    np.testing.assert_array_equal(sf.read(r.wav, dtype="float32")[0], model.forward(x)[0])
    assert r.unbent.read_bytes() == plain.read_bytes()
    run_cli(r.command, monkeypatch, tmp_path)
    saved = dict(torch.jit.load(str(tmp_path / "default-channels.ts")).named_parameters())[layer]
    assert np.array_equal(saved.detach().numpy().reshape(-1), bender.get_weights(layer))
    r = app.channels_generate(library, "default", layer, "ablate", which="percent", percent=25, seed=7,
                              out_dir=tmp_path)
    assert "--op ablate --amount 1 --percent 25 --seed 7" in r.command
    w = bender.get_weights(layer).reshape(128, 96, 8)
    assert (np.abs(w).sum(axis=(0, 2)) == 0).sum() == 24              # a quarter of 96, silent
    with pytest.raises(UnravelError, match="channels must be an integer, got 'x'"):
        app.channels_generate(library, "default", layer, "scale", 2, "list", "0 x", out_dir=tmp_path)
    with pytest.raises(UnravelError, match="list the channel numbers"):
        app.channels_generate(library, "default", layer, "scale", 2, "list", " ", out_dir=tmp_path)
    app.bend_restore(library, "default")
    assert app.bend_listen(library, "default", tmp_path).read_bytes() == plain.read_bytes()


def test_morph_controls_do_what_their_command_does(tmp_path, monkeypatch):
    library = app.Library(None)
    r, summary = app.morph_generate(library, "default", "default4", 0.3, "decoder.", out_dir=tmp_path)
    assert r.command == ("unravel morph default default4 --t 0.3 --layers decoder. "
                         "-o default-morph.ts --device cpu")
    assert summary.startswith("11 layers matched, 1 did not (decoder.net.0.weight: A 128x8x3, B 128x4x3")
    model, bender = library.bender("default")
    x = app.audio.load(LOOP, model.sr, model.in_channels)
    np.testing.assert_array_equal(sf.read(r.wav, dtype="float32")[0], model.forward(x)[0])
    run_cli(r.command, monkeypatch, tmp_path)
    saved = dict(torch.jit.load(str(tmp_path / "default-morph.ts")).named_parameters())
    assert all(np.array_equal(saved[k].detach().numpy().reshape(-1), bender.get_weights(k)) for k in saved)
    with pytest.raises(UnravelError, match="not found among the bundled models"):
        app.morph_generate(library, "default", "/etc/passwd", 0.5, out_dir=tmp_path)
    with pytest.raises(UnravelError, match="t must be"):
        app.morph_generate(library, "default", "default4", 5, out_dir=tmp_path)


# ------------------------------------------------------------------ the page

def test_page_builds_and_errors_become_messages(tmp_path):
    gr = pytest.importorskip("gradio")
    page = app.build(app.Library(tmp_path), tmp_path)
    assert isinstance(page, gr.Blocks)

    @app._on_page
    def fails(x):
        raise UnravelError(f"{x}: no such file")

    @app._on_page
    def crashes():
        raise ValueError("bad value")

    with pytest.raises(gr.Error, match="a.wav: no such file"):
        fails("a.wav")
    with pytest.raises(gr.Error, match="ValueError: bad value"):
        crashes()
    with pytest.raises(UnravelError, match="models folder not found"):
        app.serve(models=tmp_path / "missing", block=False)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(UnravelError, match=f"cannot listen on 127.0.0.1:{port}"):
            app.serve(port=port, out=tmp_path / "out", block=False)
