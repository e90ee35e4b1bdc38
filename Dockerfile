# The pamdi node image: the agent (`pamdi node`) with its core dependencies, nothing else.
#
# Python packages come only from the wheelhouse in the build context (`.whl/`, made on the host by
# `pamdi image wheels`), installed with `pip --no-index`: the build needs no package index, like
# Colosseum's SRN containers, which have no Internet. `pamdi image build` assembles a small
# context (this file, .whl/, node_image/) and builds it; `docker build .` in the repository
# works too once `pamdi image wheels` has run (.dockerignore keeps the rest out).
#
# BASE_IMAGE: any Debian-like image with python3 (3.11 matches the default wheelhouse). Users
# usually have the official slim Python image; hosts that cannot pull one build
# `pamdi image base` (debootstrap + docker import) and pass --build-arg BASE_IMAGE=pamdi-base:bookworm.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS install
# Lets `pamdi image build` prune this stage (about 1 GB) once the final image exists.
LABEL pamdi.stage=install
COPY .whl/ /tmp/wheels/
# A venv without pip; pip runs from its own wheel. torch's C++ headers, test binaries and
# protobuf compiler are not needed at run time (about 190 MB).
RUN set -- /tmp/wheels/pip-*.whl \
 && python3 -m venv --without-pip /opt/pamdi \
 && /opt/pamdi/bin/python "$1/pip" install --no-index --find-links /tmp/wheels \
        --no-cache-dir --disable-pip-version-check pamdi \
 && site=$(/opt/pamdi/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
 && rm -rf "$site/torch/include" "$site/torch/test" \
 && find "$site/torch/bin" -mindepth 1 ! -name torch_shm_manager -exec rm -rf {} + \
 && /opt/pamdi/bin/python -c 'import torch, zmq, msgpack, pamdi_node; print("torch", torch.__version__)'

FROM ${BASE_IMAGE}
# ip/tc let the node shape its own links when run with NET_ADMIN. The local base has them; the
# official slim image does not, and only then is a package index needed.
RUN command -v tc >/dev/null 2>&1 || { apt-get update \
      && apt-get install -y --no-install-recommends iproute2 && rm -rf /var/lib/apt/lists/*; }
COPY --from=install /opt/pamdi /opt/pamdi
COPY node_image/pamdi_node_entry.py /usr/local/bin/pamdi-node-entry
ENV PATH=/opt/pamdi/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    PAMDI_TRACE_DIR=/traces
LABEL org.opencontainers.image.title="pamdi-node" \
      org.opencontainers.image.description="pamdi node agent (pamdi node)"
# `pamdi node ARGS`; when PAMDI_NODE_CONFIG names a node config file (docker-compose runs), the
# entry script first shapes this node's links from it and takes the agent arguments from it.
ENTRYPOINT ["pamdi-node-entry"]
