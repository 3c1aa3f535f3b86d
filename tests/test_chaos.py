"""The chaos run at CI size on each backend (tests/chaos.py; ``./dev chaos``
runs the full 1,000 lifecycles): after the storm and two clean reconcile passes
every invariant holds. The figures are printed in the test summary
(tests/conftest.py)."""

from __future__ import annotations

import io
import os

import pytest

from tests import chaos


@pytest.mark.parametrize("backend", ["ecs", "fly"])
def test_the_chaos_run_leaves_every_invariant_holding(backend, record_property):
    lifecycles = int(os.environ.get("LAMBDALET_CHAOS_LIFECYCLES", "40"))
    out = io.StringIO()
    figures = chaos.run(lifecycles=lifecycles, drop=0.2, duplicate=0.2, failing=0.1, seed=7, out=out,
                        backend=backend)
    record_property("figures", out.getvalue())
    storm, cloud = figures["_storm"], figures["_cloud"]
    assert sum(v for k, v in storm.items() if k.startswith("lifecycles")) == lifecycles
    # The storm really happened: Kubernetes and cloud calls failed, invocations were
    # killed right after a create the cloud accepted, reconciles ran out of time.
    assert storm["kube faults injected"] > 0 and cloud["cloud faults injected"] > 0, out.getvalue()
    assert sum(v for k, v in cloud.items() if k.startswith("killed after")) > 0, out.getvalue()
    assert storm.get("reconciles out of time", 0) > 0 and storm.get("invocations killed", 0) > 0, out.getvalue()
    assert chaos.failed(figures) == [], out.getvalue()


def test_cloud_faults_fail_aws_calls_as_the_services_do():
    """The chaos run's AWS fault layer: each service's throttling and 5xx codes with
    their statuses (Lambda's 429 with Retry-After), timeouts before the request left
    and after the service did the work, nothing once disarmed."""
    import random

    import boto3
    from botocore.exceptions import ClientError, ConnectTimeoutError, ReadTimeoutError
    from moto import mock_aws

    from tests.world.cloud_faults import CloudFaults

    seen: dict[str, set] = {}
    with mock_aws(), CloudFaults(random.Random(3), rate=1.0) as faults:
        faults.armed = True
        ecs, lam = boto3.client("ecs", region_name="us-east-1"), boto3.client("lambda", region_name="us-east-1")
        for n in range(40):
            for service, call in (("ecs", lambda: ecs.create_cluster(clusterName=f"c{n}")),
                                  ("lambda", lambda: lam.list_functions())):
                try:
                    call()
                    raise AssertionError("a call got through at rate 1.0")
                except ClientError as err:
                    meta = err.response["ResponseMetadata"]
                    seen.setdefault(service, set()).add(
                        (err.response["Error"]["Code"], meta["HTTPStatusCode"], meta["HTTPHeaders"].get("Retry-After")))
                except (ConnectTimeoutError, ReadTimeoutError) as err:
                    seen.setdefault(service, set()).add(type(err).__name__)
        faults.armed = False
        created = set(ecs.list_clusters()["clusterArns"])
    assert seen["ecs"] == {("ThrottlingException", 400, None), ("ServerException", 500, None),
                           "ConnectTimeoutError", "ReadTimeoutError"}
    assert ("TooManyRequestsException", 429, "1") in seen["lambda"] and ("ServiceException", 500, None) in seen["lambda"]
    # Only the read timeouts reached the service: the work was done, the answer lost.
    reads = faults.counts["aws ecs CreateCluster read timeout"]
    assert reads > 0 and len(created) == reads
