"""The sandbox's Gateway API implementation: Traefik programs the Gateway and splits an HTTPRoute's
requests by its weights, first between two plain HTTP backends on the session's control plane, then
between a Model's stable and canary pods on the real node, as the operator moves the weights
through the canary's steps.

Each measured share is checked against a binomial bound: with `n` requests and a weight `w`, the
canary's count is within 4 standard deviations, `4 * sqrt(n * w * (1 - w))`, of `n * w` (a
correct router fails it with probability about 6e-5; a replica-ratio split of one canary pod beside
two stable ones, 33%, fails it at every step). The shares are printed (`-s` shows them).
"""

from __future__ import annotations

import collections
import functools
import http.server
import json
import math
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psutil
import pytest
import support
from kubernetes import client

from modelops_sandbox.cluster import Cluster
from modelops_sandbox.controlplane import ControlPlane
from modelops_sandbox.demo import demo_model
from modelops_sandbox.gateway import (
    GATEWAY_NAME,
    GATEWAY_NAMESPACE,
    LISTENER,
    GatewayServer,
    condition,
    gateway_manifests,
    gateway_ready,
    static_config,
)
from modelops_sandbox.sandbox import Sandbox, post_json, wait_for

eventually = functools.partial(support.eventually, timeout=60.0, every=0.2)
GROUP = "gateway.networking.k8s.io"
SIGMAS = 4.0
THROTTLE_MARGIN = 2.0


def within_binomial_bound(hits: int, n: int, weight: float) -> tuple[bool, float]:
    """Whether `hits` of `n` is within SIGMAS standard deviations of `n * weight`; the bound."""
    bound = SIGMAS * math.sqrt(n * weight * (1 - weight))
    return abs(hits - n * weight) <= bound, bound


def route_programmed(route: dict[str, Any]) -> bool:
    """Traefik accepted the route's current generation and resolved its backends."""
    generation = route.get("metadata", {}).get("generation")
    parents = (route.get("status") or {}).get("parents") or []
    return bool(parents) and all(
        condition(parent, kind).get("status") == "True"
        and condition(parent, kind).get("observedGeneration") == generation
        for parent in parents
        for kind in ("Accepted", "ResolvedRefs")
    )


def settle() -> None:
    """Traefik writes a route's status when it builds the configuration, and serves that
    configuration after its throttle (500 ms): the requests wait that long."""
    time.sleep(THROTTLE_MARGIN)


def send(
    url: str, host: str, n: int, request: Callable[[str, str], str]
) -> collections.Counter[str]:
    """`n` requests through the gateway with the route's `Host`, four at a time; who answered."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return collections.Counter(pool.map(lambda _: request(url, host), range(n)))


# --- pure parts ---------------------------------------------------------------------------------


@pytest.mark.unit
def test_the_static_config_has_one_entrypoint_the_gateway_provider_and_phones_nowhere() -> None:
    config = static_config("10.244.0.1", 18080)
    assert config["entryPoints"] == {"web": {"address": "10.244.0.1:18080"}}
    assert config["providers"]["kubernetesGateway"]["statusAddress"] == {"ip": "10.244.0.1"}
    assert config["global"] == {"checkNewVersion": False, "sendAnonymousUsage": False}
    assert "api" not in config and "ping" not in config


@pytest.mark.unit
def test_the_gateway_listens_where_the_entrypoint_does_for_routes_of_every_namespace() -> None:
    namespace, gateway_class, gateway = gateway_manifests(18080)
    assert namespace == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": GATEWAY_NAMESPACE},
    }
    assert gateway_class["spec"] == {"controllerName": "traefik.io/gateway-controller"}
    assert gateway["metadata"] == {"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE}
    assert gateway["spec"]["listeners"] == [
        {
            "name": LISTENER,
            "protocol": "HTTP",
            "port": 18080,
            "allowedRoutes": {"namespaces": {"from": "All"}},
        }
    ]


@pytest.mark.unit
def test_a_gateway_is_ready_only_when_its_generation_and_every_listener_are_programmed() -> None:
    def gateway(generation: int, observed: int, listener: str) -> dict[str, Any]:
        return {
            "metadata": {"generation": generation},
            "spec": {"listeners": [{"name": "http"}]},
            "status": {
                "conditions": [
                    {"type": "Accepted", "status": "True", "observedGeneration": observed},
                    {"type": "Programmed", "status": "True", "observedGeneration": observed},
                ],
                "listeners": [
                    {"name": "http", "conditions": [{"type": "Programmed", "status": listener}]}
                ],
            },
        }

    assert gateway_ready(gateway(2, 2, "True"))
    assert not gateway_ready(gateway(2, 1, "True"))  # an older spec's status
    assert not gateway_ready(gateway(2, 2, "False"))
    assert not gateway_ready(
        {"metadata": {"generation": 1}, "spec": {"listeners": [{"name": "http"}]}}
    )


@pytest.mark.unit
def test_the_binomial_bound() -> None:
    assert within_binomial_bound(100, 1000, 0.1) == (True, 4 * math.sqrt(90))
    assert not within_binomial_bound(333, 1000, 0.1)[0]


# --- Traefik on the control plane ----------------------------------------------------------------


def host_address() -> str:
    """This machine's address on its default route: an endpoint address the API server accepts
    (it refuses loopback ones) and a local server can listen on."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("198.51.100.1", 9))  # no packet is sent; the kernel picks the source
        address = str(probe.getsockname()[0])
    if address.startswith("127."):
        pytest.skip("this machine has no address but loopback ones")
    return address


class Backend:
    """A plain HTTP server on `address` that answers every GET with its name."""

    def __init__(self, address: str, name: str) -> None:
        label = name.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(label)))
                self.end_headers()
                self.wfile.write(label)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((address, 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def get_body(url: str, host: str) -> str:
    request = urllib.request.Request(url, headers={"Host": host})
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(response.read().decode())


@pytest.fixture(scope="module")
def traefik(control_plane: ControlPlane) -> Iterator[GatewayServer]:
    """Traefik on this machine's address, serving the Gateway, for the module."""
    with GatewayServer(control_plane.kubeconfig, address=host_address()) as server:
        yield server


def backend_service(
    core: client.CoreV1Api,
    discovery: client.DiscoveryV1Api,
    namespace: str,
    name: str,
    backend: Backend,
    address: str,
) -> None:
    """A Service without a selector and its EndpointSlice: one endpoint, the backend's address."""
    core.create_namespaced_service(
        namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1ServiceSpec(
                ports=[client.V1ServicePort(name="http", port=80, target_port=backend.port)]
            ),
        ),
    )
    discovery.create_namespaced_endpoint_slice(
        namespace,
        client.V1EndpointSlice(
            metadata=client.V1ObjectMeta(name=name, labels={"kubernetes.io/service-name": name}),
            address_type="IPv4",
            endpoints=[
                client.V1Endpoint(
                    addresses=[address], conditions=client.V1EndpointConditions(ready=True)
                )
            ],
            ports=[client.DiscoveryV1EndpointPort(name="http", port=backend.port, protocol="TCP")],
        ),
    )


@pytest.mark.integration
def test_traefik_programs_the_gateway_and_publishes_its_address(
    traefik: GatewayServer, control_plane: ControlPlane
) -> None:
    gateway = traefik.gateway()
    assert gateway_ready(gateway)
    assert gateway["status"]["addresses"] == [{"type": "IPAddress", "value": traefik.address}]
    gateway_class = json.loads(
        control_plane.kubectl_run("get", "gatewayclass", "traefik", "-o", "json").stdout
    )
    assert condition(gateway_class, "Accepted")["status"] == "True"
    # No route answers an unknown host.
    with pytest.raises(urllib.error.HTTPError) as refused:
        get_body(traefik.url, "nobody.example")
    assert refused.value.code == 404


def weighted_route(namespace: str, host: str, weight: int) -> dict[str, Any]:
    """An HTTPRoute on the sandbox's Gateway: `weight` percent to iris-canary, the rest to
    iris-stable."""
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "iris", "namespace": namespace},
        "spec": {
            "parentRefs": [
                {"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE, "sectionName": LISTENER}
            ],
            "hostnames": [host],
            "rules": [
                {
                    "backendRefs": [
                        {"name": "iris-stable", "port": 80, "weight": 100 - weight},
                        {"name": "iris-canary", "port": 80, "weight": weight},
                    ]
                }
            ],
        },
    }


def report(what: str, canary: int, n: int, weight: int) -> bool:
    """Prints the canary's measured share beside its bound; whether it is within."""
    ok, bound = within_binomial_bound(canary, n, weight / 100)
    print(
        f"{what} at {weight}%: the canary answered {canary}/{n} = {canary / n:.1%} "
        f"(4-sigma bound {weight}% ± {100 * bound / n:.1f} points)"
    )
    return ok


@pytest.mark.integration
def test_an_httproute_splits_requests_by_its_weights(
    traefik: GatewayServer, kube_api: client.ApiClient, namespace: str
) -> None:
    core, discovery = client.CoreV1Api(kube_api), client.DiscoveryV1Api(kube_api)
    routes = client.CustomObjectsApi(kube_api)
    backends = {name: Backend(traefik.address, name) for name in ("stable", "canary")}
    host, n = "iris.test.modelops.local", 1000
    try:
        for name, backend in backends.items():
            backend_service(core, discovery, namespace, f"iris-{name}", backend, traefik.address)
        routes.create_namespaced_custom_object(
            GROUP, "v1", namespace, "httproutes", weighted_route(namespace, host, 10)
        )
        for weight in (10, 50):
            if weight != 10:  # a merge patch: the list of backends is replaced
                routes.patch_namespaced_custom_object(
                    GROUP,
                    "v1",
                    namespace,
                    "httproutes",
                    "iris",
                    weighted_route(namespace, host, weight),
                )
            eventually(
                lambda: route_programmed(
                    routes.get_namespaced_custom_object(
                        GROUP, "v1", namespace, "httproutes", "iris"
                    )
                )
            )
            settle()
            answered = send(traefik.url, host, n, get_body)
            assert set(answered) <= {"stable", "canary"} and sum(answered.values()) == n
            assert report("traefik", answered["canary"], n, weight), answered
    finally:
        for backend in backends.values():
            backend.close()


@pytest.mark.integration
def test_stop_leaves_no_process_port_directory_or_gateway(control_plane: ControlPlane) -> None:
    # A class of its own: the module's Traefik leaves it to this one.
    server = GatewayServer(
        control_plane.kubeconfig,
        namespace="gateway-stop",
        name="stopping",
        gateway_class="traefik-stop",
    ).start()
    pid, port, directory = server.pid, server.port, server.directory
    assert pid is not None and psutil.pid_exists(pid)
    server.stop()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # free again
    assert not directory.exists()
    for kind, name in (("gateway", "stopping"), ("gatewayclass", "traefik-stop")):
        assert not control_plane.kubectl_run(
            "get", kind, name, "-n", "gateway-stop", "--ignore-not-found", "-o", "name"
        ).stdout.strip()
    server.stop()  # twice is fine


# --- the operator's canary through the gateway on the real node ----------------------------------

STEPS = [5, 25, 50]
REQUESTS_PER_STEP = 1000
ROWS = [[5.9, 3.0, 5.1, 1.8]]  # one iris row, in the features' order


@pytest.fixture(scope="module")
def gateway_sandbox(node_cluster: Cluster) -> Iterator[Sandbox]:
    with Sandbox(
        cluster=node_cluster, namespace="gateway-split", scrape_interval="1s", gateway=True
    ) as s:
        yield s


def predict_version(url: str, host: str) -> str:
    answer = post_json(f"{url}/predict", {"rows": ROWS}, headers={"Host": host})
    return str(answer["version"])


def first_answers(url: str, host: str) -> collections.Counter[str]:
    """Who answers 10 requests through a route the gateway may not have programmed yet: until it
    has the route and its endpoints, it answers 404 or 503, which count as no answer."""
    try:
        return send(url, host, 10, predict_version)
    except urllib.error.HTTPError as error:
        if error.code in (404, 503):
            return collections.Counter()
        raise


def model_status(sandbox: Sandbox) -> dict[str, Any]:
    return dict(sandbox.get("model", "iris").get("status") or {})


def canary_command(sandbox: Sandbox, verb: str) -> None:
    """`modelops <verb> iris --wait`, the command a person runs."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelops_operator.cli",
            verb,
            "iris",
            "-n",
            sandbox.namespace,
            f"--kubeconfig={sandbox.kubeconfig_path}",
            "--wait",
            "--timeout=60s",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def canary_weight(sandbox: Sandbox) -> int | None:
    weight = (model_status(sandbox).get("canary") or {}).get("weight")
    return None if weight is None else int(weight)


def route_weights(sandbox: Sandbox) -> dict[str, int] | None:
    """The backends' weights of the Model's HTTPRoute, once Traefik has programmed it."""
    route = sandbox.get("httproute", "iris")
    if not route or not route_programmed(route):
        return None
    return {ref["name"]: ref["weight"] for ref in route["spec"]["rules"][0]["backendRefs"]}


def measure_step(sandbox: Sandbox, host: str, weight: int) -> tuple[int, int]:
    """Waits for the route's weights at the canary's step, sends the requests; the canary's
    answers and its pods."""
    canary = model_status(sandbox)["canary"]
    assert (canary["weight"], canary["version"]) == (weight, "iris-v2"), canary
    wanted = {"iris-stable": 100 - weight, "iris-canary": weight}
    wait_for(lambda: route_weights(sandbox) == wanted, 120, f"the route at {weight}%")
    settle()
    n = REQUESTS_PER_STEP
    answered = send(sandbox.gateway_url, host, n, predict_version)
    assert set(answered) <= {"iris-v1", "iris-v2"} and sum(answered.values()) == n, answered
    assert route_weights(sandbox) == wanted  # the step held through the measurement
    pods = [p for p in sandbox.serving_pods("iris") if p["track"] == "canary"]
    return answered["iris-v2"], len(pods)


@pytest.mark.e2e
def test_the_canary_gets_exactly_its_steps_share_through_the_gateway(
    gateway_sandbox: Sandbox,
) -> None:
    """Steps 5, 25 and 50 beside 2 stable pods: one canary pod each (a replica split would give
    it 33% at every step), and the canary's share of the gateway's requests is its step's."""
    sandbox = gateway_sandbox
    body = demo_model()
    spec = body["spec"]
    spec["serving"]["replicas"] = 2
    spec["serving"]["traffic"] = {
        "gateway": {"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE, "sectionName": LISTENER}
    }
    # An interval longer than the test: no analysis moves the canary. The Gateway API router
    # gives the canary its current step's weight as the spec says it (canary.at_step), so each
    # step is reached by editing the steps; the promotion is a person's.
    spec["serving"]["canary"] = {"steps": STEPS, "interval": "30m", "progressDeadline": "1h"}
    spec["monitoring"]["checks"] = {"errorRate": {"max": 0.5, "minSamples": 5}}
    spec["monitoring"].pop("retrainOn", None)
    manifest = sandbox.directory / "iris.json"
    manifest.write_text(json.dumps(body))
    sandbox.kubectl("apply", "-n", sandbox.namespace, "-f", str(manifest))
    wait_for(lambda: model_status(sandbox).get("phase") == "Serving", 300, "iris-v1 serving")
    host = f"iris.{sandbox.namespace}.modelops.local"
    assert model_status(sandbox).get("url") == f"http://{host}"
    eventually(lambda: first_answers(sandbox.gateway_url, host) == {"iris-v1": 10})

    # A new version: trained, approved, then its canary starts at the first step.
    spec["training"]["estimator"]["params"] = {"n_estimators": 20, "random_state": 1}
    measured = {}
    for i, weight in enumerate(STEPS):
        spec["serving"]["canary"]["steps"] = STEPS[i:]
        manifest.write_text(json.dumps(body))
        sandbox.kubectl("apply", "-n", sandbox.namespace, "-f", str(manifest))
        wait_for(lambda w=weight: canary_weight(sandbox) == w, 300, f"the canary at {weight}%")
        canary, pods = measure_step(sandbox, host, weight)
        measured[weight] = canary
        assert pods == 1
    for weight, canary in measured.items():
        assert report(
            "gateway split (2 stable pods, 1 canary pod)", canary, REQUESTS_PER_STEP, weight
        )
    canary_command(sandbox, "promote")
    assert model_status(sandbox).get("stableVersion") == "iris-v2"
    eventually(lambda: send(sandbox.gateway_url, host, 20, predict_version) == {"iris-v2": 20})
