"""Model zoo: exact partitioning, partial builds, per-tensor seeding and weight loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pamdi_node.models import MODEL_NAMES
from pamdi_node.models.verify import verify_model
from pamdi_node.models.weights import WeightsError
from pamdi_node.models.zoo import (
    SPECS,
    block_infos,
    block_names,
    build_blocks,
    build_model,
    count_params,
    example_input,
    num_blocks,
    state_bytes,
)

EXPECTED_BLOCKS = {"tiny": 4, "resnet50": 18, "resnet56": 29, "resnet56-224": 29, "gpt2": 14}


def test_zoo_knows_exactly_the_advertised_models() -> None:
    assert tuple(SPECS) == MODEL_NAMES
    for name, n in EXPECTED_BLOCKS.items():
        assert num_blocks(name) == n == len(block_names(name))
    assert block_names("resnet50")[:3] == ("stem", "layer1.0", "layer1.1")
    assert block_names("resnet56")[-2:] == ("layer3.8", "head")
    assert block_names("gpt2")[0] == "embed" and block_names("gpt2")[-1] == "head"


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_blocks_one_by_one_reproduce_the_monolithic_forward_exactly(name: str) -> None:
    result = verify_model(name)
    assert result.blocks == EXPECTED_BLOCKS[name]
    assert result.max_abs_output > 0.1  # the outputs are not trivially zero
    assert result.max_abs_diff == 0.0, f"{name}: blocks differ from monolithic by {result.max_abs_diff}"


def test_contiguous_partitions_of_a_batch_match_the_monolithic_forward() -> None:
    x = example_input("resnet56", batch=3, seed=7)
    with torch.inference_mode():
        reference = build_model("resnet56", seed=4)(x)
        h = x
        for start, end in ((0, 5), (5, 6), (6, 20), (20, 29)):
            h = build_blocks("resnet56", start, end, seed=4)(h)
    assert h.shape == (3, 10)
    assert torch.equal(h, reference)
    # Items of a batch are independent: item 1 alone gives the same logits (up to kernel rounding).
    with torch.inference_mode():
        alone = build_model("resnet56", seed=4)(x[1:2])
    torch.testing.assert_close(alone[0], reference[1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("name", "start", "end"), [("resnet50", 5, 9), ("resnet56", 1, 4), ("gpt2", 3, 5)])
def test_partial_build_allocates_only_its_blocks(name: str, start: int, end: int) -> None:
    chain = build_blocks(name, start, end)
    assert len(chain.blocks) == end - start
    infos = block_infos(name)
    assert state_bytes(chain) == sum(b.param_bytes for b in infos[start:end])
    singles = [count_params(build_blocks(name, i, i + 1)) for i in range(start, end)]
    assert count_params(chain) == sum(singles)
    full = count_params(build_model(name, device="meta"))
    assert count_params(chain) < 0.5 * full
    # Every tensor is materialised on the requested device (nothing left on meta).
    assert all(t.device.type == "cpu" for t in chain.state_dict().values())


@pytest.mark.parametrize(("name", "start", "end"), [("resnet56", 3, 11), ("resnet50", 0, 2), ("gpt2", 12, 14)])
def test_partial_build_has_the_monolithic_weights(name: str, start: int, end: int) -> None:
    full = build_model(name, seed=3).state_dict()
    part = build_blocks(name, start, end, seed=3).full_state_dict()
    assert part, "partial build has no tensors"
    for key, tensor in part.items():
        assert key in full, f"{key} is not a monolithic key"
        assert torch.equal(tensor, full[key]), key
    other = build_blocks(name, start, end, seed=4).full_state_dict()
    assert any(not torch.equal(other[k], part[k]) for k in part if part[k].is_floating_point())


def test_gpt2_head_copy_is_tied_to_the_embedding() -> None:
    head = build_blocks("gpt2", 13, 14).full_state_dict()
    embed = build_blocks("gpt2", 0, 1).full_state_dict()
    assert torch.equal(head["lm_head.weight"], embed["transformer.wte.weight"])
    model = build_model("gpt2", device="meta")
    assert model.lm_head.weight is model.transformer.wte.weight


@pytest.mark.parametrize("name", ["resnet56", "tiny", "resnet50"])
def test_weights_file_with_monolithic_keys_loads_into_any_partition(name: str, tmp_path: Path) -> None:
    model = build_model(name, seed=11)
    path = tmp_path / "weights.pth"
    torch.save(model.state_dict(), path)
    x = example_input(name, seed=2)
    n = num_blocks(name)
    cut = n // 2
    with torch.inference_mode():
        reference = model(x)
        # A different seed must not matter: every tensor comes from the file.
        h = build_blocks(name, 0, cut, seed=99, weights=path)(x)
        h = build_blocks(name, cut, n, seed=98, weights=path)(h)
        again = build_model(name, seed=97, weights=path)(x)
    assert torch.equal(h, reference)
    assert torch.equal(again, reference)


def test_torchvision_style_checkpoint_without_bn_counters_and_wrapped_loads(tmp_path: Path) -> None:
    state = build_model("resnet56", seed=5).state_dict()
    state = {f"module.{k}": v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": state, "epoch": torch.tensor(3)}, path)
    part = build_blocks("resnet56", 2, 4, weights=path).full_state_dict()
    assert torch.equal(part["layer1.1.conv1.weight"], state["module.layer1.1.conv1.weight"])
    # The original torchvision files predate the zip format (cannot be memory-mapped): still loads.
    legacy = tmp_path / "legacy.pth"
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    part = build_blocks("resnet56", 27, 29, weights=legacy).full_state_dict()
    assert torch.equal(part["fc.weight"], state["module.fc.weight"])
    assert int(part["layer3.8.bn1.num_batches_tracked"]) == 0


def test_hf_base_model_checkpoint_without_prefix_or_lm_head_loads(tmp_path: Path) -> None:
    # Original GPT-2 checkpoints are GPT2Model files: no "transformer." prefix, no lm_head.weight.
    head = build_blocks("gpt2", 13, 14, seed=6).full_state_dict()
    state = {
        "wte.weight": build_blocks("gpt2", 0, 1, seed=6).full_state_dict()["transformer.wte.weight"],
        "ln_f.weight": head["transformer.ln_f.weight"],
        "ln_f.bias": head["transformer.ln_f.bias"],
    }
    path = tmp_path / "gpt2.bin"
    torch.save(state, path)
    loaded = build_blocks("gpt2", 13, 14, seed=0, weights=path).full_state_dict()
    assert all(torch.equal(loaded[k], head[k]) for k in head)


def test_weights_errors_name_the_tensor(tmp_path: Path) -> None:
    state = build_model("resnet56").state_dict()
    missing = {k: v for k, v in state.items() if not k.startswith("layer2.0.conv1")}
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(WeightsError, match=r"layer2\.0\.conv1\.weight"):
        build_blocks("resnet56", 10, 11, weights=tmp_path / "missing.pt")
    build_blocks("resnet56", 0, 9, weights=tmp_path / "missing.pt")  # blocks not needing it still load
    state["fc.weight"] = torch.zeros(3, 64)
    torch.save(state, tmp_path / "shape.pt")
    with pytest.raises(WeightsError, match=r"fc\.weight.*\(3, 64\).*\(10, 64\)"):
        build_blocks("resnet56", 28, 29, weights=tmp_path / "shape.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match=r"junk\.pt"):
        build_blocks("resnet56", 0, 1, weights=tmp_path / "junk.pt")
    with pytest.raises(WeightsError, match="does not exist"):
        build_blocks("resnet56", 0, 1, weights=tmp_path / "nope.pt")


def test_safetensors_weights_load(tmp_path: Path) -> None:
    safetensors = pytest.importorskip("safetensors.torch")
    state = build_model("tiny", seed=8).state_dict()
    safetensors.save_file(state, str(tmp_path / "tiny.safetensors"))
    loaded = build_blocks("tiny", 0, 4, weights=tmp_path / "tiny.safetensors").full_state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_bad_requests_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'resnet18'.*resnet50"):
        build_blocks("resnet18", 0, 1)
    for start, end in ((0, 0), (3, 2), (-1, 2), (0, 5)):
        with pytest.raises(ValueError, match=r"tiny: block range"):
            build_blocks("tiny", start, end)
    with pytest.raises(ValueError, match="no head options"):
        build_blocks("resnet56", 28, 29, head_output="topk")
    with pytest.raises(ValueError, match="head_output must be one of"):
        build_blocks("gpt2", 13, 14, head_output="everything")
    with pytest.raises(ValueError, match="batch must be >= 1"):
        example_input("tiny", batch=0)
    with pytest.raises(ValueError, match="int64 token ids"):
        build_blocks("gpt2", 0, 1)(torch.zeros(1, 4))


def test_example_inputs_are_seeded_and_shaped() -> None:
    assert example_input("resnet50", batch=2).shape == (2, 3, 224, 224)
    assert example_input("resnet56-224").shape == (1, 3, 224, 224)
    ids = example_input("gpt2", batch=2, seed=1)
    assert ids.shape == (2, 128) and ids.dtype == torch.int64 and int(ids.max()) < 50257
    assert torch.equal(example_input("tiny", seed=5), example_input("tiny", seed=5))
    assert not torch.equal(example_input("tiny", seed=5), example_input("tiny", seed=6))


def test_resnet56_224_is_the_same_network_on_upsampled_cifar() -> None:
    small, big = build_model("resnet56", seed=2).state_dict(), build_model("resnet56-224", seed=2).state_dict()
    assert small.keys() == big.keys() and all(torch.equal(small[k], big[k]) for k in small)
    x = example_input("resnet56-224", seed=9)
    cifar = example_input("resnet56", seed=9)
    # The 224 input is the seeded 32x32 image, bilinearly upsampled (7x per side).
    assert torch.equal(
        x, torch.nn.functional.interpolate(cifar, size=(224, 224), mode="bilinear", align_corners=False)
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="CUDA is not available"):
        build_blocks("tiny", 0, 1, device="cuda")
