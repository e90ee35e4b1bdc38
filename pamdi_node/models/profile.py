"""Per-block model profiles: the contract between the profiler, the allocator, the simulator and the agent.

A profile describes one model at one batch size on one device: for every block (in order) its
FLOPs, parameter bytes, output activation shape/bytes and, when measured, its median forward time.
Profiles are plain JSON so that they can be shipped, diffed and edited by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class BlockProfile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int = Field(ge=0)
    name: str
    flops: int = Field(ge=0, description="floating-point operations of one forward pass (a MAC counts 2)")
    param_bytes: int = Field(ge=0)
    out_shape: tuple[int, ...]
    out_bytes: int = Field(ge=0)
    time_s: float | None = Field(default=None, ge=0, description="median measured forward time")


class ModelProfile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    batch: int = Field(ge=1)
    dtype: str = "float32"
    device: str = "cpu"
    threads: int | None = None
    input_shape: tuple[int, ...]
    input_bytes: int = Field(ge=0)
    result_bytes: int = Field(ge=0, description="bytes sent back to the source after the last block")
    blocks: tuple[BlockProfile, ...]
    host: dict[str, str | int | float] = Field(default_factory=dict)
    measured_at: str | None = None

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def total_time_s(self) -> float:
        """Sum of measured block times; raises if the profile has no timings."""
        if any(b.time_s is None for b in self.blocks):
            raise ValueError(f"profile of {self.model} has no timings (run `pamdi profile`)")
        return float(sum(b.time_s for b in self.blocks))  # type: ignore[misc]

    @property
    def total_flops(self) -> int:
        return sum(b.flops for b in self.blocks)

    def range_time_s(self, start: int, end: int) -> float:
        """Measured time of blocks [start, end) on the profiled device."""
        return float(sum(b.time_s or 0.0 for b in self.blocks[start:end]))

    def bytes_before(self, block: int) -> int:
        """Bytes of the activation that enters ``block`` (the model input for block 0)."""
        return self.input_bytes if block == 0 else self.blocks[block - 1].out_bytes

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.model_dump_json(indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ModelProfile:
        return cls.model_validate(json.loads(Path(path).read_text()))


# ------------------------------------------------------------------------------ shipped profiles
# Measured profiles ship as package data: ``pamdi_node/models/profiles/<host-tag>/<model>_b<B>_t<T>.json``
# (``<host-tag>`` names the CPU and its core count, e.g. ``amd-epyc-2c``). ``DEFAULT_HOST`` is the host the
# repository's profiles were measured on; the simulator and allocator scale them by each node's speed.

SHIPPED_DIR = Path(__file__).resolve().parent / "profiles"
DEFAULT_HOST = "amd-epyc-2c"


class ProfileNotFoundError(FileNotFoundError):
    """No profile file for the requested model / batch / threads (the message lists what exists)."""


def profile_filename(model: str, batch: int = 1, threads: int | None = 1, device: str = "cpu") -> str:
    """``<model>_b<batch>_t<threads>.json`` for the CPU; ``<model>_b<batch>_cuda.json`` for a GPU
    (its CPU thread count does not set its speed)."""
    if device.startswith("cuda"):
        return f"{model}_b{batch}_cuda.json"
    return f"{model}_b{batch}_t{threads if threads is not None else 'x'}.json"


def cpu_model_name() -> str:
    """The CPU model string of this machine (``/proc/cpuinfo``, falling back to ``platform``)."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown-cpu"


def host_tag(cpu: str | None = None, cores: int | None = None) -> str:
    """A file-system-safe name for this host's CPU: lower-case model words + logical core count."""
    import os
    import re

    cpu = cpu if cpu is not None else cpu_model_name()
    cores = cores if cores is not None else (os.cpu_count() or 1)
    words = re.sub(r"\(r\)|\(tm\)|cpu|processor|@.*$|\d+-core", " ", cpu.lower())
    slug = re.sub(r"[^a-z0-9]+", "-", words).strip("-") or "cpu"
    return f"{slug}-{cores}c"


def shipped_hosts() -> list[str]:
    return sorted(p.name for p in SHIPPED_DIR.iterdir() if p.is_dir()) if SHIPPED_DIR.is_dir() else []


def load_profile_from(folder: str | Path, model: str, batch: int = 1, threads: int | None = 1,
                      device: str = "cpu") -> ModelProfile:
    """Load ``model``'s profile (``profile_filename``) from ``folder`` (a profile set, e.g. a spec's ``profiles``)."""
    folder = Path(folder)
    path = folder / profile_filename(model, batch, threads, device)
    if not path.is_file():
        existing = sorted(p.name for p in folder.glob("*.json")) if folder.is_dir() else []
        how = ("on the GPU machine: `pamdi profile MODEL --device cuda --out FOLDER/`" if device.startswith("cuda")
               else "`pamdi profile MODEL --batch B --threads T --out FILE`")
        raise ProfileNotFoundError(
            f"no profile {path.name} in {folder}; available: {', '.join(existing) or 'none'} (measure one with {how})"
        )
    profile = ModelProfile.load(path)
    if profile.model != model or profile.batch != batch:
        raise ValueError(f"{path}: holds model={profile.model!r} batch={profile.batch}, expected {model!r}/{batch}")
    if device.startswith("cuda") != (profile.device == "cuda"):
        raise ValueError(f"{path}: measured on {profile.device!r}, expected {device!r}")
    return profile


def load_shipped_profile(model: str, batch: int = 1, threads: int = 1, host: str | None = None) -> ModelProfile:
    """A measured profile shipped with pamdi (``host`` defaults to this machine's tag if shipped, else
    :data:`DEFAULT_HOST`)."""
    hosts = shipped_hosts()
    if host is None:
        host = host_tag() if host_tag() in hosts else DEFAULT_HOST
    if host not in hosts:
        shown = ", ".join(hosts) or "none"
        raise ProfileNotFoundError(f"no shipped profiles for host {host!r}; shipped hosts: {shown}")
    return load_profile_from(SHIPPED_DIR / host, model, batch, threads)
