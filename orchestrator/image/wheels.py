"""``pamdi image wheels``: the wheelhouse the node image installs from, built on the host.

Containers here (and Colosseum SRNs) cannot reach a package index, so every Python package the
node needs is fetched on the host as a wheel for the image's interpreter (CPython 3.11 on Debian
bookworm by default) and platform, and the image installs with ``pip --no-index``. Only the core
``dependencies`` of pyproject.toml go in (the node runs ``pamdi node``; the ``orchestrator``
extra stays on the experimenter's machine), with torch pinned as pyproject pins it, plus pip
itself (the image runs pip from its wheel, so no pip is installed in the image) and the pamdi
wheel built from the working tree.

Caching: dependency wheels are fetched again only when the requirement list or target changes;
the pamdi wheel is rebuilt only when the project's source files change.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

# Folder (in the project root) that `docker build .` with the repository's Dockerfile expects.
DEFAULT_WHEELHOUSE = ".whl"
DEFAULT_PYTHON_VERSION = "3.11"
# Package folders shipped in the pamdi wheel (pyproject's packages.find include list).
_PROJECT_DIRS = ("pamdi_node", "orchestrator", "radio_scenarios", "results")
_PROJECT_FILES = ("pyproject.toml", "README.md", "LICENSE")
_STAMP = ".pamdi-wheelhouse.json"


class WheelhouseError(RuntimeError):
    pass


@dataclass(frozen=True)
class WheelhouseResult:
    path: Path
    wheels: tuple[str, ...]
    downloaded: bool  # False when the cached dependency wheels were kept
    pamdi_rebuilt: bool
    seconds: float
    size_bytes: int


def project_root() -> Path:
    """The source tree this orchestrator runs from (the folder holding pyproject.toml)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "pamdi_node").is_dir():
            return parent
    raise WheelhouseError("cannot find the pamdi source tree (pyproject.toml) above " + str(here))


def node_requirements(root: Path) -> list[str]:
    """The core ``[project] dependencies`` of pyproject.toml: what ``pamdi node`` needs."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: fall back to the installed metadata
        from importlib.metadata import requires

        return [r for r in (requires("pamdi") or []) if "extra ==" not in r]
    data = tomllib.loads((root / "pyproject.toml").read_text())
    deps = list(data["project"]["dependencies"])
    if not any(d.replace(" ", "").startswith("torch==") for d in deps):
        raise WheelhouseError("pyproject.toml must pin torch (torch==X): an unpinned torch pulls a CUDA build")
    return deps


# Debian bookworm has glibc 2.36: every manylinux tag up to that runs there.
TARGET_GLIBC_MINOR = 36


def default_platforms(glibc_minor: int = TARGET_GLIBC_MINOR) -> list[str]:
    """Platform tags for this machine's architecture that the image's glibc accepts.

    ``pip download --platform`` matches tags literally, so list them all (newest first), with
    the legacy aliases (manylinux2014 = 2_17, manylinux2010 = 2_12, manylinux1 = 2_5).
    """
    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(glibc_minor, 4, -1)]
    tags += [f"manylinux2014_{machine}", f"manylinux2010_{machine}", f"manylinux1_{machine}"]
    return tags


def build_wheelhouse(
    dest: Path | None = None,
    *,
    root: Path | None = None,
    python_version: str = DEFAULT_PYTHON_VERSION,
    platforms: Sequence[str] = (),
    pip_args: Sequence[str] = (),
    force: bool = False,
    out: TextIO | None = None,
) -> WheelhouseResult:
    started = time.monotonic()
    root = root or project_root()
    dest = (dest or root / DEFAULT_WHEELHOUSE).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    platform_list = list(platforms) or default_platforms()
    requirements = [*node_requirements(root), "pip"]
    stamp_path = dest / _STAMP
    stamp = json.loads(stamp_path.read_text()) if stamp_path.is_file() and not force else {}
    wanted = {"requirements": requirements, "python": python_version, "platforms": platform_list,
              "pip_args": list(pip_args)}

    downloaded = False
    if {k: stamp.get(k) for k in wanted} != wanted:
        for old in dest.glob("*.whl"):
            old.unlink()
        nodot = python_version.replace(".", "")
        _pip(
            ["download", "--dest", str(dest), "--only-binary=:all:", "--python-version", python_version,
             "--implementation", "cp", "--abi", f"cp{nodot}", "--abi", "abi3", "--abi", "none",
             *[arg for tag in platform_list for arg in ("--platform", tag)],
             *pip_args, *requirements],
            out,
        )
        downloaded = True
        stamp = {**wanted}

    source_hash = _source_hash(root)
    pamdi_rebuilt = False
    if downloaded or stamp.get("source_hash") != source_hash or not list(dest.glob("pamdi-*.whl")):
        for old in dest.glob("pamdi-*.whl"):
            old.unlink()
        _build_project_wheel(root, dest, out)
        pamdi_rebuilt = True
        stamp["source_hash"] = source_hash
    stamp_path.write_text(json.dumps(stamp, indent=2) + "\n")

    wheels = tuple(sorted(p.name for p in dest.glob("*.whl")))
    torch_wheels = [w for w in wheels if w.startswith("torch-")]
    if not torch_wheels:
        raise WheelhouseError(f"no torch wheel in {dest}; check the pip index configuration")
    size = sum(p.stat().st_size for p in dest.glob("*.whl"))
    return WheelhouseResult(dest, wheels, downloaded, pamdi_rebuilt, time.monotonic() - started, size)


def _project_files(root: Path) -> list[Path]:
    files: list[Path] = [root / f for f in _PROJECT_FILES if (root / f).is_file()]
    for top in _PROJECT_DIRS:
        base = root / top
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            rel = path.relative_to(root)
            if not path.is_file() or "__pycache__" in rel.parts or path.suffix in {".pyc", ".pyo"}:
                continue
            # Run data never goes into the image.
            if rel.parts[:2] == ("results", "runs"):
                continue
            files.append(path)
    return files


def _source_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in _project_files(root):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _build_project_wheel(root: Path, dest: Path, out: TextIO | None) -> None:
    # Build from a clean copy: an in-tree build would leave build/ and egg-info in a shared tree.
    with tempfile.TemporaryDirectory(prefix="pamdi-src-") as tmp:
        for path in _project_files(root):
            target = Path(tmp) / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        _pip(["wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(dest), tmp], out)


def _pip(args: list[str], out: TextIO | None) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    if out is not None:
        out.write("+ pip " + " ".join(args) + "\n")
        out.flush()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise WheelhouseError(f"pip {args[0]} failed (exit {proc.returncode}):\n{tail}")


def build_pamdi_wheel(dest: Path, root: Path | None = None, out: TextIO | None = None) -> Path:
    """Only the pamdi wheel of the working tree, into ``dest`` (for hosts that already have its
    dependencies, e.g. a Jetson with NVIDIA's torch: ``pamdi lab deploy --pamdi-only``)."""
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("pamdi-*.whl"):
        old.unlink()
    _build_project_wheel(root or project_root(), dest, out)
    wheels = sorted(dest.glob("pamdi-*.whl"))
    if not wheels:
        raise WheelhouseError(f"no pamdi wheel was built in {dest}")
    return wheels[-1]
