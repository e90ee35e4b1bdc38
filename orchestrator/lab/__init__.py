"""A lab of the user's own machines over SSH: the inventory (``inventory``), connections
(``session``, over the shared ``orchestrator.sshlink``), host facts (``facts``), the agents' remote
commands (``agents``), tc shaping (``shaping``), and the ``pamdi lab`` tasks: ``check``, ``deploy``,
``profiles``. The ``ssh`` backend (``orchestrator/backends/ssh.py``) runs experiments there."""
