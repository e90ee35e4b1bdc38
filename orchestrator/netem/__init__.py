"""Local network emulation on Linux network namespaces (root only).

- ``names``: run-unique names and the on-disk record of what a run created (for ``pamdi cleanup``).
- ``netns``: namespaces, veth pairs, addresses, the control links from the root namespace (pyroute2).
- ``nsexec``: a tiny launcher that enters a namespace (and a cgroup) and execs a command.
- ``tc``: tbf rate shaping on both directions of a link, netem when the kernel has it, tc statistics.
- ``forwarder``: the user-space delay/loss forwarder for kernels without netem.
- ``cgroups``: CPU quota per node (cgroup v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``).
- ``network``: ties the above into an emulated network of nodes and links (used by the netns backend
  and by ``pamdi net check``).
- ``cleanup``: removes what a killed run left behind.
"""
