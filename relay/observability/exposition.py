"""Prometheus text exposition over aiohttp, and a middleware counting requests by endpoint and status.

Each service owns a :class:`prometheus_client.CollectorRegistry`. Values that live in Redis (pool levels)
need an ``await``, which collectors cannot do, so a scrape first awaits the service's ``refresh`` and then
renders the registry; collectors read the snapshot that refresh left.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TypeVar

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # "text/plain; version=0.0.4; charset=utf-8"
Refresh = Callable[[], Awaitable[None]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def metrics_handler(registry: CollectorRegistry, refresh: Refresh | None = None) -> Handler:
    async def handle(request: web.Request) -> web.Response:
        if refresh is not None:
            await refresh()
        response = web.Response(body=generate_latest(registry))
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    return handle


class RequestCounts:
    """Requests served by one or more HTTP APIs, by API, route template, method and status."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str, str, str]] = Counter()

    def middleware(self, api: str) -> Middleware:
        """An aiohttp middleware; insert it first (outermost) so it sees the status other middlewares chose."""

        @web.middleware
        async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
            resource = request.match_info.route.resource
            endpoint = resource.canonical if resource is not None else "unmatched"
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                self.counts[(api, endpoint, request.method, str(exc.status))] += 1
                raise
            except Exception:
                self.counts[(api, endpoint, request.method, "500")] += 1
                raise
            self.counts[(api, endpoint, request.method, str(response.status))] += 1
            return response

        return count

    def instrument(self, app: web.Application, api: str) -> web.Application:
        app.middlewares.insert(0, self.middleware(api))
        return app

    def family(self, name: str, documentation: str) -> CounterMetricFamily:
        return counter(name, documentation, ["api", "endpoint", "method", "status"], sorted(self.counts.items()))


def gauge(
    name: str, documentation: str, labels: Iterable[str], samples: Iterable[tuple[Iterable[str], float]]
) -> GaugeMetricFamily:
    return _filled(GaugeMetricFamily(name, documentation, labels=list(labels)), samples)


def counter(
    name: str, documentation: str, labels: Iterable[str], samples: Iterable[tuple[Iterable[str], float]]
) -> CounterMetricFamily:
    """``name`` without the ``_total`` suffix, which the exposition adds."""
    return _filled(CounterMetricFamily(name, documentation, labels=list(labels)), samples)


F = TypeVar("F", GaugeMetricFamily, CounterMetricFamily)


def _filled(family: F, samples: Iterable[tuple[Iterable[str], float]]) -> F:
    for values, value in samples:
        family.add_metric(list(values), value)
    return family


def counted(counts: Mapping[str, int]) -> list[tuple[list[str], float]]:
    return [([label], value) for label, value in sorted(counts.items())]
