"""The pamdi node agent: a ZeroMQ layer-execution runtime (see ``server.Agent``).

Modules by responsibility: ``server`` (sockets and the I/O loop, control plane), ``flow`` (task life:
decisions via the shared policies, RTC/CTC, custody, results), ``executor`` (the torch thread and the
block store), ``peers`` (beacons, liveness, WorldView), ``sources`` (seeded inputs at the spec's rate),
``config`` (the run configuration), ``security`` (CurveZMQ), ``client`` (a control client).
"""
