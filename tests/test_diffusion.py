"""Latent diffusion: checkpoints (ours and the reference layouts), the reference seed
convention and sampler, slerp, files, training, and one clear error per bad input."""

from __future__ import annotations

import json
import math
import random
import re
import sys
import types

import numpy as np
import pytest
import soundfile as sf
import torch

from unravel.operations import DIFFUSE, PREPARE
from unravel import cli, diffusion
from unravel.errors import UnravelError
from unravel.model import load_model
from unravel.diffusion.vdiffusion import SMALL_PRESETS, DiffusionModel

torch.set_num_threads(1)

TINY = SMALL_PRESETS["tiny"]
LENGTH = 32  # latent frames per sample in these tests (a multiple of tiny's downsampling 4)


def reference_unet(dims: int, arch: dict) -> torch.nn.Module:
    """UNetV0 as audio-diffusion-pytorch 0.1.3 assembles it, straight from a-unet blocks
    (written here independently of unravel.diffusion.vdiffusion)."""
    from a_unet import TimeConditioningPlugin
    from a_unet.apex import AttentionItem, ModulationItem, ResnetItem, SkipModulate, XBlock, XUNet
    blocks = [XBlock(channels=c, factor=f, context_channels=0,
                     items=([ResnetItem, ModulationItem] + [AttentionItem] * a) * n)
              for c, f, n, a in zip(arch["channels"], arch["factors"], arch["items"], arch["attentions"])]
    return TimeConditioningPlugin(XUNet)(
        dim=1, in_channels=dims, out_channels=None, blocks=blocks, skip_t=SkipModulate,
        attention_features=arch["attention_features"], attention_heads=arch["attention_heads"],
        embedding_features=None, modulation_features=arch["modulation_features"], resnet_groups=8)


def reference_checkpoint(path, net: torch.nn.Module, **extra) -> None:
    """A checkpoint in the reference layout: every tensor under net., diffusion.net., sampler.net."""
    state = {f"{prefix}{k}": v for prefix in ("net.", "diffusion.net.", "sampler.net.")
             for k, v in net.state_dict().items()}
    torch.save({"model_state_dict": state, "optimizer_state_dict": {}, "scheduler_state_dict": {},
                "epoch": 7, **extra}, path)


def reference_sample(net: torch.nn.Module, seed: int, dims: int, length: int, steps: int,
                     temperature: float = 1.0) -> torch.Tensor:
    """The reference generate script's sampling, step by step (no normalization)."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    x = torch.randn(1, dims, length) * temperature
    sigmas = torch.linspace(1.0, 0.0, steps + 1)[:, None]  # (steps+1, batch=1)
    angle = sigmas[:, :, None, None] * math.pi / 2
    alphas, betas = torch.cos(angle), torch.sin(angle)
    with torch.no_grad():
        for i in range(steps):
            v = net(x, sigmas[i])
            x_pred = alphas[i] * x - betas[i] * v
            noise_pred = betas[i] * x + alphas[i] * v
            x = alphas[i + 1] * x_pred + betas[i + 1] * noise_pred
    return x


def reference_normalize(z: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    return (z - z.mean()) / z.std() * scale


@pytest.fixture(scope="module")
def tiny_model() -> DiffusionModel:
    torch.manual_seed(1)
    return DiffusionModel(8, **TINY).eval()


@pytest.fixture(scope="module")
def tiny_ckpt(tiny_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    diffusion.save_checkpoint(path, tiny_model, LENGTH, epoch=3)
    return path


@pytest.fixture(scope="module")
def rave8(test_model_path):
    return load_model(test_model_path)


def run_cli(args, capsys) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


# ----------------------------------------------------------------------------- checkpoints

def test_own_checkpoint_round_trips(tiny_model, tiny_ckpt):
    d = diffusion.load_checkpoint(tiny_ckpt)
    assert d.arch_source == "the checkpoint" and d.arch == diffusion.check_arch(TINY, "t")
    assert (d.dims, d.latent_length, d.epoch) == (8, LENGTH, 3)
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(d.model.state_dict()[k], v), k
    obj = torch.load(tiny_ckpt, weights_only=True)
    assert {"model_state_dict", "optimizer_state_dict", "scheduler_state_dict", "epoch",
            "latent_length", "rave_dims", "arch"} <= set(obj)
    keys = list(obj["model_state_dict"])
    n = len(keys) // 3
    assert [k[4:] for k in keys[:n]] == [k[len("diffusion.net."):] for k in keys[n:2 * n]]
    x = torch.randn(1, 8, LENGTH)
    assert torch.equal(d.model.sample(x, 2), tiny_model.sample(x, 2))


def test_reference_layout_loads_and_samples(tmp_path):
    torch.manual_seed(5)
    net = reference_unet(4, TINY).eval()
    ckpt = tmp_path / "flexed.pt"
    reference_checkpoint(ckpt, net, latent_length=LENGTH, rave_dims=4)
    arch = tmp_path / "tiny.json"
    arch.write_text(json.dumps(TINY))
    d = diffusion.load_checkpoint(ckpt, arch=arch)
    assert (d.dims, d.latent_length, d.arch_source) == (4, LENGTH, str(arch))
    ours = d.model.sample(torch.randn(1, 4, LENGTH, generator=torch.Generator().manual_seed(9)), 3)
    ref = reference_sample(net, 9, 4, LENGTH, 3)
    assert torch.equal(ours, ref)


def test_preset_choice_without_stored_arch(tmp_path):
    # no arch in the file, no --arch: Flex'ed preset for latent_length, else the original preset
    torch.manual_seed(0)
    ckpt = tmp_path / "small.pt"
    reference_checkpoint(ckpt, reference_unet(4, TINY), latent_length=512)
    with pytest.raises(UnravelError, match=r"Flex'ed preset for 512: tensor net\.\S+ has shape"):
        diffusion.load_checkpoint(ckpt)
    reference_checkpoint(ckpt, reference_unet(4, TINY))
    with pytest.raises(UnravelError, match="original 4096 preset"):
        diffusion.load_checkpoint(ckpt)


def test_flexed_256_preset_loads(tmp_path):
    """A real-size Flex'ed 256 checkpoint (64.9M parameters) loads with its preset and samples."""
    from unravel.diffusion.vdiffusion import FLEX_PRESETS
    torch.manual_seed(0)
    net = reference_unet(8, {**FLEX_PRESETS[256], "modulation_features": 1024}).eval()
    assert sum(p.numel() for p in net.parameters()) == 64867728
    ckpt = tmp_path / "flex256.pt"
    reference_checkpoint(ckpt, net, latent_length=256, rave_dims=8)
    d = diffusion.load_checkpoint(ckpt)
    assert d.arch_source == "the Flex'ed preset for 256"
    assert torch.equal(d.model.sample(torch.randn(1, 8, 256, generator=torch.Generator().manual_seed(2)), 1),
                       reference_sample(net, 2, 8, 256, 1))


# ----------------------------------------------------------------------------- sampling

def test_seed_convention_matches_reference_loop(tiny_model, tiny_ckpt, rave8, tmp_path):
    res = diffusion.diffuse_files(rave8, DIFFUSE.settings(checkpoint=tiny_ckpt, seed=11, steps=4, temperature=0.8,
                                  latent_scale=1.5, save_latents=True, latent_wav=True), tmp_path)
    assert len(res) == 1 and res[0].seed == 11
    z_ref = reference_normalize(reference_sample(tiny_model.net, 11, 8, LENGTH, 4, 0.8), 1.5)
    z = np.load(res[0].npy)
    assert z.shape == (1, 8, LENGTH) and z.dtype == np.float32
    np.testing.assert_array_equal(z, z_ref.numpy())
    zw, rate = sf.read(res[0].latent_wav, dtype="float64", always_2d=True)
    assert rate == rave8.sr // rave8.ratio
    np.testing.assert_array_equal(zw.T.astype(np.float32), z[0])
    # the audio is the RAVE decoder's output for exactly these latents, at the model's rate
    rave = torch.jit.load(str(rave8.path))
    with torch.no_grad():
        y_ref = rave.decode(z_ref)[0].numpy()
    y, sr = sf.read(res[0].wav, dtype="float32", always_2d=True)
    assert sr == rave8.sr and sf.info(str(res[0].wav)).subtype == "FLOAT"
    np.testing.assert_allclose(y.T, y_ref, atol=1e-6)
    side = json.loads(res[0].sidecar.read_text())
    assert (side["seed"], side["steps"], side["temperature"], side["latent_scale"]) == (11, 4, 0.8, 1.5)


def test_batched_seeds_match_reference_closely(tiny_model, tiny_ckpt):
    d = diffusion.load_checkpoint(tiny_ckpt)
    zs, groups = diffusion.sample_seeds(d, [3, 4, 5], steps=3, batch=3)
    assert groups == [[3, 4, 5]]
    for s, z in zip([3, 4, 5], zs):
        torch.testing.assert_close(z, reference_sample(tiny_model.net, s, 8, LENGTH, 3),
                                   atol=1e-5, rtol=1e-5)
    single, _ = diffusion.sample_seeds(d, [4], steps=3, batch=1)
    assert torch.equal(single[0], reference_sample(tiny_model.net, 4, 8, LENGTH, 3))


def test_skip_normalize_and_length_mult(tiny_model, tiny_ckpt, rave8, tmp_path):
    res = diffusion.diffuse_files(rave8, DIFFUSE.settings(checkpoint=tiny_ckpt, seed=2, steps=2, skip_normalize=True,
                                  length_mult=2, save_latents=True), tmp_path)
    np.testing.assert_array_equal(np.load(res[0].npy),
                                  reference_sample(tiny_model.net, 2, 8, 2 * LENGTH, 2).numpy())
    assert sf.info(str(res[0].wav)).frames == 2 * LENGTH * rave8.ratio


def test_latent_length_other_than_the_checkpoints(tiny_model, tiny_ckpt, rave8, tmp_path, capsys):
    # the original generate script's --latent_length: sample N frames whatever the checkpoint's
    res = diffusion.diffuse_files(rave8, DIFFUSE.settings(checkpoint=tiny_ckpt, seed=5, steps=2, skip_normalize=True,
                                  latent_length=3 * LENGTH, save_latents=True), tmp_path)
    np.testing.assert_array_equal(np.load(res[0].npy),
                                  reference_sample(tiny_model.net, 5, 8, 3 * LENGTH, 2).numpy())
    side = json.loads(res[0].sidecar.read_text())
    assert (side["latent_length"], side["checkpoint_latent_length"]) == (3 * LENGTH, LENGTH)
    code, out, _ = run_cli(["diffuse", "-c", str(tiny_ckpt), "-m", str(rave8.path), "--seed", "5",
                            "--steps", "2", "--skip-normalize", "--latent-length", str(3 * LENGTH),
                            "--length-mult", "2", "-o", str(tmp_path / "cli")], capsys)
    assert code == 0 and sf.info(out.split()[0]).frames == 6 * LENGTH * rave8.ratio
    code, _, err = run_cli(["diffuse", "-c", str(tiny_ckpt), "-m", str(rave8.path), "--seed", "5",
                            "--latent-length", str(LENGTH + 1), "-o", str(tmp_path / "bad")], capsys)
    assert code == 2 and f"latent length {LENGTH + 1} is not a multiple" in err


def test_slerp_per_channel_over_time():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, 3, 16, generator=gen), torch.randn(1, 3, 16, generator=gen)
    t = torch.linspace(0, 0.7, 16)
    out = diffusion.slerp(t, a, b).numpy()[0]
    for d in range(3):
        x, y = a[0, d].double().numpy(), b[0, d].double().numpy()
        omega = math.acos(np.dot(x / np.linalg.norm(x), y / np.linalg.norm(y)))
        w = t.double().numpy()
        expected = (np.sin((1 - w) * omega) * x + np.sin(w * omega) * y) / math.sin(omega)
        np.testing.assert_allclose(out[d], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out[:, 0], a[0, :, 0].numpy(), atol=1e-6)  # starts at A
    same = diffusion.slerp(t, a, a.clone())  # zero angle: no NaN, stays A
    torch.testing.assert_close(same, a)


def test_lerp_files_follow_reference(tiny_model, tiny_ckpt, rave8, tmp_path):
    res = diffusion.diffuse_files(rave8, DIFFUSE.settings(checkpoint=tiny_ckpt, lerp=True, seed_a=1, seed_b=2, steps=2,
                                  lerp_factor=0.5, save_latents=True, batch=1), tmp_path)
    assert res[0].wav.name == "diffuse_1_2_slerp.wav" and res[0].seeds == (1, 2)
    za = reference_sample(tiny_model.net, 1, 8, LENGTH, 2)
    zb = reference_sample(tiny_model.net, 2, 8, LENGTH, 2)
    expected = reference_normalize(diffusion.slerp(torch.linspace(0.0, 0.5, LENGTH), za, zb))
    np.testing.assert_array_equal(np.load(res[0].npy), expected.numpy())


def test_num_writes_distinct_files_and_never_overwrites(tiny_ckpt, test_model_path, tmp_path, capsys):
    args = ["diffuse", "-c", tiny_ckpt, "-m", test_model_path, "--seed", 5, "--num", 3, "--steps", 2,
            "-o", tmp_path]
    code, out, _ = run_cli(args, capsys)
    wavs = out.split()
    assert code == 0 and [p.rsplit("/", 1)[1] for p in wavs] == ["diffuse_5.wav", "diffuse_6.wav", "diffuse_7.wav"]
    data = [sf.read(p)[0] for p in wavs]
    assert all(not np.array_equal(data[i], data[j]) for i in range(3) for j in range(i + 1, 3))
    code, out, _ = run_cli(args, capsys)  # again: new names, the first files untouched
    assert code == 0 and out.split()[0].endswith("diffuse_5-001.wav")
    np.testing.assert_array_equal(sf.read(out.split()[0])[0], data[0])
    assert np.array_equal(sf.read(wavs[0])[0], data[0])


def test_bundled_checkpoint_and_model_work(tmp_path, capsys):
    if not diffusion.DEFAULT_CHECKPOINT.exists():
        pytest.skip("bundled diffusion checkpoint not built yet")
    code, out, err = run_cli(["diffuse", "--checkpoint", "default", "--model", "default", "--seed", 1,
                              "--steps", 3, "-o", tmp_path], capsys)
    assert code == 0, err
    y, sr = sf.read(out.split()[0])
    assert sr == 44100 and np.isfinite(y).all() and np.abs(y).max() > 1e-4


# ----------------------------------------------------------------------------- bad inputs

def _bad_inputs(tmp_path, tiny_ckpt):
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(tiny_ckpt.read_bytes()[:5000])
    pickled = tmp_path / "pickle.pt"
    torch.save({"model_state_dict": {}, "options": types.SimpleNamespace(lr=1)}, pickled)
    text = tmp_path / "text.pt"
    text.write_text("hello")
    wrong_arch = tmp_path / "wrong.json"
    wrong_arch.write_text(json.dumps({**TINY, "channels": [16, 16, 48]}))
    ref = tmp_path / "ref.pt"
    reference_checkpoint(ref, reference_unet(8, TINY), latent_length=LENGTH)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{channels: 1")
    return {
        "truncated": (["-c", truncated], "truncated or corrupt"),
        "weights_only refuses": (["-c", pickled], "weights_only=True"),
        "not a checkpoint": (["-c", text], "not a torch checkpoint"),
        "missing": (["-c", tmp_path / "nope.pt"], "no such checkpoint"),
        "wrong arch": (["-c", ref, "--arch", wrong_arch], r"tensor net\.\S+ has shape"),
        "bad arch json": (["-c", ref, "--arch", bad_json], "not a JSON architecture"),
        "wrong dims": (["-c", tiny_ckpt, "-m", "{dims4}"], "8-dim latents, but model"),
        "lerp with seed": (["-c", tiny_ckpt, "--lerp", "--seed", 3], "--seed-a"),
        "negative seed": (["-c", tiny_ckpt, "--seed", -1], "--seed: must be between"),
        "zero steps": (["-c", tiny_ckpt, "--steps", 0], "--steps: must be between 1 and"),
    }


def test_every_bad_input_gives_one_clear_error(tmp_path, tiny_ckpt, quirk_models, test_model_path, capsys):
    for name, (extra, pattern) in _bad_inputs(tmp_path, tiny_ckpt).items():
        extra = [str(quirk_models["dims4"]) if a == "{dims4}" else a for a in extra]
        args = ["diffuse", "-m", test_model_path, "--steps", 1, "-o", tmp_path / "out", *extra]
        code, out, err = run_cli(args, capsys)
        assert code == 2, name
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (name, err)
        assert err.startswith("unravel diffuse: "), (name, err)
        assert re.search(pattern, err), (name, err)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_bridge_style_options(tiny_ckpt, rave8, tmp_path):
    # Pd atoms arrive as floats and symbols
    res = diffusion.diffuse_files(rave8, DIFFUSE.settings(checkpoint=str(tiny_ckpt), seed=4.0, steps=2.0,
                                  save_latents=1.0, num=2.0), str(tmp_path))
    assert [r.seed for r in res] == [4, 5] and all(r.npy.exists() for r in res)
    with pytest.raises(UnravelError, match="steps must be an integer"):
        diffusion.diffuse_files(rave8, DIFFUSE.settings(checkpoint=tiny_ckpt, steps=2.5), tmp_path)


# ----------------------------------------------------------------------------- training

def test_prepare_diffusion_chunks_like_the_reference(rave8, tmp_path):
    chunk = 256 * rave8.ratio
    t = np.arange(int(2.5 * chunk)) / rave8.sr
    stereo = np.stack([np.sin(2 * np.pi * 110 * t), 0.5 * np.sin(2 * np.pi * 330 * t)]).astype(np.float32)
    wav = tmp_path / "in.wav"
    sf.write(wav, stereo.T, rave8.sr, subtype="FLOAT")
    paths = diffusion.prepare_files(rave8, PREPARE.settings(inputs=[wav], output=tmp_path / "lat",
                                                            latent_length=256))
    assert [p.name for p in paths] == ["in_part000.npy", "in_part001.npy"]  # partial chunk dropped
    mono = stereo.mean(axis=0)
    for i, p in enumerate(paths):
        z = np.load(p)
        enc = torch.from_numpy(rave8.encode(mono[None, i * chunk:(i + 1) * chunk]))
        expected = ((enc - enc.mean()) / enc.std())[None].numpy()
        assert z.shape == (1, 8, 256) and z.dtype == np.float32
        np.testing.assert_allclose(z, expected, atol=1e-5)
    with pytest.raises(UnravelError, match="at least"):
        diffusion.prepare_files(rave8, PREPARE.settings(inputs=[wav], output=tmp_path / "lat2",
                                                        latent_length=1024))


def test_prepare_diffusion_names_folders_and_minimum_length(rave8, tmp_path, capsys):
    chunk = 256 * rave8.ratio
    tone = (0.3 * np.sin(np.arange(chunk + 10) * 0.05)).astype(np.float32)
    for name in ("a/x.wav", "b/x.wav", "lib/y.wav", "lib/sub/y.wav", "lib/sub/z.flac"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(tmp_path / name, tone, rave8.sr)
    # same name in two folders: both made, the later one named by its folder
    paths = diffusion.prepare_files(rave8, PREPARE.settings(
        inputs=[tmp_path / "a" / "x.wav", tmp_path / "b" / "x.wav", tmp_path / "lib"],
        output=tmp_path / "lat"))
    assert [p.name for p in paths] == ["x_part000.npy", "b--x_part000.npy", "y_part000.npy",
                                       "sub--y_part000.npy", "sub--z_part000.npy"]
    # the CLI refuses a latent length below what train-diffusion takes, before writing anything
    code, _, err = run_cli(["prepare-diffusion", "-m", str(rave8.path), str(tmp_path / "lib"),
                            "--latent-length", "128", "-o", str(tmp_path / "short")], capsys)
    assert code == 2 and "latent_length must be at least 256" in err
    assert not (tmp_path / "short").exists()


class _Probe(torch.nn.Module):
    """loss = w * mean(x): its gradient is the batch mean, so SGD(lr=1) shows every step."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return self.w * x.mean()


def test_gradient_accumulation_keeps_every_batch():
    data = torch.arange(5, dtype=torch.float32).view(5, 1, 1)  # batch means 0.5, 2.5, 4
    model = _Probe()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    diffusion.run_epoch(model, opt, data, [0, 1, 2, 3, 4], batch_size=2, accumulation_steps=2)
    # group [b1, b2]: step by their mean gradient (1.5); last short group [b3]: step by 4
    assert model.w.item() == pytest.approx(-(0.5 + 2.5) / 2 - 4.0)


def _latent_folder(path, n=3, dims=4, length=256):
    path.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        np.save(path / f"z{i}.npy", rng.standard_normal((1, dims, length)).astype(np.float32))
    return path


def test_train_resume_and_sample(tmp_path, quirk_models, capsys):
    lat = _latent_folder(tmp_path / "lat")
    base = ["train-diffusion", lat, "--arch", "tiny", "--batch-size", 2, "--max-epochs", 2]
    code, out, err = run_cli(base + ["-o", tmp_path / "a"], capsys)
    assert code == 0, err
    assert "train-diffusion:" in err and "loss" in err
    best, last = (tmp_path / "a" / "diffusion_best.pt"), (tmp_path / "a" / "diffusion_last.pt")
    obj = torch.load(last, weights_only=True)
    assert obj["epoch"] == 1 and obj["latent_length"] == 256 and obj["rave_dims"] == 4
    assert obj["optimizer_state_dict"]["state"] and obj["arch"]["channels"] == TINY["channels"]
    # same seed, same result
    assert run_cli(base + ["-o", tmp_path / "b"], capsys)[0] == 0
    sa = torch.load(last, weights_only=True)["model_state_dict"]
    sb = torch.load(tmp_path / "b" / "diffusion_last.pt", weights_only=True)["model_state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # resume continues the epochs
    code, _, err = run_cli(["train-diffusion", lat, "-o", tmp_path / "a", "--resume", last,
                            "--max-epochs", 3, "--batch-size", 2], capsys)
    assert code == 0, err
    assert torch.load(last, weights_only=True)["epoch"] == 2
    # without --force or --resume an existing run is not overwritten
    code, _, err = run_cli(base + ["-o", tmp_path / "a"], capsys)
    assert code == 2 and "already exists" in err
    # the checkpoint samples with a 4-dim model
    code, out, err = run_cli(["diffuse", "-c", best, "-m", quirk_models["dims4"], "--steps", 2, "--seed", 0,
                              "-o", tmp_path / "out"], capsys)
    assert code == 0, err


def test_finetune_from_reference_checkpoint(tmp_path, capsys):
    lat = _latent_folder(tmp_path / "lat")
    ref = tmp_path / "ref.pt"
    torch.manual_seed(0)
    reference_checkpoint(ref, reference_unet(4, TINY), latent_length=256)
    arch = tmp_path / "tiny.json"
    arch.write_text(json.dumps(TINY))
    code, _, err = run_cli(["train-diffusion", lat, "-o", tmp_path / "o", "--finetune", ref, "--arch", arch,
                            "--max-epochs", 1, "--batch-size", 2, "--no-optimizer-state"], capsys)
    assert code == 0, err
    obj = torch.load(tmp_path / "o" / "diffusion_last.pt", weights_only=True)
    assert obj["arch"] == diffusion.check_arch(TINY, "t") and obj["optimizer_state_dict"] == {}
    code, _, err = run_cli(["train-diffusion", lat, "-o", tmp_path / "o", "--resume",
                            tmp_path / "o" / "diffusion_last.pt", "--max-epochs", 2], capsys)
    assert code == 2 and "cannot resume" in err


def test_train_rejects_short_latents(tmp_path, capsys):
    lat = _latent_folder(tmp_path / "lat", length=128)
    code, _, err = run_cli(["train-diffusion", lat, "-o", tmp_path / "o", "--arch", "tiny"], capsys)
    assert code == 2 and "below 256" in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- the reference package

def _reference_package():
    """audio-diffusion-pytorch 0.1.3 if it is importable (torchaudio stubbed: only the mel
    transforms need it); None otherwise."""
    import importlib.util
    if importlib.util.find_spec("audio_diffusion_pytorch") is None:
        return None
    if importlib.util.find_spec("torchaudio") is None:
        stub = types.ModuleType("torchaudio")
        stub.transforms = types.ModuleType("torchaudio.transforms")
        sys.modules.setdefault("torchaudio", stub)
        sys.modules.setdefault("torchaudio.transforms", stub.transforms)
    import audio_diffusion_pytorch
    return audio_diffusion_pytorch


def test_matches_audio_diffusion_pytorch_if_installed():
    adp = _reference_package()
    if adp is None:
        pytest.skip("audio-diffusion-pytorch is not installed (optional cross-check)")
    torch.manual_seed(0)
    ref = adp.DiffusionModel(net_t=adp.UNetV0, in_channels=8, diffusion_t=adp.VDiffusion,
                             sampler_t=adp.VSampler, **TINY).eval()
    ours = DiffusionModel(8, **TINY).eval()
    assert {k: v.shape for k, v in ref.state_dict().items()} == {k: v.shape for k, v in ours.state_dict().items()}
    ours.load_state_dict(ref.state_dict())
    noise = torch.randn(1, 8, LENGTH)
    assert torch.equal(ref.sample(noise, num_steps=4), ours.sample(noise, 4))
    x = torch.randn(2, 8, LENGTH)
    torch.manual_seed(3)
    loss_ref = ref(x)
    torch.manual_seed(3)
    assert torch.equal(loss_ref, ours(x))


def test_an_interrupted_prepare_diffusion_run_is_recognised(tmp_path):
    """A run killed midway (here: SIGKILL while it writes its chunks) leaves a folder whose
    manifest says incomplete: train-diffusion refuses it and the next run names it (and goes
    on with --force); a finished run's manifest lists every file."""
    import os
    import signal
    import subprocess
    import time
    from unravel.diffusion.prepare import MANIFEST, load_latent_folder
    model = load_model("default")          # about 50 ms a chunk: a kill lands midway
    chunk = 256 * model.ratio
    tone = (0.3 * np.sin(np.arange(60 * chunk) * 0.05)).astype(np.float32)
    wav = tmp_path / "long.wav"
    sf.write(wav, tone, model.sr)
    out = tmp_path / "lat"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "unravel.cli", "prepare-diffusion", "-m",
                             "default", str(wav), "-o", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + 120
    while not list(out.glob("*.npy")) and time.monotonic() < end and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    made = sorted(p.name for p in out.glob("*.npy"))
    assert 0 < len(made) < 60, made                       # killed midway
    assert json.loads((out / MANIFEST).read_text())["complete"] is False
    with pytest.raises(UnravelError, match="interrupted prepare-diffusion run"):
        load_latent_folder(out)
    s = PREPARE.settings(inputs=[wav], output=out)
    with pytest.raises(UnravelError, match="interrupted prepare-diffusion run.*--force"):
        diffusion.prepare_files(model, s)
    paths = diffusion.prepare_files(model, s.replace(force=True))
    assert len(paths) == 60
    m = json.loads((out / MANIFEST).read_text())
    assert m["complete"] is True and m["files"] == sorted(p.name for p in paths)
    assert load_latent_folder(out)[0].shape == (60, 8, 256)
