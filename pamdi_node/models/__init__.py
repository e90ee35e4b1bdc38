"""Model zoo: every model is an ordered list of blocks that can be built in part.

Public API (torch is imported lazily, on first use of a zoo name, so that listing names stays cheap):

- ``MODEL_NAMES``: the models the zoo knows.
- :mod:`pamdi_node.models.zoo`: ``build_blocks(name, start, end, *, seed=0, weights=None, device="cpu")``,
  ``build_model(name, *, seed=0, weights=None)``, ``num_blocks``, ``block_names``,
  ``example_input(name, batch=1, seed=0)``, ``block_infos(name, batch=1)``, ``model_profile(name, batch=1)``.
- :mod:`pamdi_node.models.profile`: ``ModelProfile`` / ``BlockProfile`` (the profile file format) and
  ``load_shipped_profile(model, batch=1, threads=1)``.
- :mod:`pamdi_node.models.profiling`: ``profile_model`` (measured per-block times).
- :mod:`pamdi_node.models.verify`: ``verify_model`` / ``verify_models`` (blocks vs monolithic).
"""

from __future__ import annotations

from typing import Any

MODEL_NAMES: tuple[str, ...] = ("tiny", "resnet50", "resnet56", "resnet56-224", "gpt2")

_ZOO_NAMES = {
    "build_blocks",
    "build_model",
    "num_blocks",
    "block_names",
    "example_input",
    "block_infos",
    "model_profile",
    "BlockChain",
}


def __getattr__(name: str) -> Any:
    if name in _ZOO_NAMES:
        from pamdi_node.models import zoo

        return getattr(zoo, name)
    if name == "load_shipped_profile":
        from pamdi_node.models.profile import load_shipped_profile

        return load_shipped_profile
    raise AttributeError(f"module 'pamdi_node.models' has no attribute {name!r}")
