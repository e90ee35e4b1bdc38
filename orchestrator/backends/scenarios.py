"""Time-varying links for every backend that shapes them: the spec's radio scenarios, checked before
anything is built, and one driver thread that follows them by re-shaping links in place."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from orchestrator.spec import ExperimentSpec, LinkParams

log = logging.getLogger(__name__)


def link_scenarios(spec: ExperimentSpec) -> dict[tuple[str, str], Any]:
    """The scenario of each link that names one; a ValueError names the first link whose scenario
    cannot be shaped here (a Colosseum-only entry)."""
    import radio_scenarios

    scenarios: dict[tuple[str, str], Any] = {}
    for link in spec.resolved_links():
        if link.scenario is None:
            continue
        sc = radio_scenarios.get(link.scenario)
        if not sc.shapeable:
            raise ValueError(f"link {link.a}-{link.b}: scenario {link.scenario!r} has no local link "
                             "profile (import a measured one with `pamdi scenarios import-iperf3`)")
        scenarios[link.key] = sc
    return scenarios


def drive_scenarios(scenarios: Mapping[tuple[str, str], Any], set_link: Callable[[str, str, LinkParams], None],
                    stop: threading.Event, tick_s: float, time_scale: float = 1.0,
                    applied: Mapping[tuple[str, str], LinkParams] | None = None) -> None:
    """Until ``stop``: every ``tick_s``, each link whose scenario point changed is re-shaped with
    ``set_link`` (in place, no rebuild). A run stretched ``time_scale`` times stretches its scenarios
    too (rates / k, delays x k, the scenario's clock / k). ``applied``: points already in effect (set
    when the link was built); the others are applied at the first tick."""
    k = time_scale
    current: dict[tuple[str, str], tuple[float, float, float] | None] = {key: None for key in scenarios}
    for key, p in (applied or {}).items():
        current[key] = (p.rate_mbit, p.delay_ms, p.loss)
    t0 = time.monotonic()
    while not stop.wait(tick_s):
        t = (time.monotonic() - t0) / k
        for key, sc in scenarios.items():
            p = sc.at(t)
            point = (p.rate_mbit, p.delay_ms, p.loss)
            if point == current[key]:
                continue
            try:
                set_link(key[0], key[1], LinkParams(rate_mbit=p.rate_mbit / k, delay_ms=p.delay_ms * k, loss=p.loss))
                current[key] = point
            except Exception as err:
                log.warning("scenario %s on link %s-%s: %s", sc.name, key[0], key[1], err)
