"""The Lambda's IAM policy allows every AWS call the app makes, and no wildcard action."""

import json
from fnmatch import fnmatch

from chalicelib import wiring
from tests.world.stack import NODE, REPO, Stack, virtual_pod

POLICY = json.loads((REPO / ".chalice" / "policy-dev.json").read_text())


def allowed(action: str) -> bool:
    return any(fnmatch(action, pattern)
               for statement in POLICY["Statement"] if statement["Effect"] == "Allow"
               for pattern in statement["Action"])


def test_no_statement_allows_every_action_of_a_service():
    actions = [a for s in POLICY["Statement"] for a in s["Action"]]
    assert not [a for a in actions if a.endswith(":*") or a == "*"]


def test_every_ecs_call_of_a_pod_lifecycle_is_allowed():
    called: set[str] = set()
    with Stack() as stack:
        stack.reconcile()
        client = wiring.world().backend_for(NODE).ecs
        client.meta.events.register(
            "before-call.ecs", lambda model, **_: called.add(f"ecs:{model.name}"))
        stack.create_pod(virtual_pod("web", command=["sh", "-c", "sleep 1000"]))
        stack.settle(rounds=5, reconcile=True)
        stack.core.delete_namespaced_pod("web", "default")
        stack.settle(rounds=3, reconcile=True)
    assert {"ecs:RunTask", "ecs:StopTask", "ecs:ListTasks", "ecs:DescribeTasks"} <= called
    assert [action for action in sorted(called) if not allowed(action)] == []
    assert allowed("secretsmanager:GetSecretValue")
