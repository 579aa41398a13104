#!/bin/sh
# `minio server DIR [--console-address ADDR]` -> SeaweedFS serving S3 on :9000: MinIO's root user,
# plus the users minio-init would make, when the test names them (s3-identities.py).
set -eu
[ "${1:-}" = server ] || { echo "stand-in minio: only 'server DIR' is supported" >&2; exit 2; }
data=${2:?stand-in minio: server needs a data directory}
mkdir -p "$data"
: "${MINIO_ROOT_USER:?}" "${MINIO_ROOT_PASSWORD:?}"
config=$(mktemp /tmp/s3-identities.XXXXXX.json)
python3 /usr/local/lib/s3-identities.py > "$config"
exec /opt/weed/bin/weed mini -dir="$data" -ip=127.0.0.1 -ip.bind=0.0.0.0 -master.telemetry=false \
  -webdav=false -admin.ui=false -s3.allowDeleteBucketNotEmpty=false -s3.port=9000 \
  -s3.config="$config" -s3.port.iceberg=0 -s3.port.lance=0 -master.port=9333 -volume.port=8080 \
  -filer.port=8888 -admin.port=23646
