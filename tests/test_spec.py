"""Spec validation: good specs load, bad ones are refused with the field named."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from orchestrator.spec import MAX_NODES, SpecError, load_spec, parse_spec
from orchestrator.specs import SPECS_DIR

PAMDI = Path(sys.executable).with_name("pamdi")


def _spec(**over: object) -> dict:
    base: dict = {
        "nodes": [{"name": "a"}, {"name": "b"}, {"name": "c", "speed": 0.5}],
        "full_mesh": {"rate_mbit": 20},
        "sources": [
            {"name": "ts", "node": "a", "model": "resnet50", "priority": 10, "interval_ms": 200},
            {"name": "nts", "node": "c", "model": "resnet56", "priority": 1},
        ],
    }
    base.update(over)
    return base


def test_full_mesh_expands_and_explicit_link_overrides() -> None:
    spec = parse_spec(_spec(links=[{"a": "c", "b": "a", "rate_mbit": 5, "delay_ms": 10}]))
    links = {link.key: link for link in spec.resolved_links()}
    assert set(links) == {("a", "b"), ("a", "c"), ("b", "c")}
    assert links[("a", "c")].rate_mbit == 5 and links[("a", "c")].delay_ms == 10
    assert links[("a", "b")].rate_mbit == 20
    assert spec.neighbours()["a"] == ("b", "c")
    assert spec.sources[0].interval_s == pytest.approx(0.2)


def test_policy_all_expands() -> None:
    spec = parse_spec(_spec(policy="all"))
    assert spec.policy == ("local", "ar-mdi", "ms-mdi", "pa-mdi", "ddi")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"sources": [{"name": "ts", "node": "zz", "model": "resnet50"}]}, "sources[0].node"),
        ({"sources": [{"name": "ts", "node": "a", "model": "vgg"}]}, "sources[0].model"),
        ({"sources": [{"name": "ts", "node": "a", "model": "tiny", "priority": 0}]}, "sources[0].priority"),
        ({"links": [{"a": "a", "b": "q", "rate_mbit": 1}]}, "links[0]"),
        ({"full_mesh": {"rate_mbit": -1}}, "full_mesh.rate_mbit"),
        ({"policy": ["pa-mdi", "magic"]}, "policy"),
        ({"nodes": [{"name": "a"}, {"name": "a"}]}, "duplicate name 'a'"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_bad_field_is_named(change: dict, field: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(_spec(**change))
    assert field in str(err.value)


def test_load_spec_reports_file_and_yaml_errors(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("nodes: [\n")
    with pytest.raises(SpecError, match=r"bad\.yaml: not valid YAML"):
        load_spec(bad)
    with pytest.raises(SpecError, match="cannot read spec"):
        load_spec(tmp_path / "missing.yaml")


def test_partitions_default_to_four_of_equal_compute_or_one_per_block() -> None:
    from orchestrator.simulator import load_profiles, source_views

    spec = parse_spec(_spec())
    assert [s.partitions for s in spec.sources] == [4, 4]
    views = source_views(spec, load_profiles(spec))
    for name, view in views.items():
        assert len(view.bounds) == 5, name  # 4 partitions ...
        parts = [view.range_time_s(a, b) for a, b in zip(view.bounds, view.bounds[1:], strict=False)]
        # ... of ~equal profiled compute: no cut is off its ideal by more than the blocks around it.
        assert max(parts) < 2 * min(parts), (name, parts)
    srcs = [{"name": "ts", "node": "a", "model": "resnet50", "partitions": "blocks"},
            {"name": "nts", "node": "c", "model": "resnet56", "partitions": 2}]
    spec = parse_spec(_spec(sources=srcs))
    assert [s.partitions for s in spec.sources] == ["blocks", 2]
    views = source_views(spec, load_profiles(spec))
    assert views["ts"].bounds == tuple(range(views["ts"].num_blocks + 1))
    assert len(views["nts"].bounds) == 3


@pytest.mark.parametrize("bad", [0, -1, "block", "Blocks", "4", 2.5, True, None, [4]])
def test_bad_partitions_are_refused_on_one_line_naming_the_field(bad: object) -> None:
    srcs = [{"name": "ts", "node": "a", "model": "resnet50", "partitions": bad}]
    with pytest.raises(SpecError) as err:
        parse_spec(_spec(sources=srcs))
    lines = str(err.value).splitlines()
    assert len(lines) == 1 and lines[0].startswith("<spec>: sources[0].partitions:"), str(err.value)
    assert "'blocks'" in lines[0] and repr(bad) in lines[0]


# ------------------------------------------------------------------------------ hostile specs
def _one_line(err: pytest.ExceptionInfo[SpecError]) -> str:
    text = str(err.value)
    assert "\n" not in text and "Traceback" not in text, text
    return text


def _source(**over: object) -> dict:
    return {"name": "ts", "node": "a", "model": "resnet56", **over}


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan, "inf", "nan"])
@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda x: {"sources": [_source(interval_ms=x)]}, "sources[0].interval_ms"),
        (lambda x: {"sources": [_source(start_ms=x)]}, "sources[0].start_ms"),
        (lambda x: {"sources": [_source(priority=x)]}, "sources[0].priority"),
        (lambda x: {"sources": [_source(rate_hz=x)]}, "sources[0].rate_hz"),
        (lambda x: {"beacon_period_ms": x}, "beacon_period_ms"),
        (lambda x: {"full_mesh": {"rate_mbit": x}}, "full_mesh.rate_mbit"),
        (lambda x: {"links": [{"a": "a", "b": "b", "rate_mbit": 1, "delay_ms": x}]}, "links[0].delay_ms"),
        (lambda x: {"nodes": [{"name": "a", "speed": x}, {"name": "b"}, {"name": "c"}]}, "nodes[0].speed"),
        (lambda x: {"failures": [{"node": "a", "at_s": x}]}, "failures[0].at_s"),
        (lambda x: {"failures": [{"node": "a", "at_s": 1, "recover_after_s": x}]}, "failures[0].recover_after_s"),
        (lambda x: {"accuracy": {"resnet50": x}}, "accuracy.resnet50"),
        (lambda x: {"seed": x}, "seed"),
        (lambda x: {"sources": [_source(samples=x)]}, "sources[0].samples"),
    ],
)
def test_non_finite_numbers_are_refused_anywhere(change, field: str, bad: object) -> None:
    # `interval_ms: .inf` and `start_ms: .inf` used to make `simulate` wait forever.
    with pytest.raises(SpecError) as err:
        parse_spec(_spec(**change(bad)))
    assert f": {field}: " in _one_line(err)


@pytest.mark.parametrize("bad", [math.inf, math.nan, 1e400])
def test_non_finite_policy_params_are_refused_naming_the_key(bad: float) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(_spec(policy_params={"pa-mdi.aging": bad}))
    assert ": policy_params: pa-mdi.aging: must be a finite number" in _one_line(err)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"beacon_period_ms": 1e300}, "beacon_period_ms"),
        ({"beacon_period_ms": 60_001}, "beacon_period_ms"),
        ({"sources": [_source(interval_ms=86_400_001)]}, "sources[0].interval_ms"),
        ({"sources": [_source(start_ms=1e300)]}, "sources[0].start_ms"),
        ({"sources": [_source(rate_hz=1e-9)]}, "sources[0].rate_hz"),
        ({"sources": [_source(rate_hz=1e9)]}, "sources[0].rate_hz"),
        ({"sources": [_source(priority=1e300)]}, "sources[0].priority"),
        ({"sources": [_source(samples=1_000_001)]}, "sources[0].samples"),
        ({"sources": [_source(partitions=1025)]}, "sources[0].partitions"),
        ({"failures": [{"node": "a", "at_s": 86_401}]}, "failures[0].at_s"),
        ({"failures": [{"node": "a", "at_s": 1, "recover_after_s": 1e12}]}, "failures[0].recover_after_s"),
        ({"nodes": [{"name": "a", "memory_mb": 1 << 40}, {"name": "b"}, {"name": "c"}]}, "nodes[0].memory_mb"),
        ({"nodes": [{"name": f"n{i}"} for i in range(MAX_NODES + 1)]}, "nodes"),
        ({"policy": ["local"] * 17}, "policy"),
        ({"policy_params": {f"p{i}": 1 for i in range(65)}}, "policy_params"),
        ({"policy_params": {"x": 1 << 64}}, "policy_params"),
        ({"policy_params": {"x": [1, 2]}}, "policy_params"),
        ({"policy_params": {"x; rm": 1}}, "policy_params"),
        ({"description": "x" * 5000}, "description"),
    ],
)
def test_durations_and_counts_are_bounded(change: dict, field: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(_spec(**change))
    assert f": {field}: " in _one_line(err)


@pytest.mark.parametrize("seed", [-1, 2**63, 2**64, 10**30])
def test_seed_must_fit_msgpack(seed: int) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(_spec(seed=seed))
    assert ": seed: " in _one_line(err)
    assert parse_spec(_spec(seed=2**63 - 1)).seed == 2**63 - 1


@pytest.mark.parametrize("name", ["../../../x", "a/b", "..", "a..b", ".hidden", "-rf", "a b", "a;touch x", "x" * 65,
                                  "a\n", "", "/etc"])
def test_spec_name_is_safe_for_paths(name: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(_spec(name=name))
    assert ": name: " in _one_line(err)


@pytest.mark.parametrize("name", ["small", "paper-5node-gpt2-loaded", "Run_1.v2", "x" * 64])
def test_plain_spec_names_are_accepted(name: str) -> None:
    assert parse_spec(_spec(name=name)).name == name


@pytest.mark.parametrize("name", ["../x", "a/b", "A", "a;touch /tmp/pwned", "a\n", "x" * 16, "-a"])
def test_node_and_source_names_are_safe(name: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(_spec(nodes=[{"name": name}, {"name": "a"}]))
    assert ": nodes[0].name: " in _one_line(err)
    with pytest.raises(SpecError) as err:
        parse_spec(_spec(sources=[_source(name=name)]))
    assert ": sources[0].name: " in _one_line(err)


def test_unknown_device_is_one_line_listing_the_known_ones() -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(_spec(nodes=[{"name": "a", "device": "tpu"}, {"name": "b"}, {"name": "c"}]))
    assert _one_line(err) == ("<spec>: nodes[0].device: unknown device 'tpu'; known: host, nano, srn, xavier-nx")
    assert parse_spec(_spec(nodes=[{"name": "a", "device": "nano"}, {"name": "b"}, {"name": "c"}]))


@pytest.mark.parametrize("name", ["x; rm -rf /", "$(reboot)", "../wifi", "Wifi", "a" * 64])
def test_shell_looking_scenario_names_are_refused(name: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(_spec(full_mesh={"rate_mbit": 20, "scenario": name}))
    assert ": full_mesh.scenario: " in _one_line(err)


def test_scenarios_are_checked_against_the_catalogue_when_loading(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAMDI_SCENARIOS_DIR", str(tmp_path / "no-user-scenarios"))
    bad = _spec(links=[{"a": "a", "b": "b", "rate_mbit": 1, "scenario": "no-such-scenario"}])
    with pytest.raises(SpecError) as err:
        load_spec(_write(tmp_path, bad))
    line = _one_line(err)
    assert ": links[0].scenario: unknown radio scenario 'no-such-scenario'; known: " in line
    assert "wifi-fluctuating" in line
    # In code (parse_spec) the name pattern is checked and the catalogue left to the simulator,
    # which reads the user's scenarios at use; check_files asks for the catalogue too.
    assert parse_spec(bad).links[0].scenario == "no-such-scenario"
    with pytest.raises(SpecError, match=r"links\[0\]\.scenario: unknown radio scenario"):
        parse_spec(bad, check_files=True)
    ok = _spec(links=[{"a": "a", "b": "b", "rate_mbit": 1, "scenario": "wifi-fluctuating"}])
    assert load_spec(_write(tmp_path, ok)).links[0].scenario == "wifi-fluctuating"


def _write(tmp_path: Path, spec: dict | str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec))
    return path


def test_duplicate_yaml_keys_are_refused_with_key_and_lines(tmp_path: Path) -> None:
    text = yaml.safe_dump(_spec(seed=1), sort_keys=False) + "seed: 2\n"
    with pytest.raises(SpecError) as err:
        load_spec(_write(tmp_path, text))
    line = _one_line(err)
    assert ": seed: duplicate key at line " in line and "(first at line " in line, line
    nested = yaml.safe_dump(_spec(), sort_keys=False).replace("name: b\n", "name: b\n  speed: 1\n  speed: 2\n")
    with pytest.raises(SpecError) as err:
        load_spec(_write(tmp_path, nested))
    assert ": nodes[1].speed: duplicate key at line " in _one_line(err)
    # A merge key is not a duplicate: explicit keys override merged ones, as YAML says.
    merged = yaml.safe_dump(_spec(), sort_keys=False).replace("full_mesh:\n", "full_mesh: &mesh\n")
    merged += "links:\n- {<<: *mesh, a: a, b: b, rate_mbit: 7}\n"
    assert load_spec(_write(tmp_path, merged)).links[0].rate_mbit == 7


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
         "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n", "once aliases are expanded"),
        ("a: " + "[" * 5000, "not valid YAML"),
        ("a: " + "[" * 40 + "]" * 40, "nested deeper than"),
        ("seed: " + "9" * 5000, "seed: a value of 5000 characters"),
        ("name: 2020-13-45\n", "line 1, column 7: cannot read this value"),
        ("a: !!python/object/apply:os.system ['true']\n", "could not determine a constructor"),
        ("a: 1\n---\nb: 2\n", "expected a single document"),
        ("a:\n\t- b\n", "line 2, column 1"),
    ],
    ids=["billion-laughs", "deep-brackets", "deep", "long-scalar", "bad-date", "python-tag", "two-documents", "tab"],
)
def test_hostile_yaml_is_refused_on_one_line(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(SpecError) as err:
        load_spec(_write(tmp_path, text))
    line = _one_line(err)
    assert line.startswith(str(tmp_path / "spec.yaml") + ": ") and needle in line, line


def test_oversized_or_special_spec_files_are_refused(tmp_path: Path) -> None:
    big = _write(tmp_path, "# " + "x" * (1 << 20) + "\n")
    with pytest.raises(SpecError, match="larger than"):
        load_spec(big)
    with pytest.raises(SpecError, match="not a regular file"):
        load_spec(tmp_path)
    (tmp_path / "latin1.yaml").write_bytes(b"name: caf\xe9\n")
    with pytest.raises(SpecError, match="not UTF-8"):
        load_spec(tmp_path / "latin1.yaml")


def test_data_files_are_checked_for_format_and_readability(tmp_path: Path) -> None:
    good = tmp_path / "cifar.npy"
    np.save(good, np.zeros((4, 3, 32, 32), np.float32))
    assert load_spec(_write(tmp_path, _spec(sources=[_source(data=str(good))]))).sources[0].data == str(good)
    np.save(tmp_path / "objects.npy", np.array([{}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "empty.npy", np.zeros((0, 3), np.float32))
    np.save(tmp_path / "scalar.npy", np.float32(1))
    (tmp_path / "fake.npy").write_text("not numpy")
    cases = {
        "/etc/shadow": "is not a .npy file",
        str(tmp_path / "missing.npy"): "no such regular file",
        str(tmp_path / "fake.npy"): "no NUMPY header",
        str(tmp_path / "objects.npy"): "not a .npy array",
        str(tmp_path / "empty.npy"): "at least one sample",
        str(tmp_path / "scalar.npy"): "at least one sample",
        str(tmp_path): "not a .npy file",
    }
    for data, needle in cases.items():
        with pytest.raises(SpecError) as err:
            load_spec(_write(tmp_path, _spec(sources=[_source(data=data)])))
        line = _one_line(err)
        assert ": sources[0].data: " in line and needle in line, (data, line)
    # Without check_files only the suffix is checked (the agents may run elsewhere).
    assert parse_spec(_spec(sources=[_source(data="/on/the/srn/x.npy")])).sources[0].data == "/on/the/srn/x.npy"


def test_several_faults_are_one_line_naming_each_field() -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(_spec(seed=-1, beacon_period_ms=math.inf))
    line = _one_line(err)
    assert "beacon_period_ms" in line and "seed" in line


def test_every_shipped_spec_still_loads() -> None:
    paths = sorted(SPECS_DIR.glob("*.yaml"))
    assert paths
    for path in paths:
        assert load_spec(path).name == path.stem


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("interval_ms: .inf", "sources[0].interval_ms"),
        ("start_ms: .inf", "sources[0].start_ms"),
        ("priority: .inf", "sources[0].priority"),
    ],
)
def test_cli_refuses_a_hostile_spec_with_one_line_and_exit_code_2(tmp_path: Path, body: str, field: str) -> None:
    text = yaml.safe_dump(_spec(sources=[_source()]), sort_keys=False).replace("model: resnet56",
                                                                               f"model: resnet56\n  {body}")
    path = _write(tmp_path, text, "hostile.yaml")
    # A generous timeout: a refusal takes well under a second, a hang (the old `.inf`) fails here.
    run = subprocess.run([str(PAMDI), "simulate", str(path)], capture_output=True, text=True, timeout=30)
    out = (run.stdout + run.stderr).strip()
    assert run.returncode == 2, out
    assert len(out.splitlines()) == 1 and out == f"{path}: {field}: Input should be a finite number", out


def test_cli_refuses_an_unknown_device_without_a_traceback(tmp_path: Path) -> None:
    path = _write(tmp_path, _spec(nodes=[{"name": "a", "device": "tpu"}, {"name": "b"}, {"name": "c"}]), "dev.yaml")
    run = subprocess.run([str(PAMDI), "simulate", str(path)], capture_output=True, text=True, timeout=30)
    out = (run.stdout + run.stderr).strip()
    assert run.returncode == 2 and out.splitlines() == [f"{path}: nodes[0].device: unknown device 'tpu'; "
                                                        "known: host, nano, srn, xavier-nx"], out
