"""The experiment leader of a Colosseum batch job: runs inside RF node 1's container.

A batch job has no SSH and no orchestrator machine (reservations/batch_mode_format.rst: no access
to the NAS, no SSH through the gateway), so RF node 1 leads the experiment itself. The image's
``/root/radio_api/pamdi_batch_node.py`` (started by ``start.sh``) runs this module next to the
node's agent::

    python3 -m orchestrator.colosseum.batch_lead /root/radio_api/radio.conf

1. It reads ``radio.conf`` (what ``pamdi colosseum batch`` uploaded as the node's ModemConfig:
   the whole spec, the data-plane interface/subnet, the agent port, ``keep_outputs``).
2. It finds every spec node's agent on the radio network: the radio stack assigns the addresses
   (srsRAN hands UEs ``172.16.0.x``), so nobody knows them beforehand. Every host address of the
   data-plane subnet (or, with only an interface configured, of this node's network on it) gets a
   ``ping`` at the agent port — the same ``ping``/``pong`` as ``pamdi node ping`` — and each agent's
   ``pong`` names its node. Rounds repeat until every node has answered or the discovery time
   (``PAMDI_DISCOVERY_TIMEOUT_S``, default 420 s: radios attach and agents load torch) runs out.
3. It drives the spec with the shared runner (``orchestrator.runner.Runner``, as ``pamdi emulate``
   and ``pamdi colosseum run`` do) over ``BatchBackend``: ``up`` returns the discovered agents
   (control and data on the radio address: the agents bind only there), ``down`` stops them.
   Agents run ``--insecure`` (no orchestrator hands out Curve keys in batch mode), so the runner
   runs without Curve. Spec ``failures`` need a backend that can kill agents on other SRNs, which
   batch mode cannot do: the runner warns and ignores them.
4. Results go to ``$PAMDI_LOGS_DIR/runs/<batch>/`` (``/logs`` by default; Colosseum copies each
   container's ``/logs`` to the team's NAS folder after the job, ``pamdi colosseum harvest --job``
   fetches it): the runner's ``summary.json``, ``clocks.json``, ``<policy>/{tasks,spans}.jsonl``,
   ``agents.json``, with ``keep_outputs`` every result tensor in ``<policy>/outputs.npz``, and
   ``batch.json`` (discovered addresses, timings, ``colosseum_config.ini``, exit status).

Progress and the outcome show in status.sh's INFO (state files shared with the Radio API
scripts, see ``node_image/radio_api/common.sh``); on failure the state is ERROR with the reason
and the exit code is non-zero: 2 bad radio.conf, 3 discovery or run failed, 4 a policy timed out
(results kept), 130 stopped by stop.sh (SIGTERM; what was measured is kept).

Only the node image's dependencies are imported (torch, pyzmq, msgpack, pydantic, pyyaml): no
asyncssh or other orchestrator extras, which the image does not carry.
"""

from __future__ import annotations

import configparser
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from orchestrator.backends.colosseum_batch import BatchBackend
from orchestrator.colosseum.batch_conf import (
    DEFAULT_DISCOVERY_TIMEOUT_S,
    LeadError,
    StateFile,
    load_conf,
)

log = logging.getLogger("pamdi.batch_lead")

DEFAULT_RADIO_API_DIR = "/root/radio_api"  # the C2 API: all scripts and radio.conf live here
DEFAULT_LOGS_DIR = "/logs"  # copied to the team's NAS folder after the batch job

EXIT_OK, EXIT_CONFIG, EXIT_RUN, EXIT_TIMEOUT, EXIT_STOPPED = 0, 2, 3, 4, 130


# --------------------------------------------------------------------------------- state files
# -------------------------------------------------------------------------------------- backend
# ---------------------------------------------------------------------------------------- leader
def _colosseum_ini(radio_api_dir: Path) -> dict[str, dict[str, str]] | None:
    """colosseum_config.ini (RF centre frequency / bandwidth, collaboration server), when pushed in."""
    path = radio_api_dir / "colosseum_config.ini"
    if not path.exists():
        return None
    parser = configparser.ConfigParser()
    try:
        parser.read(path)
    except configparser.Error as err:
        return {"error": {"message": str(err)}}
    return {s: dict(parser[s]) for s in parser.sections()}


def _save_outputs(run_dir: Path, results: Sequence[Any]) -> None:
    import numpy as np

    for r in results:
        if r.outputs:
            (run_dir / r.policy).mkdir(parents=True, exist_ok=True)
            np.savez_compressed(run_dir / r.policy / "outputs.npz", **{k: np.asarray(v) for k, v in r.outputs.items()})


def _raise_interrupt(signum: int, frame: object) -> None:
    del frame
    # Once: stop.sh signals the whole process group and the node process passes the signal on too;
    # a second KeyboardInterrupt would cut the clean-up that keeps the partial results.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt(f"signal {signum}")


def lead(conf_path: str | Path, *, logs_dir: Path, discovery_timeout_s: float, state: StateFile) -> int:
    from orchestrator.runner import RunError, Runner, RunOptions

    started = time.time()
    manifest: dict[str, Any] = {"conf": str(conf_path), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        conf = load_conf(conf_path)
    except LeadError as err:
        state.set("ERROR", f"leader: {err}")
        return EXIT_CONFIG
    run_dir = logs_dir / "runs" / conf.batch
    run_dir.mkdir(parents=True, exist_ok=True)
    manifest.update(batch=conf.batch, leader=conf.node, nodes=[n.name for n in conf.spec.nodes],
                    agent_port=conf.agent_port, data_plane={"interface": conf.data_interface,
                                                            "subnet": conf.data_subnet},
                    colosseum_config=_colosseum_ini(conf.path.parent))
    backend = BatchBackend(conf, discovery_timeout_s=discovery_timeout_s, state=state)
    runner = Runner(conf.spec, backend, run_dir, RunOptions(curve=False, keep_outputs=conf.keep_outputs))
    runner.run_id = conf.batch
    code, reason = EXIT_OK, ""
    summary: dict[str, Any] = {}
    try:
        state.set("ACTIVE", f"leader: running {conf.spec.name} ({', '.join(runner.policies())})")
        summary = runner.run()
    except KeyboardInterrupt:
        code, reason = EXIT_STOPPED, "stopped (SIGTERM from stop.sh) before the experiment ended; partial results kept"
    except (LeadError, RunError) as err:
        code, reason = EXIT_RUN, str(err)
    except Exception as err:  # a bug or an unexpected agent answer: still a clear line in status.sh
        log.exception("leader failed")
        code, reason = EXIT_RUN, f"{type(err).__name__}: {err}"
    timed_out = [r.policy for r in runner.results if r.timed_out]
    if code == EXIT_OK and timed_out:
        code, reason = EXIT_TIMEOUT, f"policy {', '.join(timed_out)} timed out (results kept, missing tasks failed)"
    if conf.keep_outputs:
        try:
            _save_outputs(run_dir, runner.results)
        except OSError as err:
            log.error("cannot write outputs: %s", err)
    manifest.update(addresses=backend.addresses, candidates=len(backend.candidates),
                    discovery_s=backend.discovery_s, run_s=time.time() - started, counters=backend.counters,
                    finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), exit_code=code, reason=reason,
                    completed={r.policy: {s: v.get("completed") for s, v in r.summary.get("sources", {}).items()}
                               for r in runner.results})
    (run_dir / "batch.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    if code == EXIT_OK:
        done = "; ".join(f"{p}: " + ", ".join(f"{s} {n}" for s, n in c.items())
                         for p, c in manifest["completed"].items())
        state.set("ACTIVE", f"finished: {done} completed in {manifest['run_s']:.1f} s; results in {run_dir}")
        log.info("summary: %s", json.dumps(summary.get("runs", []), default=str))
    else:
        state.set("ERROR", f"leader: {reason}; see {run_dir}")
        log.error("%s", reason)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    radio_api = Path(os.environ.get("PAMDI_RADIO_API_DIR", DEFAULT_RADIO_API_DIR))
    conf_path = Path(args[0]) if args else radio_api / "radio.conf"
    logs_dir = Path(os.environ.get("PAMDI_LOGS_DIR", DEFAULT_LOGS_DIR))
    state = StateFile()
    try:
        timeout = float(os.environ.get("PAMDI_DISCOVERY_TIMEOUT_S", DEFAULT_DISCOVERY_TIMEOUT_S))
    except ValueError:
        state.set("ERROR", "leader: PAMDI_DISCOVERY_TIMEOUT_S is not a number")
        return EXIT_CONFIG
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return lead(conf_path, logs_dir=logs_dir, discovery_timeout_s=timeout, state=state)
    except KeyboardInterrupt:
        return EXIT_STOPPED


if __name__ == "__main__":
    sys.exit(main())
