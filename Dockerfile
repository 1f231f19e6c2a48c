# Image for the taxi-duration flows, the Prefect worker and the Prefect server.
#
# Base image: any Debian-like image with python3 (3.11) and the venv module.
# Default is the official slim image; a machine without a registry can pass its
# own base (`--build-arg PYTHON_IMAGE=...`).
ARG PYTHON_IMAGE=python:3.11-slim

# `:-` defaults too: prefect.yaml passes an unset variable as an empty build
# arg, which would otherwise override the ARG default with "".
# ---- stage 1: resolve and install the pinned dependencies into a venv ----
FROM ${PYTHON_IMAGE:-python:3.11-slim} AS deps
# Offline builds: put wheels in ./wheelhouse/ (e.g. `pip download -r
# requirements.lock -d wheelhouse`) and pass --build-arg PIP_NO_INDEX=1.
# Without a wheelhouse, pip installs the same pins from the package index.
ARG PIP_NO_INDEX=0
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_NO_INDEX=${PIP_NO_INDEX:-0}
RUN python3 -m venv /opt/venv
# The glob makes the wheelhouse optional: if there is none, only the lock file
# is copied. A directory's contents land flat in /tmp/deps.
COPY requirements.lock wheelhouse* /tmp/deps/
RUN /opt/venv/bin/pip install --find-links /tmp/deps -r /tmp/deps/requirements.lock \
 && /opt/venv/bin/pip check

# ---- stage 2: runtime image: venv + project code, no build leftovers ----
FROM ${PYTHON_IMAGE:-python:3.11-slim}
LABEL org.opencontainers.image.title="taxi-duration" \
      org.opencontainers.image.description="Batch prediction of NYC taxi trip durations (Prefect 3 flows)"
# A fixed, unprivileged uid; the code stays root-owned so the flows cannot
# modify themselves. PREFECT_HOME is the only place Prefect writes to.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/taxi \
    PYTHONUNBUFFERED=1 \
    PREFECT_HOME=/home/app/.prefect
COPY --from=deps /opt/venv /opt/venv
WORKDIR /opt/taxi
# PYTHONPATH makes `taxi` importable from the flows whatever the working
# directory; prefect.yaml's pull step also sets it to /opt/taxi.
COPY pyproject.toml requirements.lock ./
COPY taxi/ taxi/
COPY flows/ flows/
COPY deploy/ deploy/
# Sample data, uploaded to the bucket by `python -m taxi.seed`.
COPY data/ data/
USER app
RUN mkdir -p "$PREFECT_HOME"
CMD ["python", "-c", "import taxi, flows; print('taxi-duration image: run a flow through a Prefect worker')"]
