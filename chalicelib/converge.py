"""Carry out a Plan: the only place where planned actions meet the two APIs.

Actions run on a bounded pool of threads (the calls are I/O: 1,000 creates one
after another would take longer than an invocation may run). The actions of
one pod (or one orphan machine) stay together and in their order, on one
thread. A deadline (from the Lambda context) stops *starting* pods' work
before the invocation ends: a pod's actions all run or none do, so nothing is
left half-done, and the next pass (level-triggered) finishes the rest.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from chalicelib import plan as p
from chalicelib import pod_status as ps
from chalicelib.kube import events
from chalicelib.kube.client import KubeClient
from chalicelib.machines.contract import MachineBackend, MachineSpec, PermanentMachineError, TransientMachineError
from chalicelib.pod_spec import MissingReference, Sources, UnsupportedPod, machine_spec

log = logging.getLogger("lambdalet.converge")

# Threads per Converger: the calls wait on the network, not the CPU. botocore
# and the Kubernetes client keep 10 and 16 pooled connections (kube/client.py).
WORKERS = 10


def _group_key(action: p.Action) -> str:
    pod = getattr(action, "pod", None)
    if pod is not None:
        return pod["metadata"]["uid"]
    return "machine:" + action.machine.id  # an orphan's Stop


class Converger:
    def __init__(self, node: str, kube: KubeClient, backend: MachineBackend, clock: Callable[[], datetime],
                 workers: int = WORKERS):
        self.node, self.kube, self.backend, self.clock = node, kube, backend, clock
        self.workers = workers

    def apply(self, plan: p.Plan, deadline: float | None = None) -> Counter:
        """Run every action; one failing pod never stops the others.

        ``deadline``: a ``time.monotonic()`` value after which no pod's actions
        are started any more (counted as ``deferred``: the next pass does them).
        """
        groups: dict[str, list[p.Action]] = {}
        for action in plan.actions:
            groups.setdefault(_group_key(action), []).append(action)
        done: Counter = Counter()
        if len(groups) <= 1 or self.workers <= 1:
            for actions in groups.values():
                done.update(self._run_group(actions, deadline))
            return done
        with ThreadPoolExecutor(max_workers=min(self.workers, len(groups)), thread_name_prefix="converge") as pool:
            for result in pool.map(lambda actions: self._run_group(actions, deadline), groups.values()):
                done.update(result)
        return done

    def _run_group(self, actions: list[p.Action], deadline: float | None) -> Counter:
        if deadline is not None and time.monotonic() >= deadline:
            return Counter(deferred=1)
        done: Counter = Counter()
        for action in actions:
            try:
                getattr(self, "_" + type(action).__name__.lower())(action)
                done[type(action).__name__] += 1
            except Exception:  # noqa: BLE001 - logged, counted, retried by the next pass
                log.exception("action failed: %s", type(action).__name__)
                done["failed"] += 1
        return done

    def _resolved(self, action: p.Create) -> MachineSpec:
        """The spec with the values of the ConfigMaps and Secrets it references,
        read now (one GET each): a pod starts with the values of its start, as on a kubelet."""
        spec = action.spec
        if not spec.references:
            return spec
        found = {}
        for ref in spec.references:
            read = self.kube.get_config_map if ref.kind == "ConfigMap" else self.kube.get_secret
            found[(ref.kind, ref.name)] = read(spec.pod.namespace, ref.name)
        return machine_spec(action.pod, spec.node, spec.attempt, Sources(found))

    def _create(self, action: p.Create) -> None:
        pod, now = action.pod, self.clock()
        try:
            spec = self._resolved(action)
        except (MissingReference, UnsupportedPod) as err:
            # As a kubelet: the container waits with CreateContainerConfigError, an Event
            # names what is missing, and the next pass tries again (it starts once it appears).
            log.info("pod %s/%s waits: %s", action.spec.pod.namespace, action.spec.pod.name, err)
            if action.status is not None:
                status = ps.running_status(pod, None, now, restart_count=action.spec.attempt, previous=action.previous,
                                           waiting=("CreateContainerConfigError", str(err)))
                self._patch(pod, status)
                self._event(pod, "Warning", "Failed", f"Error: {err}")
            return
        if action.status is None:  # create only (admission fast path): errors are logged and counted
            machine = self.backend.create(spec)
            self._event(pod, "Normal", "Created", f"Created machine {machine.id} (attempt {action.spec.attempt})")
            return
        try:
            machine = self.backend.create(spec)
        except TransientMachineError as err:
            status = ps.create_backoff_status(pod, now, restart_count=action.spec.attempt,
                                              previous=action.previous, error=str(err))
            self._patch(pod, status)
            self._event(pod, "Warning", "FailedCreateMachine", str(err))
            return
        except PermanentMachineError as err:
            message = f"the cloud refused to run this pod: {err}"
            state = {"waiting": {"reason": "CreateContainerError", "message": message}}
            status = ps.failed_status(pod, now, reason=ps.PROVIDER_FAILED, message=message,
                                      container_state=state, restart_count=action.spec.attempt)
            self._patch(pod, status)
            self._event(pod, "Warning", "ProviderCreateFailed", str(err))
            return
        # What the machine the cloud returned shows (not what the plan guessed before
        # the call): a later pass that lists the same machine then has nothing to write.
        # Onto the pod as it is now: while RunTask ran (or waited its turn), another path
        # (a machine event, the audit batch or the reconcile creating the same machine)
        # may have written it, and a write based on the earlier read would meet a 409.
        # The Event first: the machine exists whatever that read meets.
        self._event(pod, "Normal", "Created", f"Created machine {machine.id} (attempt {action.spec.attempt})")
        fresh = self.kube.get_pod(pod["metadata"]["namespace"], pod["metadata"]["name"])
        if fresh is not None and fresh["metadata"]["uid"] == pod["metadata"]["uid"] and not ps.is_stale(fresh, machine):
            status = ps.running_status(fresh, machine, now, restart_count=action.spec.attempt, previous=action.previous)
            self._patch(fresh, status)

    def _stop(self, action: p.Stop) -> None:
        self.backend.delete(action.machine.id, action.grace_seconds, action.reason)

    def _patchstatus(self, action: p.PatchStatus) -> None:
        self._patch(action.pod, action.status)

    def _finalize(self, action: p.Finalize) -> None:
        meta = action.pod["metadata"]
        self.kube.finalize_pod(meta["namespace"], meta["name"], meta["uid"])

    def _emit(self, action: p.Emit) -> None:
        self._event(action.pod, action.type, action.reason, action.message)

    def _event(self, pod: dict, type_: str, reason: str, message: str) -> None:
        events.record(self.kube, self.node, pod, type_, reason, message, self.clock())

    def _patch(self, pod: dict, status: dict) -> None:
        if ps.status_differs(pod, status):
            self.kube.patch_pod_status(pod, status)
