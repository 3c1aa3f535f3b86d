"""The EKS mode's token: what minting costs a function (chalicelib/kube/eks_token.py).

A cold container builds the STS client once and mints on its first Kubernetes call; a warm
one answers every request's token from its cache for 14 minutes. Presigning is local (no
network): the figures are CPU only.
"""

from __future__ import annotations

import statistics
import time


def eks_token(mints: int = 2000, cached: int = 100_000) -> None:
    import boto3

    from chalicelib.kube import eks_token as tokens

    session = boto3.session.Session(aws_access_key_id="AKIAEXAMPLE", aws_secret_access_key="secret",
                                    aws_session_token="session", region_name="eu-west-1")
    t = time.perf_counter()
    sts = tokens.sts_client(session, "eu-west-1")
    setup = time.perf_counter() - t
    times = []
    for _ in range(mints):
        t = time.perf_counter()
        tokens.mint(sts, "prod-1")
        times.append(time.perf_counter() - t)
    cache = tokens.EksTokens("prod-1", "eu-west-1", session)
    cache()
    t = time.perf_counter()
    for _ in range(cached):
        cache()
    per_call = (time.perf_counter() - t) / cached
    print(f"eks token: STS client once per container  {setup * 1000:8.1f} ms")
    print(f"eks token: mint (presign, local)          {statistics.median(times) * 1e6:8.0f} us  median of {mints}")
    print(f"eks token: cached, per Kubernetes request {per_call * 1e9:8.0f} ns  (a new one every 14 min)")
