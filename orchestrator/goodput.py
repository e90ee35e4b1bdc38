"""Links as the policies see them: goodput, the spec's link-layer rate times ``LINK_GOODPUT_FACTOR``
(TCP goodput of a shaped link, measured with htb/tbf). The one place that applies the factor for
views, agent configurations and the allocator; policies never apply it themselves."""

from __future__ import annotations

from orchestrator.spec import ExperimentSpec
from pamdi_node.policies.types import LINK_GOODPUT_FACTOR


def goodput_bps(rate_mbit: float) -> float:
    """The goodput of a link shaped at ``rate_mbit`` (what views and agent configurations carry)."""
    return rate_mbit * 1e6 * LINK_GOODPUT_FACTOR


def goodput_links(spec: ExperimentSpec) -> dict[tuple[str, str], tuple[float, float]]:
    """Every directed link of the spec: (goodput bps, one-way delay s)."""
    links: dict[tuple[str, str], tuple[float, float]] = {}
    for lk in spec.resolved_links():
        gp = goodput_bps(lk.rate_mbit)
        links[(lk.a, lk.b)] = (gp, lk.delay_ms / 1000.0)
        links[(lk.b, lk.a)] = (gp, lk.delay_ms / 1000.0)
    return links
