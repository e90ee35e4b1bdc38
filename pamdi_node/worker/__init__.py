"""The one worker model: pure code that the agent (sockets, threads, wall clock) and the simulator
(events, virtual clock) both drive, the way SimPy runs one process model under two clocks and exo
applies state changes in one function shared by master and worker.

- ``queue``: a worker's queue ledger (service order, the committed seconds by weight, the residual
  of the partition in service), the ``QueueDetail`` its beacons and self view carry, and the
  reservations of granted work still on its way.
- ``decide``: one decision at a partition boundary (the policy's ranking filtered to usable
  candidates, the handshake rule, the holder's fallback) and the next step it leads to.
- ``grant``: the receiver's RTC window and the grant choice.

Nothing here touches a socket, a clock or torch: every time is passed in.
"""

from pamdi_node.worker.decide import PlacementError, Plan, Step, make_plan, next_step
from pamdi_node.worker.grant import GrantWindow, choose_grant, offload_request
from pamdi_node.worker.queue import QueueDetail, QueueLedger, Reservation, reservation_expiry, with_reservations

__all__ = ["GrantWindow", "PlacementError", "Plan", "QueueDetail", "QueueLedger", "Reservation", "Step",
           "choose_grant", "make_plan", "next_step", "offload_request", "reservation_expiry", "with_reservations"]
