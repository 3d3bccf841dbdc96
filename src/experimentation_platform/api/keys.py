"""API key lifecycle for operators (admin key): list, create, revoke. Never shows a key's
secret or hash after creation; revoking is idempotent and effective on this instance at once,
on others within EP_KEY_CACHE_SECONDS."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Path as FastApiPath
from pydantic import BaseModel, ConfigDict, Field

from experimentation_platform.api.deps import AdminKey, PlatformDep
from experimentation_platform.errors import NotFound
from experimentation_platform.storage.keys import Role
from observability.logging import get_logger

router = APIRouter(prefix="/api/v1/keys", tags=["keys"])
log = get_logger("experimentation_platform.keys")

KeyId = Annotated[str, FastApiPath(pattern=r"^[0-9a-f]{12}$")]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role
    name: str = Field(default="", max_length=100)


@router.get("")
def list_keys(platform: PlatformDep, _: AdminKey) -> dict[str, Any]:
    """Every key: id, role, name, created, last used (to the minute), revoked."""
    return {"items": [info.to_dict() for info in platform.keys.list_keys()]}


@router.post("", status_code=201)
def create_key(body: KeyCreate, platform: PlatformDep, who: AdminKey) -> dict[str, Any]:
    """A new key; the response is the only time its secret is shown."""
    key_id, key = platform.keys.create(body.role, body.name)
    log.info("api_key_created", key_id=key_id, role=body.role, by=who.key_id)
    return {"id": key_id, "role": body.role, "name": body.name, "key": key}


@router.post("/{key_id}/revoke")
def revoke_key(key_id: KeyId, platform: PlatformDep, who: AdminKey) -> dict[str, Any]:
    info = platform.keys.revoke(key_id)
    if info is None:
        raise NotFound(f"no API key '{key_id}'", field="key_id")
    log.info("api_key_revoked", key_id=key_id, by=who.key_id)
    return info.to_dict()
