# Stand-in for prefecthq/prefect:3.8.8-python3.11 where Docker Hub is unreachable: the same Prefect
# release (with prefect-redis, as the official image's self-hosting guide relies on) on Python 3.11.
ARG BASE
FROM ${BASE}
COPY constraints.txt /tmp/constraints.txt
RUN python -m venv /opt/prefect \
    && /opt/prefect/bin/pip install --no-cache-dir -c /tmp/constraints.txt "prefect==3.8.8" prefect-redis
ENV PATH=/opt/prefect/bin:$PATH
CMD ["prefect", "version"]
