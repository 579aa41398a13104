"""One-shot stack setup: the `models` and `datasets` buckets, a MinIO user per component, MNIST.

Baked into the API image as /opt/dcgan/minio-init.py and run by the `minio-init` service of
docker-compose.yml and the `minio-init` Job of k8s/base, with MinIO's root credential in DCGAN_S3_*
(the only component that holds it). Idempotent: existing buckets are kept; the users are created or
updated (a changed secret is a rotation) with their policies, so each component gets only what it
needs (least privilege):

- the **publisher** (DCGAN_INIT_PUBLISHER_ACCESS_KEY/_SECRET_KEY; the trainer and operators): read,
  write and delete objects in `models`, read `datasets`; it cannot create buckets or users.
- the **reader** (DCGAN_INIT_READER_ACCESS_KEY/_SECRET_KEY; the API and TorchServe): read and list
  `models`, nothing else.

Without those variables no user is made: another S3 server sets up its identities its own way,
and docker-compose.yml does not pass them yet (its test's MinIO stand-in, SeaweedFS, has no MinIO
admin API; k8s/base does). MNIST is downloaded (public mirrors, md5-verified by `load_dataset`)
and uploaded to s3://datasets/mnist/ only when one of its four files is missing there; the
download lands in DCGAN_DATA_DIR/mnist.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from minio.credentials.providers import StaticProvider
from minio.error import MinioAdminException, S3Error
from minio.minioadmin import MinioAdmin
from pydantic import SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.s3 import S3Settings, check_s3_key, make_client
from pipeline.data.catalog import get_spec
from pipeline.data.idx import find_file
from pipeline.data.loading import load_dataset
from pipeline.errors import DataSourceError
from pipeline.settings import get_settings

MODELS, DATASETS = "models", "datasets"
BUCKETS = (MODELS, DATASETS)
DATASET, BUCKET, PREFIX = "mnist", DATASETS, "mnist/"


def _policy(statements: list[tuple[list[str], str]]) -> dict[str, Any]:
    """An IAM policy document allowing each (actions, resource) pair."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": actions, "Resource": [f"arn:aws:s3:::{resource}"]}
            for actions, resource in statements
        ],
    }


# The minio SDK asks for a bucket's location before its first call to it (GetBucketLocation).
_LIST = ["s3:GetBucketLocation", "s3:ListBucket"]
POLICIES: dict[str, dict[str, Any]] = {
    "dcgan-publisher": _policy(
        [
            ([*_LIST, "s3:ListBucketMultipartUploads"], MODELS),
            (
                [
                    "s3:GetObject",
                    "s3:PutObject",
                    "s3:DeleteObject",
                    "s3:AbortMultipartUpload",
                    "s3:ListMultipartUploadParts",
                ],
                f"{MODELS}/*",
            ),
            (_LIST, DATASETS),
            (["s3:GetObject"], f"{DATASETS}/*"),
        ]
    ),
    "dcgan-reader": _policy([(_LIST, MODELS), (["s3:GetObject"], f"{MODELS}/*")]),
}


class UserSettings(BaseSettings):
    """The components' own credentials, made MinIO users here (DCGAN_INIT_*)."""

    model_config = SettingsConfigDict(env_prefix="DCGAN_INIT_", extra="ignore")

    publisher_access_key: SecretStr | None = None
    publisher_secret_key: SecretStr | None = None
    reader_access_key: SecretStr | None = None
    reader_secret_key: SecretStr | None = None

    @field_validator("*")
    @classmethod
    def _not_placeholder(cls, value: SecretStr | None, info: Any) -> SecretStr | None:
        if value is None:
            return None
        return check_s3_key(value, f"DCGAN_INIT_{str(info.field_name).upper()}")

    def users(self) -> dict[str, tuple[str, str]]:
        """Policy name -> (access key, secret key) of each user to make; ValueError if half set."""
        users: dict[str, tuple[str, str]] = {}
        for role in ("publisher", "reader"):
            access = getattr(self, f"{role}_access_key")
            secret = getattr(self, f"{role}_secret_key")
            if (access is None) != (secret is None):
                raise ValueError(
                    f"set both DCGAN_INIT_{role.upper()}_ACCESS_KEY and _SECRET_KEY, or neither"
                )
            if access is not None:
                users[f"dcgan-{role}"] = (access.get_secret_value(), secret.get_secret_value())
        keys = [access for access, _ in users.values()]
        if len(set(keys)) != len(keys):
            raise ValueError("the publisher and the reader need different access keys")
        return users


def provision_users(s3: S3Settings, users: dict[str, tuple[str, str]]) -> None:
    """Create or update each user and give it exactly its policy (MinIO admin API)."""
    root = s3.access_key.get_secret_value() if s3.access_key else ""
    if root in {access for access, _ in users.values()}:
        raise ValueError("a component's access key equals MinIO's root user: give it its own")
    host, secure = s3.host_and_secure()  # DCGAN_S3_ENDPOINT may be a URL, as for make_client
    admin = MinioAdmin(
        endpoint=host,
        credentials=StaticProvider(root, s3.secret_key.get_secret_value() if s3.secret_key else ""),
        region=s3.region or "",
        secure=secure,
    )
    for policy, (access_key, secret_key) in users.items():
        admin.policy_add(policy, policy=POLICIES[policy])
        admin.user_add(access_key, secret_key)
        attached = json.loads(admin.user_info(access_key)).get("policyName") or ""
        extra = [name for name in attached.split(",") if name and name != policy]
        if extra:  # someone widened it by hand: back to exactly its own policy
            admin.detach_policy(extra, user=access_key)
        if policy not in attached.split(","):
            admin.attach_policy([policy], user=access_key)
        print(f"user {policy}: ready (policy {policy})")


def main() -> int:
    try:
        users = UserSettings().users()
    except (ValidationError, ValueError) as exc:
        print(f"error: {_first_line(exc)}", file=sys.stderr)
        return 2
    client = make_client()
    for bucket in BUCKETS:
        if client.bucket_exists(bucket):
            print(f"bucket {bucket}: exists")
        else:
            client.make_bucket(bucket)
            print(f"bucket {bucket}: created")
    if users:
        try:
            provision_users(S3Settings(), users)
        except (ValueError, MinioAdminException) as exc:
            print(f"error: users: {_first_line(exc)}", file=sys.stderr)
            return 2
    else:
        print("users: none asked for (DCGAN_INIT_*): the S3 server's identities are its own affair")

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


def _first_line(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(str(error["msg"]).removeprefix("Value error, ") for error in exc.errors())
    return (str(exc).splitlines() or [type(exc).__name__])[0]


if __name__ == "__main__":
    sys.exit(main())
