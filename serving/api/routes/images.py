"""/generate and /balance: validated requests -> a plan (contract 1) -> pixels -> an encoding."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from serving.api.deps import State, json_body, unless_disconnected
from serving.api.service_state import ServiceState
from serving.core import encoding
from serving.core.decoding import parse_query
from serving.core.digits import Answer
from serving.core.generation import INLINE_MAX, plan_balance, plan_generate
from serving.core.schemas import BalanceRequest, GenerateRequest

router = APIRouter()


async def _answer(
    http: Request, request: GenerateRequest | BalanceRequest, state: ServiceState, route: str
) -> Answer:
    """The request's answer from the digit service, dropped if the client hangs up."""
    model = state.models.require(request.model)
    if isinstance(request, GenerateRequest):
        plan = plan_generate(request, model.signature)
    else:
        plan = plan_balance(request, model.signature)
    work = state.answer(
        model, plan, request.min_confidence, max_candidates=request.max_candidates, route=route
    )
    return await unless_disconnected(http, work)


async def _generate(http: Request, request: GenerateRequest, state: ServiceState) -> Response:
    answer = await _answer(http, request, state, "/generate")
    if answer.size <= INLINE_MAX:
        body, media_type = encoding.encode_images(answer, request.format)
    else:
        body, media_type = await run_in_threadpool(encoding.encode_images, answer, request.format)
    state.metrics.observe_images("/generate", answer.model, answer.size, answer.filtered)
    return Response(body, media_type=media_type, headers=encoding.answer_headers(answer))


@router.post(
    "/generate",
    summary="Generate digits (JSON with base64 PNGs, raw .npy, or a PNG grid)",
    response_class=Response,
)
async def generate_post(request: Request, state: State) -> Response:
    return await _generate(request, await json_body(request, GenerateRequest, state), state)


@router.get(
    "/generate",
    summary="Generate digits from query parameters (for browsers)",
    description="?seed=7&batch_size=20&digits=3&format=png; digits may be 1,2,3 or repeated.",
    response_class=Response,
)
async def generate_get(request: Request, state: State) -> Response:
    params = {key: request.query_params.getlist(key) for key in request.query_params}
    return await _generate(request, parse_query(params, state.limits), state)


@router.post(
    "/balance",
    summary="Generate the digits that balance a dataset's class counts (.npz)",
    description="An already balanced dataset gets 200 with no images (empty arrays).",
    response_class=Response,
)
async def balance(request: Request, state: State) -> Response:
    parsed = await json_body(request, BalanceRequest, state)
    answer = await _answer(request, parsed, state, "/balance")
    payload, media_type = await run_in_threadpool(encoding.encode_balance, answer)
    state.metrics.observe_images("/balance", answer.model, answer.size, answer.filtered)
    headers = encoding.answer_headers(answer)
    headers["Content-Disposition"] = 'attachment; filename="balance.npz"'
    return Response(payload, media_type=media_type, headers=headers)
