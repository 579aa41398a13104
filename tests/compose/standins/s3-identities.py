#!/usr/bin/env python3
"""SeaweedFS's `-s3.config` for the MinIO stand-in, written to stdout.

MinIO's root user (MINIO_ROOT_USER/PASSWORD) may do anything. Where the test gives the users that
minio-init makes on a real MinIO (STANDIN_{PUBLISHER,READER}_{ACCESS,SECRET}_KEY), they are made
here instead, with the rights of minio-init's policies: the publisher reads, writes and lists
`models` and reads `datasets`; the reader reads and lists `models`. The stand-in has no MinIO
admin API, so minio-init checks these users' rights rather than creating them.
"""

import json
import os

ACTIONS = {
    "publisher": ["Read:models", "Write:models", "List:models", "Read:datasets", "List:datasets"],
    "reader": ["Read:models", "List:models"],
}


def identity(name: str, access: str, secret: str, actions: list[str]) -> dict[str, object]:
    return {
        "name": name,
        "credentials": [{"accessKey": access, "secretKey": secret}],
        "actions": actions,
    }


identities = [
    identity(
        "root",
        os.environ["MINIO_ROOT_USER"],
        os.environ["MINIO_ROOT_PASSWORD"],
        ["Admin", "Read", "Write", "List", "Tagging"],
    )
]
for role, actions in ACTIONS.items():
    access = os.environ.get(f"STANDIN_{role.upper()}_ACCESS_KEY")
    secret = os.environ.get(f"STANDIN_{role.upper()}_SECRET_KEY")
    if access and secret:
        identities.append(identity(role, access, secret, actions))
print(json.dumps({"identities": identities}))
