"""orchestrator: everything that runs on the experimenter's machine.

Experiment specs, the allocator and simulator, deployment backends (local, netns, docker,
colosseum), trace harvesting and the ``pamdi`` CLI. May import ``pamdi_node``; never the reverse.
"""
