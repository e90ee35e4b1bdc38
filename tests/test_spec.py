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
    lines = [line for line in str(err.value).splitlines() if "partitions" in line]
    assert len(lines) == 1 and lines[0].strip().startswith("sources[0].partitions:"), str(err.value)
    assert "'blocks'" in lines[0] and repr(bad) in lines[0]
