"""`pamdi colosseum ...` over real SSH: OpenSSH servers in network namespaces as the gateway (key
auth), file-proxy and 3 SRNs (password auth), the stand-in colosseumcli on the SRNs and the HTTPS
stand-in of the REST API (see tests/colosseum_standin/lab.py for the layout)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.colosseum_standin.lab import Lab, available

pytestmark = [pytest.mark.root]
REPO = Path(__file__).resolve().parent.parent
PAMDI = str(REPO / ".venv" / "bin" / "pamdi") if (REPO / ".venv" / "bin" / "pamdi").exists() else "pamdi"


@pytest.fixture(scope="module")
def lab():
    why = available()
    if why:
        pytest.skip(why)
    lab = Lab(cli_clear_s=2.0).start()
    yield lab
    lab.close()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    d = tmp_path / "state"
    d.mkdir()
    return d


def pamdi(lab: Lab, cfg: Path, *args: str, env: dict[str, str] | None = None, state: Path | None = None,
          timeout: float = 120) -> subprocess.CompletedProcess:
    e = env if env is not None else lab.env()
    if state is not None:
        e = dict(e, PAMDI_STATE_DIR=str(state))
    # --json: the tests read what the commands print (their tables carry the same content).
    return subprocess.run([PAMDI, "colosseum", *args, "-c", str(cfg), "--json"], env=e, capture_output=True, text=True,
                          timeout=timeout, cwd=cfg.parent)


def test_check_every_srn(lab: Lab, tmp_path: Path) -> None:
    cfg = lab.write_config(tmp_path / "c.yaml")
    r = pamdi(lab, cfg, "check")
    assert r.returncode == 0, r.stderr
    out = {s["srn"]: s for s in json.loads(r.stdout)["srns"]}
    assert sorted(out) == list(lab.srns)
    for i, srn in enumerate(lab.srns):
        s = out[srn]
        assert s["reachable"] and s["host"] == lab.srn_host(srn)
        assert s["data_plane"] == {"interface": lab.radio_ifname(i), "address": lab.radio_addr(i)}
        assert s["control"] == lab.col0_addr(srn)
        assert s["colosseumcli"] == "19.0.0" and s["usrp"] == "IDLE"
        assert s["interfaces"]["col0"] == [f"{lab.col0_addr(srn)}/24"]


def test_parallel_fanout(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    """All SRNs are reached concurrently through one gateway connection (timing printed, not asserted)."""
    from orchestrator.colosseum.config import parse_config
    from orchestrator.colosseum.transport import Session

    cfg = parse_config(lab.config())

    async def go() -> tuple[float, float, dict[int, str]]:
        async with Session(cfg, lab.srn_password) as s:
            t0 = time.perf_counter()
            res = await s.run_all("sleep 1; echo $HOME")
            cold = time.perf_counter() - t0
            t1 = time.perf_counter()
            await s.run_all("true")
            warm = time.perf_counter() - t1
            return cold, warm, {k: v.stdout.strip() for k, v in res.items()}

    cold, warm, homes = asyncio.run(go())
    # Each SRN slept 1 s: in parallel the whole fan-out takes ~1 s, in series it would take >= 3 s.
    assert cold < 2.5, cold
    assert homes == {s: str(lab.tmp / f"srn-{s:03d}" / "root") for s in lab.srns}
    with capsys.disabled():
        print(f"\n[colosseum] fan-out to {len(lab.srns)} SRNs: connect+`sleep 1` {cold:.2f} s, "
              f"warm command {warm:.3f} s")


def test_wrong_password_names_every_srn(lab: Lab, tmp_path: Path) -> None:
    cfg = lab.write_config(tmp_path / "c.yaml")
    env = dict(lab.env(), PAMDI_LAB_SRN_PASSWORD="not-the-password")
    r = pamdi(lab, cfg, "check", env=env)
    assert r.returncode == 1
    for srn in lab.srns:
        assert f"SRN {srn} ({lab.srn_host(srn)}): auth: wrong password for user {lab.srn_user}" in r.stderr
    assert "not-the-password" not in r.stdout + r.stderr


def test_refused_gateway_key(lab: Lab, tmp_path: Path) -> None:
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    cfg = lab.write_config(tmp_path / "c.yaml", ssh_key=str(other))
    r = pamdi(lab, cfg, "check")
    assert r.returncode == 1
    assert f"gateway {lab.gw_addr}: key {other} refused for user {lab.user}" in r.stderr


def test_missing_known_hosts_is_refused(lab: Lab, tmp_path: Path) -> None:
    cfg = lab.write_config(tmp_path / "c.yaml", gateway_known_hosts=str(tmp_path / "no_known_hosts"))
    r = pamdi(lab, cfg, "check")
    assert r.returncode != 0 and "host key cannot be checked" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_unreachable_srn_and_missing_cli(lab: Lab, tmp_path: Path) -> None:
    cfg = lab.write_config(tmp_path / "c.yaml")
    cli = lab.tmp / "srn-015" / "bin" / "colosseumcli"
    lab.stop_sshd("s27")
    cli.rename(cli.with_name("colosseumcli.off"))
    try:
        r = pamdi(lab, cfg, "check")
    finally:
        cli.with_name("colosseumcli.off").rename(cli)
        lab.restart_sshd_srn(27)
    assert r.returncode == 1
    out = {s["srn"]: s for s in json.loads(r.stdout)["srns"]}
    assert out[13]["reachable"] and out[15]["reachable"] and not out[27]["reachable"]
    assert f"SRN 27 ({lab.srn_host(27)}): unreachable: through gateway" in r.stderr
    assert "Connection refused" in r.stderr
    assert out[15]["colosseumcli"] is None
    assert f"SRN 15 ({lab.srn_host(15)}): missing-cli: colosseumcli is not installed" in r.stderr
    # `check` goes on past a missing colosseumcli to report the rest; rf commands stop on it.
    r2 = None
    cli.rename(cli.with_name("colosseumcli.off"))
    try:
        r2 = pamdi(lab, lab.write_config(tmp_path / "c15.yaml", srns=[15, 13]), "rf", "info")
    finally:
        cli.with_name("colosseumcli.off").rename(cli)
    assert r2.returncode == 1
    assert f"SRN 15 ({lab.srn_host(15)}): missing-cli: colosseumcli is not installed" in r2.stderr


def test_rf_conductor_failure_is_reported(lab: Lab, tmp_path: Path, state_dir: Path) -> None:
    cfg = lab.write_config(tmp_path / "c.yaml")
    lab.cli_control("_standin_fail_next_start")
    r = pamdi(lab, cfg, "rf", "start", "1009", state=state_dir)
    assert r.returncode == 1
    assert f"SRN 13 ({lab.srn_host(13)}): rf start 1009 failed: " \
           "Colosseum failed to schedule the scenario at the Scenario Conductor" in r.stderr


def test_rf_start_info_stop_and_the_15s_rule(lab: Lab, tmp_path: Path, state_dir: Path) -> None:
    cfg = lab.write_config(tmp_path / "c.yaml", scenario=1009)
    r = pamdi(lab, cfg, "rf", "start", "--cycle", state=state_dir)
    assert r.returncode == 0, r.stderr
    started = json.loads(r.stdout)
    assert started["scenario"] == 1009 and started["info"]["status"] == "ACTIVE" and started["info"]["cycle"]
    info = json.loads(pamdi(lab, cfg, "rf", "info", state=state_dir).stdout)
    assert info["scenario_id"] == 1009 and info["nodes"] == 10
    assert [(e["node"], e["srn"]) for e in info["radiomap"][:4]] == [(1, 13), (2, 15), (3, 27), (4, None)]
    # A client whose cliff has no JSON formatter: pamdi reads its tables instead, to the same result.
    cli = lab.tmp / "srn-013" / "bin" / "colosseumcli"
    cli.rename(cli.with_name("colosseumcli.json"))
    try:
        real = cli.with_name("colosseumcli.json")
        cli.write_text(f"#!/bin/sh\nCOLOSSEUM_STANDIN_FORMATS=table exec python3 {real} \"$@\"\n")
        cli.chmod(0o755)
        old = pamdi(lab, cfg, "rf", "info", "-v", state=state_dir)
    finally:
        cli.with_name("colosseumcli.json").replace(cli)
    assert old.returncode == 0, old.stderr
    assert json.loads(old.stdout) == info
    assert "has no JSON output" in old.stderr
    t_stop = time.time()
    r = pamdi(lab, cfg, "rf", "stop", state=state_dir)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"] == "CLEARED"
    r = pamdi(lab, cfg, "rf", "start", "10011", "--no-cycle", state=state_dir)
    elapsed = time.time() - t_stop
    assert r.returncode == 0, r.stderr
    # The stand-in refuses a start within 15 s of the stop; pamdi waited the configured 16 s.
    assert elapsed >= 16.0
    assert json.loads(r.stdout)["info"]["scenario_id"] == 10011


def test_upload_image(lab: Lab, tmp_path: Path) -> None:
    img = tmp_path / "pamdi-node.tar.gz"
    img.write_bytes(os.urandom(3 << 20))
    cfg = lab.write_config(tmp_path / "c.yaml")
    r = pamdi(lab, cfg, "upload-image", str(img))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    remote = lab.nas / lab.team / "images" / "pamdi-node.tar.gz"
    assert remote.read_bytes() == img.read_bytes()
    assert oct(remote.stat().st_mode & 0o777) == "0o755" and out["mode"] == "755"
    import hashlib

    assert out["sha256"] == hashlib.sha256(img.read_bytes()).hexdigest()
    # The other folder name of the docs works when configured; a missing folder names the alternative.
    shutil.rmtree(lab.nas / lab.team / "images")
    try:
        r = pamdi(lab, cfg, "upload-image", str(img))
        assert r.returncode == 1 and "set image_folder: resources" in r.stderr
        r = pamdi(lab, lab.write_config(tmp_path / "c2.yaml", image_folder="resources"), "upload-image", str(img))
        assert r.returncode == 0, r.stderr
        assert (lab.nas / lab.team / "resources" / "pamdi-node.tar.gz").exists()
    finally:
        (lab.nas / lab.team / "images").mkdir()
        shutil.chown(lab.nas / lab.team / "images", lab.user, lab.user)
    bad = tmp_path / "bad_name.tar.gz"
    bad.write_bytes(b"x")
    r = pamdi(lab, cfg, "upload-image", str(bad))
    assert r.returncode == 1 and "letters, digits and '-'" in r.stderr


@pytest.fixture
def rest(lab: Lab, tmp_path: Path):
    from tests.colosseum_standin.rest_server import RestStandin, RestState

    state = RestState(lab.team, lab.user, lab.ldap_password, lab.nas / lab.team / "batch")
    srv = RestStandin(state, tmp_path).start()
    yield state, srv
    srv.close()


def test_reservation_fills_config_then_batch_submit(lab: Lab, tmp_path: Path, rest) -> None:
    state, srv = rest
    state.add_reservation("57291", [27, 15, 13], "pamdi-node")
    cfg = lab.write_config(tmp_path / "c.yaml", srns=[], rest_url=srv.url, rest_verify=str(srv.cert), scenario=1009)
    r = pamdi(lab, cfg, "reservation", "57291", "--write")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["srns"] == [13, 15, 27]
    import yaml

    assert yaml.safe_load(cfg.read_text())["srns"] == [13, 15, 27]
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "tri", "nodes": [{"name": "a"}, {"name": "b"}, {"name": "c"}], "full_mesh": {"rate_mbit": 20},
        "sources": [{"name": "ts", "node": "a", "model": "tiny", "priority": 10, "samples": 4}]}))
    r = pamdi(lab, cfg, "batch", str(spec), "--submit")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    batch_file = lab.nas / lab.team / "batch" / out["batch"]
    assert json.loads(batch_file.read_text()) == out["json"]
    for name in out["node_configs"]:
        assert json.loads((lab.nas / lab.team / "config" / name).read_text())["spec"]["name"] == "tri"
    r = pamdi(lab, cfg, "batch-status")
    assert r.returncode == 0, r.stderr
    assert [j["file_name"] for j in json.loads(r.stdout)["pending"]] == [out["batch"]]
    env = dict(lab.env(), PAMDI_LAB_LDAP_PASSWORD="wrong")
    r = pamdi(lab, cfg, "batch-status", env=env)
    assert r.returncode == 1 and "401 unauthorized" in r.stderr and "wrong" not in r.stderr.replace("wrong user", "")


def _passphrase_key(lab: Lab, tmp_path: Path, passphrase: str) -> Path:
    key = tmp_path / "id_pass"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-f", str(key)], check=True)
    with (lab.tmp / "authorized_keys").open("a") as f:  # the gateway's sshd reads it at each login
        f.write(key.with_suffix(".pub").read_text())
    return key


def test_a_passphrase_key_opens_with_the_variable_or_through_ssh_agent(lab: Lab, tmp_path: Path) -> None:
    """No passphrase at hand: one line saying how; a wrong one: said; the right one in
    $PAMDI_SSH_PASSPHRASE, or the key loaded into a real ssh-agent: the check passes."""
    key = _passphrase_key(lab, tmp_path, "correct horse")
    cfg = lab.write_config(tmp_path / "c.yaml", ssh_key=str(key))
    env = {k: v for k, v in lab.env().items() if k not in ("SSH_AUTH_SOCK", "PAMDI_SSH_PASSPHRASE")}
    r = pamdi(lab, cfg, "check", env=env)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert (f"gateway {lab.gw_addr}: SSH key {key} is passphrase-protected: add it to ssh-agent (ssh-add {key}) "
            "or set PAMDI_SSH_PASSPHRASE") in r.stderr.strip().splitlines()[-1], r.stderr
    r = pamdi(lab, cfg, "check", env=dict(env, PAMDI_SSH_PASSPHRASE="wrong"))
    assert r.returncode != 0 and f"wrong passphrase for SSH key {key}" in r.stderr, r.stderr
    r = pamdi(lab, cfg, "check", env=dict(env, PAMDI_SSH_PASSPHRASE="correct horse"))
    assert r.returncode == 0, r.stderr
    # A real ssh-agent, the key added through SSH_ASKPASS (what a desktop would prompt for).
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.05)
        askpass = tmp_path / "askpass.sh"
        askpass.write_text("#!/bin/sh\necho 'correct horse'\n")
        askpass.chmod(0o700)
        add_env = dict(env, SSH_AUTH_SOCK=str(sock), SSH_ASKPASS=str(askpass), SSH_ASKPASS_REQUIRE="force",
                       DISPLAY="none")
        subprocess.run(["ssh-add", str(key)], env=add_env, check=True, capture_output=True, timeout=30,
                       stdin=subprocess.DEVNULL)
        r = pamdi(lab, cfg, "check", env=dict(env, SSH_AUTH_SOCK=str(sock)))
        assert r.returncode == 0, r.stderr
    finally:
        agent.terminate()
        agent.wait(timeout=10)


def test_the_gateway_may_be_an_alias_of_the_users_ssh_config(lab: Lab, tmp_path: Path) -> None:
    """`gateway: colosseum-gw` as the Colosseum docs' ~/.ssh/config names it: HostName, Port, User's
    IdentityFile come from there (no ssh_key, no gateway_port in the pamdi config)."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(
        f"Host colosseum-gw\n    HostName {lab.gw_addr}\n    Port 22\n    IdentityFile {lab.key_path}\n")
    cfg = lab.config(gateway="colosseum-gw")
    del cfg["ssh_key"]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = {k: v for k, v in lab.env().items() if k != "SSH_AUTH_SOCK"}
    r = pamdi(lab, path, "check", env=dict(env, HOME=str(home)))
    assert r.returncode == 0, r.stderr
    assert sorted(s["srn"] for s in json.loads(r.stdout)["srns"]) == list(lab.srns)
    # Without the alias in the user's config the name resolves nowhere: one line, no traceback.
    (home / ".ssh" / "config").write_text("")
    r = pamdi(lab, path, "check", env=dict(env, HOME=str(home)))
    assert r.returncode != 0 and "gateway colosseum-gw" in r.stderr and "Traceback" not in r.stderr, r.stderr
