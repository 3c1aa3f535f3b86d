"""Pod Secret values mirrored into AWS Secrets Manager, so that a task
definition names them by ARN and never holds them (ECS ``secrets[].valueFrom``,
``repositoryCredentials``).

- Named by content: ``<prefix><sha256(value)>``; equal values share one secret,
  and a task definition (content-addressed itself) stays the same for equal pods.
  The hash is of the value with a per-deployment scope, so the name of a short
  value cannot be looked up in a table of common values' hashes.
- Tagged with the deployment's scope (``lambdalet.io/managed`` = the ECS
  cluster: backends sharing a prefix never sweep each other's) and the pods that use it (``lambdalet.io/pod/<uid>`` = namespace/name)
  and the last time one was started with it (``lambdalet.io/last-used``).
- ECS reads a secret when it starts a task (the execution role's
  GetSecretValue), never after; so ``sweep`` deletes a mirrored secret once
  none of its pods has a live machine and none was started with it lately
  (``GRACE``: between ``put`` and the task's start). A restart ``put``s again.

Secrets Manager allows 50 tags per secret: past 48 pods a shared secret is not
tagged with more pods, only touched (last-used); the sweep prunes tags of
pods without machines.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from typing import Any

from .contract import MachineError, PermanentMachineError, PodRef, TransientMachineError

MANAGED = "lambdalet.io/managed"
LAST_USED = "lambdalet.io/last-used"
POD_TAG = "lambdalet.io/pod/"
GRACE_SECONDS = 15 * 60
MAX_POD_TAGS = 48  # 50 tags per secret, two of them ours


class SecretStore:
    def __init__(self, client: Any, prefix: str, scope: str, clock: Callable[[], float] = time.time):
        self.client, self.prefix, self.scope, self.clock = client, prefix, scope, clock

    def name_for(self, value: str) -> str:
        digest = hashlib.sha256(f"{self.scope}\0{value}".encode()).hexdigest()[:48]
        return f"{self.prefix}{digest}"

    def put(self, value: str, pod: PodRef) -> str:
        """The ARN of the secret holding ``value``, created if needed, tagged with ``pod``."""
        name, now = self.name_for(value), str(int(self.clock()))
        pod_tag = {"Key": POD_TAG + pod.uid, "Value": f"{pod.namespace}/{pod.name}"[:256]}
        try:
            return self.client.create_secret(
                Name=name, SecretString=value, Description="lambdalet: a pod Secret value, mirrored for ECS",
                Tags=[{"Key": MANAGED, "Value": self.scope}, {"Key": LAST_USED, "Value": now}, pod_tag])["ARN"]
        except Exception as err:  # noqa: BLE001 - classified below
            if _code(err) != "ResourceExistsException":
                raise _classify(err, "CreateSecret") from None
        try:
            found = self.client.describe_secret(SecretId=name)
            if found.get("DeletedDate"):  # scheduled for deletion by someone: bring it back
                self.client.restore_secret(SecretId=name)
            pods = [t for t in found.get("Tags") or [] if t["Key"].startswith(POD_TAG)]
            tags = [{"Key": LAST_USED, "Value": now}]
            if len(pods) < MAX_POD_TAGS or any(t["Key"] == pod_tag["Key"] for t in pods):
                tags.append(pod_tag)
            self.client.tag_resource(SecretId=found["ARN"], Tags=tags)
            return found["ARN"]
        except Exception as err:  # noqa: BLE001
            raise _classify(err, "TagResource") from None

    def sweep(self, live_uids: Iterable[str]) -> int:
        """Delete mirrored secrets no live machine needs; prune tags of dead pods.
        Returns how many were deleted. O(pages) reads + O(changes) writes."""
        live, now, deleted = set(live_uids), self.clock(), 0
        pages = self.client.get_paginator("list_secrets").paginate(
            Filters=[{"Key": "name", "Values": [self.prefix]}, {"Key": "tag-key", "Values": [MANAGED]}])
        for page in pages:
            for secret in page.get("SecretList") or []:
                tags = {t["Key"]: t.get("Value", "") for t in secret.get("Tags") or []}
                if tags.get(MANAGED) != self.scope or not secret.get("Name", "").startswith(self.prefix):
                    continue
                uids = {k[len(POD_TAG):] for k in tags if k.startswith(POD_TAG)}
                dead = uids - live
                recent = now - float(tags.get(LAST_USED) or 0) < GRACE_SECONDS
                if uids & live or recent:
                    if dead and not recent:
                        self.client.untag_resource(SecretId=secret["ARN"], TagKeys=[POD_TAG + u for u in dead])
                    continue
                self.client.delete_secret(SecretId=secret["ARN"], ForceDeleteWithoutRecovery=True)
                deleted += 1
        return deleted


def _code(err: BaseException) -> str:
    response = getattr(err, "response", None) or {}
    return str((response.get("Error") or {}).get("Code", ""))


def _classify(err: BaseException, action: str) -> MachineError:
    """Never the value: only the call, the code and AWS's message (which names the secret, not its content)."""
    code = _code(err)
    message = str(((getattr(err, "response", None) or {}).get("Error") or {}).get("Message", "")) or type(err).__name__
    text = f"Secrets Manager {action} failed: {code or type(err).__name__}: {message}"
    if code in ("AccessDeniedException", "ThrottlingException", "InternalServiceError", "LimitExceededException", ""):
        return TransientMachineError(text + (" (allow lambdalet secretsmanager:* on its prefix; retrying)"
                                             if code == "AccessDeniedException" else ""))
    return PermanentMachineError(text)
