"""The lab inventory, tc script and deploy checks without a lab (no root): what a user's file is
refused for, how spec nodes map to hosts, what the shaping commands do, which wheels fit a host."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.lab.deploy import wheel_arch_mismatch
from orchestrator.lab.inventory import InventoryError, load_inventory, parse_inventory
from orchestrator.lab.shaping import install_script, parse_tbf_counters, peer_classes

EXAMPLE = Path(__file__).resolve().parent.parent / "orchestrator" / "lab" / "lab.example.yaml"


def inv(**hosts_extra: object) -> dict[str, object]:
    return {"defaults": {"data_plane": {"interface": "wlan0"}},
            "hosts": [{"name": "x1", **hosts_extra}, {"name": "x2"}, {"name": "x3"}]}


def test_the_shipped_example_is_a_valid_inventory_and_the_cli_prints_it() -> None:
    i = load_inventory(EXAMPLE)
    assert [h.name for h in i.hosts] == ["xavier1", "xavier2", "xavier3", "xavier4", "xavier5"]
    assert i.host("xavier4").proxy_jump == "gw" and i.endpoint("gw") is not None
    assert i.host("xavier5").shape and not i.host("xavier1").shape
    # A jump host takes the defaults that concern reaching a machine (its key), not its own user.
    gw = i.endpoint("gw")
    assert gw is not None and gw.user == "jdoe" and gw.key == "~/.ssh/id_ed25519"
    out = CliRunner().invoke(app, ["lab", "example"])
    assert out.exit_code == 0 and out.stdout == EXAMPLE.read_text()


@pytest.mark.parametrize(("change", "message"), [
    ({"port": 70000}, "hosts[0] (x1).port: Input should be less than or equal to 65535"),
    ({"runtime": "lxc"}, "hosts[0] (x1).runtime: Input should be 'python' or 'docker'"),
    ({"device": "xavier"}, "hosts[0] (x1).device: unknown device 'xavier'; known:"),
    ({"data_plane": {"address": "10.0.0.300"}}, "hosts[0] (x1).data_plane.address:"),
    ({"shpae": True}, "hosts[0] (x1).shpae: Extra inputs are not permitted"),
    ({"password": "hunter2"}, "hosts[0].password: secrets are never read from a file"),
    ({"env": {"BAD-NAME": "1"}}, "hosts[0] (x1).env: Value error, 'BAD-NAME' is not an environment variable name"),
])
def test_a_bad_field_is_refused_in_one_line_naming_the_host(change: dict[str, object], message: str) -> None:
    with pytest.raises(InventoryError) as err:
        parse_inventory(inv(**change), "lab.yaml")
    text = str(err.value)
    assert "\n" not in text and text.startswith("lab.yaml: ")
    assert message.replace("Value error, ", "") in text, text
    assert "hunter2" not in text


def test_duplicate_names_and_data_addresses_are_refused() -> None:
    data = inv()
    data["hosts"][1]["name"] = "x1"  # type: ignore[index]
    with pytest.raises(InventoryError, match="duplicate host names: x1"):
        parse_inventory(data)
    data = {"hosts": [{"name": "a", "data_plane": {"address": "10.0.0.1"}},
                      {"name": "b", "data_plane": {"address": "10.0.0.1"}}]}
    with pytest.raises(InventoryError, match=r"two hosts share a data_plane\.address"):
        parse_inventory(data)


def test_nodes_map_to_hosts_by_name_else_in_order(tmp_path: Path) -> None:
    i = parse_inventory(inv())
    assert {n: h.name for n, h in i.assign(["x3", "x1"]).items()} == {"x3": "x3", "x1": "x1"}
    assert {n: h.name for n, h in i.assign(["a", "b"]).items()} == {"a": "x1", "b": "x2"}
    with pytest.raises(InventoryError, match="the spec has 4 nodes but the inventory lists 3 hosts"):
        i.assign(["a", "b", "c", "d"])
    missing = tmp_path / "nope.yaml"
    with pytest.raises(InventoryError, match="no such inventory file"):
        load_inventory(missing)
    (tmp_path / "bad.yaml").write_text("hosts: [\n")
    with pytest.raises(InventoryError, match="not valid YAML"):
        load_inventory(tmp_path / "bad.yaml")


def test_the_shaping_script_gives_each_peer_its_own_token_bucket() -> None:
    peers = {"x3": ("10.0.0.3", 5.0), "x2": ("10.0.0.2", 20.0)}
    script = install_script("sudo -n tc", "wlan0", peers)
    cmds = script.split(" && ")
    assert cmds[0] == "sudo -n tc qdisc replace dev wlan0 root handle 1: htb"
    # Classes by peer name: x2 is 1:1 (20 Mbit/s), x3 is 1:2 (5 Mbit/s), each with its filter.
    assert "parent 1:1 handle 101: tbf rate 20000000bit" in script
    assert "parent 1:2 handle 102: tbf rate 5000000bit" in script
    assert "match ip dst 10.0.0.2/32 flowid 1:1" in script and "match ip dst 10.0.0.3/32 flowid 1:2" in script
    assert peer_classes(peers) == {"x2": 1, "x3": 2}
    counters = parse_tbf_counters(
        '[{"kind":"htb","handle":"1:","bytes":9},{"kind":"tbf","handle":"101:","bytes":1200,"packets":3,'
        '"drops":1,"backlog":0},{"kind":"tbf","handle":"102:","bytes":0,"packets":0,"drops":0,"backlog":0}]',
        peer_classes(peers))
    assert counters == {"x2": {"bytes": 1200, "packets": 3, "drops": 1, "backlog": 0},
                        "x3": {"bytes": 0, "packets": 0, "drops": 0, "backlog": 0}}


def test_wheels_for_another_cpu_are_named_before_anything_is_sent() -> None:
    wheels = [Path("torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl"), Path("pamdi-0.1.0-py3-none-any.whl"),
              Path("numpy-2.1.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl")]
    assert wheel_arch_mismatch(wheels, "aarch64") == ["torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl"]
    assert wheel_arch_mismatch(wheels, "x86_64") == [wheels[2].name]


def test_emulate_backend_ssh_needs_an_inventory(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["emulate", "small", "--backend", "ssh"])
    assert r.exit_code == 2 and "--backend ssh: give the lab's inventory, --inventory lab.yaml" in r.output
    (tmp_path / "lab.yaml").write_text(yaml.safe_dump({"hosts": [{"name": "a"}]}))
    r = CliRunner().invoke(app, ["emulate", "small", "--backend", "ssh", "-i", str(tmp_path / "lab.yaml")])
    assert r.exit_code == 2 and "hosts[0] (a).data_plane: Field required" in r.output, r.output


def test_loss_on_a_link_pamdi_shapes_is_refused_before_any_connection(tmp_path: Path) -> None:
    from orchestrator.backends.base import RunContext
    from orchestrator.backends.ssh import SshBackend
    from orchestrator.spec import parse_spec

    hosts = parse_inventory({"hosts": [{"name": "x1", "address": "192.0.2.1", "shape": True,
                                        "data_plane": {"interface": "wlan0"}},
                                       {"name": "x2", "address": "192.0.2.2", "data_plane": {"interface": "wlan0"}}]})
    spec = parse_spec({"name": "l", "nodes": [{"name": "x1"}, {"name": "x2"}],
                       "full_mesh": {"rate_mbit": 20, "loss": 0.01},
                       "sources": [{"name": "s", "node": "x1", "model": "tiny", "samples": 1}]})
    be = SshBackend(hosts)
    with pytest.raises(ValueError, match=r"links x1-x2: loss 0\.01: the ssh backend shapes rates"):
        be.up(spec, RunContext(run_id="r", run_dir=tmp_path))
    assert not be.loop.loop.is_running()  # the refused run closed its connections and loop thread
