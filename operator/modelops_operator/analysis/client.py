"""A thin Prometheus client for the analysis: one instant query in, a vector or a reason out.

It wraps prometheus-api-client's `PrometheusConnect.custom_query` and turns every failure into an
`Unavailable` answer with a kind and a sentence: connection refused, a timeout, an HTTP error
(with Prometheus' own `error` text when it sent one), a body that is not JSON or not a vector, a
`status: error` answer. Nothing raises out of `query()`. The kind says whose fault it is: an HTTP
5xx is the server's (Prometheus overloaded, restarting, or a proxy without it behind), so it is
`unreachable` like a refused connection and the engine treats Prometheus as down; a 4xx is the
query's (`query-error` for a bad query, `http-error` for other refusals), and spoils only it.

Each query has a timeout twice over: the HTTP request's (`requests`' connect and read timeout,
which prometheus-api-client passes through) and Prometheus' own evaluation `timeout` parameter, so
a slow query is abandoned on both ends. The library's default retries (three, with back-off) are
turned off: the analysis runs again next interval, and an outage should cost one timeout, not
several.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

DEFAULT_TIMEOUT = 10.0

# Kinds of unavailability.
UNREACHABLE = "unreachable"
TIMEOUT = "timeout"
HTTP_ERROR = "http-error"
QUERY_ERROR = "query-error"
BAD_ANSWER = "bad-answer"
# The kinds that mean Prometheus could not be asked at all (refused, timed out, HTTP 5xx), as
# opposed to one query's error: the engine sends nothing more in the pass, the canary's progress
# deadline waits.
OUTAGES = (UNREACHABLE, TIMEOUT)


class Sample(NamedTuple):
    """One element of an instant vector: its labels and its value (NaN and ±Inf kept as such).
    A tuple: a thousand models' feature buckets are tens of thousands of them per pass."""

    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class Vector:
    """A successful answer (a scalar answer is one sample without labels)."""

    samples: tuple[Sample, ...]


@dataclass(frozen=True)
class Unavailable:
    """No answer: `kind` is one of the constants above, `reason` a sentence."""

    kind: str
    reason: str


Answer = Vector | Unavailable


class QueryClient(Protocol):
    """What the engine needs: an instant query, at a time (Unix seconds) or now."""

    def query(self, promql: str, at: float | None = None) -> Answer: ...


def parse_result(result: Any) -> Answer:
    """The `data.result` of an instant query as a Vector (vector or scalar), else Unavailable."""
    if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
        return Vector((Sample({}, _value(result[1])),))  # a scalar: [time, "value"]
    if not isinstance(result, list):
        return Unavailable(BAD_ANSWER, f"the answer is not a vector: {str(result)[:200]}")
    samples = []
    for element in result:
        try:
            metric, value = element.get("metric") or {}, float(element["value"][1])
        except (AttributeError, KeyError, IndexError, TypeError, ValueError) as error:
            return Unavailable(
                BAD_ANSWER, f"the answer is not an instant vector ({error!r}): {str(element)[:200]}"
            )
        if not isinstance(metric, dict):
            return Unavailable(BAD_ANSWER, f"a sample's labels are not an object: {metric!r}")
        samples.append(Sample(metric, value))  # JSON object keys and label values are strings
    return Vector(tuple(samples))


def _value(text: Any) -> float:
    return float(text)  # Prometheus writes "NaN", "+Inf", "-Inf", which float() reads


_STATUS = re.compile(r"HTTP Status Code (\d+) \((.*)\)\s*$", re.DOTALL)


def _http_error(error: PrometheusApiClientException) -> Unavailable:
    """prometheus-api-client's `HTTP Status Code 400 (b'{...}')`: the code and Prometheus' text."""
    text = str(error)
    match = _STATUS.search(text)
    if not match:
        return Unavailable(HTTP_ERROR, text[:300])
    code, body = int(match.group(1)), match.group(2)
    detail = body
    found = re.search(r'"error":"((?:[^"\\]|\\.)*)"', body)
    if found:
        try:
            detail = json.loads(f'"{found.group(1)}"')
        except ValueError:
            detail = found.group(1)
    # 400 (bad_data) and 422 (execution) are the query's fault, other 4xx a refusal of this
    # request; a 5xx (503 for timeout or canceled, 502/504 from a proxy) means no Prometheus to ask.
    kind = UNREACHABLE if code >= 500 else QUERY_ERROR if code in (400, 422) else HTTP_ERROR
    return Unavailable(kind, f"Prometheus answered HTTP {code}: {detail[:300]}")


class PrometheusClient:
    """`query()` over prometheus-api-client with a per-query timeout and no retries.

    `session` (a `requests.Session`) is for tests and special transports; headers carry a bearer
    token where Prometheus needs one.
    """

    def __init__(
        self,
        url: str,
        timeout: float = DEFAULT_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        disable_ssl: bool = False,
        session: requests.Session | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        options: dict[str, Any] = {
            "url": self.url,
            "disable_ssl": disable_ssl,
            "retry": Retry(total=0, connect=0, read=0, status=0, raise_on_status=False),
        }
        if headers:
            options["headers"] = dict(headers)
        if session is not None:
            options["session"] = session
        self._connect = PrometheusConnect(**options)

    def close(self) -> None:
        self._connect.close()

    def query(self, promql: str, at: float | None = None) -> Answer:
        params = {"timeout": f"{self.timeout:g}s"}
        if at is not None:
            params["time"] = f"{at:.3f}"
        try:
            result = self._connect.custom_query(promql, params=params, timeout=self.timeout)
        except requests.Timeout as error:
            return Unavailable(
                TIMEOUT, f"Prometheus did not answer within {self.timeout:g}s: {error}"
            )
        except requests.ConnectionError as error:
            return Unavailable(UNREACHABLE, f"Prometheus at {self.url} is unreachable: {error}")
        except PrometheusApiClientException as error:
            return _http_error(error)
        except (ValueError, KeyError, TypeError) as error:
            # A 200 whose body is not JSON, or JSON without data.result (`status: error`).
            return Unavailable(BAD_ANSWER, f"Prometheus' answer is not a query result: {error!r}")
        except requests.RequestException as error:
            return Unavailable(UNREACHABLE, f"the request to {self.url} failed: {error}")
        except Exception as error:  # the contract: no exception escapes a query
            return Unavailable(BAD_ANSWER, f"the query failed: {error!r}")
        return parse_result(result)
