"""Create claims: a DynamoDB conditional write so that two concurrent
invocations never both create the machine of one ``(pod uid, attempt)``.

Clouds without an idempotency token on create (Fly Machines) need it. One item
per key ``<scope>/<uid>/<attempt>``:

* ``claim`` writes ``{owner, expires_at}`` with ``ConditionExpression``
  ``attribute_not_exists(pk) OR expires_at < :now``: exactly one invocation
  wins; an invocation that crashed before finishing leaves a claim that stops
  blocking once ``expires_at`` has passed (``lease_seconds``).
* ``settle`` records the created machine id (and when: ``settled_at``) on the
  winner's claim and makes it last (``retain_seconds``): later calls read the
  id instead of creating, even where the cloud's list or GET lags behind a
  create.
* ``release`` drops a claim whose create failed, so the retry is not blocked
  for a whole lease.

``ttl`` (epoch seconds) is meant as the table's DynamoDB TTL attribute: items
clean themselves up. The table: partition key ``pk`` (string), nothing else.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .contract import MachineError, TransientMachineError


@dataclass(frozen=True)
class Claim:
    key: str
    owner: str
    machine_id: str | None = None


@dataclass(frozen=True)
class Held:
    """Someone else holds the key: the machine id once they have created it."""

    machine_id: str | None
    expires_at: float
    settled_at: float | None = None  # when the machine id was recorded


class Claims:
    """Create claims in DynamoDB table ``table`` (see the module docstring)."""

    def __init__(
        self,
        dynamodb_client: Any,
        table: str,
        *,
        scope: str = "",
        lease_seconds: int = 120,
        retain_seconds: int = 7 * 24 * 3600,
        clock: Callable[[], float] = time.time,
    ):
        self.db = dynamodb_client
        self.table = table
        self.scope = scope
        self.lease_seconds = lease_seconds
        self.retain_seconds = retain_seconds
        self.clock = clock

    def key(self, uid: str, attempt: int) -> str:
        return f"{self.scope}/{uid}/{attempt}"

    def claim(self, uid: str, attempt: int, *, replacing: str | None = None) -> Claim | Held:
        """Take the key, or say who holds it. ``replacing``: take it over from
        a settled claim whose machine is known to be gone."""
        key, owner, now = self.key(uid, attempt), uuid.uuid4().hex, self.clock()
        expires = now + self.lease_seconds
        if replacing:
            condition = "machine_id = :gone"
            values = {":gone": {"S": replacing}}
        else:
            condition = "attribute_not_exists(pk) OR expires_at < :now"
            values = {":now": {"N": _num(now)}}
        try:
            self.db.put_item(
                TableName=self.table,
                Item={"pk": {"S": key}, "owner": {"S": owner}, "expires_at": {"N": _num(expires)},
                      "ttl": {"N": str(int(now + self.retain_seconds))}},
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
            )
            return Claim(key, owner)
        except Exception as e:
            if not _conditional_failed(e):
                raise classify_dynamodb(e, "PutItem") from e
        return self.holder(uid, attempt) or Held(None, now)

    def holder(self, uid: str, attempt: int) -> Held | None:
        try:
            item = self.db.get_item(
                TableName=self.table, Key={"pk": {"S": self.key(uid, attempt)}}, ConsistentRead=True
            ).get("Item")
        except Exception as e:
            raise classify_dynamodb(e, "GetItem") from e
        if not item:
            return None
        return Held(
            machine_id=(item.get("machine_id") or {}).get("S"),
            expires_at=float((item.get("expires_at") or {}).get("N", "0")),
            settled_at=float(item["settled_at"]["N"]) if "settled_at" in item else None,
        )

    def settle(self, claim: Claim, machine_id: str) -> None:
        """Record the machine on our claim; it now outlives the lease."""
        now = self.clock()
        until = now + self.retain_seconds
        try:
            self.db.update_item(
                TableName=self.table,
                Key={"pk": {"S": claim.key}},
                UpdateExpression="SET machine_id = :m, expires_at = :e, settled_at = :s, #t = :t",
                ConditionExpression="#o = :owner",
                ExpressionAttributeNames={"#o": "owner", "#t": "ttl"},
                ExpressionAttributeValues={":m": {"S": machine_id}, ":e": {"N": _num(until)}, ":s": {"N": _num(now)},
                                           ":t": {"N": str(int(until))}, ":owner": {"S": claim.owner}},
            )
        except Exception as e:
            if _conditional_failed(e):
                return  # our lease ran out and someone took over: their record wins
            raise classify_dynamodb(e, "UpdateItem") from e

    def release(self, claim: Claim) -> None:
        """Drop our claim (the create failed); never someone else's."""
        try:
            self.db.delete_item(
                TableName=self.table,
                Key={"pk": {"S": claim.key}},
                ConditionExpression="#o = :owner",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":owner": {"S": claim.owner}},
            )
        except Exception:  # noqa: BLE001 - best effort: the lease expires anyway
            pass


def _num(value: float) -> str:
    return f"{value:.3f}"


def _conditional_failed(e: BaseException) -> bool:
    response = getattr(e, "response", None) or {}
    return (response.get("Error") or {}).get("Code") == "ConditionalCheckFailedException"


def classify_dynamodb(e: BaseException, action: str) -> MachineError:
    """Any DynamoDB failure of the claim table: the create cannot be made safe
    now, but nothing is wrong with the pod. Always transient."""
    response = getattr(e, "response", None) or {}
    err = response.get("Error") or {}
    detail = f"{err.get('Code')}: {err.get('Message')}" if err else f"{type(e).__name__}: {e}"
    return TransientMachineError(f"DynamoDB {action} on the create-claims table failed: {detail}")
