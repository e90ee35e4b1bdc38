"""The remote shell commands that start, watch and stop one agent (and its captures) on a lab host.

``runtime: python``: the agent is ``<python> -m pamdi_node ...`` detached with setsid/nohup, its
pid in ``agent.pid`` (the process group leader: stopping it stops its children), stdout+stderr in
``agent.log`` (the ready line ``pamdi-agent ready ...`` lands there). ``runtime: docker``: the node
image under Docker with the host's network (so it binds the host's data-plane address), the run
folder mounted at the same path, the container's name in ``agent.cid``; ``docker logs`` feed
``agent.log``. Either way the agent exits by itself after ``--idle-exit`` seconds without the
orchestrator (a killed orchestrator leaves nothing running for long), and the next run on the host
first stops whatever an earlier run left (``stale_cleanup``), only processes that are pamdi's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from orchestrator.lab.inventory import Host
from orchestrator.sshlink import q

CONTAINER_PREFIX = "pamdi-lab-"


def container_name(run_id: str, node: str) -> str:
    return f"{CONTAINER_PREFIX}{run_id}-{node}"[:120]


def agent_env(host: Host, threads: int) -> dict[str, str]:
    # Passive OpenMP waits: spinning threads burn the CPU the device's other work needs.
    return {"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE",
            **host.env}


def start_command(host: Host, workdir: str, args: Sequence[str], env: Mapping[str, str], run_id: str,
                  node: str) -> str:
    """Start the agent detached; ``args`` are ``pamdi node``'s options (``--listen ...``)."""
    w = q(workdir)
    # A restarted agent (a spec failure's recovery) starts a fresh log; the earlier one is kept.
    fresh = "{ [ -s agent.log ] && cat agent.log >> agent.previous.log; : > agent.log; }"
    if host.runtime == "docker":
        name = container_name(run_id, node)
        envs = " ".join(f"-e {q(f'{k}={v}')}" for k, v in env.items())
        run = (f"docker run -d --name {q(name)} --network host -v {w}:{w} -w {w} {envs} "
               f"--entrypoint python3 {q(host.image)} -m pamdi_node " + " ".join(q(a) for a in args))
        return (f"cd {w} && {fresh} && docker rm -f {q(name)} >/dev/null 2>&1; {run} > agent.cid && "
                f"(setsid nohup docker logs -f {q(name)} >> agent.log 2>&1 < /dev/null &) ")
    envs = " ".join(f"{k}={q(v)}" for k, v in env.items())
    argv = " ".join(q(a) for a in (host.python, "-m", "pamdi_node", *args))
    return (f"cd {w} && {fresh} && "
            f"(env {envs} setsid nohup {argv} >> agent.log 2>&1 < /dev/null & echo $! > agent.pid)")


def ready_probe(host: Host, workdir: str) -> str:
    """Prints the ready line once there, and ALIVE or DEAD."""
    w = q(workdir)
    if host.runtime == "docker":
        alive = "[ \"$(docker inspect -f '{{.State.Running}}' $(cat agent.cid) 2>/dev/null)\" = true ]"
    else:
        alive = "kill -0 $(cat agent.pid) 2>/dev/null"
    return f"cd {w} && grep -m1 'pamdi-agent ready' agent.log; {alive} && echo ALIVE || echo DEAD"


def capture_command(workdir: str, ifname: str, role: str, port: int, tcpdump: str = "tcpdump") -> str:
    """tcpdump of the agent port on ``ifname`` (``role``: data or mgmt) into ``pcap/``, headers only."""
    w = q(workdir)
    return (f"cd {w} && (setsid nohup {tcpdump} -i {q(ifname)} -U -s 128 -w pcap/{role}-{q(ifname)}.pcap "
            f"tcp port {port} > pcap/tcpdump-{role}.log 2>&1 < /dev/null & echo $! > tcpdump-{role}.pid); "
            f"sleep 0.5; kill -0 $(cat tcpdump-{role}.pid) 2>/dev/null")


def stop_command(host: Host, workdir: str, signal: str = "TERM") -> str:
    """Stop the agent (SIGTERM: it flushes its traces; SIGKILL after 5 s) and the captures."""
    w = q(workdir)
    # A killed process counts as gone once it is a zombie (its reaper, the host's init, may be slow),
    # and a pid file is removed only while it still names the pid stopped here: a restart may already
    # have written the next agent's.
    gone = "{ ! kill -0 $p 2>/dev/null || [ \"$(sed -n 's/.*) \\(.\\).*/\\1/p' /proc/$p/stat 2>/dev/null)\" = Z ]; }"
    pids = ("for f in agent.pid tcpdump-data.pid tcpdump-mgmt.pid; do [ -f $f ] || continue; p=$(cat $f); "
            f"kill -{signal} -- -$p 2>/dev/null || kill -{signal} $p 2>/dev/null; "
            f"for i in $(seq 1 50); do {gone} && break; sleep 0.1; done; "
            "kill -KILL -- -$p 2>/dev/null; kill -KILL $p 2>/dev/null; "
            "[ \"$(cat $f 2>/dev/null)\" = \"$p\" ] && rm -f $f; done")
    docker = ""
    if host.runtime == "docker":
        stop = "docker kill" if signal == "KILL" else "docker stop -t 5"
        docker = "[ -f agent.cid ] && { " + stop + " $(cat agent.cid) >/dev/null 2>&1; " \
                 "docker rm -f $(cat agent.cid) >/dev/null 2>&1; rm -f agent.cid; }; "
    return f"cd {w} 2>/dev/null || exit 0; {docker}{pids}; true"


def stale_cleanup(host: Host, base: str) -> str:
    """Stop agents and captures earlier runs left under ``base`` (a killed orchestrator), with
    their keys; a pid is killed only while it still runs pamdi or tcpdump."""
    b = q(base)
    cmd = (f"for f in {b}/*/agent.pid {b}/*/tcpdump-*.pid; do [ -f \"$f\" ] || continue; p=$(cat \"$f\"); "
           "if grep -qa -e pamdi -e tcpdump /proc/$p/cmdline 2>/dev/null; then "
           "kill -KILL -- -$p 2>/dev/null; kill -KILL $p 2>/dev/null; fi; rm -f \"$f\"; done; ")
    if host.runtime == "docker":
        cmd += (f"for f in {b}/*/agent.cid; do [ -f \"$f\" ] || continue; docker rm -f $(cat \"$f\") "
                ">/dev/null 2>&1; rm -f \"$f\"; done; ")
    return cmd + f"rm -rf {b}/*/keys; true"


def interface_counters(ifnames: Sequence[str]) -> str:
    """``IF rx tx`` per interface, from /sys/class/net."""
    return "; ".join(f"echo {q(i)} $(cat /sys/class/net/{q(i)}/statistics/rx_bytes "
                     f"/sys/class/net/{q(i)}/statistics/tx_bytes 2>/dev/null)" for i in ifnames)
