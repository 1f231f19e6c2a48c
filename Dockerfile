# Image for the taxi-duration flows, the Prefect worker and the Prefect server.
#
# Base image: any Debian-like image with python3 (3.11) and the venv module.
# Default is the official slim image by tag; pin it by digest with
# `--build-arg PYTHON_IMAGE=python:3.11-slim@sha256:<digest>` (docs/ci-and-images.md),
# and a machine without a registry can pass its own base the same way.
ARG PYTHON_IMAGE=python:3.11-slim

# `:-` defaults too: prefect.yaml passes an unset variable as an empty build
# arg, which would otherwise override the ARG default with "".
# ---- stage 1: install the pinned dependencies into a venv, then slim it ----
FROM ${PYTHON_IMAGE:-python:3.11-slim} AS deps
# binutils for `strip` (this stage only; the runtime stage copies the venv alone).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends binutils \
 && rm -rf /var/lib/apt/lists/*
# Offline builds: put wheels in ./wheelhouse/ (e.g. `pip download --require-hashes
# -r requirements.lock -d wheelhouse`) and pass --build-arg PIP_NO_INDEX=1.
# Without a wheelhouse, pip installs the same pins from the package index. Either
# way pip installs only files whose sha256 the lock lists.
ARG PIP_NO_INDEX=0
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_NO_INDEX=${PIP_NO_INDEX:-0}
RUN python3 -m venv /opt/venv
# The glob makes the wheelhouse optional: if there is none, only the lock file
# is copied. A directory's contents land flat in /tmp/deps.
COPY requirements.lock wheelhouse* /tmp/deps/
# --no-compile: the bytecode is compiled below, once the venv holds only what a
# run can import.
RUN /opt/venv/bin/pip install --require-hashes --no-compile --find-links /tmp/deps \
        -r /tmp/deps/requirements.lock \
 && /opt/venv/bin/pip check
# Leave out what no flow run, worker or server ever loads (docs/ci-and-images.md
# lists what takes the space):
# - the packages' own test suites, and pyarrow's C++ test module;
# - C/Cython sources and headers (pyarrow, numpy, scipy ship them for builds
#   against them), type stubs;
# - optional pyarrow modules that pandas never imports: Flight RPC and the S3
#   filesystem (the flows read S3 through boto3), and the duplicate copies of
#   libarrow_python (wheels cannot hold symlinks; the loader uses the .so.NNNN);
# - botocore's API models of the ~400 AWS services other than S3 and the STS/SSO
#   credential services (28 MB; boto3 loads a model only for a client it makes);
# - debug symbols of the compiled extensions (`strip --strip-unneeded`), except
#   the libraries auditwheel vendored into `<package>.libs/`: patchelf rewrote
#   their headers, and strip breaks them ("ELF load command ... not page-aligned");
# - pip and setuptools (nothing is installed at run time).
RUN set -eu; cd /opt/venv/lib/python3.11/site-packages; \
    find . -depth -type d \( -name tests -o -name test \) -exec rm -rf {} +; \
    rm -f pyarrow/_pyarrow_cpp_tests*.so; \
    rm -rf pyarrow/include pyarrow/src pyarrow/includes numpy/_core/include numpy/f2py/src; \
    find . -type f \( -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' -o -name '*.pyi' \
        -o -name '*.h' -o -name '*.hpp' -o -name '*.c' -o -name '*.cpp' -o -name '*.a' \) -delete; \
    rm -f pyarrow/libarrow_flight.so* pyarrow/_flight*.so pyarrow/libarrow_python_flight.so* \
        pyarrow/libarrow_s3.so* pyarrow/_s3fs*.so \
        pyarrow/libarrow_python.so pyarrow/libarrow_python.so.*.*.* \
        pyarrow/libarrow_python_parquet_encryption.so pyarrow/libarrow_python_parquet_encryption.so.*.*.*; \
    for d in botocore/data/*/; do \
        case "$d" in botocore/data/s3/|botocore/data/sts/|botocore/data/sso/|botocore/data/sso-oidc/) ;; \
        *) rm -rf "$d" ;; esac; \
    done; \
    find /opt/venv -type f \( -name '*.so' -o -name '*.so.*' \) -not -path '*.libs/*' \
        -exec strip --strip-unneeded {} +; \
    /opt/venv/bin/python -m pip uninstall --quiet --yes pip setuptools
# Bytecode, compiled once here: flow containers run as a non-root user who
# cannot write __pycache__, and without it every start recompiles (imports
# 11.5 s instead of 4-5 s). unchecked-hash: the venv never changes after this
# line, so Python loads the .pyc without comparing source timestamps.
# Like pip, skip the few modules written for newer Pythons (never imported here).
RUN /opt/venv/bin/python -c "import compileall, py_compile; compileall.compile_dir( \
    '/opt/venv/lib/python3.11/site-packages', quiet=2, workers=0, \
    invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)"

# ---- stage 2: runtime image: venv + project code, no build leftovers ----
FROM ${PYTHON_IMAGE:-python:3.11-slim}
LABEL org.opencontainers.image.title="taxi-duration" \
      org.opencontainers.image.description="Batch prediction of NYC taxi trip durations (Prefect 3 flows)"
# A fixed, unprivileged uid; the code stays root-owned so the flows cannot
# modify themselves. PREFECT_HOME is the only place Prefect writes to.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin app
# The OpenMP runtime, which LightGBM's wheel links and slim images lack.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libgomp1 \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
# PYTHONDONTWRITEBYTECODE: the image's user cannot write __pycache__ anyway.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/taxi \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PREFECT_HOME=/home/app/.prefect \
    MPLCONFIGDIR=/home/app/.config/matplotlib
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
# The project's own bytecode (checked-hash: still right if the code is changed).
RUN python -m compileall -q --invalidation-mode checked-hash taxi flows deploy
USER app
RUN mkdir -p "$PREFECT_HOME" "$MPLCONFIGDIR"
CMD ["python", "-c", "import taxi, flows; print('taxi-duration image: run a flow through a Prefect worker')"]
