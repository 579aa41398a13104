# Stand-in for postgres:16-alpine where Docker Hub is unreachable: Debian's PostgreSQL 15 with the
# official image's POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB first-start behaviour.
ARG BASE
FROM ${BASE}
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/*
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint
RUN chmod 0755 /usr/local/bin/postgres-entrypoint
EXPOSE 5432
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint"]
