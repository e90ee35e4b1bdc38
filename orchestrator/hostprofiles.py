"""Which profiles a run models its devices with, and this host's own, measured on first use and cached.

Profiles are facts about one host at one time (ResNet-50 at one thread: 83 ms when the shipped
profiles were made, 91-96 ms on one fresh machine of the same kind, 115-155 ms on another). Node
speeds are relative to a reference profile, so which profile that is decides what a device *is*:

- ``profile`` device time holds every block range to its modelled time, so the modelled time can
  be the reference's (the spec's folder, else the shipped one): a Xavier NX then takes 166 ms per
  ResNet-50 on every host, the spec's loads mean what its comments say, and ``pamdi simulate``
  predicts the emulation of the same spec on any host. This host's speed against the reference is
  measured before each run (``host_ratio``) and only sizes the time stretch.
- ``quota`` device time cannot hold: compute takes what this host's CPU under a quota takes, so the
  run and its prediction use this host's own profile (measured once and cached) and a calibration.

The cache is keyed by CPU model and
core count, torch version, threads and batch (the file name carries batch and threads):
``$PAMDI_CACHE_DIR/profiles/<host-tag>-torch<version>/<model>_b<B>_t<T>.json``
(default ``~/.cache/pamdi``). The shipped profiles stay as data for ``pamdi simulate``.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from orchestrator.spec import ExperimentSpec
from pamdi_node.models.profile import ModelProfile, host_tag, load_profile_from, profile_filename

log = logging.getLogger(__name__)

# Fewer repeats than `pamdi profile` (20): a first emulation should not wait long, and the profile
# device time only needs the host to be faster than the modelled device, not a precise median.
CACHE_WARMUP = 2
CACHE_REPEATS = 10


def cache_root() -> Path:
    return Path(os.environ.get("PAMDI_CACHE_DIR", Path.home() / ".cache" / "pamdi"))


def host_key() -> str:
    import torch

    version = re.sub(r"[^A-Za-z0-9.]+", "-", torch.__version__)
    return f"{host_tag()}-torch{version}"


def host_profile_dir() -> Path:
    return cache_root() / "profiles" / host_key()


@dataclass(frozen=True)
class ProfileChoice:
    """Which profiles a run used (for the manifest and the summary)."""

    kind: str  # "spec" (the spec's folder), "host" (this host's cache), "shipped"
    folder: str
    measured: tuple[str, ...] = ()  # models measured now (first use on this host)

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "folder": self.folder, "measured_now": list(self.measured)}


def host_profile(model: str, batch: int = 1, threads: int = 1, folder: Path | None = None
                 ) -> tuple[ModelProfile, bool]:
    """This host's profile of ``model`` (measured and cached on first use); (profile, measured now)."""
    folder = folder or host_profile_dir()
    try:
        return load_profile_from(folder, model, batch, threads), False
    except (FileNotFoundError, ValueError):
        pass
    from pamdi_node.models.profiling import profile_model

    log.info("profiling %s (batch %d, %d thread) on this host, once: cached in %s", model, batch, threads, folder)
    prof = profile_model(model, batch, threads, warmup=CACHE_WARMUP, repeats=CACHE_REPEATS)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (profile_filename(model, batch, threads) + f".tmp{os.getpid()}")
    prof.save(tmp)
    tmp.replace(folder / profile_filename(model, batch, threads))  # atomic: parallel runs never read half a file
    return prof, True


def run_profiles(spec: ExperimentSpec, device_time: str, base_dir: str | Path | None = None
                 ) -> tuple[dict[str, ModelProfile], ProfileChoice]:
    """The profiles (by source name) an emulation of ``spec`` under ``device_time`` models and
    predicts with: the spec's folder when it names one, this host's own under ``quota``, else the
    shipped reference (``profile``, ``native``)."""
    from orchestrator.workload import load_profiles

    if spec.profiles:
        folder = Path(spec.profiles)
        if not folder.is_absolute() and base_dir is not None:
            folder = Path(base_dir) / folder
        return load_profiles(spec, base_dir=base_dir), ProfileChoice("spec", str(folder))
    if device_time != "quota":
        from pamdi_node.models.profile import DEFAULT_HOST, SHIPPED_DIR

        return load_profiles(spec), ProfileChoice("shipped", str(SHIPPED_DIR / DEFAULT_HOST))
    folder = host_profile_dir()
    by_model: dict[tuple[str, int], ModelProfile] = {}
    measured: list[str] = []
    for src in spec.sources:
        key = (src.model, src.batch)
        if key not in by_model:
            by_model[key], now = host_profile(src.model, src.batch, 1, folder)
            if now:
                measured.append(f"{src.model}_b{src.batch}")
    profiles = {s.name: by_model[(s.model, s.batch)] for s in spec.sources}
    return profiles, ProfileChoice("host", str(folder), tuple(measured))



def host_ratio(profile: ModelProfile, passes: int = 9) -> float:
    """How much slower than ``profile`` this host runs the whole model right now, the way an agent
    does (``BlockStore.run``, one thread): the upper quartile of ``passes`` timed passes after a
    warm-up, over the profile's total. Timings here drift by tens of percent within minutes
    (ResNet-56: 6.4 ms profiled, 8.6 ms a while later), so the headroom is planned on a fresh
    reading; the slowest pass alone swung the stretch of one spec between 5 and 8."""
    import time

    import torch

    from pamdi_node.agent.executor import BlockStore
    from pamdi_node.models.zoo import example_input

    total = profile.total_time_s
    if total <= 0:
        return 1.0
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        store = BlockStore(0, "cpu")
        x = example_input(profile.model, profile.batch, 0)
        n = profile.num_blocks
        store.run(profile.model, 0, n, x)
        times = []
        for _ in range(passes):
            t0 = time.perf_counter()
            store.run(profile.model, 0, n, x)
            times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(previous)
    times.sort()
    return times[(3 * len(times)) // 4] / total
