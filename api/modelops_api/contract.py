"""What the operator, training and serving must spell alike: group, kinds, labels, annotations,
phases, condition types, and the training spec's hash.

Every other module takes these from here, so a name is spelled once. Python only: no imports of
the project or of third parties (an import contract says so).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final

GROUP: Final = "modelops.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
MODELS: Final = "models"
MODEL_VERSIONS: Final = "modelversions"

FIELD_MANAGER: Final = "modelops"

# Labels on everything the operator creates.
LABEL_MODEL: Final = "modelops.dev/model"
LABEL_VERSION: Final = "modelops.dev/version"
LABEL_TRACK: Final = "modelops.dev/track"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_NAME: Final = "app.kubernetes.io/name"
MANAGED_BY: Final = "modelops"
MANAGED: Final = {LABEL_MANAGED_BY: MANAGED_BY}  # the selector of every object the operator makes

# Annotations a user (or the `modelops` CLI) sets on a Model.
ANNOTATION_RETRAIN: Final = "modelops.dev/retrain"  # any new value triggers a retrain
# `<promote|abort|pause|resume>/<token>`: a new value is one command to the running canary.
ANNOTATION_CANARY: Final = "modelops.dev/canary"
CANARY_COMMANDS: Final = ("promote", "abort", "pause", "resume")

# ModelVersion reasons (why it was trained).
REASON_INITIAL: Final = "initial"
REASON_SPEC_CHANGE: Final = "spec-change"
REASON_MANUAL: Final = "manual"
REASON_DRIFT: Final = "drift"
REASON_ACCURACY: Final = "accuracy"
REASON_SCHEDULE: Final = "schedule"

# Reasons of a finished training that the operator tells apart.
TRAINED_REASON: Final = "Trained"
GATE_MISSED: Final = "QualityGateMissed"

# ModelVersion phases.
PENDING: Final = "Pending"
TRAINING: Final = "Training"
SUCCEEDED: Final = "Succeeded"
REJECTED: Final = "Rejected"
FAILED: Final = "Failed"
SUPERSEDED: Final = "Superseded"
ROLLED_BACK: Final = "RolledBack"
RETIRED: Final = "Retired"
IN_PROGRESS: Final = frozenset({PENDING, TRAINING})
FINISHED: Final = frozenset({SUCCEEDED, REJECTED, FAILED, SUPERSEDED, ROLLED_BACK, RETIRED})

# Model phases.
PHASE_TRAINING: Final = "Training"
PHASE_DEPLOYING: Final = "Deploying"
PHASE_SERVING: Final = "Serving"
PHASE_CANARY: Final = "Canary"
PHASE_ROLLING_BACK: Final = "RollingBack"
PHASE_DEGRADED: Final = "Degraded"
PHASE_FAILED: Final = "Failed"

# Model condition types.
READY: Final = "Ready"
TRAINED: Final = "Trained"
AVAILABLE: Final = "Available"
PROGRESSING: Final = "Progressing"
DEGRADED: Final = "Degraded"
DRIFTED: Final = "Drifted"

# The serving runtime's contract (docs/runtime-contract.md): its port, the environment the
# operator gives it, its tracks, and the keys of the archive's metadata the operator reads back.
SERVING_PORT: Final = 3000
# Seconds the runtime keeps an idle keep-alive connection open. Longer than the idle timeout of
# the proxies in front of it (Traefik 90 s, NGINX 60 s, cloud load balancers up to 600 s): a
# proxy closes its idle connections first, and never sends a request on a connection the runtime
# is closing at the same moment (uvicorn's default of 5 s made that race answer 502).
KEEP_ALIVE_SECONDS: Final = 620
# How a serving pod runs the runtime (its container's command; the port is SERVING_PORT).
SERVE_COMMAND: Final = (
    "bentoml",
    "serve",
    "modelops_serving.service:ModelService",
    "--timeout-keep-alive",
    str(KEEP_ALIVE_SECONDS),
)
ENV_ARTIFACT: Final = "MODELOPS_ARTIFACT"  # the archive's URI
ENV_MODEL: Final = "MODELOPS_MODEL"
ENV_VERSION: Final = "MODELOPS_VERSION"
ENV_TRACK: Final = "MODELOPS_TRACK"
ENV_HOST: Final = "MODELOPS_HOST"
ENV_CREDENTIALS: Final = "MODELOPS_CREDENTIALS"  # the directory of the Model's serving credentials
# Set (to the retention in seconds) when the Model records its production data
# (spec.serving.recording); absent, nothing is recorded.
ENV_RECORDING_RETENTION: Final = "MODELOPS_RECORDING_RETENTION"
CREDENTIAL_TOKEN: Final = "token"  # key of the Secret: the bearer token of /feedback, /metadata
CREDENTIAL_KEY: Final = "signing-key"  # key of the Secret: signs prediction ids
# The training runtime's: the keys of spec.training.dataset.secretName reach the training pod
# with this prefix (envFrom), beside the artifact store's own AWS_* variables.
ENV_DATASET_PREFIX: Final = "MODELOPS_DATASET_"


STABLE: Final = "stable"
CANARY: Final = "canary"
TRACKS: Final = (STABLE, CANARY)
REFERENCE: Final = "reference"  # per feature: numeric {edges, proportions} or categorical
REFERENCE_EDGES: Final = "edges"
REFERENCE_PROPORTIONS: Final = "proportions"
TRAINING_CONTAINER: Final = "train"
SERVING_CONTAINER: Final = "serve"


# Fields of spec.training that say when or with what resources to train, not what: changing them
# trains no new version.
NOT_IN_HASH: Final = ("schedule", "resources", "deadline")


def spec_hash(training: Mapping[str, Any]) -> str:
    """`sha256:` of the canonical JSON of a training spec: sorted keys, no spaces, non-ASCII
    escaped, so equal specs hash equal in any key order, in the operator and in the runtime."""
    text = json.dumps(
        training, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str
    )
    return "sha256:" + hashlib.sha256(text.encode("ascii")).hexdigest()


def training_hash(training: Mapping[str, Any]) -> str:
    """The identity of a training spec: its hash without the fields that do not change the model."""
    return spec_hash({k: v for k, v in training.items() if k not in NOT_IN_HASH})


# Production data, beside a Model's archives in its store directory: the rows serving was asked
# to predict (`inputs`) and the ground truth /feedback sent for them (`labels`), in Parquet
# batches under one folder per UTC day (YYYY-MM-DD), joined on (prediction id, row).
PRODUCTION: Final = "production"
PRODUCTION_INPUTS: Final = "inputs"
PRODUCTION_LABELS: Final = "labels"
PRODUCTION_ID: Final = "prediction_id"
PRODUCTION_ROW: Final = "row"
PRODUCTION_TIME: Final = "time"  # seconds since the epoch
PRODUCTION_VERSION: Final = "version"
PRODUCTION_TRUTH: Final = "truth"


def production_uri(artifact: str) -> str:
    """The production-data folder of the Model whose archive (or archive folder) is `artifact`:
    `<store>/<namespace>/<uid>/<model>/production` for `.../<model>/<version>.bentomodel`."""
    folder = artifact.rsplit("/", 1)[0] if artifact.endswith(".bentomodel") else artifact
    return f"{folder.rstrip('/')}/{PRODUCTION}"


def credentials_secret(model: str) -> str:
    """The name of the Model's serving credentials Secret (CREDENTIAL_TOKEN, CREDENTIAL_KEY)."""
    return f"{model}-serving-credentials"
