"""lambdalet's entry points. Each parses, calls one use case, answers; the rest is in chalicelib/."""

from chalice import BadRequestError, Chalice, Rate

from chalicelib import telemetry, usecases, wiring

app = Chalice(app_name="lambdalet")
log = telemetry.logger


@app.route("/audit", methods=["POST"], content_types=["application/json"])
def audit():
    """kube-apiserver's audit webhook: EventList batches of pod bindings and deletes."""
    try:
        report = usecases.handle_audit(wiring.world(), app.current_request.raw_body)
    except usecases.BadPayload as err:
        telemetry.count("AuditBatchesRejected", 1)
        raise BadRequestError(str(err)) from None
    telemetry.count("AuditEventsMalformed", len(report.malformed))
    return report.body()


@app.schedule(Rate(1, unit=Rate.MINUTES))
def reconcile(event):
    """The source of truth: converge every virtual node, keep its heartbeat."""
    return usecases.reconcile(wiring.world())


# Filtering by cluster happens in the handler: the rule is fixed at deploy time.
@app.on_cw_event({"source": ["aws.ecs"], "detail-type": ["ECS Task State Change"]})
def on_machine_event(event):
    """ECS task state changes: the fast status path."""
    return usecases.handle_machine_event(wiring.world(), event.to_dict())
