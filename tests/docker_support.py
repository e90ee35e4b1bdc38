"""Fixtures shared by the Docker tests (test_image*, test_docker*, test_compose*).

The node image is built once per test session (and kept between sessions: the builders cache
by content, so a rerun costs a few seconds). As root, a missing Docker engine is an error, not
a skip: scripts/bootstrap.d/docker.sh installs and starts it, and these tests must run in CI.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# PAMDI_TEST_NODE_TAG: another tag, so that test sessions of two source trees on one engine do
# not retag each other's image between a build and the containers that use it.
NODE_TAG = os.environ.get("PAMDI_TEST_NODE_TAG", "pamdi-node:test")
BASE_TAG = "pamdi-base:bookworm"
# Every container/network a test creates carries this label, so leftovers are found.
TEST_LABEL = "pamdi.test"


def docker_client():  # type: ignore[no-untyped-def]
    from orchestrator.image.dockerutil import DockerError, client

    try:
        return client()
    except DockerError as err:
        if os.geteuid() != 0:
            pytest.skip(f"no Docker engine and not root: {err}")
        pytest.fail(f"Docker engine unreachable although bootstrap should start it: {err}")


@pytest.fixture(scope="session")
def docker_cli():  # type: ignore[no-untyped-def]
    return docker_client()


@pytest.fixture(scope="session")
def node_image(docker_cli) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """Tag of a node image built from the current tree's wheelhouse, with no network in the build."""
    from orchestrator.image.base import build_base_image
    from orchestrator.image.build import build_node_image
    from orchestrator.image.wheels import build_wheelhouse

    del docker_cli
    build_base_image(BASE_TAG)
    build_wheelhouse()
    # network_mode none: the build must install from the wheelhouse alone.
    build_node_image(NODE_TAG, base_image=BASE_TAG, network_mode="none")
    yield NODE_TAG


def project_leftovers(cli, label: str) -> list[str]:  # type: ignore[no-untyped-def]
    """Names of containers and networks still carrying ``label`` (any value)."""
    containers = [c.name for c in cli.containers.list(all=True, filters={"label": label})]
    networks = [n.name for n in cli.networks.list(filters={"label": label})]
    return containers + networks
