"""The node heartbeat: keep every virtual node Ready although a schedule fires once a minute.

kube-controller-manager marks a node ``Ready=Unknown`` (and taints it
``node.kubernetes.io/unreachable``) when its Lease in ``kube-node-lease`` has not
been renewed for ``node-monitor-grace-period`` (50 s from Kubernetes 1.32), then
evicts its pods 300 s later. A Chalice schedule fires at most once a minute, so
one invocation renews every ``INTERVAL`` seconds for ``WINDOW`` seconds of its
minute (0, 10, 20, 30, 40, 50 s) and returns before the next one starts: the
longest gap between two renewals is about 10 s, and an invocation 30 s late
still leaves 20 s of margin.

What a kubelet does, a beat does:

- the Node is registered when missing;
- its status (conditions, capacity, addresses, nodeInfo) is posted only when
  something changed or ``STATUS_REPORT_SECONDS`` passed since the last report
  (kubelet's ``nodeStatusReportFrequency``, 5 min): a write a minute per node
  would be wasted;
- the Lease is renewed with the copy the last write returned (one PUT a beat,
  no read); a conflict (another invocation renewed it in between) or a missing
  lease means: read it again and retry once. Nothing here raises: a failed beat
  is logged and the next one tries again.

``run`` is the loop. It takes ``clock`` and ``sleep`` so tests drive it on
simulated time; the scheduled function passes the real ones.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from chalicelib import node as vnode
from chalicelib.kube.client import KubeClient
from chalicelib.pod_spec import parse_quantity
from chalicelib.timefmt import parse_iso

log = logging.getLogger("lambdalet.heartbeat")

INTERVAL = 10.0  # seconds between renewals (kubelet: renewInterval = 0.25 * 40 s lease)
WINDOW = 50.0  # the last renewal of an invocation happens this long after its first
STATUS_REPORT_SECONDS = 300.0  # kubelet's nodeStatusReportFrequency
MARGIN = 5.0  # seconds kept free before the Lambda's deadline (one slow beat)

# Node status fields a kubelet owns and we compare to decide whether to post.
_STATUS_FIELDS = ("capacity", "allocatable", "addresses", "nodeInfo", "daemonEndpoints")


def _quantity(value) -> Decimal | str:
    """A resource.Quantity's value, so "1000" and the apiserver's canonical "1k" compare equal."""
    try:
        return parse_quantity(value)
    except ValueError:
        return str(value)


def _same(key: str, stored, wanted) -> bool:
    if key in ("capacity", "allocatable"):
        stored, wanted = stored or {}, wanted or {}
        return stored.keys() == wanted.keys() and all(_quantity(stored[k]) == _quantity(wanted[k]) for k in wanted)
    return stored == wanted


def status_due(current: dict, desired: dict, now: datetime) -> dict | None:
    """The status patch to post for ``current`` (the Node as stored), or None when none is due.

    Due when a condition lambdalet owns differs in status/reason/message, when a
    kubelet-owned status field differs from ``desired`` (the Node we register),
    or when the last report is ``STATUS_REPORT_SECONDS`` old.
    """
    status = current.get("status") or {}
    posted = vnode.conditions(now, status.get("conditions"))
    had = {c.get("type"): c for c in status.get("conditions") or []}
    changed = any(
        (had.get(c["type"]) or {}).get(key) != c[key]
        for c in posted for key in ("status", "reason", "message")
    )
    wanted = desired.get("status") or {}
    changed = changed or any(not _same(key, status.get(key), wanted[key]) for key in _STATUS_FIELDS if key in wanted)
    last = parse_iso((had.get("Ready") or {}).get("lastHeartbeatTime"))
    stale = last is None or (now - last).total_seconds() >= STATUS_REPORT_SECONDS
    if not (changed or stale):
        return None
    patch = {"conditions": posted}
    patch.update({key: wanted[key] for key in _STATUS_FIELDS if key in wanted})
    return patch


@dataclass
class NodeBeat:
    """One virtual node's heartbeat across the beats of an invocation (or a single beat)."""

    kube: KubeClient
    desired: dict  # the Node object lambdalet registers
    uid: str | None = None
    lease: dict | None = None  # the Lease as our last write returned it
    # Leave a lease alone that was renewed less than this many seconds ago (None: always renew).
    fresh_for: float | None = None
    stats: dict = field(default_factory=lambda: {"renewed": 0, "failed": 0, "conflicts": 0, "status_posts": 0})

    @property
    def name(self) -> str:
        return self.desired["metadata"]["name"]

    def sync_node(self, now: datetime) -> None:
        """Register the node if missing; post its status when due."""
        fresh = {**self.desired, "status": {**self.desired["status"], "conditions": vnode.conditions(now)}}
        current = vnode.register(self.kube, fresh) or {}
        self.uid = (current.get("metadata") or {}).get("uid") or self.uid
        patch = status_due(current, self.desired, now)
        if patch is not None:
            self.kube.patch_node_status(self.name, patch)
            self.stats["status_posts"] += 1

    def renew(self, now: datetime) -> bool:
        """Renew the Lease: one PUT; on a conflict or a missing lease re-read and retry once."""
        if self.fresh_for is not None:
            # The reconcile's beat: the heartbeat function owns the lease; renewing a
            # fresh one would only make that function's next PUT a 409.
            self.lease = self.kube.get_lease(vnode.LEASE_NAMESPACE, self.name)
            renewed = parse_iso(((self.lease or {}).get("spec") or {}).get("renewTime"))
            if renewed is not None and (now - renewed).total_seconds() < self.fresh_for:
                self.stats["fresh"] = self.stats.get("fresh", 0) + 1
                return True
        for attempt in range(2):
            if self.lease is None:
                self.lease = self.kube.get_lease(vnode.LEASE_NAMESPACE, self.name)
            if self.lease is None:
                created = self.kube.create_lease(vnode.LEASE_NAMESPACE, vnode.lease_object(self.name, self.uid, now))
                if created is not None:
                    self.lease = created
                    return True
                continue  # someone else created it just now: read theirs
            body = copy.deepcopy(self.lease)
            body["spec"]["renewTime"] = vnode.micro_time(now)
            body["spec"]["holderIdentity"] = self.name
            body["spec"]["leaseDurationSeconds"] = vnode.LEASE_DURATION_SECONDS
            updated = self.kube.replace_lease(vnode.LEASE_NAMESPACE, body)
            self.lease = updated  # None: conflict or gone, read again
            if updated is not None:
                return True
            self.stats["conflicts"] += 1
        return False

    def beat(self, now: datetime, *, sync_node: bool) -> bool:
        """One heartbeat; never raises (the next beat tries again)."""
        try:
            if sync_node:
                self.sync_node(now)
            ok = self.renew(now)
        except Exception:  # noqa: BLE001 - a heartbeat loop must survive a bad call
            log.exception("heartbeat of node %s failed", self.name)
            self.lease = None
            ok = False
        self.stats["renewed" if ok else "failed"] += 1
        return ok


def run(
    beat: Callable[[int, datetime], None],
    clock: Callable[[], datetime],
    sleep: Callable[[float], None],
    *,
    interval: float = INTERVAL,
    window: float = WINDOW,
    budget: float | None = None,
) -> int:
    """Call ``beat(i, now)`` at 0, interval, 2*interval, ... up to ``window`` seconds after the start.

    ``budget``: seconds the invocation may still run (the Lambda's remaining
    time); no beat is started later than ``budget - MARGIN``. A beat that runs
    late makes the loop skip the slots it missed rather than fire in a burst.
    Returns the number of beats.
    """
    start = clock()
    last_slot = window if budget is None else min(window, budget - MARGIN)
    beats = 0
    slot = 0
    while True:
        beat(beats, clock())
        beats += 1
        elapsed = (clock() - start).total_seconds()
        slot = max(slot + 1, int(elapsed // interval) + 1)
        if slot * interval > last_slot + 1e-9:
            return beats
        delay = start + timedelta(seconds=slot * interval) - clock()
        if delay.total_seconds() > 0:
            sleep(delay.total_seconds())


def keep_alive(
    kube: KubeClient,
    nodes: dict[str, dict],
    clock: Callable[[], datetime],
    sleep: Callable[[float], None],
    *,
    budget: float | None = None,
    interval: float = INTERVAL,
    window: float = WINDOW,
) -> dict[str, dict]:
    """The heartbeat of every node for one invocation: node status on the first beat, the lease on each."""
    beats = {name: NodeBeat(kube, obj) for name, obj in nodes.items()}

    def beat(i: int, now: datetime) -> None:
        for one in beats.values():
            one.beat(now, sync_node=(i == 0))

    run(beat, clock, sleep, interval=interval, window=window, budget=budget)
    return {name: dict(one.stats) for name, one in beats.items()}


# The reconcile renews a lease only when the heartbeat function has not for this
# long (two of its intervals): a safety net that never races that function.
SAFETY_NET_AFTER = 2 * INTERVAL


def beat_once(kube: KubeClient, node_obj: dict, now: datetime) -> bool:
    """A single beat (register, status when due, lease if stale): what the reconcile does for each node."""
    return NodeBeat(kube, node_obj, fresh_for=SAFETY_NET_AFTER).beat(now, sync_node=True)
