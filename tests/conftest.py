"""Shared fixtures: small TorchScript models reproducing RAVE export quirks, built once per
session in a tmp dir (see toymodels.make_test_model)."""

from __future__ import annotations

import pathlib

import pytest
import torch

from toymodels import make_test_model

torch.set_num_threads(1)


def pytest_configure(config):
    # torch 2.13 marks the TorchScript API (the nn~ contract) deprecated; it is what we need.
    config.addinivalue_line("filterwarnings", "ignore:`torch.jit:DeprecationWarning")

# name -> make_test_model keyword arguments
QUIRKS: dict[str, dict] = {
    "plain": {},
    "decode_arg": {"decode_arg": True},
    "streaming": {"streaming": True, "decode_arg": True},
    "variational": {"variational": True, "decode_arg": True},
    "stereo": {"stereo": True},
    "no_get_methods": {"no_get_methods": True},
    "dims4": {"dims": 4, "decode_arg": True},
    "sr48k_sampling_rate": {"sr": 48000, "sr_attr": "sampling_rate"},
    "sr22k_rave": {"sr": 22050, "sr_attr": "_rave"},
    "sr_none": {"sr": 32000, "sr_attr": "none"},
}


@pytest.fixture(scope="session")
def quirk_models(tmp_path_factory) -> dict[str, pathlib.Path]:
    """Every quirk model of QUIRKS, as name -> .ts path."""
    d = tmp_path_factory.mktemp("quirk_models")
    return {name: make_test_model(d / f"{name}.ts", seed=i, **kw) for i, (name, kw) in enumerate(QUIRKS.items())}


@pytest.fixture(scope="session")
def test_model_path(quirk_models) -> pathlib.Path:
    """A RAVE-like 8-dim mono model with decode's extra optional argument."""
    return quirk_models["decode_arg"]
