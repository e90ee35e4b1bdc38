"""The enumerated values of CLI options, as ``Literal`` types: typer turns each into a choice that
``--help`` lists (``<local|netns|...>``), that shell completion offers, and that refuses a mistyped
value naming the valid ones. ``tests/test_cli_basics.py`` keeps them equal to the registries they
mirror (backends, device-time models)."""

from __future__ import annotations

from typing import Literal

BackendName = Literal["local", "netns", "docker", "colosseum", "ssh"]
DemoBackend = Literal["netns", "local"]
SweepBackend = Literal["netns", "docker", "local"]
DeviceTimeName = Literal["profile", "quota", "native"]
LogLevel = Literal["debug", "info", "warning", "error"]
SweepMode = Literal["sim", "emulate"]
