"""lambdalet's entry points. Each parses, calls one use case, answers; the rest is in chalicelib/."""

from chalice import BadRequestError, Chalice, Rate, UnauthorizedError

from chalicelib import telemetry, usecases, wiring

app = Chalice(app_name="lambdalet")


@app.route("/audit", methods=["POST"], content_types=["application/json"])
def audit():
    """kube-apiserver's audit webhook: EventList batches of pod bindings and deletes."""
    _only_our_apiserver()
    try:
        report = usecases.handle_audit(wiring.world(), app.current_request.raw_body)
    except usecases.BadPayload as err:
        telemetry.count("AuditBatchesRejected", 1)
        raise BadRequestError(str(err)) from None
    telemetry.count("AuditEventsMalformed", len(report.malformed))
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
    _only_our_apiserver()
    try:
        result = usecases.handle_admission(wiring.world(), app.current_request.raw_body, webhook)
    except usecases.BadPayload as err:
        telemetry.count("AdmissionReviewsRejected", 1)
        raise BadRequestError(str(err)) from None
    telemetry.count("AdmissionErrors", len(result.errors), webhook=webhook)
    return result.body


def _only_our_apiserver() -> None:
    if not usecases.caller_allowed(wiring.world(), app.current_request.headers.get("authorization")):
        telemetry.count("WebhookCallsUnauthorized", 1)
        raise UnauthorizedError("lambdalet's webhooks take the bearer token of the apiserver's webhook kubeconfig")


@app.schedule(Rate(1, unit=Rate.MINUTES))
def reconcile(event):
    """The source of truth: converge every virtual node, keep its heartbeat."""
    return usecases.reconcile(wiring.world())


@app.schedule(Rate(1, unit=Rate.MINUTES))
def heartbeat(event):
    """Keep every virtual node Ready: renew its Lease every ~10 s for most of the minute."""
    context = event.context
    budget = context.get_remaining_time_in_millis() / 1000 if context is not None else None
    return usecases.heartbeat(wiring.world(), budget=budget)


# Filtering by cluster happens in the handler: the rule is fixed at deploy time.
@app.on_cw_event({"source": ["aws.ecs"], "detail-type": ["ECS Task State Change"]})
def on_machine_event(event):
    """ECS task state changes: the fast status path."""
    return usecases.handle_machine_event(wiring.world(), event.to_dict())
