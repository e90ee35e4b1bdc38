"""Model zoo: every model is an ordered list of blocks that can be built in part.

Public API (implemented in submodules; torch is imported lazily so that listing names stays cheap):

- ``MODEL_NAMES``: the models the zoo knows.
- ``pamdi_node.models.zoo``: ``build_blocks(name, start, end, seed=0, weights=None)``,
  ``block_infos(name, batch)``, ``example_input(name, batch, seed)``, ``monolithic(name, seed)``.
- ``pamdi_node.models.profile``: ``ModelProfile`` / ``BlockProfile`` (the profile file format).
"""

MODEL_NAMES: tuple[str, ...] = ("tiny", "resnet50", "resnet56", "resnet56-224", "gpt2")
