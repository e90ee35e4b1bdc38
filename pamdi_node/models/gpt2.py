"""GPT-2 small (124M) in plain torch with Hugging Face ``GPT2LMHeadModel`` state_dict key names.

Keys: ``transformer.wte``, ``transformer.wpe``, ``transformer.h.N.{ln_1, attn.c_attn, attn.c_proj,
ln_2, mlp.c_fc, mlp.c_proj}``, ``transformer.ln_f``, ``lm_head`` (tied to ``wte`` as in HF), so an HF
checkpoint loads without ``transformers`` on the node. Blocks: ``embed`` (token + position
embeddings), 12 transformer blocks ``h.0`` .. ``h.11``, ``head`` (final LayerNorm + LM head) = 14.

The head returns what a user needs rather than the 25.7 MB logit tensor (batch 1, 128 tokens):
``head_output="topk"`` (default) gives ``(values, indices)`` of the ``top_k`` largest logits of the
LAST position, each shaped ``(batch, top_k)``; ``"ids"`` gives the next-token ids ``(batch,)``;
``"last_logits"`` the last position's logits ``(batch, vocab)``; ``"logits"`` all logits
``(batch, seq, vocab)`` (what the monolithic model returns, used by verification). Only
``"logits"`` runs the LM head over every position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pamdi_node.models.seeding import InitRule

HEAD_OUTPUTS = ("topk", "ids", "last_logits", "logits")


@dataclass(frozen=True)
class GPT2Config:
    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    layer_norm_epsilon: float = 1e-5
    seq_len: int = 128  # default sequence length of the example input


CONFIG = GPT2Config()


class Conv1D(nn.Module):
    """HF's ``Conv1D``: a linear layer whose weight is stored transposed, ``(in, out)``."""

    def __init__(self, nx: int, nf: int, init_std: float = 0.02) -> None:
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.empty(nf))
        self.init_std = init_std

    def pamdi_init_rule(self, name: str, tensor: torch.Tensor) -> InitRule:
        return InitRule.normal(0.0, self.init_std) if name == "weight" else InitRule.normal(0.0, 0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out_shape = (*x.shape[:-1], self.nf)
        return torch.addmm(self.bias, x.reshape(-1, x.size(-1)), self.weight).view(out_shape)


class Attention(nn.Module):
    def __init__(self, cfg: GPT2Config) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.head_dim = cfg.n_embd // cfg.n_head
        self.c_attn = Conv1D(cfg.n_embd, 3 * cfg.n_embd)
        # Scaled residual projections as in GPT-2 (std 0.02 / sqrt(2 * n_layer)).
        self.c_proj = Conv1D(cfg.n_embd, cfg.n_embd, 0.02 / math.sqrt(2 * cfg.n_layer))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.c_attn(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.n_head, self.head_dim).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).reshape(b, t, d))


class MLP(nn.Module):
    def __init__(self, cfg: GPT2Config) -> None:
        super().__init__()
        self.c_fc = Conv1D(cfg.n_embd, 4 * cfg.n_embd)
        self.c_proj = Conv1D(4 * cfg.n_embd, cfg.n_embd, 0.02 / math.sqrt(2 * cfg.n_layer))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # GPT-2's "gelu_new" is the tanh approximation of GELU.
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class TransformerBlock(nn.Module):
    def __init__(self, cfg: GPT2Config) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        self.attn = Attention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Embedding(nn.Module):
    """Block 0: token ids ``(batch, seq)`` int64 -> hidden states ``(batch, seq, n_embd)``."""

    def __init__(self, cfg: GPT2Config) -> None:
        super().__init__()
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.n_positions, cfg.n_embd)
        self.n_positions = cfg.n_positions

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.dim() != 2 or ids.dtype != torch.int64:
            raise ValueError(f"gpt2 expects int64 token ids of shape (batch, seq), got {ids.dtype} {tuple(ids.shape)}")
        if ids.size(1) > self.n_positions:
            raise ValueError(f"gpt2 sequence of {ids.size(1)} tokens exceeds n_positions={self.n_positions}")
        positions = torch.arange(ids.size(1), device=ids.device)
        return self.wte(ids) + self.wpe(positions)


class LMHeadLinear(nn.Linear):
    """The LM head projection; initialised like (and, in the monolithic model, tied to) ``wte``."""

    def pamdi_init_rule(self, name: str, tensor: torch.Tensor) -> InitRule:
        return InitRule.normal(0.0, 0.02)


class Head(nn.Module):
    """Last block: final LayerNorm and LM head, returning ``head_output`` (see module docstring)."""

    def __init__(self, cfg: GPT2Config, head_output: str = "topk", top_k: int = 5) -> None:
        super().__init__()
        if head_output not in HEAD_OUTPUTS:
            raise ValueError(f"head_output must be one of {HEAD_OUTPUTS}, got {head_output!r}")
        if not 1 <= top_k <= cfg.vocab_size:
            raise ValueError(f"top_k must be in 1..{cfg.vocab_size}, got {top_k}")
        self.ln_f = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        self.lm_head = LMHeadLinear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.head_output = head_output
        self.top_k = top_k

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.head_output == "logits":
            return self.lm_head(self.ln_f(x))
        logits = self.lm_head(self.ln_f(x[:, -1, :]))  # only the last position is needed
        if self.head_output == "last_logits":
            return logits
        if self.head_output == "ids":
            return logits.argmax(dim=-1)
        top = torch.topk(logits, self.top_k, dim=-1)
        return top.values, top.indices


def gpt2_block_names(cfg: GPT2Config = CONFIG) -> tuple[str, ...]:
    return ("embed", *(f"h.{i}" for i in range(cfg.n_layer)), "head")


def gpt2_block_key_map(index: int, cfg: GPT2Config = CONFIG) -> dict[str, str]:
    """Local key prefix -> key prefix in the monolithic (HF) state_dict, for block ``index``."""
    if index == 0:
        return {"": "transformer."}
    if index == cfg.n_layer + 1:
        return {"ln_f.": "transformer.ln_f.", "lm_head.": "lm_head."}
    return {"": f"transformer.h.{index - 1}."}


# The LM head is tied to the token embedding: it gets the embedding's numbers when seeded, and falls
# back to the embedding's key when a checkpoint stores only that one (as HF checkpoints do).
GPT2_TIED = {"lm_head.weight": "transformer.wte.weight"}


def make_gpt2_block(index: int, head_output: str = "topk", top_k: int = 5, cfg: GPT2Config = CONFIG) -> nn.Module:
    if index == 0:
        return Embedding(cfg)
    if index == cfg.n_layer + 1:
        return Head(cfg, head_output, top_k)
    return TransformerBlock(cfg)


class _Transformer(nn.Module):
    def __init__(self, cfg: GPT2Config) -> None:
        super().__init__()
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.n_positions, cfg.n_embd)
        self.h = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)


class GPT2LMHead(nn.Module):
    """Monolithic GPT-2 with the LM head tied to ``wte``; ``forward(ids)`` returns all logits."""

    def __init__(self, cfg: GPT2Config = CONFIG) -> None:
        super().__init__()
        self.transformer = _Transformer(cfg)
        self.lm_head = LMHeadLinear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.tie_weights()

    def tie_weights(self) -> None:
        """Share the token embedding with the LM head (as HF GPT-2 does)."""
        self.lm_head.weight = self.transformer.wte.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        tr = self.transformer
        positions = torch.arange(ids.size(1), device=ids.device)
        x = tr.wte(ids) + tr.wpe(positions)
        for block in tr.h:
            x = block(x)
        return self.lm_head(tr.ln_f(x))


def gpt2_example_input(batch: int, seed: int, cfg: GPT2Config = CONFIG) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, cfg.vocab_size, (batch, cfg.seq_len), generator=gen, dtype=torch.int64)
