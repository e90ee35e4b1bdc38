"""``python -m orchestrator.cli ARGS``: the ``pamdi`` command without its console script."""

from orchestrator.cli import main

main()
