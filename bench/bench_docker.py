"""Node image and docker backend benchmark.

1. Build times from scratch: the debootstrap base, the wheelhouse (cached dependency download and
   pamdi wheel), the node image (no network in the build); the image sizes; the cached rebuild
   check; the LXD export (gzip level 6) and its size.
2. Shaped TCP goodput between two containers of the docker backend at 10, 20 and 50 Mbit/s,
   against the 0.956 x rate budget (DESIGN.md).

Builds under separate tags (removed afterwards), so the images the tests use are not touched.
Writes ``bench/out/bench_docker.json`` and prints a summary. Usage: ``python bench/bench_docker.py``
(root, Docker running: ``scripts/bootstrap.d/docker.sh``).
"""

from __future__ import annotations

import contextlib
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.image.dockerutil import DockerError, client  # noqa: E402

BASE_TAG = "pamdi-bench-base:bookworm"
NODE_TAG = "pamdi-bench-node:latest"
GOODPUT_FACTOR = 0.956


def goodput(image: str, rates: list[float], seconds: float = 4.0) -> list[dict[str, float]]:
    from orchestrator.backends.base import RunContext
    from orchestrator.backends.docker import DockerBackend
    from orchestrator.spec import LinkParams, parse_spec

    spec = parse_spec({"name": "bench", "nodes": [{"name": "a"}, {"name": "b"}],
                       "links": [{"a": "a", "b": "b", "rate_mbit": rates[0]}],
                       "sources": [{"name": "s", "node": "a", "model": "tiny", "samples": 1}]})
    out = []
    backend = DockerBackend(image=image)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            backend.up(spec, RunContext("bench-goodput", Path(tmp), trace_dir=Path(tmp) / "agents"))
            for rate in rates:
                backend.set_link("a", "b", LinkParams(rate_mbit=rate))
                address = backend.endpoint("b").data["a"].removeprefix("tcp://").rsplit(":", 1)[0]
                sink = backend.containers["b"]
                exec_id = sink.client.api.exec_create(sink.id, ["pamdi-node-entry", "tcp-sink", "5201",
                                                                str(seconds + 1)])
                stream = sink.client.api.exec_start(exec_id, stream=True)
                time.sleep(0.3)
                backend.containers["a"].exec_run(["pamdi-node-entry", "tcp-source", address, "5201", str(seconds)])
                mbit = float(json.loads(b"".join(stream).decode().strip().splitlines()[-1])["mbit_s"])
                out.append({"rate_mbit": rate, "goodput_mbit": round(mbit, 3),
                            "ratio_to_rate": round(mbit / rate, 4),
                            "error_vs_0.956": round(mbit / (GOODPUT_FACTOR * rate) - 1, 4)})
        finally:
            backend.down()
    return out


def main() -> int:
    from orchestrator.image.base import build_base_image
    from orchestrator.image.build import build_node_image
    from orchestrator.image.lxd import export_lxd
    from orchestrator.image.wheels import build_wheelhouse

    try:
        cli = client()
    except DockerError as err:
        print(json.dumps({"skipped": str(err)}))
        return 0
    result: dict[str, Any] = {"machine": platform.node(), "python": platform.python_version()}
    try:
        base = build_base_image(BASE_TAG, force=True)
        with tempfile.TemporaryDirectory() as tmp:  # from scratch, beside the project's .whl/
            wheels = build_wheelhouse(Path(tmp) / "whl", force=True)
            wheels_cached = build_wheelhouse(Path(tmp) / "whl")
        build_wheelhouse()
        node = build_node_image(NODE_TAG, base_image=BASE_TAG, network_mode="none", force=True)
        cached = build_node_image(NODE_TAG, base_image=BASE_TAG)
        with tempfile.TemporaryDirectory() as tmp:
            lxd = export_lxd("pamdi-bench", Path(tmp) / "pamdi-bench.tar.gz", image=NODE_TAG, compresslevel=6)
        result["build"] = {
            "base_s": round(base.seconds, 1), "base_mb": round(base.size_bytes / 1e6, 1),
            "wheelhouse_s": round(wheels.seconds, 1), "wheelhouse_cached_s": round(wheels_cached.seconds, 2),
            "wheelhouse_mb": round(wheels.size_bytes / 1e6, 1), "wheels": len(wheels.wheels),
            "node_image_s": round(node.seconds, 1), "node_image_mb": round(node.size_bytes / 1e6, 1),
            "node_image_cached_check_s": round(cached.seconds, 2),
            "lxd_export_s": round(lxd.seconds, 1), "lxd_tarball_mb": round(lxd.size_bytes / 1e6, 1),
        }
        result["goodput"] = goodput(NODE_TAG, [10.0, 20.0, 50.0])
    finally:
        for tag in (NODE_TAG, BASE_TAG):
            with contextlib.suppress(Exception):  # best effort: cleanup must not fail the bench
                cli.images.remove(tag)
    out_dir = ROOT / "bench" / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench_docker.json").write_text(json.dumps(result, indent=2) + "\n")
    b = result["build"]
    print(f"base image      {b['base_s']:6.1f} s  {b['base_mb']:7.1f} MB (debootstrap + docker import)")
    print(f"wheelhouse      {b['wheelhouse_s']:6.1f} s  {b['wheelhouse_mb']:7.1f} MB, {b['wheels']} wheels "
          f"(cached: {b['wheelhouse_cached_s']} s)")
    print(f"node image      {b['node_image_s']:6.1f} s  {b['node_image_mb']:7.1f} MB (cached check: "
          f"{b['node_image_cached_check_s']} s)")
    print(f"LXD export      {b['lxd_export_s']:6.1f} s  {b['lxd_tarball_mb']:7.1f} MB (gzip -6)")
    for g in result["goodput"]:
        print(f"goodput {g['rate_mbit']:5.1f} Mbit/s -> {g['goodput_mbit']:7.3f} Mbit/s "
              f"({g['ratio_to_rate']:.4f} of rate; {g['error_vs_0.956']:+.2%} vs 0.956 x rate)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
