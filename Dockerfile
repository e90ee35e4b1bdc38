# Placeholder until the node-image issue: the real image installs from a wheelhouse (see README).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
WORKDIR /opt/pamdi
COPY . /opt/pamdi
ENTRYPOINT ["pamdi", "node"]
