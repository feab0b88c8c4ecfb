"""Each Model's serving credentials: who may give feedback, and the key that signs prediction ids.

The operator keeps one Secret per Model, `<model>-serving-credentials`, with two keys: `token`, the
bearer token that `POST /feedback` and the full `GET /metadata` of the Model's serving pods ask for,
and `signing-key`, with which the pods sign the prediction ids they return (docs/serving.md). The
Secret is mounted into the serving pods only; RBAC decides who else may read it, and so who may
send ground truth.

Both values are derived from the operator's key (`MODELOPS_CREDENTIALS_KEY`, a Secret of the chart)
with HMAC-SHA256 over the Model's namespace and name: the operator writes each Secret, and
authenticates its own reads of `/metadata`, without ever reading a Secret back. The same key gives
the same values after a restart; a new key rewrites every Model's Secret, which the kubelet
refreshes in the pods' mounted files, which the runtime reads again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from modelops_api import contract
from modelops_operator.objects import Body
from modelops_operator.training import labels, owner_reference

MOUNT = "/etc/modelops/credentials"
VOLUME = "credentials"


def derive(key: str, namespace: str, model: str, purpose: str) -> str:
    """The credential `purpose` (a key of the Secret) of the Model `namespace/model`."""
    message = f"{purpose}\n{namespace}\n{model}".encode()
    digest = hmac.new(key.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def token(key: str, namespace: str, model: str) -> str:
    return derive(key, namespace, model, contract.CREDENTIAL_TOKEN)


def build_secret(model: Mapping[str, Any], key: str) -> Body:
    """The Model's credentials Secret, owned by the Model (deleted with it)."""
    meta = model["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    values = {
        purpose: derive(key, namespace, name, purpose)
        for purpose in (contract.CREDENTIAL_TOKEN, contract.CREDENTIAL_KEY)
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": contract.credentials_secret(name),
            "namespace": namespace,
            "labels": labels(name, "credentials"),
            "ownerReferences": [owner_reference(model)],
        },
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in values.items()},
    }
