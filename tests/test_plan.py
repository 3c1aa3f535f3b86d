"""The planner's decisions, as pure functions: pods + machines -> actions."""

from datetime import timedelta

import pytest

from chalicelib import plan as p
from chalicelib.machines.contract import MachinePhase, StopCause
from tests.world.pods import T0, machine, pod, with_status

NODE = "vk-1"


def only(result, kind):
    found = result.of(kind)
    assert len(found) == 1, result.actions
    return found[0]


def test_pod_without_machine_gets_one_created_and_shows_container_creating():
    pd = pod()
    result = p.plan(NODE, [pd], [], T0)
    create = only(result, p.Create)
    assert create.spec.pod.uid == pd["metadata"]["uid"] and create.spec.attempt == 0
    assert create.status["phase"] == "Pending"
    assert create.status["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}


def test_running_machine_makes_a_full_running_status():
    pd = pod()
    status = only(p.plan(NODE, [pd], [machine(pd)], T0), p.PatchStatus).status
    assert status["phase"] == "Running"
    assert [c["type"] for c in status["conditions"]] == ["PodScheduled", "PodReadyToStartContainers", "Initialized",
                                                          "ContainersReady", "Ready"]
    assert all(c["status"] == "True" for c in status["conditions"])
    # the binding's PodScheduled condition is kept as the apiserver wrote it
    assert status["conditions"][0]["lastTransitionTime"] == "2026-11-27T11:59:01Z"
    cs = status["containerStatuses"][0]
    assert cs["ready"] and cs["started"] and cs["restartCount"] == 0
    assert cs["state"]["running"]["startedAt"] == "2026-11-27T12:00:05Z"
    assert cs["containerID"] == "containerd://app-0" and cs["lastState"] == {}
    assert status["podIP"] == "10.0.0.7" and status["podIPs"] == [{"ip": "10.0.0.7"}]
    assert status["hostIP"] == "10.0.0.7" and status["startTime"]


def test_unchanged_status_is_not_written_again():
    pd = pod()
    m = machine(pd)
    status = only(p.plan(NODE, [pd], [m], T0), p.PatchStatus).status
    again = p.plan(NODE, [with_status(pd, status)], [m], T0 + timedelta(minutes=1))
    assert again.actions == []


def test_a_listing_older_than_the_pods_status_does_not_roll_it_back():
    """The reconcile lists machines, then pods: a machine event may show the pod Running
    (or exited) in between. The older listing plans no write: it would roll the pod
    back, or meet the 409 of the write that came in between."""
    pd = pod()
    running = machine(pd)
    shown = with_status(pd, only(p.plan(NODE, [pd], [running], T0), p.PatchStatus).status)
    listed_earlier = machine(pd, MachinePhase.PENDING, mid=running.id)
    assert p.plan(NODE, [shown], [listed_earlier], T0).actions == []
    # a listing that is ahead of the pod still writes
    pending = with_status(pd, only(p.plan(NODE, [pd], [listed_earlier], T0), p.PatchStatus).status)
    assert only(p.plan(NODE, [pending], [running], T0), p.PatchStatus).status["phase"] == "Running"


def test_transition_times_are_kept_when_a_condition_does_not_change():
    pd = pod()
    m = machine(pd)
    first = only(p.plan(NODE, [pd], [m], T0), p.PatchStatus).status
    stopped = machine(pd, MachinePhase.STOPPED, codes=[0], cause=StopCause.EXITED, mid=m.id)
    pd2 = pod(restart="Never", uid=pd["metadata"]["uid"])
    later = only(p.plan(NODE, [with_status(pd2, first)], [stopped], T0 + timedelta(minutes=5)), p.PatchStatus).status
    times = {c["type"]: c["lastTransitionTime"] for c in later["conditions"]}
    assert times["Initialized"] == "2026-11-27T12:00:00Z"  # unchanged since first
    assert times["Ready"] == "2026-11-27T12:05:00Z"  # True -> False now


@pytest.mark.parametrize(
    "policy,codes,phase",
    [("Never", [0], "Succeeded"), ("Never", [3], "Failed"), ("OnFailure", [0], "Succeeded"),
     ("Never", [0, 1], "Failed")],
)
def test_exited_machine_ends_the_pod_when_the_policy_does_not_restart(policy, codes, phase):
    containers = [{"name": f"c{i}", "image": "busybox"} for i in range(len(codes))]
    pd = pod(restart=policy, containers=containers)
    m = machine(pd, MachinePhase.STOPPED, codes=codes, cause=StopCause.EXITED)
    status = only(p.plan(NODE, [pd], [m], T0 + timedelta(minutes=1)), p.PatchStatus).status
    assert status["phase"] == phase
    terminated = [c["state"]["terminated"] for c in status["containerStatuses"]]
    assert [t["exitCode"] for t in terminated] == codes
    assert [t["reason"] for t in terminated] == ["Completed" if c == 0 else "Error" for c in codes]
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert ready["status"] == "False" and ready["reason"] == "PodCompleted"


@pytest.mark.parametrize("policy,codes", [("Always", [0]), ("Always", [2]), ("OnFailure", [2])])
def test_exited_machine_is_restarted_after_backoff_when_the_policy_asks(policy, codes):
    pd = pod(restart=policy)
    m = machine(pd, MachinePhase.STOPPED, codes=codes, cause=StopCause.EXITED, stopped=T0)
    waiting = p.plan(NODE, [pd], [m], T0 + timedelta(seconds=3))
    assert not waiting.of(p.Create)
    status = only(waiting, p.PatchStatus).status
    assert status["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert status["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == codes[0]
    later = p.plan(NODE, [pd], [m], T0 + p.backoff(0))
    create = only(later, p.Create)
    assert create.spec.attempt == 1
    assert create.status["phase"] == "Running"
    assert create.status["containerStatuses"][0]["restartCount"] == 1
    assert create.status["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == codes[0]


def test_backoff_doubles_and_is_capped():
    assert [p.backoff(n).total_seconds() for n in range(7)] == [10, 20, 40, 80, 160, 300, 300]


def test_restart_count_follows_the_newest_attempt():
    pd = pod()
    old = machine(pd, MachinePhase.STOPPED, codes=[1], cause=StopCause.EXITED, attempt=0)
    new = machine(pd, MachinePhase.RUNNING, attempt=1, created=T0 + timedelta(minutes=1))
    status = only(p.plan(NODE, [pd], [old, new], T0 + timedelta(minutes=2)), p.PatchStatus).status
    cs = status["containerStatuses"][0]
    assert cs["restartCount"] == 1 and "running" in cs["state"]
    assert cs["lastState"]["terminated"]["exitCode"] == 1


def test_duplicate_machines_keep_the_oldest():
    pd = pod()
    oldest = machine(pd, created=T0)
    younger = machine(pd, created=T0 + timedelta(seconds=2))
    result = p.plan(NODE, [pd], [younger, oldest], T0 + timedelta(minutes=1))
    assert only(result, p.Stop).machine.id == younger.id
    assert not result.of(p.Create)


def test_machine_without_pod_is_stopped_after_the_grace_period():
    gone = pod()
    m = machine(gone, created=T0)
    assert p.plan(NODE, [], [m], T0 + timedelta(seconds=10)).actions == []
    assert only(p.plan(NODE, [], [m], T0 + p.ORPHAN_GRACE), p.Stop).machine.id == m.id


def test_machine_of_a_pod_known_deleted_is_stopped_at_once_not_after_the_grace():
    deleted, maybe_binding = pod(), pod()
    m, young = machine(deleted, created=T0), machine(maybe_binding, created=T0)
    result = p.plan(NODE, [], [m, young], T0 + timedelta(seconds=1), gone={deleted["metadata"]["uid"]})
    stop = only(result, p.Stop)
    assert stop.machine.id == m.id and stop.grace_seconds == 0 and "was deleted" in stop.reason


def test_machine_of_a_pod_bound_elsewhere_is_an_orphan():
    pd = pod(node="other-node")
    m = machine(pod(uid=pd["metadata"]["uid"]))
    assert only(p.plan(NODE, [pd], [m], T0 + p.ORPHAN_GRACE), p.Stop).machine.id == m.id


def test_scope_protects_machines_of_pods_the_fast_path_did_not_read():
    other = machine(pod(), created=T0)
    assert p.plan(NODE, [], [other], T0 + timedelta(hours=1), scope={"some-other-uid"}).actions == []


def test_deleted_pod_stops_its_machine_with_its_grace_then_is_finalized():
    pd = pod(deleting=True, grace=45)
    m = machine(pd)
    first = p.plan(NODE, [pd], [m], T0)
    stop = only(first, p.Stop)
    assert stop.machine.id == m.id and stop.grace_seconds == 45
    assert not first.of(p.Finalize)
    assert {e.reason for e in first.of(p.Emit)} == {"Killing"}
    stopping = m.model_copy(update={"phase": MachinePhase.STOPPING})
    assert p.plan(NODE, [pd], [stopping], T0).actions == []
    stopped = machine(pd, MachinePhase.STOPPED, codes=[143], cause=StopCause.REQUESTED, mid=m.id)
    assert only(p.plan(NODE, [pd], [stopped], T0), p.Finalize).pod is pd


def test_deleted_pod_without_machine_is_finalized_at_once():
    pd = pod(deleting=True)
    assert only(p.plan(NODE, [pd], [], T0), p.Finalize)


def test_machine_vanishing_under_a_running_pod_fails_it():
    pd = pod()
    running = with_status(pd, only(p.plan(NODE, [pd], [machine(pd)], T0), p.PatchStatus).status)
    status = only(p.plan(NODE, [running], [], T0 + timedelta(minutes=1)), p.PatchStatus).status
    assert status["phase"] == "Failed" and status["reason"] == "MachineLost"
    assert status["containerStatuses"][0]["state"]["terminated"]["reason"] == "ContainerStatusUnknown"


def test_pod_whose_machine_has_not_appeared_yet_is_not_failed():
    pd = pod()
    shown = with_status(pd, only(p.plan(NODE, [pd], [], T0), p.Create).status)
    result = p.plan(NODE, [shown], [], T0 + timedelta(minutes=10))
    assert only(result, p.Create).spec.attempt == 0  # asked again (idempotent), never failed
    assert not result.of(p.PatchStatus)


def test_machine_that_failed_to_start_fails_the_pod_with_the_clouds_words():
    pd = pod()
    m = machine(pd, MachinePhase.STOPPED, codes=[0], cause=StopCause.FAILED_TO_START,
                reason="CannotPullContainerError: pull image manifest has been retried 5 time(s)")
    result = p.plan(NODE, [pd], [m], T0)
    status = only(result, p.PatchStatus).status
    assert status["phase"] == "Failed" and status["reason"] == "ProviderFailed"
    assert "CannotPullContainerError" in status["message"]
    assert status["containerStatuses"][0]["state"]["terminated"]["reason"] == "StartError"
    assert only(result, p.Emit).type == "Warning"


def test_lost_machine_fails_the_pod():
    pd = pod()
    m = machine(pd, MachinePhase.STOPPED, codes=[137], cause=StopCause.LOST, reason="Your Spot Task was interrupted.")
    status = only(p.plan(NODE, [pd], [m], T0), p.PatchStatus).status
    assert status["phase"] == "Failed" and status["reason"] == "MachineLost" and "Spot" in status["message"]


def test_finished_pods_are_never_rewritten():
    pd = pod(phase="Succeeded", restart="Never")
    m = machine(pd, MachinePhase.STOPPED, codes=[1], cause=StopCause.EXITED)
    assert p.plan(NODE, [pd], [m], T0).actions == []


def test_unsupported_pod_fails_with_a_reason_a_user_can_act_on():
    pd = pod(containers=[{"name": "app", "image": "nginx", "securityContext": {"privileged": True}}])
    result = p.plan(NODE, [pd], [], T0)
    assert not result.of(p.Create)
    status = only(result, p.PatchStatus).status
    assert status["phase"] == "Failed" and status["reason"] == "ProviderFailed"
    assert "privileged" in status["message"]


def test_fast_path_without_the_previous_machine_keeps_the_last_state_shown():
    pd = pod()
    old = machine(pd, MachinePhase.STOPPED, codes=[2], cause=StopCause.EXITED, attempt=0)
    new = machine(pd, MachinePhase.PENDING, attempt=1, created=T0 + timedelta(minutes=1))
    shown = with_status(pd, only(p.plan(NODE, [pd], [old, new], T0 + timedelta(minutes=1)), p.PatchStatus).status)
    running = machine(pd, MachinePhase.RUNNING, attempt=1, created=T0 + timedelta(minutes=1), mid=new.id)
    status = only(p.plan(NODE, [shown], [running], T0 + timedelta(minutes=2)), p.PatchStatus).status
    assert status["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == 2


def test_stale_machine_views_are_recognised():
    from chalicelib.pod_status import is_stale

    pd = pod(restart="Always")
    stopped = machine(pd, MachinePhase.STOPPED, codes=[1], cause=StopCause.EXITED, stopped=T0)
    looping = with_status(pd, only(p.plan(NODE, [pd], [stopped], T0 + timedelta(seconds=1)), p.PatchStatus).status)
    assert is_stale(looping, machine(pd, MachinePhase.RUNNING, mid=stopped.id))  # older news
    assert not is_stale(looping, stopped)
    assert not is_stale(looping, machine(pd, MachinePhase.PENDING, attempt=1))  # the next attempt
    restarted = with_status(pd, {"containerStatuses": [{"name": "app", "restartCount": 1, "state": {"running": {}}}]})
    assert is_stale(restarted, stopped)  # an event about attempt 0 after attempt 1 began


def reasons(result):
    return [(e.type, e.reason, e.message) for e in result.of(p.Emit)]


def test_lifecycle_events_tell_the_story():
    pd = pod(restart="OnFailure")
    running = p.plan(NODE, [pd], [machine(pd)], T0)
    assert reasons(running) == [("Normal", "Started", "Started container app")]
    shown = with_status(pd, only(running, p.PatchStatus).status)
    assert p.plan(NODE, [shown], [machine(pd)], T0).of(p.Emit) == []  # said once, not every pass
    stopped = machine(pd, MachinePhase.STOPPED, codes=[7], cause=StopCause.EXITED, stopped=T0)
    looping = p.plan(NODE, [shown], [stopped], T0 + timedelta(seconds=1))
    assert reasons(looping)[0] == ("Warning", "Exited", "Container app exited with code 7")
    assert [r for _, r, _ in reasons(looping)][1:] == ["BackOff"]
    restart = p.plan(NODE, [shown], [stopped], T0 + timedelta(seconds=30))
    assert [r for _, r, _ in reasons(restart)] == ["Restarting"]
    other = pod(restart="Never")
    done = p.plan(NODE, [other], [machine(other, MachinePhase.STOPPED, codes=[0], cause=StopCause.EXITED)], T0)
    assert reasons(done) == [("Normal", "Completed", "Container app exited with code 0")]
    failed = p.plan(NODE, [other], [machine(other, MachinePhase.STOPPED, codes=[3], cause=StopCause.EXITED)], T0)
    assert reasons(failed) == [("Warning", "Exited", "Container app exited with code 3 (Error)")]
    gone = p.plan(NODE, [pod(deleting=True)], [], T0)
    assert [r for _, r, _ in reasons(gone)] == ["Finalized"]


def test_stopped_machines_nobody_needs_are_reaped_where_the_backend_keeps_them():
    gone = pod()
    stopped_orphan = machine(gone, MachinePhase.STOPPED, codes=[0], cause=StopCause.EXITED, created=T0)
    later = T0 + p.ORPHAN_GRACE
    assert p.plan(NODE, [], [stopped_orphan], later).actions == []  # ECS forgets it by itself
    assert only(p.plan(NODE, [], [stopped_orphan], later, reap_stopped=True), p.Stop).machine.id == stopped_orphan.id

    looping = pod()
    old = [machine(looping, MachinePhase.STOPPED, codes=[1], cause=StopCause.EXITED, attempt=n,
                   created=T0 + timedelta(minutes=n)) for n in range(3)]
    current = machine(looping, attempt=3, created=T0 + timedelta(minutes=3))
    reaped = p.plan(NODE, [looping], [*old, current], T0 + timedelta(minutes=4), reap_stopped=True).of(p.Stop)
    assert [s.machine.attempt for s in reaped] == [0, 1]  # attempt 2 still gives lastState
    assert p.plan(NODE, [looping], [*old, current], T0 + timedelta(minutes=4)).of(p.Stop) == []


def test_a_late_pending_event_does_not_roll_a_running_pod_back():
    from chalicelib.pod_status import is_stale

    pd = pod()
    running = with_status(pd, only(p.plan(NODE, [pd], [machine(pd)], T0), p.PatchStatus).status)
    assert is_stale(running, machine(pd, MachinePhase.PENDING))
    assert not is_stale(running, machine(pd, MachinePhase.RUNNING))
    assert not is_stale(running, machine(pd, MachinePhase.STOPPED, codes=[0], cause=StopCause.EXITED))
    assert not is_stale(pd, machine(pd, MachinePhase.PENDING))  # nothing shown yet


def test_one_pod_the_planner_cannot_judge_does_not_stop_the_others():
    odd = pod("odd", containers=[{"name": "app", "image": "nginx"}])
    odd["spec"]["containers"] = "not a list"
    fine = pod("fine")
    result = p.plan(NODE, [odd, fine], [], T0)
    assert [c.pod["metadata"]["name"] for c in result.of(p.Create)] == ["fine"]
    assert len(result.errors) == 1 and result.errors[0].startswith("default/odd:")


def test_conditions_owned_by_others_survive_our_status_writes():
    pd = pod()
    pd["status"]["conditions"].append({"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"})
    status = only(p.plan(NODE, [pd], [machine(pd)], T0), p.PatchStatus).status
    assert [c["type"] for c in status["conditions"]][-1] == "DisruptionTarget"


def test_crash_loop_backoff_is_forgotten_after_a_long_run():
    pd = pod(restart="Always")
    short = machine(pd, MachinePhase.STOPPED, codes=[1], cause=StopCause.EXITED, attempt=4, stopped=T0)
    assert p.restart_delay(short) == p.backoff(4)
    long_run = short.model_copy(update={"started_at": T0 - timedelta(hours=2)})
    assert p.restart_delay(long_run) == p.backoff(0)
    assert p.plan(NODE, [pd], [long_run], T0 + timedelta(seconds=11)).of(p.Create)


def test_a_start_that_failed_for_a_passing_reason_is_retried_whatever_the_policy():
    pd = pod(restart="Never")
    throttled = machine(pd, MachinePhase.STOPPED, codes=[0], cause=StopCause.START_RETRYABLE, stopped=T0,
                        reason="CannotPullContainerError: toomanyrequests: You have reached your pull rate limit")
    waiting = p.plan(NODE, [pd], [throttled], T0 + timedelta(seconds=2))
    status = only(waiting, p.PatchStatus).status
    assert status["phase"] == "Pending"
    assert status["containerStatuses"][0]["state"]["waiting"]["reason"] == "StartBackOff"
    assert "pull rate limit" in status["containerStatuses"][0]["state"]["waiting"]["message"]
    retry = only(p.plan(NODE, [pd], [throttled], T0 + p.backoff(0)), p.Create)
    assert retry.spec.attempt == 1


def test_failed_creates_back_off_longer_the_longer_they_fail():
    from chalicelib.pod_status import create_backoff_status

    pd = pod()
    once = with_status(pd, create_backoff_status(pd, T0, restart_count=0, previous=None, error="Capacity is unavailable"))
    assert not p.plan(NODE, [once], [], T0 + timedelta(seconds=9)).of(p.Create)
    assert p.plan(NODE, [once], [], T0 + timedelta(seconds=10)).of(p.Create)
    # failing since T0, latest at T0+2min: the next try waits 2 more minutes
    later = with_status(once, create_backoff_status(once, T0 + timedelta(minutes=2), restart_count=0,
                                                     previous=None, error="Capacity is unavailable"))
    first, last = __import__("chalicelib.pod_status", fromlist=["x"]).create_backoff(later)
    assert (first, last) == (T0, T0 + timedelta(minutes=2))
    assert not p.plan(NODE, [later], [], T0 + timedelta(minutes=3, seconds=59)).of(p.Create)
    assert p.plan(NODE, [later], [], T0 + timedelta(minutes=4)).of(p.Create)
    assert p.create_delay(T0, T0 + timedelta(hours=1)) == p.BACKOFF_CAP


def test_pod_ready_to_start_containers_follows_the_machine_sandbox():
    """KEP-3085: True once the sandbox (our machine) exists with its network, False before and after."""
    pd = pod()

    def ready_to_start(machines):
        status = only(p.plan(NODE, [pd], machines, T0), p.PatchStatus).status
        return {c["type"]: c for c in status["conditions"]}["PodReadyToStartContainers"]

    pending = ready_to_start([machine(pd, MachinePhase.PENDING)])
    assert pending["status"] == "False" and "reason" not in pending
    assert ready_to_start([machine(pd)])["status"] == "True"
    exited = ready_to_start([machine(pd, MachinePhase.STOPPED, codes=[0], cause=StopCause.EXITED)])
    assert exited["status"] == "False"
