"""Spec validation: good specs load, bad ones are refused with the field named."""

from __future__ import annotations

import pytest

from orchestrator.spec import SpecError, load_spec, parse_spec


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
