"""Structured logs and CloudWatch metrics (EMF) through aws-lambda-powertools."""

from __future__ import annotations

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit, single_metric

SERVICE = "lambdalet"
NAMESPACE = "lambdalet"

logger = Logger(service=SERVICE)
# Our modules log through stdlib loggers named "lambdalet.*": give them the JSON format.
copy_config_to_registered_loggers(source_logger=logger, include={"lambdalet"})


def count(name: str, value: int, **dimensions: str) -> None:
    """Emit one Count metric now (EMF on stdout; CloudWatch picks it up in Lambda)."""
    if value <= 0:
        return
    with single_metric(name=name, unit=MetricUnit.Count, value=value, namespace=NAMESPACE) as metric:
        for key, dim in dimensions.items():
            metric.add_dimension(name=key, value=dim)
