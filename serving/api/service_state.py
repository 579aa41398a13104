"""Everything a request handler needs, built once per app: settings, models, the batcher, the
digit service and the metrics."""

from __future__ import annotations

from serving.api.metrics import ServiceMetrics
from serving.api.settings import ServeSettings
from serving.core.batching import Batcher
from serving.core.digits import Answer, DigitService
from serving.core.generation import Plan
from serving.core.lifecycle import LoadedModel
from serving.core.model_set import ModelSet
from serving.core.schemas import Limits


class ServiceState:
    """Everything a request handler needs, built once per app (``app.state.service``)."""

    def __init__(
        self,
        settings: ServeSettings,
        models: ModelSet,
        batcher: Batcher,
        metrics: ServiceMetrics,
    ) -> None:
        self.settings = settings
        self.limits: Limits = settings.limits()
        self.models = models
        self.batcher = batcher
        self.digits = DigitService(batcher, settings.max_candidates)
        self.metrics = metrics
        self.draining = False  # set on SIGTERM (serving/api/server.py): /readyz turns 503

    async def answer(
        self,
        model: LoadedModel,
        plan: Plan,
        min_confidence: float | None = None,
        *,
        max_candidates: int | None = None,
        route: str = "other",
    ) -> Answer:
        """The plan's answer from the digit service on the batcher; ``route`` labels the counters
        of a filtered request that fails (an answered one is counted with its answer,
        ``observe_images``)."""

        def failed(outcome: str, candidates: int) -> None:
            self.metrics.observe_filter_failure(route, model.name, outcome, candidates)

        return await self.digits.answer(
            model, plan, min_confidence, max_candidates=max_candidates, on_failure=failed
        )
