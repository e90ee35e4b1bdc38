"""FLOPs, weight bytes and activation sizes against hand computation.

Convention under test (documented in pamdi_node/models/flops.py): convolutions and matrix products
only, a multiply-accumulate = 2 FLOPs; BatchNorm, ReLU, residual adds, pooling, softmax, LayerNorm,
GELU, bias adds and embedding look-ups are not counted. ``param_bytes`` covers parameters and buffers
(BN running statistics, including the int64 ``num_batches_tracked`` counters).
"""

from __future__ import annotations

import pytest

from pamdi_node.models.zoo import block_infos, model_profile

F32 = 4


def conv_flops(cin: int, cout: int, k: int, hout: int, wout: int, batch: int = 1) -> int:
    return 2 * cin * cout * k * k * hout * wout * batch


def bn_bytes(c: int) -> int:
    return 4 * c * F32 + 8  # weight, bias, running mean, running var + int64 counter


def bottleneck_by_hand(cin: int, width: int, stride: int, hin: int, batch: int) -> tuple[int, int, tuple[int, ...]]:
    """(flops, weight bytes, output shape) of a torchvision v1.5 bottleneck, worked out by hand."""
    cout, hout = 4 * width, hin // stride
    flops = (
        conv_flops(cin, width, 1, hin, hin, batch)  # conv1 1x1 at the input resolution
        + conv_flops(width, width, 3, hout, hout, batch)  # conv2 3x3, carries the stride
        + conv_flops(width, cout, 1, hout, hout, batch)  # conv3 1x1
    )
    weights = (cin * width + width * width * 9 + width * cout) * F32 + 2 * bn_bytes(width) + bn_bytes(cout)
    if stride != 1 or cin != cout:  # projection shortcut: 1x1 conv (strided) + BN
        flops += conv_flops(cin, cout, 1, hout, hout, batch)
        weights += cin * cout * F32 + bn_bytes(cout)
    return flops, weights, (batch, cout, hout, hout)


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize(
    ("index", "cin", "width", "stride", "hin"),
    [(1, 64, 64, 1, 56), (2, 256, 64, 1, 56), (4, 256, 128, 2, 56), (14, 1024, 512, 2, 14), (16, 2048, 512, 1, 7)],
)
def test_resnet50_bottleneck_matches_hand_count(index: int, cin: int, width: int, stride: int, hin: int, batch: int):
    info = block_infos("resnet50", batch)[index]
    flops, weights, shape = bottleneck_by_hand(cin, width, stride, hin, batch)
    assert info.flops == flops
    assert info.param_bytes == weights
    assert info.out_shape == shape
    assert info.out_bytes == F32 * shape[0] * shape[1] * shape[2] * shape[3]


def test_resnet50_stem_head_and_total_match_hand_count() -> None:
    infos = block_infos("resnet50")
    # Stem: 7x7/2 conv 3->64 onto 112x112, then 3x3/2 max-pool -> 64x56x56 (pool not counted).
    assert infos[0].flops == conv_flops(3, 64, 7, 112, 112)
    assert infos[0].out_shape == (1, 64, 56, 56) and infos[0].out_bytes == 64 * 56 * 56 * F32
    # Head: global average pool (not counted) + fc 2048 -> 1000.
    assert infos[-1].flops == 2 * 2048 * 1000
    assert infos[-1].param_bytes == (2048 * 1000 + 1000) * F32
    assert infos[-1].out_shape == (1, 1000)
    total, hin, cin = infos[0].flops + infos[-1].flops, 56, 64
    for width, count, first_stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for b in range(count):
            stride = first_stride if b == 0 else 1
            total += bottleneck_by_hand(cin, width, stride, hin, 1)[0]
            cin, hin = 4 * width, hin // stride
    assert model_profile("resnet50").total_flops == total
    assert 8.1e9 < total < 8.3e9  # the well-known ~4.1 GMACs of ResNet-50


def test_resnet56_activation_sizes_and_flops() -> None:
    infos = block_infos("resnet56", batch=2)
    assert [b.out_shape for b in infos[:2]] == [(2, 16, 32, 32)] * 2
    assert infos[10].out_shape == (2, 32, 16, 16) and infos[19].out_shape == (2, 64, 8, 8)
    assert infos[-1].out_shape == (2, 10) and infos[-1].out_bytes == 2 * 10 * F32
    # layer2.0 (block 10): 3x3/2 conv 16->32, 3x3 conv 32->32, 1x1/2 projection 16->32, all at 16x16.
    assert infos[10].flops == conv_flops(16, 32, 3, 16, 16, 2) + conv_flops(32, 32, 3, 16, 16, 2) + conv_flops(
        16, 32, 1, 16, 16, 2
    )
    # The 224x224 variant is the same network: (224/32)^2 = 49 times the conv work of every block.
    big = block_infos("resnet56-224", batch=2)
    for small_block, big_block in zip(infos[:-1], big[:-1], strict=True):
        assert big_block.flops == 49 * small_block.flops
        assert big_block.param_bytes == small_block.param_bytes
        assert big_block.out_bytes == 49 * small_block.out_bytes


T, D, V, FF = 128, 768, 50257, 3072


def transformer_block_flops(t: int, batch: int = 1) -> int:
    per_item = (
        2 * t * D * 3 * D  # QKV projection (c_attn)
        + 2 * t * t * D  # scores Q K^T over the 12 heads (64 dims each)
        + 2 * t * t * D  # attention-weighted values A V
        + 2 * t * D * D  # output projection (attn.c_proj)
        + 2 * t * D * FF  # MLP up (c_fc)
        + 2 * t * FF * D  # MLP down (mlp.c_proj)
    )
    return batch * per_item


@pytest.mark.parametrize("batch", [1, 3])
def test_gpt2_transformer_block_matches_hand_count(batch: int) -> None:
    infos = block_infos("gpt2", batch)
    for info in infos[1:13]:
        assert info.flops == transformer_block_flops(T, batch)
        assert info.out_shape == (batch, T, D)
        assert info.out_bytes == batch * T * D * F32  # 393,216 bytes per item
        # 2 LayerNorms + c_attn + attn.c_proj + c_fc + mlp.c_proj (weights and biases).
        params = 4 * D + (D * 3 * D + 3 * D) + (D * D + D) + (D * FF + FF) + (FF * D + D)
        assert info.param_bytes == params * F32
    assert infos[0].flops == 0  # embedding look-ups are not arithmetic
    assert infos[0].param_bytes == (V * D + 1024 * D) * F32
    assert infos[0].out_bytes == batch * T * D * F32


def test_gpt2_head_returns_top_k_of_last_position_only() -> None:
    prof = model_profile("gpt2", batch=2)
    head = prof.blocks[-1]
    assert head.flops == 2 * 2 * D * V  # LM head on the last position only
    assert head.param_bytes == (2 * D + V * D) * F32  # ln_f + the (tied) LM head copy
    assert head.out_shape == (2, 5) and head.out_bytes == 2 * 5 * (4 + 8)  # float values + int64 ids
    assert prof.result_bytes == head.out_bytes
    assert prof.input_bytes == 2 * T * 8  # int64 token ids
    full = model_profile("gpt2", head_output="logits").blocks[-1]
    assert full.flops == 2 * T * D * V and full.out_bytes == T * V * F32  # the 25.7 MB we avoid
    assert model_profile("gpt2", top_k=10).result_bytes == 10 * 12
    assert model_profile("gpt2", head_output="ids").result_bytes == 8


def test_profile_bytes_before_each_block() -> None:
    prof = model_profile("resnet56")
    assert prof.input_bytes == 3 * 32 * 32 * F32
    assert prof.bytes_before(0) == prof.input_bytes
    assert prof.bytes_before(5) == prof.blocks[4].out_bytes == 16 * 32 * 32 * F32
