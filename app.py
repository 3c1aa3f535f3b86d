"""lambdalet's entry points. Each parses, calls one use case, answers; the rest is in chalicelib/.

Each entry point imports its own use case when first called: a Lambda
container answering admission reviews never loads the reconciler, and the
other way round (cold start is paid on every scale-out).
"""

import logging
import os

from chalice import BadRequestError, Chalice, ChaliceViewError, Rate, Response, UnauthorizedError

app = Chalice(app_name="lambdalet", configure_logs=False)
# Chalice logs through logging.getLogger(app_name) and pins that logger to ERROR
# unless debug is on; it is the parent of our "lambdalet.*" loggers, whose INFO
# and WARNING lines would vanish. Chalice gets a child of its own; ours go to the
# Lambda runtime's handler on the root logger (CloudWatch Logs).
app.log = logging.getLogger("lambdalet.chalice")
_level = os.environ.get("LAMBDALET_LOG_LEVEL", "INFO").upper()
logging.getLogger("lambdalet").setLevel(_level if _level in logging.getLevelNamesMapping() else "INFO")


@app.route("/audit", methods=["POST"], content_types=["application/json"])
def audit():
    """kube-apiserver's audit webhook: EventList batches of pod bindings and deletes."""
    from chalicelib.usecases import audit as usecase
    from chalicelib.usecases.world import BadPayload

    _only_our_apiserver("audit")
    try:
        report = usecase.handle_audit(_world(), app.current_request.raw_body)
    except BadPayload as err:
        _count("AuditBatchesRejected", 1)
        raise BadRequestError(str(err)) from None
    _count("AuditEventsMalformed", len(report.malformed))
    return report.body()


@app.route("/admission/validate", methods=["POST"], content_types=["application/json"])
def admission_validate():
    """Validating webhook: refuse pods our nodes cannot run; pods/binding to our node starts the machine."""
    return _admission("validate")


@app.route("/admission/mutate", methods=["POST"], content_types=["application/json"])
def admission_mutate():
    """Mutating webhook: the defaults lambdalet needs, for pods that target our nodes only."""
    return _admission("mutate")


def _admission(webhook: str) -> dict:
    from chalicelib.usecases import admission_review as usecase
    from chalicelib.usecases.world import BadPayload

    _only_our_apiserver("admission")
    try:
        result = usecase.handle_admission(_world(), app.current_request.raw_body, webhook)
    except BadPayload as err:
        _count("AdmissionReviewsRejected", 1)
        raise BadRequestError(str(err)) from None
    _count("AdmissionErrors", len(result.errors), webhook=webhook)
    return result.body


def _count(name: str, value: int, **dimensions: str) -> None:
    """A metric, loading powertools (telemetry) only when there is something to count:
    an admission review that went well never pays for it (cold start)."""
    if value > 0:
        from chalicelib import telemetry

        telemetry.count(name, value, **dimensions)


class RequestEntityTooLargeError(ChaliceViewError):
    STATUS_CODE = 413


def _only_our_apiserver(kind: str) -> None:
    """A bounded body (413, before anything reads it) from our apiserver (401)."""
    from chalicelib.usecases.world import caller_allowed
    from chalicelib.webhook_guard import too_large

    request = app.current_request
    refused = too_large(kind, request.headers.get("content-length"), lambda: request.raw_body)
    if refused:
        _count("WebhookBodiesTooLarge", 1)
        raise RequestEntityTooLargeError(refused)
    if not caller_allowed(_world(), app.current_request.headers.get("authorization")):
        _count("WebhookCallsUnauthorized", 1)
        raise UnauthorizedError("lambdalet's webhooks take the bearer token of the apiserver's webhook kubeconfig")


@app.schedule(Rate(1, unit=Rate.MINUTES))
def reconcile(event):
    """The source of truth: converge every virtual node, keep its heartbeat."""
    from chalicelib.usecases import reconcile as usecase

    return usecase.reconcile(_world(), budget=_remaining(event.context))


@app.schedule(Rate(1, unit=Rate.MINUTES))
def heartbeat(event):
    """Keep every virtual node Ready: renew its Lease every ~10 s for most of the minute."""
    from chalicelib.usecases import heartbeat as usecase

    return usecase.heartbeat(_world(), budget=_remaining(event.context))


def _wiring():
    from chalicelib import wiring

    return wiring


def _world():
    return _wiring().world()


def _remaining(context) -> float | None:
    """Seconds this invocation may still run (None outside Lambda)."""
    return context.get_remaining_time_in_millis() / 1000 if context is not None else None


@app.lambda_function(name="reconcile_node")
def reconcile_node(event, context):
    """One node's reconcile, handed over by the scheduled reconcile when it serves many nodes."""
    from chalicelib.usecases import reconcile as usecase

    return usecase.reconcile(_world(), budget=_remaining(context), only=[event["node"]])


@app.lambda_function(name="start_bound")
def start_bound(event, context):
    """The binding fast path's create, handed over by the validating webhook (asynchronous invocation)."""
    from chalicelib.usecases import admission_review as usecase

    return usecase.start_bound(_world(), event)


# Filtering by cluster happens in the handler: the rule is fixed at deploy time.
@app.on_cw_event({"source": ["aws.ecs"], "detail-type": ["ECS Task State Change"]})
def on_machine_event(event):
    """ECS task state changes: the fast status path."""
    from chalicelib.usecases import machine_event as usecase

    return usecase.handle_machine_event(_world(), event.to_dict())


# The kubelet API kube-apiserver reaches at the node's advertised address (chalicelib/kubelet_api).
# The apiserver's upgrade requests carry no body (Chalice takes a missing Content-Type for JSON);
# no binary type here: chalice deploy wants one view's content types all text or all binary.
_ANY_BODY = ["application/json", "text/plain", "*/*", "application/x-www-form-urlencoded"]


@app.route("/containerLogs/{namespace}/{pod}/{container}", methods=["GET"])
def container_logs(namespace, pod, container):
    """kubectl logs: the container's output, from the cloud's log store."""
    return _kubelet()


@app.route("/exec/{namespace}/{pod}/{container}", methods=["GET", "POST"], content_types=_ANY_BODY)
@app.route("/exec/{namespace}/{pod}/{uid}/{container}", methods=["GET", "POST"], content_types=_ANY_BODY)
@app.route("/attach/{namespace}/{pod}/{container}", methods=["GET", "POST"], content_types=_ANY_BODY)
@app.route("/attach/{namespace}/{pod}/{uid}/{container}", methods=["GET", "POST"], content_types=_ANY_BODY)
@app.route("/portForward/{namespace}/{pod}", methods=["GET", "POST"], content_types=_ANY_BODY)
@app.route("/portForward/{namespace}/{pod}/{uid}", methods=["GET", "POST"], content_types=_ANY_BODY)
@app.route("/run/{namespace}/{pod}/{container}", methods=["POST"], content_types=_ANY_BODY)
@app.route("/run/{namespace}/{pod}/{uid}/{container}", methods=["POST"], content_types=_ANY_BODY)
def connect(**_):
    """kubectl exec/attach/port-forward: the cloud's native command for this pod (no stream)."""
    return _kubelet()


@app.route("/stats/summary", methods=["GET"])
@app.route("/metrics/resource", methods=["GET"])
@app.route("/healthz", methods=["GET"])
@app.route("/pods", methods=["GET"])
def node_level():
    """What metrics-server scrapes (from the cloud's measurements), health, the node's pods."""
    return _kubelet()


def _kubelet() -> Response:
    from chalicelib.kubelet_api import service

    request = app.current_request
    query = request.query_params or {}
    reply = service.handle(_world(), _wiring().kubelet_access(), service.Request(
        method=request.method, path=request.context.get("resourcePath", "").format(**request.uri_params or {}),
        query={key: "\x00".join(query.getlist(key)) for key in query},
        headers={k.lower(): v for k, v in request.headers.items()}, context=request.context))
    if reply.status in (401, 403):
        _count("KubeletCallsRefused", 1, status=str(reply.status))
    # API Gateway's proxy integration carries text: the body goes as a str (kubectl prints it as is).
    return Response(body=reply.text, status_code=reply.status, headers={"Content-Type": reply.content_type})
