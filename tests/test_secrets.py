"""Secrets never leave their box (tests/conftest.py watches this module): the
paths where a secret is closest to an answer or a log line — a refused
webhook call, the Kubernetes API refusing lambdalet's token, the Fly API
failing — leave no secret value in logs, Events or answers. And the watch
itself finds a secret when one does leak."""

from __future__ import annotations

import logging

from tests.conftest import leaks
from tests.world import stack as world
from tests.world.stack import FLY_TOKEN, SA_TOKEN, WEBHOOK_TOKEN, Stack, virtual_pod


def test_the_watch_finds_a_leaked_secret_in_logs_and_answers(caplog):
    canary = "canary-secret-0a1b2c3d"  # not one of the world's: logging a real one fails this module's watch
    logging.getLogger("lambdalet.test").error("calling with token %s", canary)
    assert leaks(caplog.text, (canary, *world.SECRET_VALUES)) == [f"{canary[:6]}..."]
    assert leaks('{"Message": "expected webhook-token"}', world.SECRET_VALUES) == []
    assert leaks(f"Authorization: Bearer {FLY_TOKEN}", world.SECRET_VALUES)


def test_refusals_and_failing_apis_show_no_secret():
    with Stack(nodes=("lambdalet-ecs", "lambdalet-fly"), node_overrides={"lambdalet-fly": {"backend": "fly"}}) as s:
        s.reconcile()
        for token in ("wrong", WEBHOOK_TOKEN[:-1], WEBHOOK_TOKEN + "x"):
            r = s.client.http.post("/audit", headers={"Authorization": f"Bearer {token}"}, body=b"{}")
            assert r.status_code == 401
            s._record("/audit 401", r.body.decode())
        s.create_pod(virtual_pod("fly-pod", node="lambdalet-fly", command=["sleep", "1000"]))
        s.fly.fail("create", 500, times=10)
        s.fly.fail("list", 401, "unauthorized", times=2)
        s.settle(rounds=3, reconcile=True)
        s.sim.api.tokens.pop(SA_TOKEN)  # the apiserver no longer knows lambdalet's token: 401s
        report = s.reconcile()
        assert all("error" in node for node in report.values()), report
