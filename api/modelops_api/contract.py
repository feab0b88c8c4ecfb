"""Names of the modelops API: group, kinds, labels, annotations, phases and condition types.

Every other module takes these from here, so a name is spelled once.
"""

from __future__ import annotations

from typing import Final

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

# The serving runtime's contract (docs/runtime-contract.md).
SERVING_PORT: Final = 3000
TRAINING_CONTAINER: Final = "train"
SERVING_CONTAINER: Final = "serve"
