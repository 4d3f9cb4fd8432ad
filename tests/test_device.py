"""Devices (issue 13): the choice of device and its errors, models and bending on a device,
`gpu 1` without a GPU, mixed precision, CPU tensors in checkpoints. The CUDA and MPS cases
run where torch sees such a device and are skipped (with the reason) elsewhere."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from unravel import bridge, cli, device, modelinfo
from unravel.bend import Bender
from unravel.errors import UnravelError
from unravel.model import load_model
from pdrun import Patch, run_pd

CUDA = device.cuda_available()
MPS = device.mps_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA GPU on this machine")
needs_mps = pytest.mark.skipif(not MPS, reason="no Apple GPU (MPS) on this machine")
needs_no_gpu = pytest.mark.skipif(CUDA or MPS, reason="this machine has a GPU")


def run_cli(args, capsys) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _latent_folder(path, n=4, dims=4, length=256):
    path.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        np.save(path / f"z{i}.npy", rng.standard_normal((1, dims, length)).astype(np.float32))
    return path


# ----------------------------------------------------------------------------- the choice


def test_resolve_names_and_auto_order():
    assert device.resolve("cpu") == torch.device("cpu") == device.resolve(None)
    assert device.resolve(" CPU ") == torch.device("cpu")
    auto = device.resolve("auto")
    assert auto.type == ("cuda" if CUDA else "mps" if MPS else "cpu")
    with pytest.raises(UnravelError, match=r"device 'tpu': unknown \(use auto, cpu, cuda, cuda:N or mps\)"):
        device.resolve("tpu")
    with pytest.raises(UnravelError, match="unknown"):
        device.resolve("cuda:x")


@needs_no_gpu
def test_absent_devices_are_one_clear_error():
    with pytest.raises(UnravelError, match="device cuda: no CUDA GPU available to torch"):
        device.resolve("cuda")
    with pytest.raises(UnravelError, match="device cuda:1: no CUDA GPU"):
        device.resolve("cuda:1")
    with pytest.raises(UnravelError, match="device mps: no Apple GPU"):
        device.resolve("mps")
    assert device.gpu() is None


@pytest.mark.skipif(MPS, reason="this machine has an Apple GPU")
@pytest.mark.parametrize("command", ["encode", "decode", "bend", "prepare-diffusion", "diffuse",
                                     "train-diffusion", "app"])
def test_every_model_command_refuses_an_absent_device(command, test_model_path, tmp_path, capsys):
    lat = _latent_folder(tmp_path / "lat")
    wav = tmp_path / "in.wav"
    args = {"encode": ["-m", test_model_path, wav, "-o", tmp_path / "o"],
            "decode": ["-m", test_model_path, lat, "-o", tmp_path / "o"],
            "bend": ["-m", test_model_path, "--layer", "x", "--op", "zero", "--amount", 1, "-o",
                     tmp_path / "o.ts"],
            "prepare-diffusion": ["-m", test_model_path, wav, "-o", tmp_path / "o"],
            "diffuse": ["-m", test_model_path, "--seed", 1, "-o", tmp_path / "o"],
            "train-diffusion": [lat, "-o", tmp_path / "o", "--arch", "tiny"],
            "app": ["--port", 65000, "--out", tmp_path / "app"]}[command]
    import soundfile as sf
    sf.write(wav, np.zeros(44100, np.float32), 44100)
    code, out, err = run_cli([command, *args, "--device", "mps"], capsys)
    assert code == 2 and out == ""
    assert err == f"unravel {command}: device mps: no Apple GPU (MPS) available to torch\n"


def test_cli_device_cpu_and_sidecar_records_it(test_model_path, tmp_path, capsys):
    lat = _latent_folder(tmp_path / "lat", n=1, dims=8, length=16)
    code, out, err = run_cli(["decode", "-m", test_model_path, lat, "-o", tmp_path / "dec",
                              "--device", "cpu"], capsys)
    assert code == 0, err
    code, out, err = run_cli(["diffuse", "-m", test_model_path, "--seed", 3, "--steps", 2,
                              "--device", "cpu", "-o", tmp_path / "d"], capsys)
    assert code == 0, err
    side = json.loads((tmp_path / "d" / "diffuse_3.json").read_text())
    assert side["device"] == "cpu" and side["model_device"] == "cpu"
    # auto is the default: on this machine its choice is what the sidecar says
    code, out, err = run_cli(["diffuse", "-m", test_model_path, "--seed", 3, "--steps", 2,
                              "-o", tmp_path / "auto"], capsys)
    assert code == 0, err
    side = json.loads((tmp_path / "auto" / "diffuse_3.json").read_text())
    assert side["device"] == device.name(device.resolve("auto"))


# ----------------------------------------------------------------------------- models on a device


def test_model_on_cpu_and_gpu_without_one(test_model_path):
    m = load_model(test_model_path, device="cpu")
    assert m.device == torch.device("cpu") and m.to("cpu") == torch.device("cpu") and m.moves == 0
    assert next(m.module.parameters()).device.type == "cpu"


def test_bender_follows_a_moved_model(test_model_path, tmp_path):
    """After a move (counted by Model.moves) the Bender takes the parameters and its copies
    of the originals anew: bends, restore and save still see the same numbers."""
    m = load_model(test_model_path)
    b = Bender(m)
    layer = next(l.name for l in modelinfo.layers(m.module) if l.learned)
    orig = b.get_weights(layer)
    b.bend(layer, "randomize", 500.0, 40, 3)
    bent = b.get_weights(layer)
    m.moves += 1  # what Model.to does when the device changes
    b.bend(layer, "offset", 0.25)
    assert b._moves == m.moves
    assert not np.array_equal(b.get_weights(layer), bent)
    b.restore(layer)
    np.testing.assert_array_equal(b.get_weights(layer), orig)
    b.bend(layer, "randomize", 500.0, 40, 3)
    np.testing.assert_array_equal(b.get_weights(layer), bent)  # the same cached noise, moved
    out = b.save(tmp_path / "b.ts")
    assert m.device.type == "cpu"
    np.testing.assert_array_equal(torch.jit.load(str(out)).state_dict()[layer].reshape(-1).numpy(), bent)


@needs_no_gpu
def test_bridge_gpu_1_without_a_gpu_keeps_the_cpu(test_model_path):
    s = bridge.Session(str(test_model_path))
    z = np.random.default_rng(1).standard_normal((8, 4)).astype(np.float32)
    before = s.model.decode(z)
    note = s.gpu(1)
    assert note == "GPU mode not available (no CUDA or MPS device: the model runs on the CPU)"
    assert s.device.type == "cpu" and s.model.device.type == "cpu" and s.model.moves == 0
    np.testing.assert_array_equal(s.model.decode(z), before)
    assert s.gpu(0) == "" and s.model.device.type == "cpu"


def _gpu_round_trip(test_model_path, tmp_path, dev: str):
    """A model moved to `dev` runs, bends and saves as on the CPU."""
    cpu = load_model(test_model_path)
    s = bridge.Session(str(test_model_path))
    assert s.gpu(1) == "" and s.model.device.type == dev
    assert next(s.model.module.parameters()).device.type == dev
    z = np.random.default_rng(1).standard_normal((8, 16)).astype(np.float32)
    np.testing.assert_allclose(s.model.decode(z), cpu.decode(z), atol=1e-4)
    layer = s.bender.layers()[0]
    w = s.get_weights(layer)
    assert w.dtype == np.float32 and w.shape == (cpu.module.state_dict()[layer].numel(),)
    s.set_weights(layer, np.zeros_like(w))
    assert not s.get_weights(layer).any()
    s.bender.restore()
    np.testing.assert_array_equal(s.get_weights(layer), w)
    s.bender.bend(layer, "randomize", 1000.0, 50, 7)
    bent = s.get_weights(layer)
    cb = Bender(cpu)
    cb.bend(layer, "randomize", 1000.0, 50, 7)
    np.testing.assert_allclose(bent, cb.get_weights(layer), atol=1e-6)
    out = s.bender.save(tmp_path / "bent.ts")
    assert s.model.device.type == dev  # saved from the CPU, back on the GPU
    reloaded = torch.jit.load(str(out), map_location="cpu")  # loads without the GPU
    np.testing.assert_allclose(reloaded.state_dict()[layer].reshape(-1).numpy(), bent, atol=1e-6)
    assert s.gpu(0) == "" and s.model.device.type == "cpu"
    np.testing.assert_array_equal(s.get_weights(layer), bent)  # the bent weights moved back


@needs_cuda
def test_cuda_model_bend_weights_and_save(test_model_path, tmp_path):
    _gpu_round_trip(test_model_path, tmp_path, "cuda")


@needs_mps
def test_mps_model_bend_weights_and_save(test_model_path, tmp_path):
    _gpu_round_trip(test_model_path, tmp_path, "mps")


@needs_cuda
def test_cuda_same_seed_same_bytes_and_close_to_cpu(test_model_path, tmp_path, capsys):
    for name in ("a", "b"):
        assert run_cli(["diffuse", "-m", test_model_path, "--seed", 5, "--steps", 3, "--device",
                        "cuda", "--save-latents", "-o", tmp_path / name], capsys)[0] == 0
    assert (tmp_path / "a" / "diffuse_5.wav").read_bytes() == (tmp_path / "b" / "diffuse_5.wav").read_bytes()
    assert json.loads((tmp_path / "a" / "diffuse_5.json").read_text())["device"] == "cuda:0"
    assert run_cli(["diffuse", "-m", test_model_path, "--seed", 5, "--steps", 3, "--device", "cpu",
                    "--save-latents", "-o", tmp_path / "c"], capsys)[0] == 0
    np.testing.assert_allclose(np.load(tmp_path / "a" / "diffuse_5.npy"),
                               np.load(tmp_path / "c" / "diffuse_5.npy"), atol=1e-3)


# ----------------------------------------------------------------------------- precision


def test_autocast_contexts():
    cpu = torch.device("cpu")
    with device.autocast(cpu, "32"):
        assert not torch.is_autocast_enabled("cpu")
    with device.autocast(cpu, "bf16-mixed"):
        assert torch.is_autocast_enabled("cpu")
        y = torch.nn.functional.linear(torch.ones(2, 3), torch.ones(4, 3))
        assert y.dtype == torch.bfloat16
    assert not device.grad_scaler(cpu, "bf16-mixed").is_enabled()
    with pytest.raises(UnravelError, match="precision '64': use one of 32, 16-mixed, bf16-mixed"):
        device.check_precision("64")


def test_train_bf16_mixed_on_cpu_saves_float32_cpu_tensors(tmp_path, capsys):
    lat = _latent_folder(tmp_path / "lat")
    base = ["train-diffusion", lat, "--arch", "tiny", "--batch-size", 2, "--max-epochs", 1,
            "--device", "cpu"]
    code, _, err = run_cli(base + ["-o", tmp_path / "bf", "--precision", "bf16-mixed"], capsys)
    assert code == 0, err
    assert "cpu, precision bf16-mixed" in err
    code, _, err = run_cli(base + ["-o", tmp_path / "fp"], capsys)
    assert code == 0, err
    bf = torch.load(tmp_path / "bf" / "diffusion_last.pt", weights_only=True)
    fp = torch.load(tmp_path / "fp" / "diffusion_last.pt", weights_only=True)
    assert bf["training"]["precision"] == "bf16-mixed" and bf["training"]["device"] == "cpu"
    for obj in (bf["model_state_dict"], bf["optimizer_state_dict"]["state"][0]):
        for v in obj.values():
            assert v.device.type == "cpu" and v.dtype in (torch.float32,)
    assert all(v.dtype == torch.float32 for v in bf["model_state_dict"].values())
    # autocast really ran: the bfloat16 forward gives other weights than float32
    assert any(not torch.equal(bf["model_state_dict"][k], fp["model_state_dict"][k])
               for k in fp["model_state_dict"])
    assert np.isfinite(bf["train_loss"]) and np.isfinite(bf["val_loss"])


@needs_cuda
def test_cuda_train_16_mixed_writes_cpu_float32_checkpoints(tmp_path, capsys):
    lat = _latent_folder(tmp_path / "lat")
    code, _, err = run_cli(["train-diffusion", lat, "--arch", "tiny", "--batch-size", 2,
                            "--max-epochs", 2, "--device", "cuda", "--precision", "16-mixed",
                            "-o", tmp_path / "o"], capsys)
    assert code == 0, err
    obj = torch.load(tmp_path / "o" / "diffusion_last.pt", weights_only=True)  # no map_location
    assert obj["training"]["device"] == "cuda:0"
    assert all(v.device.type == "cpu" and v.dtype == torch.float32
               for v in obj["model_state_dict"].values())


# ----------------------------------------------------------------------------- [unravel~ -g] in Pd


def test_pd_gpu_flag_and_message(test_model_path, tmp_path):
    """-g and `gpu 1` go through the bridge: without a GPU, nn~'s one line each time and the
    CPU stays (status says gpu 0); with one, status says gpu 1 and `gpu 0` moves it back."""
    p = Patch()
    seq = p.obj("t b b")
    p.connect(p.obj("loadbang"), 0, seq, 0)
    obj = p.obj(f"unravel~ -g {test_model_path} forward 2048")
    p.connect(obj, 1, p.obj("print info"), 0)
    box = p.msg("gpu 1, bang, gpu 0, bang")
    p.connect(seq, 1, box, 0)
    p.connect(box, 0, obj, 0)
    p.connect(seq, 0, p.msg("; pd quit"), 0)
    r = run_pd(p.write(tmp_path / "gpu.pd"))
    assert r.returncode == 0 and r.errors == [], r.lines
    notes = [ln for ln in r.lines if "GPU mode not available" in ln]
    gpu = [ln for ln in r.after("info:") if ln.startswith("gpu ")]
    if CUDA or MPS:
        assert notes == [] and gpu == ["gpu 1", "gpu 0"], r.lines
    else:
        assert notes == ["[unravel~]: GPU mode not available (no CUDA or MPS device: the model "
                         "runs on the CPU)"] * 2, r.lines
        assert gpu == ["gpu 0", "gpu 0"], r.lines
