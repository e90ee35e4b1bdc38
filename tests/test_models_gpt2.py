"""GPT-2: the plain-torch definition against Hugging Face ``transformers`` (an independent implementation)."""

from __future__ import annotations

import pytest
import torch
import transformers  # a dev dependency (pyproject): the suite compares against it, never skips it

from pamdi_node.models.zoo import build_blocks, build_model, example_input


@pytest.fixture(scope="module")
def reference() -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """HF GPT2LMHeadModel (eager attention) loaded with our seeded weights, and its logits."""
    ours = build_model("gpt2", seed=1)
    state = ours.state_dict()
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(attn_implementation="eager")).eval()
    missing, unexpected = hf.load_state_dict(state, strict=False)
    # HF may keep non-persistent mask buffers; every real weight must have been provided.
    assert not [k for k in missing if not k.endswith(("attn.bias", "attn.masked_bias"))], missing
    assert unexpected == []
    ids = example_input("gpt2", batch=2, seed=3)
    with torch.inference_mode():
        hf_logits = hf(ids).logits
        our_logits = ours(ids)
    return hf_logits, our_logits, state


def test_monolithic_matches_transformers(reference) -> None:
    hf_logits, our_logits, _ = reference
    assert our_logits.shape == hf_logits.shape == (2, 128, 50257)
    assert hf_logits.abs().max() > 0.5  # non-degenerate outputs
    diff = (our_logits - hf_logits).abs().max().item()
    assert diff < 2e-5, f"max abs diff vs transformers: {diff}"


def test_block_chain_head_outputs_match_transformers(reference) -> None:
    hf_logits, _, _ = reference
    ids = example_input("gpt2", batch=2, seed=3)
    with torch.inference_mode():
        hidden = build_blocks("gpt2", 0, 13, seed=1)(ids)
        values, indices = build_blocks("gpt2", 13, 14, seed=1)(hidden)  # default: top-5 of the last position
        next_ids = build_blocks("gpt2", 13, 14, seed=1, head_output="ids")(hidden)
        last = build_blocks("gpt2", 13, 14, seed=1, head_output="last_logits")(hidden)
        top10 = build_blocks("gpt2", 13, 14, seed=1, top_k=10)(hidden)
    expected = hf_logits[:, -1, :].topk(5, dim=-1)
    assert values.shape == indices.shape == (2, 5) and indices.dtype == torch.int64
    assert torch.equal(indices, expected.indices)
    assert (values - expected.values).abs().max() < 2e-5
    assert torch.equal(next_ids, hf_logits[:, -1, :].argmax(-1))
    assert (last - hf_logits[:, -1, :]).abs().max() < 2e-5
    assert top10[0].shape == (2, 10) and torch.equal(top10[1][:, :5], indices)


def test_hf_state_dict_key_names(reference) -> None:
    _, _, state = reference
    assert "transformer.h.11.attn.c_attn.weight" in state and state["transformer.h.11.attn.c_attn.weight"].shape == (
        768,
        2304,
    )
    assert state["lm_head.weight"].data_ptr() == state["transformer.wte.weight"].data_ptr()
