"""Structured logs and CloudWatch metrics (EMF) through aws-lambda-powertools."""

from __future__ import annotations

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import MetricUnit, single_metric

SERVICE = "lambdalet"
NAMESPACE = "lambdalet"

# Our modules log through stdlib loggers named "lambdalet.*": children of this
# one (its name is the service), so they propagate to its JSON handler.
logger = Logger(service=SERVICE)


def count(name: str, value: int, **dimensions: str) -> None:
    """Emit one Count metric now (EMF on stdout; CloudWatch picks it up in Lambda)."""
    if value <= 0:
        return
    with single_metric(name=name, unit=MetricUnit.Count, value=value, namespace=NAMESPACE) as metric:
        for key, dim in dimensions.items():
            metric.add_dimension(name=key, value=dim)
