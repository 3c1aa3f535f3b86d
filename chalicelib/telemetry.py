"""CloudWatch metrics (EMF) through aws-lambda-powertools. Logs are stdlib
"lambdalet.*" loggers, set up in app.py."""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit, single_metric

NAMESPACE = "lambdalet"


def count(name: str, value: int, **dimensions: str) -> None:
    """Emit one Count metric now (EMF on stdout; CloudWatch picks it up in Lambda)."""
    if value <= 0:
        return
    with single_metric(name=name, unit=MetricUnit.Count, value=value, namespace=NAMESPACE) as metric:
        for key, dim in dimensions.items():
            metric.add_dimension(name=key, value=dim)
