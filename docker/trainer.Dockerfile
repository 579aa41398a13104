# syntax=docker/dockerfile:1
# The trainer and Prefect worker image: PyTorch with CUDA, the `dcgan` CLI, the Prefect flow.
#
#   docker build -f docker/trainer.Dockerfile -t dcgan-mnist/trainer:0.1.0 .
#
# torch comes first, with an exact pin, from the PyTorch CUDA index (the wheels bundle the CUDA
# and cuDNN libraries, so the base stays a slim Python image; the host only needs the NVIDIA
# driver and the container toolkit). torch 2.13.0's default CUDA is 13.0 (driver >= 580); for an
# older driver pick another index, e.g. --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126
# if that build exists for the pinned version. Everything else installs with .ci/constraints.txt.
#
# The source tree and prefect.yaml live in /app: `prefect deploy` runs there and the flow runs
# with /app as working directory (runs/, .cache/ and data/ below it are writable by the app user
# and are where the compose file mounts its volumes).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------
# The dependency list, computed from pyproject.toml in a stage of its own. The install layer
# below copies only the list, and its cache is keyed on the list's content: a pyproject.toml
# change that leaves the dependencies as they were (an entry point, a tool setting) rebuilds no
# dependency layer.
FROM ${PYTHON_IMAGE} AS requirements
WORKDIR /src
COPY pyproject.toml docker/requirements.py ./
RUN python requirements.py train flow > requirements.txt

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

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu130
# The server image in docker-compose.yml / k8s is prefecthq/prefect:3.8.8-python3.11: same version.
ARG PREFECT_VERSION=3.8.8
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
WORKDIR /src
COPY .ci/constraints.txt .ci/constraints.txt
COPY --from=requirements /src/requirements.txt requirements.txt
# Dependencies only: the project arrives as a wheel in the runtime stage.
RUN pip install -c .ci/constraints.txt -r requirements.txt "prefect==${PREFECT_VERSION}" \
    && python -c "import torch; assert torch.__version__.startswith('${TORCH_VERSION}'), torch.__version__"

FROM ${PYTHON_IMAGE} AS runtime
ARG APP_UID=10001
RUN groupadd --system --gid ${APP_UID} app \
    && useradd --system --uid ${APP_UID} --gid app --home-dir /home/app --create-home app
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-cache-dir --disable-pip-version-check --no-deps /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels \
    && pip check
WORKDIR /app
# The code stays root-owned (read-only to the app user); only the state directories are writable.
COPY pyproject.toml README.md prefect.yaml ./
COPY models models
COPY pipeline pipeline
COPY serving serving
RUN mkdir -p runs .cache data \
    && chown app:app runs .cache data
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    DCGAN_DATA_DIR=/app/data \
    DCGAN_CACHE_DIR=/app/.cache \
    DCGAN_REGISTRY_CACHE_DIR=/app/.cache/models \
    PREFECT_HOME=/home/app/.prefect \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    PREFECT_WORKER_WEBSERVER_PORT=8080
USER ${APP_UID}:${APP_UID}
EXPOSE 8080
# The worker's own health endpoint (`prefect worker start --with-healthcheck`). A one-shot use of
# this image (dcgan train, dcgan data fetch) simply never turns healthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4)"]
CMD ["dcgan", "--help"]
