"""One-shot stack setup: create the `models` and `datasets` buckets, load MNIST into S3.

Baked into the API image as /opt/dcgan/minio-init.py and run by the `minio-init` service of
docker-compose.yml and the `minio-init` Job of k8s/base. Idempotent: existing buckets are kept,
and MNIST is downloaded (public mirrors, md5-verified by `load_dataset`) and uploaded to
s3://datasets/mnist/ only when one of its four files is missing there. S3 endpoint and
credentials come from DCGAN_S3_*; the download lands in DCGAN_DATA_DIR/mnist.
"""

from __future__ import annotations

import sys

from minio.error import S3Error

from models.s3 import make_client
from pipeline.data.catalog import get_spec
from pipeline.data.idx import find_file
from pipeline.data.loading import load_dataset
from pipeline.errors import DataSourceError
from pipeline.settings import get_settings

BUCKETS = ("models", "datasets")
DATASET, BUCKET, PREFIX = "mnist", "datasets", "mnist/"


def main() -> int:
    client = make_client()
    for bucket in BUCKETS:
        if client.bucket_exists(bucket):
            print(f"bucket {bucket}: exists")
        else:
            client.make_bucket(bucket)
            print(f"bucket {bucket}: created")

    names = get_spec(DATASET).files
    missing = []
    for name in names:
        try:
            client.stat_object(BUCKET, PREFIX + name)
        except S3Error:
            missing.append(name)
    if not missing:
        print(f"s3://{BUCKET}/{PREFIX}: {DATASET} already loaded")
        return 0

    try:
        load_dataset(DATASET)  # fetches what DCGAN_DATA_DIR/mnist lacks; every md5 verified
    except DataSourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    directory = get_settings().data_dir / DATASET
    for name in names:
        path = find_file(directory, name)
        if path is None:  # load_dataset succeeded, so this would be a bug
            raise RuntimeError(f"{directory}: {name} vanished after a verified download")
        client.fput_object(BUCKET, PREFIX + path.name, str(path))
        print(f"uploaded {path.name} -> s3://{BUCKET}/{PREFIX}{path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
