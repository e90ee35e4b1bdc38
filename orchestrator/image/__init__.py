"""The node image: wheelhouse, local Debian base, Docker build, registry push, LXD export.

One image runs everywhere: local Docker networks (docker backend, docker-compose), any registry,
and Colosseum SRNs (as an LXD tarball). See the Dockerfile at the repository root.
"""

from orchestrator.image.dockerutil import DockerError

__all__ = ["DockerError"]
