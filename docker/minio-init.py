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

Then each user's rights are tried (:data:`ACCESS_CHECKS`): what it needs must work and what it must
not do must be refused, or minio-init fails. On an S3 server without MinIO's admin API the users
are not made (that server's identities are set up its own way) but are checked all the same.
Without those variables no user is made or checked. MNIST is downloaded (public mirrors,
md5-verified by `load_dataset`) and uploaded to s3://datasets/mnist/ only when one of its four
files is missing there; the download lands in DCGAN_DATA_DIR/mnist.
"""

from __future__ import annotations

import io
import json
import secrets
import sys
from collections.abc import Callable
from typing import Any

from minio import Minio
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


def admin_client(s3: S3Settings) -> MinioAdmin | None:
    """A MinIO admin client with the root credential, or None where the server has no MinIO
    admin API (SeaweedFS answers 404; it would take a later admin PUT for an object upload)."""
    host, secure = s3.host_and_secure()  # DCGAN_S3_ENDPOINT may be a URL, as for make_client
    admin = MinioAdmin(
        endpoint=host,
        credentials=StaticProvider(
            s3.access_key.get_secret_value() if s3.access_key else "",
            s3.secret_key.get_secret_value() if s3.secret_key else "",
        ),
        region=s3.region or "",
        secure=secure,
    )
    try:
        admin.info()
    except MinioAdminException as exc:
        answer = _first_line(exc).split(", Body")[0]  # "admin request failed; Status: 404"
        print(f"users: {s3.endpoint} has no MinIO admin API ({answer}): not made, only checked")
        return None
    return admin


def provision_users(admin: MinioAdmin, users: dict[str, tuple[str, str]]) -> None:
    """Create or update each user and give it exactly its policy (MinIO admin API)."""
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


_CHECK_PREFIX = ".dcgan-access-check/"  # objects a check writes; removed at once


def _list(bucket: str) -> Callable[[Minio], None]:
    def list_first(client: Minio) -> None:
        next(iter(client.list_objects(bucket)), None)  # the listing is lazy: ask for one

    return list_first


def _write(bucket: str) -> Callable[[Minio], None]:
    def write(client: Minio) -> None:
        key = _CHECK_PREFIX + secrets.token_hex(8)
        client.put_object(bucket, key, io.BytesIO(b""), 0)
        client.remove_object(bucket, key)

    return write


def _make_bucket(client: Minio) -> None:
    name = "dcgan-access-check-" + secrets.token_hex(4)
    client.make_bucket(name)
    client.remove_bucket(name)


# Per policy: (what it is, the attempt, whether it must succeed). A refusal must be AccessDenied.
ACCESS_CHECKS: dict[str, list[tuple[str, Callable[[Minio], None], bool]]] = {
    "dcgan-publisher": [
        (f"list s3://{MODELS}", _list(MODELS), True),
        (f"write to s3://{MODELS}", _write(MODELS), True),
        (f"list s3://{DATASETS}", _list(DATASETS), True),
        (f"write to s3://{DATASETS}", _write(DATASETS), False),
        ("create a bucket", _make_bucket, False),
    ],
    "dcgan-reader": [
        (f"list s3://{MODELS}", _list(MODELS), True),
        (f"write to s3://{MODELS}", _write(MODELS), False),
        (f"write to s3://{DATASETS}", _write(DATASETS), False),
    ],
}


def check_users(s3: S3Settings, users: dict[str, tuple[str, str]]) -> None:
    """Try each user's rights (:data:`ACCESS_CHECKS`); ValueError naming the first that is wrong.
    An attempt that should have been refused has already been undone by the time it is reported."""
    for policy, (access_key, secret_key) in users.items():
        client = make_client(
            s3.model_copy(
                update={"access_key": SecretStr(access_key), "secret_key": SecretStr(secret_key)}
            )
        )
        for action, attempt, allowed in ACCESS_CHECKS[policy]:
            try:
                attempt(client)
            except S3Error as exc:
                if allowed or exc.code != "AccessDenied":
                    raise ValueError(f"{policy} may not {action}: {exc.code}") from None
            else:
                if not allowed:
                    raise ValueError(f"{policy} may {action}: give it only its own rights")
        print(f"user {policy}: rights checked")


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
        s3 = S3Settings()
        try:
            root = s3.access_key.get_secret_value() if s3.access_key else ""
            if root in {access for access, _ in users.values()}:
                raise ValueError(
                    "a component's access key equals MinIO's root user: give it its own"
                )
            admin = admin_client(s3)
            if admin is not None:
                provision_users(admin, users)
            check_users(s3, users)
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
