# syntax=docker/dockerfile:1
# The /generate API: FastAPI over ONNX Runtime. No torch in either variant.
#
#   GPU (default target): docker build -f docker/api.Dockerfile --target gpu -t dcgan-mnist/api:0.1.0-gpu .
#   CPU:                  docker build -f docker/api.Dockerfile --target cpu -t dcgan-mnist/api:0.1.0-cpu .
#
# GPU variant: onnxruntime-gpu replaces onnxruntime. onnxruntime-gpu >= 1.27 on PyPI is built for
# CUDA 13 + cuDNN 9 (1.26.0 is the last CUDA 12 build), hence the CUDA 13 base; it needs an NVIDIA
# driver >= 580 on the host. For an older driver (CUDA 12.x, driver >= 525):
#   --build-arg CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04 --build-arg ORT_GPU_VERSION=1.26.0
#
# Configuration comes from the environment at run time (DCGAN_SERVE_*, DCGAN_REGISTRY_*, DCGAN_S3_*):
# no credentials are baked in. Liveness: GET /healthz (the HEALTHCHECK below). Readiness: GET /readyz
# answers 200 only once a production model is loaded, 503 before.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:13.0.2-cudnn-runtime-ubuntu22.04

# ---------------------------------------------------------------------------------------------
# The dependency list, computed from pyproject.toml in a stage of its own. The install layer
# below copies only the list, and its cache is keyed on the list's content: a pyproject.toml
# change that leaves the dependencies as they were (an entry point, a tool setting) rebuilds no
# dependency layer.
FROM ${PYTHON_IMAGE} AS requirements
WORKDIR /src
COPY pyproject.toml docker/requirements.py ./
RUN python requirements.py serve > serve.txt \
    && python requirements.py serve --without onnxruntime > serve-gpu.txt

# ---------------------------------------------------------------------------------------------
# The project itself, as a wheel built in a stage of its own. The dependency venv below never
# sees the source, so a code change leaves it (and the runtime stage's copy of it, the largest
# layer) cached: the runtime stage installs only this small wheel on top.
FROM ${PYTHON_IMAGE} AS wheel
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/wheel-build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY models models
COPY pipeline pipeline
COPY serving serving
RUN /opt/wheel-build/bin/pip wheel --no-deps --wheel-dir /wheels .

# ---------------------------------------------------------------------------------------------
# CPU builder: a venv with the serve extra's dependencies and plain onnxruntime.
FROM ${PYTHON_IMAGE} AS build-cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY .ci/constraints.txt .ci/constraints.txt
COPY --from=requirements /src/serve.txt requirements.txt
# Dependencies only: the project arrives as a wheel in the runtime stage.
RUN pip install -c .ci/constraints.txt -r requirements.txt

# ---------------------------------------------------------------------------------------------
# Runtime, CPU. Placed before the GPU stages so that a builder without stage pruning (the classic
# `DOCKER_BUILDKIT=0` builder, buildah) stops here for --target cpu instead of building them too.
FROM ${PYTHON_IMAGE} AS cpu
ARG APP_UID=10001
RUN groupadd --system --gid ${APP_UID} app \
    && useradd --system --uid ${APP_UID} --gid app --home-dir /home/app --create-home app \
    && mkdir -p /var/cache/dcgan \
    && chown app:app /var/cache/dcgan
COPY --from=build-cpu /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-cache-dir --disable-pip-version-check --no-deps /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels \
    && pip check \
    && python -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)"
COPY docker/minio-init.py /opt/dcgan/minio-init.py
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DCGAN_SERVE_HOST=0.0.0.0 \
    DCGAN_SERVE_PORT=8000 \
    DCGAN_SERVE_DEVICE=cpu \
    DCGAN_REGISTRY_CACHE_DIR=/var/cache/dcgan/models \
    DCGAN_DATA_DIR=/var/cache/dcgan/data
WORKDIR /home/app
USER ${APP_UID}:${APP_UID}
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('DCGAN_SERVE_PORT', '8000'), timeout=4)"]
CMD ["dcgan", "serve"]

# ---------------------------------------------------------------------------------------------
# GPU builder: same venv on the CUDA base (Ubuntu 22.04's python3.11), onnxruntime-gpu instead.
FROM ${CUDA_IMAGE} AS build-gpu
ARG ORT_GPU_VERSION=1.31.1
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
    && rm -rf /var/lib/apt/lists/*
RUN python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY .ci/constraints.txt .ci/constraints.txt
COPY --from=requirements /src/serve-gpu.txt requirements.txt
# Dependencies only: the project arrives as a wheel in the runtime stage.
# Both wheels ship the `onnxruntime` module: the GPU one replaces the CPU one the project names
# (so `pip check` would report it missing, and is not run here).
RUN pip install -c .ci/constraints.txt -r requirements.txt "onnxruntime-gpu==${ORT_GPU_VERSION}" \
    && python -c "import onnxruntime as o; assert 'CUDAExecutionProvider' in o.get_available_providers(), o.get_available_providers()"

# ---------------------------------------------------------------------------------------------
# Runtime, GPU (the default target: last stage).
FROM ${CUDA_IMAGE} AS gpu
ARG APP_UID=10001
ENV DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid ${APP_UID} app \
    && useradd --system --uid ${APP_UID} --gid app --home-dir /home/app --create-home app \
    && mkdir -p /var/cache/dcgan \
    && chown app:app /var/cache/dcgan
COPY --from=build-gpu /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-cache-dir --disable-pip-version-check --no-deps /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels \
    && python -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)"
COPY docker/minio-init.py /opt/dcgan/minio-init.py
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    DCGAN_SERVE_HOST=0.0.0.0 \
    DCGAN_SERVE_PORT=8000 \
    DCGAN_SERVE_DEVICE=auto \
    DCGAN_REGISTRY_CACHE_DIR=/var/cache/dcgan/models \
    DCGAN_DATA_DIR=/var/cache/dcgan/data
WORKDIR /home/app
USER ${APP_UID}:${APP_UID}
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('DCGAN_SERVE_PORT', '8000'), timeout=4)"]
CMD ["dcgan", "serve"]
