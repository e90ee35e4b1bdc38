"""MS-MDI baseline: multi-source greedy minimum-delay offloading without priorities.

Reconstructed (the MS-MDI paper's algorithm is not available; see ``reference/pa-mdi-paper.md``):
the same per-boundary greedy index as PA-MDI with every weight equal (γ = α = 1), the whole queue
of a candidate counted as delay, FIFO queues and no request/clear contention control (a worker
offloads on the strength of its neighbours' last beacons). Parameters: ``horizon`` as in PA-MDI
(default the same look-ahead, so that the two differ only in what priorities change).
"""

from __future__ import annotations

from pamdi_node.policies.pa_mdi import PAMDIPolicy


class MSMDIPolicy(PAMDIPolicy):
    name = "ms-mdi"

    def __init__(self, *, horizon: str = "dp") -> None:
        super().__init__(
            horizon=horizon,
            priority_aware_queue=False,
            priority_queue=False,
            handshake=False,
            recheck=False,
            aging=0.0,
            use_success=False,
            use_priorities=False,
        )
