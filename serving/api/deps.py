"""The FastAPI dependencies and steps every image route shares: the service state, reading a
JSON body within its limits, and waiting for pixels unless the client hangs up."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from starlette.requests import ClientDisconnect

from serving.api.service_state import ServiceState
from serving.core.decoding import parse_body
from serving.core.errors import BodyTimeout, ClientGone, TooLarge
from serving.core.schemas import BalanceRequest, GenerateRequest

T = TypeVar("T")
M = TypeVar("M", GenerateRequest, BalanceRequest)


def service_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


State = Annotated[ServiceState, Depends(service_state)]


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """``await work``, cancelled as soon as the client hangs up (its rows leave the queue)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.create_task(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise ClientGone
    return task.result()


async def _disconnected(request: Request) -> None:
    """Returns when the ASGI server reports the client's disconnect (the body is read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def json_body(request: Request, model: type[M], state: ServiceState) -> M:
    """The request's body, read within the limits and validated as ``model``."""
    body = await read_body(request, state)
    return parse_body(model, body, request.headers.get("content-type"), state.limits)


async def read_body(request: Request, state: ServiceState) -> bytes:
    """The raw body, within the service's size and time limits."""
    return await _read_body(request, state.limits.max_body_bytes, state.settings.body_timeout_s)


async def _read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The body, refused with 413 past ``limit`` bytes (before reading it all if it says so)
    and with 408 when it takes longer than ``timeout_s`` (a client trickling it holds a
    connection); a client that hangs up while sending it is ClientGone (no 5xx, no traceback)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"request body of {declared} bytes is above the limit of {limit}")
    body = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise TooLarge(f"request body is above the limit of {limit} bytes")
    except ClientDisconnect:
        raise ClientGone from None
    except TimeoutError:
        raise BodyTimeout(f"request body not received within {timeout_s:g} s") from None
    return bytes(body)
