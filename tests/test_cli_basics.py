"""The CLI's own surface: ``--version``, completion, shipped specs, help that renders, readable tables."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.spec import load_spec
from orchestrator.specs import SPECS_DIR, shipped_specs
from pamdi_node import __version__

cli = CliRunner()


def test_version_and_completion_options() -> None:
    result = cli.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == __version__
    helptext = cli.invoke(app, ["--help"]).stdout
    assert "--install-completion" in helptext and "--show-completion" in helptext


def test_every_command_group_is_registered_and_its_help_renders() -> None:
    # `image push --help` used to raise rich's MarkupError on "[/namespace]" in an option's help.
    groups = ["models", "specs", "net", "scenarios", "image", "colosseum", "lab", "node"]
    commands = ["simulate", "allocate", "emulate", "demo", "compose", "sweep", "report", "cleanup", "profile"]
    top = cli.invoke(app, ["--help"]).stdout
    for name in groups + commands:
        assert re.search(rf"\b{name}\b", top), f"{name} missing from pamdi --help"
        result = cli.invoke(app, [name, "--help"])
        assert result.exit_code == 0 and "Traceback" not in result.output, (name, result.output[-500:])
    for group, sub in (("image", "build"), ("image", "push"), ("image", "wheels"), ("image", "export-lxd"),
                       ("lab", "check"), ("lab", "deploy"), ("lab", "profile")):
        result = cli.invoke(app, [group, sub, "--help"])
        assert result.exit_code == 0 and "Traceback" not in result.output, (sub, result.output[-500:])
    assert "--list" not in cli.invoke(app, ["simulate", "--help"]).stdout  # no help names a missing option


def test_specs_list_show_copy(tmp_path: Path) -> None:
    result = cli.invoke(app, ["specs", "list", "--json"])
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == shipped_specs()
    demo = next(r for r in rows if r["name"] == "paper-5node-resnet50-loaded")
    assert demo["nodes"] == 5 and demo["sources"] == ["ts:resnet50", "nts:resnet50"]
    shown = cli.invoke(app, ["specs", "show", "small"])
    assert shown.exit_code == 0 and shown.stdout == (SPECS_DIR / "small.yaml").read_text()
    assert yaml.safe_load(shown.stdout)["name"] == "small"
    copied = cli.invoke(app, ["specs", "copy", "small", str(tmp_path)])
    assert copied.exit_code == 0 and load_spec(tmp_path / "small.yaml").name == "small"
    again = cli.invoke(app, ["specs", "copy", "small", str(tmp_path)])
    assert again.exit_code == 2 and "exists; pass --force" in again.output
    bad = cli.invoke(app, ["specs", "show", "no-such"])
    assert bad.exit_code == 2 and "no shipped spec 'no-such'; shipped: " in bad.output
    assert len(bad.output.strip().splitlines()) == 1


def test_scenario_names_are_never_cut_at_80_columns() -> None:
    import radio_scenarios

    result = CliRunner(env={"COLUMNS": "80"}).invoke(app, ["scenarios", "list"])
    assert result.exit_code == 0
    for name in radio_scenarios.catalogue():
        assert name in result.stdout, name


def test_colosseum_commands_that_need_srns_refuse_a_config_without_them_in_one_line(tmp_path: Path) -> None:
    # Used to ask for the SRN password, then print a 59-line traceback with a wrong `--write` hint.
    cfg = tmp_path / "colosseum.yaml"
    cfg.write_text(yaml.safe_dump({"team": "wineslab", "user": "jdoe"}))
    runner = CliRunner(env={"COLOSSEUM_SRN_PASSWORD": "", "PAMDI_COLOSSEUM_CONFIG": ""})
    for args in (["check"], ["rf", "info"], ["run", "small"], ["harvest", "--run-id", "some-run"]):
        result = runner.invoke(app, ["colosseum", *args, "-c", str(cfg)])
        assert result.exit_code == 2, (args, result.output)
        assert result.output.strip() == ("srns: no SRN numbers in the config; run `pamdi colosseum reservation ID "
                                         "--write -c CONFIG` or list them under `srns:`"), (args, result.output)
    # The hint's syntax is the real one: --write is a flag, the config is -c.
    helptext = runner.invoke(app, ["colosseum", "reservation", "--help"]).stdout
    assert "--write" in helptext and "--config" in helptext


def test_colosseum_batch_takes_a_shipped_spec_name(tmp_path: Path) -> None:
    cfg = tmp_path / "colosseum.yaml"
    cfg.write_text(yaml.safe_dump({"team": "wineslab", "user": "jdoe", "srns": [13, 15, 27], "scenario": 1009}))
    result = cli.invoke(app, ["colosseum", "batch", "small", "--no-upload", "--out", str(tmp_path / "b"),
                              "-c", str(cfg)])
    assert result.exit_code == 0, result.output
    bad = cli.invoke(app, ["colosseum", "batch", "smal", "--no-upload", "-c", str(cfg)])
    assert bad.exit_code == 2 and "no shipped spec of that name" in bad.output


def test_demo_table_fits_80_columns_without_cutting_names() -> None:
    from rich.console import Console

    from orchestrator.cli.demo_cmd import _print

    policies = ("local", "ar-mdi", "ms-mdi", "pa-mdi", "ddi")  # what the demo runs
    rows = [{"policy": p, "source": s, "completed": 80, "failed": 0, "mean_s": 2.2603, "p50_s": 1.9075,
             "p95_s": 12.2603} for p in policies for s in ("ts", "nts")]
    summary = {"device_time": "profile", "time_stretch": 1.45, "runs": [
        {"policy": p, "overrun_fraction": 0.007, "sources": {s: {"sim_mean_s": 2.2} for s in ("ts", "nts")}}
        for p in policies]}
    console = Console(width=80, record=True)
    _print(console, {"sources": rows, "ts_source": "ts", "ts_reduction_pct": {}}, "netns", summary)
    text = console.export_text()
    assert "…" not in text
    for p in policies:
        assert f" {p} " in text
    assert "12260.3" in text and "+2.7%" in text


def test_enumerated_options_are_choices_that_mirror_their_registries() -> None:
    """--backend, --device-time, --log-level, --mode: typer choices (listed in --help, offered by
    completion, a wrong value refused naming the valid ones) equal to what the code accepts."""
    from typing import get_args

    from orchestrator.backends import BACKENDS
    from orchestrator.cli import choices
    from pamdi_node.devicetime import DEVICE_TIMES

    assert get_args(choices.BackendName) == tuple(BACKENDS)
    assert get_args(choices.DeviceTimeName) == DEVICE_TIMES
    assert set(get_args(choices.DemoBackend)) | set(get_args(choices.SweepBackend)) <= set(BACKENDS)
    assert get_args(choices.LogLevel) == ("debug", "info", "warning", "error")
    helptext = cli.invoke(app, ["emulate", "--help"], env={"COLUMNS": "200"}).stdout
    assert "<local|netns|docker|colosseum|ssh>" in helptext and "<profile|quota|native>" in helptext
    assert "<debug|info|warning|error>" in helptext
    for args, valid in ((["emulate", "small", "--backend", "nope"], "'local', 'netns', 'docker', 'colosseum'"),
                        (["emulate", "small", "--device-time", "fast"], "'profile', 'quota', 'native'"),
                        (["demo", "--backend", "docker"], "'netns', 'local'"),
                        (["sweep", "small", "--mode", "both"], "'sim', 'emulate'")):
        bad = cli.invoke(app, args, env={"COLUMNS": "200"})
        assert bad.exit_code == 2 and valid in bad.output, (args, bad.output)


def _leaf_commands(group, prefix: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    """(words, command) of every visible leaf command under a typer group."""
    for name, cmd in sorted(group.commands.items()):
        if getattr(cmd, "hidden", False):
            continue
        if hasattr(cmd, "commands"):
            yield from _leaf_commands(cmd, (*prefix, name))
        else:
            yield (*prefix, name), cmd


def test_every_command_that_reports_a_result_takes_json() -> None:
    """Human tables by default, ``--json`` for scripts, on every command that reports a result (the
    others run a shell command, print a file or a version, or write a file they name; ``profile``
    prints its profile JSON always)."""
    import typer.main

    no_result = {("net", "exec"), ("net", "down"), ("specs", "show"), ("specs", "copy"), ("colosseum", "init"),
                 ("version",), ("profile",), ("lab", "example")}
    missing = []
    for words, cmd in _leaf_commands(typer.main.get_command(app)):
        if words in no_result:
            continue
        if not any("--json" in p.opts for p in cmd.params):
            missing.append(" ".join(words))
    assert not missing, f"commands without --json: {missing}"


def test_tables_carry_what_the_json_says(tmp_path: Path) -> None:
    """The default output of a JSON-reporting command is a table of the same fields and values."""
    from orchestrator.cli.output import _flatten

    # compose renders the same project (the same fields and values) every time for the same --out.
    args = ["compose", "small", "--out", str(tmp_path / "project")]
    wide = {"COLUMNS": "250"}  # rich folds a cell wider than the terminal; the comparison wants it whole
    as_json = cli.invoke(app, [*args, "--json"], env=wide)
    table = cli.invoke(app, args, env=wide)
    assert as_json.exit_code == 0 and table.exit_code == 0, (as_json.output, table.output)
    data = json.loads(as_json.stdout)
    assert not table.stdout.lstrip().startswith("{")
    pairs: list[tuple[str, str]] = []
    _flatten(data, "", pairs, [])
    assert pairs
    flat = " ".join(table.stdout.split())
    for key, value in pairs:
        assert key in table.stdout and " ".join(value.split()) in flat, (key, value)
