#!/bin/sh
# `minio server DIR [--console-address ADDR]` -> SeaweedFS serving S3 on :9000 with the root credentials.
set -eu
[ "${1:-}" = server ] || { echo "stand-in minio: only 'server DIR' is supported" >&2; exit 2; }
data=${2:?stand-in minio: server needs a data directory}
mkdir -p "$data"
export AWS_ACCESS_KEY_ID="${MINIO_ROOT_USER:?}" AWS_SECRET_ACCESS_KEY="${MINIO_ROOT_PASSWORD:?}"
exec /opt/weed/bin/weed mini -dir="$data" -ip=127.0.0.1 -ip.bind=0.0.0.0 -master.telemetry=false \
  -webdav=false -admin.ui=false -s3.allowDeleteBucketNotEmpty=false -s3.port=9000 \
  -s3.port.iceberg=0 -s3.port.lance=0 -master.port=9333 -volume.port=8080 -filer.port=8888 \
  -admin.port=23646
