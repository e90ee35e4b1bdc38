"""Measured per-block forward times (``pamdi profile``).

Every block is timed on the activation it really receives (one warm-up pass of the whole chain first
records those), in ``torch.inference_mode`` with ``torch.set_num_threads(threads)``; the repeats are
interleaved block by block so that background load spreads evenly over the blocks, and each block's
time is the MEDIAN of its repeats. The host description (CPU model, cores, torch version, load average
when the run started) is stored in the profile, because timings are only meaningful with it.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time
from datetime import datetime, timezone

import torch

from pamdi_node.models.device import check_device
from pamdi_node.models.profile import ModelProfile, cpu_model_name, host_tag
from pamdi_node.models.zoo import build_blocks, example_input, get_spec, model_profile


def host_description(device: str = "cpu", threads: int | None = None) -> dict[str, str | int | float]:
    """What the timings were measured on (no host name: profiles are shipped and shared)."""
    desc: dict[str, str | int | float] = {
        "tag": host_tag(),
        "cpu": cpu_model_name(),
        "logical_cores": os.cpu_count() or 1,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
    }
    if threads is not None:
        desc["threads"] = threads
    with contextlib.suppress(OSError):  # no load average off Linux
        desc["loadavg_1m_at_start"] = round(os.getloadavg()[0], 2)
    if device.startswith("cuda"):
        desc["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return desc


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def profile_model(
    name: str,
    batch: int = 1,
    threads: int = 1,
    device: str = "cpu",
    *,
    warmup: int = 3,
    repeats: int = 20,
    seed: int = 0,
    head_output: str | None = None,
    top_k: int | None = None,
) -> ModelProfile:
    """Measure ``name``'s per-block median forward time at ``batch`` with ``threads`` CPU threads."""
    spec = get_spec(name)
    if threads < 1 or warmup < 0 or repeats < 1:
        raise ValueError(f"need threads >= 1, warmup >= 0, repeats >= 1 (got {threads}, {warmup}, {repeats})")
    dev = check_device(device)
    if dev.type == "meta":
        raise ValueError(f"device must be cpu or cuda, got {device!r}")
    base = model_profile(name, batch, head_output=head_output, top_k=top_k)
    chain = build_blocks(name, 0, spec.num_blocks, seed=seed, device=dev, head_output=head_output, top_k=top_k)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        host = host_description(device, threads)
        with torch.inference_mode():
            inputs = []
            h = example_input(name, batch, seed).to(dev)
            for block in chain.blocks:
                inputs.append(h)
                h = block(h)
            for _ in range(warmup):
                for block, x in zip(chain.blocks, inputs, strict=True):
                    block(x)
            _sync(dev)
            samples: list[list[float]] = [[] for _ in chain.blocks]
            for _ in range(repeats):
                for i, (block, x) in enumerate(zip(chain.blocks, inputs, strict=True)):
                    t0 = time.perf_counter()
                    block(x)
                    _sync(dev)
                    samples[i].append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(previous_threads)
    blocks = tuple(
        b.model_copy(update={"time_s": statistics.median(s)}) for b, s in zip(base.blocks, samples, strict=True)
    )
    host["warmup"] = warmup
    host["repeats"] = repeats
    return base.model_copy(
        update={
            "blocks": blocks,
            "device": dev.type,
            "threads": threads,
            "host": host,
            "measured_at": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        }
    )
