"""pamdi_node: everything that runs on a device.

The ZeroMQ layer-execution agent, the wire protocol, the model zoo and its partitioning,
the per-task decision policies (PA-MDI and baselines) and telemetry. This package never
imports ``orchestrator``: the node image must not need it.
"""

__version__ = "0.1.0"
