"""A model repository of two CUDA models for the GPU tests of models served together: the
bundled torch_mlp (8 layers of 4096 x 4096 in fp16: 256 MiB of weights) and a deeper copy
of it, torch_deep (16 layers: 512 MiB), made by changing its config's `layers` parameter."""

from __future__ import annotations

import shutil
from pathlib import Path

import analyzer_widgets as aw


def two_torch_models(repo: Path) -> Path:
    """``repo`` holding torch_mlp and torch_deep; returns it."""
    shutil.copytree(aw.EXAMPLE_REPOSITORY / "torch_mlp", repo / "torch_mlp")
    shutil.copytree(aw.EXAMPLE_REPOSITORY / "torch_mlp", repo / "torch_deep")
    config = (repo / "torch_deep" / "config.pbtxt").read_text()
    deep = config.replace('name: "torch_mlp"', 'name: "torch_deep"').replace(
        'key: "layers", value: { string_value: "8" }', 'key: "layers", value: { string_value: "16" }')
    assert deep.count("torch_deep") == 1 and '"16"' in deep, "torch_mlp's config changed: update this copy"
    (repo / "torch_deep" / "config.pbtxt").write_text(deep)
    return repo
