"""Colosseum pieces that need no namespaces: config, colosseumcli output parsing against the
stand-in client/server pair, the REST client against the HTTPS stand-in, batch JSON, Radio API scripts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from orchestrator.colosseum import cli_wrappers as cw
from orchestrator.colosseum.batch import batch_json, batch_name, node_configs, validate_batch
from orchestrator.colosseum.config import ConfigError, load_config, parse_config, secret, write_srns
from orchestrator.colosseum.rest import RestClient, RestError
from orchestrator.colosseum.transport import ColosseumError
from orchestrator.spec import parse_spec

STANDIN = Path(__file__).parent / "colosseum_standin"
RADIO_API = Path(__file__).parent.parent / "node_image" / "radio_api"


def base(**kw: object) -> dict[str, object]:
    d: dict[str, object] = {"team": "wineslab", "user": "jdoe"}
    d.update(kw)
    return d


def test_config_defaults_follow_the_docs() -> None:
    cfg = parse_config(base(srns=[13, 15]))
    assert cfg.gateway == "gw.colosseum.net"
    assert cfg.srn_host(13) == "wineslab-013" and cfg.srn_host(104) == "wineslab-104"
    assert cfg.nas_image_dir == "/share/nas/wineslab/images"
    assert parse_config(base(image_folder="resources")).nas_image_dir == "/share/nas/wineslab/resources"
    assert parse_config(base(srn_host_pattern="{team}-srn{srn:03d}")).srn_host(7) == "wineslab-srn007"
    assert cfg.control_interface == "col0" and cfg.data_plane.subnet == "172.16.0.0/24"


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"image": "bad_name"}, "image"),
        ({"image": "x" * 32}, "image"),
        ({"image_folder": "imgs"}, "image_folder"),
        ({"srns": [3, 3]}, "srns"),
        ({"rf_stop_start_gap_s": 10}, "rf_stop_start_gap_s"),
        ({"data_plane": {}}, "data_plane"),
        ({"srn_host_pattern": "{team}-{node}"}, "srn_host_pattern"),
        ({"bogus": 1}, "bogus"),
        # Interface names reach remote shells: only plain names.
        ({"control_interface": "col0; reboot"}, "control_interface"),
        ({"data_plane": {"interface": "$(id)"}}, "data_plane.interface"),
    ],
)
def test_config_errors_name_the_field(override: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(base(**override), "c.yaml")
    assert field in str(err.value) and "c.yaml" in str(err.value)


def test_config_refuses_passwords(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("team: t\nuser: u\nsrn_password: ChangeMe\n")
    with pytest.raises(ConfigError, match="never read from a file"):
        load_config(p)


def test_write_srns_keeps_other_keys(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("team: t\nuser: u\nscenario: 1009\nsrns: [1]\n")
    write_srns(p, [27, 13, 15])
    cfg = load_config(p)
    assert cfg.srns == (13, 15, 27) and cfg.scenario == 1009 and cfg.team == "t"


def test_init_template_is_the_defaults_plus_what_init_was_given(tmp_path: Path) -> None:
    """`pamdi colosseum init` writes a commented file that parses to the documented defaults with
    the given team, user and SRNs; it refuses to overwrite, and a bad value names its option."""
    from typer.testing import CliRunner

    from orchestrator.cli import app
    from orchestrator.colosseum.config import ColosseumConfig

    path = tmp_path / "colosseum.yaml"
    runner = CliRunner()
    r = runner.invoke(app, ["colosseum", "init", str(path), "--team", "123", "--user", "a:b", "--srns", "15,13"])
    assert r.exit_code == 0, r.output
    assert load_config(path) == ColosseumConfig(team="123", user="a:b", srns=(15, 13))
    assert "# " in path.read_text() and "password" not in yaml.safe_load(path.read_text())
    again = runner.invoke(app, ["colosseum", "init", str(path), "--team", "t", "--user", "u"])
    assert again.exit_code == 2 and "exists; pass --force" in again.output
    bad = runner.invoke(app, ["colosseum", "init", str(tmp_path / "b.yaml"), "--team", "my team", "--user", "u"])
    assert bad.exit_code == 2 and bad.output.strip().startswith("--team:") and not (tmp_path / "b.yaml").exists()
    bad = runner.invoke(app, ["colosseum", "init", str(tmp_path / "b.yaml"), "--team", "t", "--user", "u",
                              "--srns", "13,400"])
    assert bad.exit_code == 2 and "--srns: SRN number 400 out of range" in bad.output
    # The reservation's SRNs land on the template's srns line; its comments stay.
    write_srns(path, [27, 13])
    assert load_config(path).srns == (13, 27) and "# SRN numbers of your reservation" in path.read_text()


def test_secret_from_env_or_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAMDI_T_PW", "s3cret")
    assert secret("PAMDI_T_PW", "pw") == "s3cret"
    monkeypatch.delenv("PAMDI_T_PW")
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    with pytest.raises(ConfigError, match="PAMDI_T_PW"):
        secret("PAMDI_T_PW", "pw")


# --------------------------------------------------------------------------- colosseumcli outputs
@pytest.fixture
def cli(tmp_path: Path):
    sock = tmp_path / "clisocket"
    srv = subprocess.Popen([sys.executable, str(STANDIN / "cli_server.py"), str(sock), "--srns", "15,13,27",
                            "--load", "1"], stdout=subprocess.PIPE, text=True)
    assert srv.stdout is not None and srv.stdout.readline().strip() == "ready"
    env = dict(os.environ, COLOSSEUM_STANDIN_SOCKET=str(sock))

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(STANDIN / "colosseumcli"), *args], env=env,
                              capture_output=True, text=True, timeout=30)

    yield run
    srv.terminate()
    srv.wait(5)


def test_standin_outputs_parse(cli) -> None:
    assert cw.parse_version(cli("--version").stdout) == "19.0.0"
    empty = cw.parse_rf_info(cli("rf", "info").stdout)
    assert empty.scenario_id is None and empty.stopped and not empty.running
    t0 = time.time()
    start = cli("rf", "start", "9971", "-c")
    assert time.time() - t0 >= 1.0  # the client polls rf info every second until a start time exists
    parsed = cw.parse_rf_start(start.stdout)
    assert parsed.ok and parsed.start_time is not None, start.stdout
    info = cw.parse_rf_info(cli("rf", "info").stdout)
    assert (info.scenario_id, info.cycle, info.nodes, info.running) == (9971, True, 5, True)
    rmap = cw.parse_radiomap(cli("rf", "radiomap").stdout)
    # Documented default mapping: lowest SRN -> lowest scenario node; the rest of the 5 nodes unmapped.
    assert [(e.node, e.srn) for e in rmap] == [(1, 13), (2, 15), (3, 27), (4, None), (5, None)]
    assert cw.parse_usrp_info(cli("usrp", "info").stdout) == "RUNNING"
    assert cw.parse_rf_stop(cli("rf", "stop").stdout)
    # The >15 s rule: a start right after a stop is refused by the Resource Manager.
    again = cw.parse_rf_start(cli("rf", "start", "9971").stdout)
    assert not again.ok and again.error is not None and again.error.startswith(cw.RESOURCE_FAIL)
    assert "15 s" in again.error
    assert cw.parse_rf_info(cli("rf", "info").stdout).status == "STOPPING"


def test_json_output_reads_as_the_tables_do(cli) -> None:
    """cliff's ``-f json`` of rf info / rf radiomap parses to what the default tables give, before
    and during a scenario; an older client without the JSON formatter refuses the option."""
    for when in ("empty", "running"):
        if when == "running":
            assert cw.parse_rf_start(cli("rf", "start", "1009").stdout).ok
        as_json = cli("rf", "info", "-f", "json")
        assert as_json.returncode == 0, as_json.stderr
        assert isinstance(json.loads(as_json.stdout), dict)
        assert cw.parse_rf_info(as_json.stdout, as_json=True) == cw.parse_rf_info(cli("rf", "info").stdout)
        rows = cli("rf", "radiomap", "-f", "json").stdout
        assert cw.parse_radiomap(rows, as_json=True) == cw.parse_radiomap(cli("rf", "radiomap").stdout)
    info = cw.parse_rf_info(cli("rf", "info", "-f", "json").stdout, as_json=True)
    assert (info.scenario_id, info.running, info.cycle) == (1009, True, False)
    assert [e.srn for e in cw.parse_radiomap(rows, as_json=True)][:4] == [13, 15, 27, None]
    with pytest.raises(cw.CliOutputError, match="expected an object"):
        cw.parse_rf_info(rows, as_json=True)  # a list where an object belongs
    with pytest.raises(cw.CliOutputError, match="no JSON"):
        cw.parse_radiomap(cli("rf", "radiomap").stdout, as_json=True)  # a table where JSON belongs
    old = subprocess.run([sys.executable, str(STANDIN / "colosseumcli"), "rf", "info", "-f", "json"],
                         env=dict(os.environ, COLOSSEUM_STANDIN_FORMATS="table"), capture_output=True, text=True)
    assert old.returncode == 2 and "invalid choice" in old.stderr


def test_unknown_scenario_and_cannot_connect(cli, tmp_path: Path) -> None:
    bad = cw.parse_rf_start(cli("rf", "start", "4242").stdout)
    assert not bad.ok and "Resource Manager" in (bad.error or "") and "4242" in (bad.error or "")
    env = dict(os.environ, COLOSSEUM_STANDIN_SOCKET=str(tmp_path / "nowhere"))
    r = subprocess.run([sys.executable, str(STANDIN / "colosseumcli"), "rf", "info"], env=env,
                       capture_output=True, text=True)
    assert cw.CANNOT_CONNECT in r.stdout and r.returncode == 1
    with pytest.raises(cw.CliOutputError):
        cw.parse_rf_info(r.stdout)


def test_documented_literals_parse() -> None:
    # Row shape quoted in the docs / SCOPE's parser: "| Node 1 | 5 | 1 | 2 |".
    table = "+--------+-----+\n| Node   | SRN | RadioA | RadioB |\n+--\n| Node 1 |   5 |      1 |      2 |\n"
    assert cw.parse_radiomap(table) == [cw.RadioMapEntry(1, 5, 1, 2)]
    cond = cw.parse_rf_start("Colosseum failed to schedule the scenario at the Scenario Conductor\n")
    assert not cond.ok and cond.error == cw.CONDUCTOR_FAIL
    assert cw.parse_rf_start("Scenario Start Time is 14:03:59\n").start_time == "14:03:59"


# --------------------------------------------------------------------------- REST API
@pytest.fixture
def rest(tmp_path: Path):
    sys.path.insert(0, str(STANDIN.parent.parent))
    from tests.colosseum_standin.rest_server import RestStandin, RestState

    (tmp_path / "batch").mkdir()
    state = RestState("wineslab", "jdoe", "pw-123", tmp_path / "batch")
    srv = RestStandin(state, tmp_path).start()
    yield state, srv
    srv.close()


def test_rest_reservation_and_batch(rest, tmp_path: Path) -> None:
    state, srv = rest
    state.add_reservation("57291", [27, 13, 15], "pamdi-node")
    cfg = parse_config(base(rest_url=srv.url, rest_verify=str(srv.cert)))
    client = RestClient(cfg, "pw-123")
    res = client.reservation("57291")
    assert res.srns == (13, 15, 27) and res.status == "Active" and res.images[13] == "pamdi-node"
    assert res.end - res.start == 3600
    with pytest.raises(RestError, match="401"):
        RestClient(cfg, "wrong").reservation("57291")
    with pytest.raises(RestError, match="FileNotFoundError"):
        client.queue_batch("nope.json")
    (tmp_path / "batch" / "b1.json").write_text(json.dumps({"BatchName": "b1", "NodeData": [{}, {}]}))
    assert client.batch_files() == [{"res_name": "b1", "num_srns": 2, "name": "b1.json"}]
    client.queue_batch("b1.json", priority=1)
    jobs = client.batch_jobs(time.time() - 60, time.time() + 60)
    assert [j["file_name"] for j in jobs["pending"]] == ["b1.json"] and jobs["active"] == []
    assert ("GET", "/api/v1/reservations/57291") in state.requests


def test_rest_refuses_unverified_cert(rest) -> None:
    state, srv = rest
    state.add_reservation("1", [1], "x")
    with pytest.raises(RestError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        RestClient(parse_config(base(rest_url=srv.url)), "pw-123").reservation("1")
    # rest_verify: false is the docs' `curl -k`.
    assert RestClient(parse_config(base(rest_url=srv.url, rest_verify=False)), "pw-123").reservation("1").srns == (1,)


# --------------------------------------------------------------------------- batch mode
SPEC = {
    "name": "tri",
    "nodes": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
    "full_mesh": {"rate_mbit": 20},
    "sources": [{"name": "ts", "node": "a", "model": "tiny", "priority": 10, "samples": 4}],
}


def test_batch_json_matches_documented_format() -> None:
    cfg = parse_config(base(scenario=1009, image="pamdi-node"))
    spec = parse_spec(SPEC)
    name = batch_name(spec, "20240101-000000")
    data = batch_json(cfg, spec, name)
    validate_batch(data)
    assert set(data) == {"BatchName", "Duration", "RFScenario", "TrafficScenario", "NodeData"}
    assert [n["RFNode_ID"] for n in data["NodeData"]] == [1, 2, 3]
    assert {k for n in data["NodeData"] for k in n} == {
        "RFNode_ID", "ImageName", "ModemConfig", "isGateway", "TrafficNode_ID", "node_type"}
    confs = node_configs(cfg, spec, name)
    assert [c["node"] for c in confs.values()] == ["a", "b", "c"]
    assert [c["leader"] for c in confs.values()] == [True, False, False]
    assert set(confs) == {n["ModemConfig"] for n in data["NodeData"]}
    bad = dict(data, NodeData=[dict(data["NodeData"][0], RFNode_ID=2)])
    with pytest.raises(ColosseumError, match="RFNode_ID"):
        validate_batch(bad)
    with pytest.raises(ColosseumError, match="scenario"):
        batch_json(parse_config(base()), spec, name)


# --------------------------------------------------------------------------- Radio API scripts
def _api(script: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.perf_counter()
    r = subprocess.run(["bash", str(RADIO_API / script)], env=env, capture_output=True, text=True, timeout=10)
    return r, time.perf_counter() - t0


def test_radio_api_contract(tmp_path: Path) -> None:
    api = tmp_path / "radio_api"
    api.mkdir()
    # A stand-in agent command that records its arguments and lives until SIGTERM.
    agent = tmp_path / "agent.sh"
    agent.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/agent-args\ntrap "exit 0" TERM\nwhile :; do sleep 0.1; done\n')
    agent.chmod(0o755)
    env = dict(os.environ, PAMDI_RADIO_API_DIR=str(api), PAMDI_LOGS_DIR=str(tmp_path / "logs"),
               PAMDI_STATE_FILE=str(tmp_path / "state"), PAMDI_AGENT_CMD=str(agent), PAMDI_RADIO_WAIT_S="5",
               PAMDI_PYTHON=sys.executable)
    r, _ = _api("status.sh", env)
    assert json.loads(r.stdout) == {"STATUS": "READY", "INFO": "waiting for start.sh"}
    r, _ = _api("start.sh", env)
    assert r.returncode == 1 and json.loads(_api("status.sh", env)[0].stdout)["STATUS"] == "ERROR"
    (api / "radio.conf").write_text(json.dumps({
        "node": "b", "leader": False, "agent_port": 5599, "agent_threads": 1,
        "data_plane": {"subnet": "127.0.0.0/8"}, "control_interface": "col0"}))
    r, took = _api("start.sh", env)
    assert r.returncode == 0 and took < 5
    deadline = time.time() + 10
    while not (tmp_path / "agent-args").exists() and time.time() < deadline:
        time.sleep(0.1)
    args = (tmp_path / "agent-args").read_text().split()
    assert args[:4] == ["--listen", "tcp://127.0.0.1:5599", "--name", "b"]
    r, took = _api("status.sh", env)
    assert json.loads(r.stdout)["STATUS"] == "ACTIVE" and took < 5
    r, took = _api("stop.sh", env)
    assert r.returncode == 0 and took < 5
    deadline = time.time() + 10
    while json.loads(_api("status.sh", env)[0].stdout)["STATUS"] != "FINISHED" and time.time() < deadline:
        time.sleep(0.2)
    assert json.loads(_api("status.sh", env)[0].stdout)["STATUS"] == "FINISHED"
