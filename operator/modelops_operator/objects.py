"""The shapes every layer of the operator passes around: an API object's body, a Model's key."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Body = dict[str, Any]  # an API object as the API server serves it (JSON)
ModelKey = tuple[str, str]  # namespace, name
# An Event about an object: (object, type Normal|Warning, reason, message).
EventSink = Callable[[Mapping[str, Any], str, str, str], None]


def owned_by(body: Mapping[str, Any], uid: str) -> bool:
    """Whether `body`'s ownerReferences name the object with `uid` as its controller."""
    references = (body.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("uid") == uid and r.get("controller") for r in references)
