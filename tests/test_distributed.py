"""Scale-out (issue 13): train-diffusion under torchrun (gloo, 2 CPU processes) takes the
same steps as one process with the whole batch, writes each checkpoint once (rank 0), and
resumes with another number of processes; `--jobs N` writes the same files as one process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf
import torch

from unravel import cli

# torchrun -m unravel.cli, with every save_checkpoint call logged with its rank
WRAPPER = textwrap.dedent("""
    import importlib, os, runpy, sys
    train = importlib.import_module("unravel.diffusion.train")  # the module, not the function
    real = train.save_checkpoint
    def logged(path, *args, **kw):
        with open(os.environ["SAVES_LOG"], "a") as f:
            f.write(f"{os.environ['RANK']} {os.path.basename(path)}\\n")
        return real(path, *args, **kw)
    train.save_checkpoint = logged
    sys.argv = ["unravel", *sys.argv[1:]]
    runpy.run_module("unravel.cli", run_name="__main__")
""")


def run_cli(args, capsys) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def torchrun(tmp_path, nproc: int, args) -> tuple[subprocess.CompletedProcess, list[str]]:
    """`torchrun --standalone --nproc_per_node nproc unravel ...args` on 127.0.0.1 (gloo);
    returns the process and the logged checkpoint saves ('<rank> <file>')."""
    script, log = tmp_path / "wrapper.py", tmp_path / "saves.log"
    script.write_text(WRAPPER)
    log.unlink(missing_ok=True)
    env = dict(os.environ, SAVES_LOG=str(log), OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", str(script), *[str(a) for a in args]]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    saves = log.read_text().splitlines() if log.exists() else []
    return proc, saves


def _latent_folder(path, n=8, dims=4, length=256):
    path.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        np.save(path / f"z{i}.npy", rng.standard_normal((1, dims, length)).astype(np.float32))
    return path


def _states(path) -> tuple[dict, dict]:
    obj = torch.load(path, weights_only=True)
    return obj["model_state_dict"], obj


def _assert_close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=2e-6, rtol=1e-4, msg=k)


def test_two_ranks_equal_one_process_with_twice_the_batch_and_resume_into_one(tmp_path, capsys):
    lat = _latent_folder(tmp_path / "lat")  # 8 latents, all for training: 2 steps per epoch
    common = ["train-diffusion", lat, "--arch", "tiny", "--split-ratio", 1, "--accumulation-steps", 1,
              "--device", "cpu", "--save-interval", 1, "--seed", 9]
    proc, saves = torchrun(tmp_path, 2, common + ["--batch-size", 2, "--max-epochs", 1,
                                                  "-o", tmp_path / "two"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    # one process printed the paths and logged; rank 0 alone wrote (best, the interval, the end)
    assert proc.stdout.split() == [str(tmp_path / "two" / "diffusion_best.pt"),
                                   str(tmp_path / "two" / "diffusion_last.pt")]
    assert proc.stderr.count("epoch 1: train loss") == 1
    assert "2 processes x batch 2" in proc.stderr
    assert saves == ["0 diffusion_best.pt", "0 diffusion_last.pt", "0 diffusion_last.pt"]
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["diffusion_best.pt",
                                                                     "diffusion_last.pt"]

    code, _, err = run_cli(common + ["--batch-size", 4, "--max-epochs", 1, "-o", tmp_path / "one"], capsys)
    assert code == 0, err
    two, two_obj = _states(tmp_path / "two" / "diffusion_last.pt")
    one, one_obj = _states(tmp_path / "one" / "diffusion_last.pt")
    assert any(not torch.equal(one[k], torch.zeros_like(one[k])) for k in one)
    _assert_close(two, one)  # 2 ranks x batch 2 == 1 process x batch 4, after 2 steps
    assert two_obj["training"]["world_size"] == 2 and one_obj["training"]["world_size"] == 1
    assert two_obj["val_loss"] == pytest.approx(one_obj["val_loss"], rel=1e-5)
    assert two_obj["train_loss"] == pytest.approx(one_obj["train_loss"], rel=1e-5)

    # resume the 2-rank run in one process: the same as one process for 2 epochs straight
    code, _, err = run_cli(common + ["--batch-size", 4, "--max-epochs", 2, "-o", tmp_path / "two",
                                     "--resume", tmp_path / "two" / "diffusion_last.pt"], capsys)
    assert code == 0, err
    code, _, err = run_cli(common + ["--batch-size", 4, "--max-epochs", 2, "-o", tmp_path / "straight"],
                           capsys)
    assert code == 0, err
    resumed, obj = _states(tmp_path / "two" / "diffusion_last.pt")
    straight, _ = _states(tmp_path / "straight" / "diffusion_last.pt")
    assert obj["epoch"] == 1
    _assert_close(resumed, straight)


def test_jobs_write_the_same_bytes_as_one_process(test_model_path, tmp_path, capsys):
    rng = np.random.default_rng(4)
    src = tmp_path / "audio"
    src.mkdir()
    for i in range(3):
        sf.write(src / f"a{i}.wav", (0.3 * rng.standard_normal(256 * 2048 + 999 * i)).astype(np.float32),
                 44100, subtype="FLOAT")
    outs = {}
    for jobs in (1, 2):
        enc, prep = tmp_path / f"enc{jobs}", tmp_path / f"prep{jobs}"
        code, out, err = run_cli(["encode", "-m", test_model_path, src, "-o", enc, "--latent-wav",
                                  "--jobs", jobs, "--device", "cpu"], capsys)
        assert code == 0, err
        assert out.split() == [str(enc / f"a{i}{ext}") for i in range(3) for ext in (".npy", ".latent.wav")]
        code, out, err = run_cli(["prepare-diffusion", "-m", test_model_path, src, "-o", prep,
                                  "--jobs", jobs, "--device", "cpu"], capsys)
        assert code == 0, err
        assert out.split() == [str(prep / f"a{i}_part000.npy") for i in range(3)]
        outs[jobs] = {(kind, p.name): p.read_bytes()
                      for kind, d in (("encode", enc), ("prepare", prep)) for p in sorted(d.iterdir())}
    assert len(outs[1]) == 10 and outs[1] == outs[2]     # 6 encode files, 3 latents, the manifest
    assert ("prepare", "prepare-diffusion.json") in outs[1]
    code, _, err = run_cli(["encode", "-m", test_model_path, src, "-o", tmp_path / "x", "--jobs", 0],
                           capsys)
    assert code == 2 and err == ("unravel encode: argument --jobs: must be between 1 and 256, got 0 "
                                  "(see unravel encode --help)\n")


def test_early_stop_is_the_same_epoch_on_every_rank(tmp_path):
    lat = _latent_folder(tmp_path / "lat", n=6)
    # lr 1e-30 leaves the weights as they are: epoch 2's validation loss is not better
    proc, saves = torchrun(tmp_path, 2, ["train-diffusion", lat, "--arch", "tiny", "--device", "cpu",
                                         "--batch-size", 2, "--lr", 1e-30, "--patience", 1,
                                         "--max-epochs", 10, "-o", tmp_path / "o"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("stopped after epoch 2 (no better validation loss for 1 epochs)") == 1
    assert saves == ["0 diffusion_best.pt", "0 diffusion_last.pt"]
    assert torch.load(tmp_path / "o" / "diffusion_last.pt", weights_only=True)["epoch"] == 1


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs (NCCL)")
def test_two_gpus_equal_one_gpu_with_twice_the_batch(tmp_path, capsys):
    lat = _latent_folder(tmp_path / "lat")
    common = ["train-diffusion", lat, "--arch", "tiny", "--split-ratio", 1, "--accumulation-steps", 1,
              "--device", "cuda", "--max-epochs", 1, "--seed", 9]
    proc, saves = torchrun(tmp_path, 2, common + ["--batch-size", 2, "-o", tmp_path / "two"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert saves == ["0 diffusion_best.pt", "0 diffusion_last.pt"]
    code, _, err = run_cli(common + ["--batch-size", 4, "-o", tmp_path / "one"], capsys)
    assert code == 0, err
    two, obj = _states(tmp_path / "two" / "diffusion_last.pt")
    one, _ = _states(tmp_path / "one" / "diffusion_last.pt")
    assert obj["training"]["device"] == "cuda:0" and obj["training"]["world_size"] == 2
    for k in one:
        torch.testing.assert_close(two[k], one[k], atol=1e-5, rtol=1e-3, msg=k)
