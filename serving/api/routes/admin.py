"""Admin actions behind a bearer token (``DCGAN_SERVE_ADMIN_TOKEN``; unset: admin is disabled).

The token is read with FastAPI's HTTP bearer security, so the OpenAPI document declares it; the
answers for a missing, wrong or disabled token are the service's own 401/403 with a detail.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from serving.api.answers import ReloadAnswer, Reloaded, ReloadFailed
from serving.api.deps import State
from serving.api.routes.operations import model_details
from serving.api.service_state import ServiceState
from serving.core.errors import AdminDisabled, NotAuthenticated
from serving.core.lifecycle import FailureKind, classify

# /admin/reload: a refused version or an alias with nothing to load is the caller's to fix (409);
# every other failure is the server's trouble and is retried by polling (503).
RELOAD_STATUS = {FailureKind.REFUSED: 409, FailureKind.NOT_PUBLISHED: 409}

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="adminToken",
    description="DCGAN_SERVE_ADMIN_TOKEN, sent as 'Authorization: Bearer <token>'",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def require_admin(state: State, credentials: Credentials) -> ServiceState:
    token = state.settings.admin_token
    if token is None:
        raise AdminDisabled("admin endpoints are disabled: set DCGAN_SERVE_ADMIN_TOKEN")
    given = credentials.credentials if credentials is not None else ""
    if not secrets.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise NotAuthenticated("admin token missing or wrong: send 'Authorization: Bearer <token>'")
    return state


Admin = Annotated[ServiceState, Depends(require_admin)]
router = APIRouter()


@router.get("/admin/model", summary="A loaded model in full: manifest, backend, limits (token)")
async def model(state: Admin, model: str | None = None) -> dict[str, Any]:
    """``model``: a served model's name; omitted: the default (first) one."""
    return model_details(state, model)


@router.post("/admin/reload", summary="Re-read the aliases now and swap what moved (token)")
async def reload(state: Admin, model: str | None = None) -> JSONResponse:
    """``model``: reload that served model only; omitted: every one. Each model loaded or not
    on its own; if any failed, the answer is that failure's status and names each, and its
    ``models`` still holds what the others did (a swap that happened is never hidden)."""
    managers = [state.models.manager(model)] if model is not None else list(state.models)
    results: dict[str, Reloaded] = {}
    failures: list[tuple[int, str]] = []
    for manager in managers:
        name = manager.registry.model
        serving = manager.current.version if manager.current else None
        try:
            result = await asyncio.to_thread(manager.refresh, retry_refused=True)
        except Exception as exc:  # the manager logged it and shows it on /readyz
            kind = classify(exc)
            failures.append(
                (RELOAD_STATUS.get(kind, 503), f"{name}: {kind}: {exc}; still serving {serving}")
            )
            continue
        results[name] = Reloaded(version=result.version, changed=result.changed)
    if failures:
        status = max(code for code, _ in failures)  # 503 (retried) outranks 409
        detail = "; ".join(text for _, text in failures)
        failed = ReloadFailed(detail=detail, models=results)
        return JSONResponse(failed.model_dump(mode="json"), status_code=status)
    first = results[managers[0].registry.model]
    answer = ReloadAnswer(**first.model_dump(), models=results)
    return JSONResponse(answer.model_dump(mode="json"))
