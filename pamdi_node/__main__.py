"""``python -m pamdi_node``: the node agent CLI without the orchestrator (same options as ``pamdi node``)."""

from pamdi_node.cli import main

if __name__ == "__main__":
    main()
