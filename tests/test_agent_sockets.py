"""The agents' peer connections survive a reconfiguration: a neighbour's new DEALER is heard at once.

Every configuration (one per policy run) closes an agent's DEALERs and opens new ones. libzmq's
ROUTER parks a new connection that offers a routing id still held by a connection it has not yet
seen close, and never reads it (no ROUTER_HANDOVER, on purpose). With the node name as the routing
id, a neighbour thus heard nothing from that node for a whole policy run: seen in the fidelity
bench as "agent a has not heard all its neighbours yet" and 178 ms NTS means against 14 simulated.
"""

from __future__ import annotations

import contextlib
import time

import zmq

from pamdi_node import wire
from pamdi_node.agent.sockets import control_router, peer_routing_id, peer_socket, routing_name


def test_routing_ids_are_fresh_per_socket_and_name_their_node() -> None:
    ids = {peer_routing_id("b") for _ in range(50)}
    assert len(ids) == 50
    assert {routing_name(i) for i in ids} == {"b"}
    assert routing_name(b"b") is None and routing_name(b"b#xyz") is None and routing_name(b"#0123abcd") is None
    assert routing_name(b"b#c#0123abcd") == "b#c"  # the token is the last 8 characters after '#'


def test_a_reconnected_peer_is_heard_while_the_router_was_busy() -> None:
    """The agent's own sockets: a peer closes its DEALER and opens a new one at once, while the
    ROUTER's thread is busy (not polling, as an agent configuring or computing); the new one's
    messages must arrive. With a fixed routing id most of these were lost for good."""
    ctx = zmq.Context()
    router, _ = control_router(ctx, "tcp://127.0.0.1:*", None, None)
    url = router.getsockopt(zmq.LAST_ENDPOINT).decode()
    lost = 0
    try:
        dealer = peer_socket(ctx, "b", "a", url)
        for trial in range(10):
            dealer.send_multipart(wire.encode(wire.BEACON, "b", {"speed": 1.0, "queue_s": 0.0, "seq": trial}))
            if not router.poll(3000):  # this trial's connection never got through either
                lost += 1
                dealer.close(0)
                dealer = peer_socket(ctx, "b", "a", url)
                continue
            router.recv_multipart()
            time.sleep(0.05)
            dealer.close(0)  # reconfigured: the old DEALER goes...
            dealer = peer_socket(ctx, "b", "a", url)  # ...a new one comes at once...
            time.sleep(0.3)  # ...while the router's owner is busy elsewhere
            deadline = time.time() + 2.0
            heard = False
            while time.time() < deadline and not heard:
                with contextlib.suppress(zmq.Again):  # IMMEDIATE: not connected yet
                    dealer.send_multipart(wire.encode(wire.BEACON, "b", {"speed": 1.0, "queue_s": 0.0, "seq": 99}),
                                          flags=zmq.NOBLOCK)
                if router.poll(50):
                    parts = router.recv_multipart()
                    assert routing_name(parts[0]) == "b"
                    heard = True
            lost += not heard
            while router.poll(100):  # what else arrived belongs to this trial
                router.recv_multipart()
    finally:
        ctx.destroy(linger=0)  # every socket, whatever failed
    assert lost == 0, f"{lost} of 10 reconnected peers never heard"
