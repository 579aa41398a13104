"""Prometheus metrics of one app instance (its own registry, so tests and reloads stay apart)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.core.filtering import FilterStats

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "dcgan_requests", "HTTP requests by route and status", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "dcgan_request_seconds",
            "Time to answer, by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.images = Counter(
            "dcgan_images_generated",
            "Images generated, by route and model",
            ["route", "model"],
            registry=r,
        )
        self.filter_candidates = Counter(
            "dcgan_filter_candidates",
            "Candidates generated and judged for filtered requests (min_confidence), answered or "
            "not, by route and model",
            ["route", "model"],
            registry=r,
        )
        self.filter_requests = Counter(
            "dcgan_filter_requests",
            "Filtered requests by outcome: answered; no_candidate (422, an image met no "
            "candidate within the cap); refused (before any work: 409/413/422/503); cancelled "
            "(the client hung up); failed (inference failed)",
            ["route", "model", "outcome"],
            registry=r,
        )
        self.filter_accepted = Counter(
            "dcgan_filter_accepted",
            "Images answered by filtered requests; accepted / candidates is the acceptance rate",
            ["route", "model"],
            registry=r,
        )
        self.batch_images = Histogram(
            "dcgan_inference_batch_images",
            "Images per inference call (dynamic batching merges requests)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=r,
        )
        self.batch_requests = Histogram(
            "dcgan_inference_batch_requests",
            "Request slices per inference call (a large request is spread over the workers)",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.model = Info(
            "dcgan_model", "The version being served, per served model", ["model"], registry=r
        )
        self.model_loaded = Gauge(
            "dcgan_model_loaded_timestamp_seconds",
            "When the served version loaded, per model",
            ["model"],
            registry=r,
        )
        self.backlog = Gauge(
            "dcgan_backlog_images",
            "Images admitted and not yet computed (the queue limit applies to this)",
            registry=r,
        )
        self.reloads = Counter(
            "dcgan_model_reloads",
            "Model refreshes that swapped or failed, per model",
            ["model", "outcome"],
            registry=r,
        )
        self.load_failures = Counter(
            "dcgan_model_load_failures",
            "Failed refreshes per model by what failed (registry_unreachable, disk_full, ...)",
            ["model", "kind"],
            registry=r,
        )
        self.from_cache = Gauge(
            "dcgan_model_served_from_cache",
            "1 while the model's served version came from the local cache (registry unreachable "
            "at start)",
            ["model"],
            registry=r,
        )

    def observe_images(
        self, route: str, model: str, images: int, filtered: FilterStats | None
    ) -> None:
        """An answer: its images, and a filtered one's candidates and outcome."""
        self.images.labels(route, model).inc(images)
        if filtered is not None:
            self.filter_requests.labels(route, model, "answered").inc()
            self.filter_candidates.labels(route, model).inc(filtered.candidates)
            self.filter_accepted.labels(route, model).inc(filtered.accepted)

    def observe_filter_failure(self, route: str, model: str, outcome: str, candidates: int) -> None:
        """A filtered request that got no answer, and the candidates it drew before it ended."""
        self.filter_requests.labels(route, model, outcome).inc()
        self.filter_candidates.labels(route, model).inc(candidates)

    def observe_batch(self, images: int, requests: int) -> None:
        self.batch_images.observe(images)
        self.batch_requests.observe(requests)


class MetricsMiddleware:
    """Counts and times every request by its route template (not its raw path: bounded labels)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, routes: set[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            # The matched route's template (/v2/models/{name}/infer), set by the router on this
            # scope: never the raw path, so labels stay bounded; unmatched paths are "other".
            template = getattr(scope.get("route"), "path", None)
            route = template if template in self.routes else "other"
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
            self.metrics.requests.labels(route, str(status)).inc()
