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
