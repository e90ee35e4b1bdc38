"""``pamdi node``: run an agent, or ping one. Also ``python -m pamdi_node`` (no orchestrator needed).

Starting an agent (what every backend runs on each device)::

    pamdi node --listen tcp://ADDR:PORT [--name N] [--device cpu|cuda] [--threads T]
               [--keys DIR] [--trace-dir DIR] [--insecure] [--log-level info]

The agent binds one ZeroMQ ROUTER socket at ``--listen`` and waits for the orchestrator's ``config``
message (peers with their addresses, sources with models and priorities, the blocks it may run,
policy and parameters, beacon period, seed); it then builds only the blocks it needs and runs until a
``stop`` message, SIGINT or SIGTERM (all stop cleanly and flush the traces).

``--keys DIR`` turns CurveZMQ on (encryption + authentication): DIR holds ``public/<node>.key`` for
every node of the run plus ``orchestrator``, and ``private/<name>.key_secret`` for this agent (the
layout ``orchestrator/keys.py`` writes per run). Only clients with a key in ``DIR/public`` get through.
Curve is required when ``--listen`` is not a loopback address unless ``--insecure`` is given.

``pamdi node ping ADDR`` exits 0 when an agent answers at ADDR (a ZeroMQ URL such as
tcp://127.0.0.2:5555), 1 otherwise; with ``--keys`` it talks Curve as ``--as`` to the agent ``--server``.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import signal
import sys
from typing import Optional

import typer

NODE_HELP = (
    "Run a pamdi node agent, or ping one (pamdi node ping URL).\n\n"
    "pamdi node --listen tcp://ADDR:PORT [--name N] [--device cpu|cuda] [--threads T] [--keys DIR] "
    "[--trace-dir DIR] binds one ZeroMQ socket (PORT may be * for any free port) and prints "
    "'pamdi-agent ready name=N listen=URL' once bound. It then waits for the orchestrator's config "
    "(peers, sources, policy, blocks, seed), builds only the blocks it needs, and runs until a stop "
    "message, SIGINT or SIGTERM (traces are flushed).\n\n"
    "--keys DIR turns CurveZMQ on: DIR/public/<node>.key for every node and 'orchestrator', "
    "DIR/private/<name>.key_secret for this agent (orchestrator/keys.py writes this per run). "
    "Curve is required on non-loopback addresses unless --insecure is given."
)

node_app = typer.Typer(
    name="node",
    help=NODE_HELP,
    invoke_without_command=True,
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def is_loopback(url: str) -> bool:
    """True for ipc/inproc URLs and tcp URLs whose host is a loopback address (or localhost)."""
    if url.startswith(("ipc://", "inproc://")):
        return True
    if not url.startswith("tcp://"):
        return False
    host = url[len("tcp://"):].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # '*', interface names, host names: not provably loopback


@node_app.callback()
def node(
    ctx: typer.Context,
    listen: Optional[str] = typer.Option(None, "--listen", help="ZeroMQ URL to bind, e.g. tcp://127.0.0.2:5555 or tcp://*:5555."),  # noqa: UP045
    name: Optional[str] = typer.Option(None, "--name", help="This node's name (as in the spec); required with --keys."),  # noqa: UP045
    device: str = typer.Option("cpu", "--device", help="Torch device for the blocks: cpu or cuda[:N]."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch intra-op threads (default: torch's)."),  # noqa: UP045
    keys: Optional[str] = typer.Option(None, "--keys", help="Key folder of the run: turns CurveZMQ on."),  # noqa: UP045
    trace_dir: Optional[str] = typer.Option(None, "--trace-dir", help="Write <name>.spans.jsonl / <name>.tasks.jsonl here."),  # noqa: UP045, E501
    insecure: bool = typer.Option(False, "--insecure", help="Allow plaintext on a non-loopback address."),
    log_level: str = typer.Option("warning", "--log-level", help="debug, info, warning or error."),
    parent_pid: Optional[int] = typer.Option(None, "--parent-pid", min=1, help="Exit when this process is no longer the agent's parent (launchers pass their own pid so agents die with them)."),  # noqa: UP045, E501
    idle_exit: Optional[float] = typer.Option(None, "--idle-exit", min=1, help="Exit after this many seconds without a message from the orchestrator (its runs send a heartbeat every few seconds)."),  # noqa: UP045, E501
) -> None:
    """Run a node agent on --listen until stopped (see `pamdi node --help`), or use a subcommand."""
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.WARNING),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if ctx.invoked_subcommand is not None:
        return
    if not listen:
        typer.echo("pamdi node: give --listen tcp://ADDR:PORT to run an agent (or a subcommand: ping)", err=True)
        raise typer.Exit(2)
    if not device.startswith(("cpu", "cuda")):
        typer.echo(f"--device: expected cpu or cuda[:N], got {device!r}", err=True)
        raise typer.Exit(2)
    if device.startswith("cuda"):
        from pamdi_node.models.device import check_device

        try:
            check_device(device)
        except ValueError as err:
            typer.echo(f"--device: {err}", err=True)
            raise typer.Exit(2) from None
    if keys is None and not insecure and not is_loopback(listen):
        typer.echo(f"--listen {listen} is not a loopback address: give --keys DIR (CurveZMQ) or --insecure", err=True)
        raise typer.Exit(2)
    from pamdi_node.agent.security import KeyError_
    from pamdi_node.agent.server import Agent

    try:
        agent = Agent(listen, name=name, device=device, threads=threads, keys=keys, trace_dir=trace_dir,
                      parent_pid=parent_pid, idle_exit_s=idle_exit)
    except (KeyError_, ValueError) as err:
        typer.echo(f"pamdi node: {err}", err=True)
        raise typer.Exit(2) from None
    except Exception as err:  # zmq bind errors: address in use, bad URL
        typer.echo(f"pamdi node: cannot listen on {listen}: {err}", err=True)
        raise typer.Exit(2) from None

    def _stop(signum: int, frame: object) -> None:
        del frame
        logging.getLogger(__name__).info("signal %d: stopping", signum)
        agent.request_stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    # One line on stdout so that launchers can wait for readiness.
    print(f"pamdi-agent ready name={name or '-'} listen={agent.endpoint}", flush=True)
    agent.serve_forever()


@node_app.command("ping")
def ping(
    address: str = typer.Argument(..., help="Agent URL, e.g. tcp://127.0.0.2:5555"),
    timeout: float = typer.Option(3.0, "--timeout", help="Seconds to wait for the answer."),
    keys: Optional[str] = typer.Option(None, "--keys", help="Run key folder (Curve)."),  # noqa: UP045
    server: Optional[str] = typer.Option(None, "--server", help="The agent's node name (with --keys)."),  # noqa: UP045
    as_name: str = typer.Option("orchestrator", "--as", help="Our key name in the key folder (with --keys)."),
    as_json: bool = typer.Option(False, "--json", help="Print the answer as JSON."),
) -> None:
    """Exit 0 if an agent answers at ADDRESS, 1 if not."""
    from pamdi_node.agent.client import AgentClient, AgentError

    try:
        with AgentClient(address, name=as_name, keys=keys, server=server, timeout_s=timeout) as c:
            info = c.ping()
    except (AgentError, ValueError, OSError) as err:
        typer.echo(f"no answer: {err}", err=True)
        raise typer.Exit(1) from None
    except Exception as err:  # bad URL, missing key file
        typer.echo(f"ping failed: {err}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        json.dump(info, sys.stdout)
        sys.stdout.write("\n")
    else:
        typer.echo(f"{info['node']} ({info['state']}) answered in {info['rtt_s'] * 1000:.2f} ms")


def main() -> None:
    node_app(prog_name="pamdi-node")
