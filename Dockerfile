# syntax=docker/dockerfile:1
# SPDX-License-Identifier: GPL-2.0-or-later
#
# passt-sep sidecar image: passt (and pasta, same entry point chosen by
# name) from a virtual environment in /opt/passt-sep.
#
#   docker build -t passt-sep .
#   docker run --rm passt-sep --help
#
# The builder stage compiles python-prctl (libcap headers, gcc); the final
# stage carries only the venv and the runtime libraries.

FROM debian:12-slim AS builder
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-venv python3-dev gcc libc6-dev libcap-dev libcap2 libseccomp2 \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/passt-sep \
 && /opt/passt-sep/bin/pip install --no-cache-dir --upgrade pip setuptools wheel
COPY . /src
RUN /opt/passt-sep/bin/pip install --no-cache-dir /src \
 && /opt/passt-sep/bin/python -c "import passt_sep, sandbox, prctl, pyseccomp"

FROM debian:12-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 libcap2 libseccomp2 iproute2 \
 && rm -rf /var/lib/apt/lists/*
# Same base and python3 path as the builder, so the venv's interpreter link holds.
COPY --from=builder /opt/passt-sep /opt/passt-sep
ENV PATH=/opt/passt-sep/bin:$PATH
# Running as an unprivileged user is possible where the sidecar does not need
# to join other namespaces (passt mode with a UNIX socket):
#   RUN useradd --system --no-create-home passt
#   USER passt
ENTRYPOINT ["/opt/passt-sep/bin/passt"]
