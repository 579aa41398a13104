# syntax=docker/dockerfile:1
# The alternative backend: TorchServe 0.12 (Java 17) over the TorchScript generator, CPU torch.
# Optional: docker compose --profile torchserve up -d. TorchServe is in limited maintenance
# upstream (no more releases): the ONNX Runtime API (docker/api.Dockerfile) is the default.
#
#   docker build -f docker/torchserve.Dockerfile -t dcgan-mnist/torchserve:0.1.0 .
#
# At start the container builds <model>-<version>.mar from the registry's `production` alias
# (sha256-verified) and serves it as /predictions/$DCGAN_REGISTRY_MODEL_NAME on :8080; until a
# production model exists it waits and retries. It does not follow later promotions: restart
# the container to serve a newly promoted version.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------
# The dependency list, computed from pyproject.toml in a stage of its own. The install layer
# below copies only the list, and its cache is keyed on the list's content: a pyproject.toml
# change that leaves the dependencies as they were (an entry point, a tool setting) rebuilds no
# dependency layer.
FROM ${PYTHON_IMAGE} AS requirements
WORKDIR /src
COPY pyproject.toml docker/requirements.py ./
RUN python requirements.py train torchserve > requirements.txt

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
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
WORKDIR /src
COPY .ci/constraints.txt .ci/constraints.txt
COPY --from=requirements /src/requirements.txt requirements.txt
# Dependencies only: the project arrives as a wheel in the runtime stage.
RUN pip install -c .ci/constraints.txt -r requirements.txt

FROM ${PYTHON_IMAGE} AS runtime
ARG APP_UID=10001
ENV DEBIAN_FRONTEND=noninteractive
# Java 17 for the TorchServe frontend (Debian bookworm's OpenJDK 17).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid ${APP_UID} app \
    && useradd --system --uid ${APP_UID} --gid app --home-dir /home/app --create-home app \
    && mkdir -p /srv/model-store /var/log/torchserve /var/cache/dcgan \
    && chown app:app /srv/model-store /var/log/torchserve /var/cache/dcgan
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-cache-dir --disable-pip-version-check --no-deps /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels \
    && pip check
COPY serving/torchserve/config.docker.properties /etc/torchserve/config.properties
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LOG_LOCATION=/var/log/torchserve \
    METRICS_LOCATION=/var/log/torchserve \
    DCGAN_REGISTRY_CACHE_DIR=/var/cache/dcgan/models
WORKDIR /home/app
USER ${APP_UID}:${APP_UID}
EXPOSE 8080 8082
# Healthy while the model has a READY worker (/ping stays "Healthy" when workers crash).
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-m", "serving.torchserve.healthcheck"]
CMD ["sh", "-c", "until mar=$(dcgan torchserve archive production --model-store /srv/model-store); do echo 'torchserve: no production model to archive yet; retrying in 30 s' >&2; sleep 30; done; exec torchserve --start --foreground --ncs --disable-token-auth --ts-config /etc/torchserve/config.properties --model-store /srv/model-store --models \"${DCGAN_REGISTRY_MODEL_NAME:-cdcgan-mnist}=$(basename \"$mar\")\""]
