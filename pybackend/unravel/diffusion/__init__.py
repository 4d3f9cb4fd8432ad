"""Latent diffusion: RAVE-Latent-Diffusion-compatible checkpoints, sampling and training.

One module per step: `checkpoint` (read, write, choose the architecture), `sample` (noise,
sampler, slerp, normalize, `diffuse_files`), `prepare` (audio -> training latents),
`train` (the training loop), `values` (checks of given values and seeds), `vdiffusion`
(the U-Net model and its sampler). Every public name is importable from here.
"""

from unravel.diffusion.checkpoint import (DATA_DIR, DEFAULT_CHECKPOINT, IN_KEY,
                                          ORIGINAL_LATENT_LENGTH, PREFIXES, Diffuser,
                                          arch_from_name, arch_names, build_model, cached_checkpoint,
                                          load_checkpoint, net_state, read_arch_file,
                                          read_checkpoint, resolve_checkpoint, save_checkpoint)
from unravel.diffusion.prepare import load_latent_folder, prepare_files
from unravel.diffusion.sample import (Diffused, diffuse_files, diffuse_latents, make_noise, normalize,
                                      sample_seeds, slerp)
from unravel.diffusion.train import run_epoch, train
from unravel.diffusion.values import check_seed, random_seed
from unravel.diffusion.vdiffusion import (FLEX_PRESETS, ORIGINAL_ARCH, SMALL_PRESETS,
                                          DiffusionModel, check_arch, total_factor)

__all__ = [
    "DATA_DIR", "DEFAULT_CHECKPOINT", "IN_KEY", "ORIGINAL_LATENT_LENGTH", "PREFIXES", "Diffuser",
    "arch_from_name", "arch_names", "build_model", "cached_checkpoint", "load_checkpoint", "net_state",
    "read_arch_file", "read_checkpoint", "resolve_checkpoint", "save_checkpoint",
    "load_latent_folder", "prepare_files",
    "Diffused", "diffuse_files", "diffuse_latents", "make_noise", "normalize", "sample_seeds", "slerp",
    "run_epoch", "train", "check_seed", "random_seed",
    "FLEX_PRESETS", "ORIGINAL_ARCH", "SMALL_PRESETS", "DiffusionModel", "check_arch", "total_factor",
]
