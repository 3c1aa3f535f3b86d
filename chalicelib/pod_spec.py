"""Pod -> MachineSpec: pure translation of a raw Pod dict (camelCase, as the
Kubernetes API returns it) into what a backend must run. No I/O.

What this version can run is one table, ``FEATURES``: each row names a pod
field, says per backend whether it is supported, ignored or unsupported, and
(for rows unsupported somewhere) how to find offending uses.
``unsupported(pod, backend)`` returns every violation with its field path;
``machine_spec`` raises ``UnsupportedPod`` with those no backend runs (a
backend refuses its own at create). Admission uses ``unsupported`` to reject
such pods up front.

Values from ConfigMaps, Secrets and the downward API are resolved by
``pod_values`` from ``Sources`` read at the I/O edge; ``machine_spec`` without
sources records what the pod references and leaves those values out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from chalicelib import pod_values as pv
from chalicelib.machines.contract import (
    CheckProbe,
    ContainerSpec,
    ExecProbe,
    MachineSpec,
    MountSpec,
    PodRef,
    PortSpec,
    Probes,
    RegistryAuth,
    registry_of,
)
from chalicelib.pod_values import MissingReference, Sources, expand  # noqa: F401 - re-exported
from chalicelib.quantity import UnsupportedPod, cpu_millis, memory_mib, parse_quantity  # noqa: F401 - re-exported


# --------------------------------------------------------------------------
# The feature table
# --------------------------------------------------------------------------

Status = Literal["supported", "ignored", "unsupported"]
Check = Callable[[dict], Iterator[str]]  # yields offending field paths
BACKENDS = ("ecs", "fly")


def _containers(pod: dict) -> Iterator[tuple[str, dict]]:
    for i, c in enumerate((pod.get("spec") or {}).get("containers") or []):
        yield f"spec.containers[{i}]", c


def _is_token_volume(v: dict) -> bool:
    """The projected service-account token volume the apiserver adds to every pod."""
    if not (str(v.get("name", "")).startswith("kube-api-access-") and isinstance(v.get("projected"), dict)):
        return False
    return any("serviceAccountToken" in s for s in v["projected"].get("sources") or [])


def _token_volume_names(pod: dict) -> set[str]:
    return {
        v.get("name") for v in (pod.get("spec") or {}).get("volumes") or [] if _is_token_volume(v)
    }


FILE_VOLUMES = ("configMap", "secret", "downwardAPI", "projected")
VOLUME_KINDS = ("emptyDir", *FILE_VOLUMES)


def _sidecars(pod: dict) -> Iterator[str]:
    for i, c in enumerate((pod.get("spec") or {}).get("initContainers") or []):
        if c.get("restartPolicy"):
            yield f"spec.initContainers[{i}].restartPolicy ({c.get('name')})"


def _field_refs(pod: dict) -> Iterator[str]:
    for path, c in pv.all_containers(pod):
        for j, e in enumerate(c.get("env") or []):
            ref = (e.get("valueFrom") or {}).get("fieldRef")
            if isinstance(ref, dict) and not _known_field(ref.get("fieldPath")):
                yield f"{path}.env[{j}].valueFrom.fieldRef ({ref.get('fieldPath')})"
    for k, v in enumerate((pod.get("spec") or {}).get("volumes") or []):
        for item in _downward_items(v):
            ref = item.get("fieldRef")
            if isinstance(ref, dict) and not _known_field(ref.get("fieldPath"), volume=True):
                yield f"spec.volumes[{k}] ({v.get('name')}) fieldRef {ref.get('fieldPath')}"


def _known_field(path: Any, volume: bool = False) -> bool:
    if path in pv.FIELD_PATHS or (isinstance(path, str) and pv.FIELD_MAP.match(path)):
        return True
    return volume and path in ("metadata.labels", "metadata.annotations")


def _downward_items(v: dict) -> Iterator[dict]:
    yield from (v.get("downwardAPI") or {}).get("items") or []
    for src in (v.get("projected") or {}).get("sources") or []:
        yield from (src.get("downwardAPI") or {}).get("items") or []


def _unknown_value_from(pod: dict) -> Iterator[str]:
    for path, c in pv.all_containers(pod):
        for j, e in enumerate(c.get("env") or []):
            source = e.get("valueFrom")
            if source is not None and (not isinstance(source, dict) or len(source) != 1 or not set(source) <= {
                    "configMapKeyRef", "secretKeyRef", "fieldRef", "resourceFieldRef"}):
                yield f"{path}.env[{j}].valueFrom ({e.get('name')})"
            elif source and "resourceFieldRef" in source and (
                    source["resourceFieldRef"].get("resource") not in pv.RESOURCE_FIELDS):
                yield f"{path}.env[{j}].valueFrom.resourceFieldRef ({source['resourceFieldRef'].get('resource')})"


def _cloud_volumes(pod: dict) -> Iterator[str]:
    for k, v in enumerate((pod.get("spec") or {}).get("volumes") or []):
        if _is_token_volume(v):
            continue
        kinds = [key for key in v if key != "name"]
        if not kinds or any(key not in VOLUME_KINDS for key in kinds):
            yield f"spec.volumes[{k}] ({v.get('name')}: {', '.join(kinds) or 'no source'})"
        for src in (v.get("projected") or {}).get("sources") or []:
            if not set(src) <= {"configMap", "secret", "downwardAPI"}:
                yield f"spec.volumes[{k}] ({v.get('name')}: projected {', '.join(src)})"


def _mount_options(pod: dict) -> Iterator[str]:
    names = {v.get("name") for v in (pod.get("spec") or {}).get("volumes") or []}
    for path, c in pv.all_containers(pod):
        for j, m in enumerate(c.get("volumeMounts") or []):
            if m.get("subPathExpr") or m.get("mountPropagation") not in (None, "None"):
                yield f"{path}.volumeMounts[{j}] ({m.get('name')}: subPathExpr/mountPropagation)"
            elif m.get("name") not in names:
                yield f"{path}.volumeMounts[{j}] ({m.get('name')}: no such volume)"


def _sub_paths(pod: dict) -> Iterator[str]:
    for path, c in pv.all_containers(pod):
        for j, m in enumerate(c.get("volumeMounts") or []):
            if m.get("subPath"):
                yield f"{path}.volumeMounts[{j}].subPath ({m.get('name')})"


def _empty_dir_sub_paths(pod: dict) -> Iterator[str]:
    empty = {v.get("name") for v in (pod.get("spec") or {}).get("volumes") or [] if "emptyDir" in v}
    for path, c in pv.all_containers(pod):
        for j, m in enumerate(c.get("volumeMounts") or []):
            if m.get("subPath") and m.get("name") in empty:
                yield f"{path}.volumeMounts[{j}].subPath ({m.get('name')}: an emptyDir)"


def _image_pull_secrets(pod: dict) -> Iterator[str]:
    if (pod.get("spec") or {}).get("imagePullSecrets"):
        yield "spec.imagePullSecrets"


def _host_namespaces(pod: dict) -> Iterator[str]:
    spec = pod.get("spec") or {}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            yield f"spec.{key}"


def _privileged(pod: dict) -> Iterator[str]:
    for path, c in pv.all_containers(pod):
        if ((c.get("securityContext") or {}).get("privileged")) is True:
            yield f"{path}.securityContext.privileged"


def _ports(pod: dict) -> Iterator[str]:
    for path, c in _containers(pod):
        for j, p in enumerate(c.get("ports") or []):
            proto = p.get("protocol", "TCP")
            if proto not in ("TCP", "UDP"):
                yield f"{path}.ports[{j}].protocol ({proto})"
            host = p.get("hostPort")
            if host not in (None, 0, p.get("containerPort")):
                yield f"{path}.ports[{j}].hostPort ({host})"


@dataclass(frozen=True)
class Feature:
    field: str
    ecs: Status
    fly: Status
    note: str  # for users: what happens on each backend, or what to do instead
    check: Check | None = None  # rows unsupported on some backend: yields offending field paths

    def status(self, backend: str) -> Status:
        return getattr(self, backend)


FEATURES: tuple[Feature, ...] = (
    Feature("metadata.{namespace,name,uid}", "supported", "supported", "tagged on the machine"),
    Feature("spec.containers[].{name,image,command,args}", "supported", "supported",
            "command is the entrypoint, args its arguments; $(VAR) is expanded from the container's literal env"),
    Feature("spec.containers[].env[].value", "supported", "supported", "literal values"),
    Feature("spec.containers[].{env[].valueFrom.configMapKeyRef,envFrom[].configMapRef}", "supported", "supported",
            "read when the machine is created and passed as literal env (prefix and optional honoured); a pod "
            "keeps its start values, as on a kubelet: recreate the pod to pick up a change"),
    Feature("spec.containers[].{env[].valueFrom.secretKeyRef,envFrom[].secretRef}", "supported", "supported",
            "ECS: mirrored into AWS Secrets Manager under the lambdalet/ prefix (named by content hash, shared "
            "when equal, deleted once no machine needs it) and referenced by ARN, never written into the task "
            "definition; Fly: set in that machine's own env (never app secrets): anyone holding a Fly API token "
            "of the app can read them in the machine config. $(VAR) never expands a Secret value"),
    Feature("spec.containers[].env[].valueFrom.{fieldRef,resourceFieldRef}", "supported", "supported",
            "resolved when the machine is created: metadata.name/namespace/uid/labels['k']/annotations['k'], "
            "spec.nodeName, spec.serviceAccountName, requests/limits of cpu, memory, ephemeral-storage "
            "(an unset limit is the machine's size)"),
    Feature("spec.containers[].env[].valueFrom (other fields)", "unsupported", "unsupported",
            "status.podIP/hostIP and other fields are not known when the machine is created; read them in the "
            "container (e.g. hostname -i)", lambda pod: (*_field_refs(pod), *_unknown_value_from(pod))),
    Feature("spec.containers[].ports[]", "supported", "supported", "containerPort/protocol (TCP or UDP)"),
    Feature("spec.containers[].resources", "supported", "supported",
            "the machine gets the sum over containers of max(request, limit); "
            "limits are enforced for the pod as a whole, not per container; more than the backend's "
            "largest machine (ECS Fargate: 16 vCPU / 120 GiB) is refused at admission, and a pod asking "
            "for nothing gets the smallest (0.25 vCPU / 512 MiB), written into its requests"),
    Feature("spec.restartPolicy", "supported", "supported", "a restart is a new machine (attempt)"),
    Feature("spec.terminationGracePeriodSeconds", "supported", "supported",
            "the cloud may cap it (ECS Fargate: 120 s)"),
    Feature("spec.initContainers", "supported", "supported",
            "run in order, each to success, before the app containers: ECS non-essential containers chained "
            "with dependsOn SUCCESS; Fly a multi-container machine whose containers depend_on the one before "
            "exited_successfully (Fly's Pilot init: the organisation must have it); Fly reports one state per "
            "machine, so init containers show Completed once the machine runs, and a failing one fails the machine"),
    Feature("spec.initContainers[].restartPolicy", "unsupported", "unsupported",
            "sidecar init containers (restartPolicy Always) are not supported; make the sidecar a regular "
            "container", _sidecars),
    Feature("spec.volumes[].emptyDir", "supported", "supported",
            "shared by the pod's containers that mount it. ECS: a task volume (medium Memory and sizeLimit "
            "count against the task's memory/ephemeral storage, not enforced per volume); Fly: a machine "
            "`temp_dir` volume on a multi-container machine (init or several containers): storage_type memory "
            "for medium Memory (counts against the machine's memory), else disk with size_mb the sizeLimit, "
            "else the pod's ephemeral-storage limit, else unset (the machine's disk); a single-container "
            "machine has no one to share it with: a directory of its root filesystem, medium and sizeLimit not "
            "enforced"),
    Feature("spec.volumes[].{configMap,secret,downwardAPI,projected}", "supported", "supported",
            "files (items, defaultMode/mode, subPath) written before the containers start, from the values when "
            "the machine was created: a ConfigMap/Secret changed later reaches the pod when it is recreated. "
            "ECS: an init container (image LAMBDALET_ECS_FILES_IMAGE) writes them into a task volume, secret "
            "contents come through Secrets Manager; Fly: machine or container `files` with their mode (secret "
            "contents are in that machine's config, readable by holders of an app token)"),
    Feature("spec.volumes[] kube-api-access-*", "ignored", "ignored",
            "the service-account token volume is not mounted"),
    Feature("spec.volumes[].{persistentVolumeClaim,hostPath,...}", "unsupported", "unsupported",
            "only emptyDir, configMap, secret, downwardAPI and projected (configMap/secret/downwardAPI) volumes: "
            "there is no host to share and cloud volumes are not supported yet; use emptyDir for scratch space "
            "or an external store", _cloud_volumes),
    Feature("spec.containers[].volumeMounts[].{name,mountPath,readOnly}", "supported", "supported",
            "the volume at that path, shared by the containers that mount it"),
    Feature("spec.containers[].volumeMounts[].subPath", "unsupported", "supported",
            "ECS binds whole volumes only: mount the volume at a directory (or use items to pick files); "
            "Fly: the one file of a configMap/secret/downwardAPI/projected volume at the mount path", _sub_paths),
    Feature("spec.containers[].volumeMounts[].subPath (of an emptyDir)", "unsupported", "unsupported",
            "the cloud mounts a pod volume whole (ECS task volume, Fly machine volume): mount the emptyDir at a "
            "directory and use the path inside it", _empty_dir_sub_paths),
    Feature("spec.containers[].volumeMounts[] (others)", "unsupported", "unsupported",
            "subPathExpr and mountPropagation are not supported, and a mount must name a volume of the pod; "
            "use mountPath/readOnly/subPath", _mount_options),
    Feature("spec.containers[].{livenessProbe,readinessProbe,startupProbe}.exec", "supported", "supported",
            "ECS: the container healthCheck (readiness, else liveness, else startup; period, timeout, "
            "failureThreshold, initialDelaySeconds); the pod is Ready once it reports HEALTHY. Fly: container "
            "healthchecks on multi-container machines (pods with init or several containers; a single-container "
            "machine has http/tcp checks only, and the exec probe is not run); Ready follows the machine's state"),
    Feature("spec.containers[].{livenessProbe,readinessProbe,startupProbe}.{httpGet,tcpSocket}", "ignored",
            "supported",
            "ECS: not run (a healthCheck is a command inside the container, which may have no HTTP client); "
            "Ready follows the task's Running state. Fly: machine `checks` (http/tcp); "
            "Ready follows the machine's state"),
    Feature("spec.imagePullSecrets", "supported", "unsupported",
            "ECS: the registry credentials of the first kubernetes.io/dockerconfigjson Secret whose registry "
            "matches an image go to Secrets Manager and the container's repositoryCredentials; Fly: this API "
            "has no per-machine registry auth: push the image to registry.fly.io or a public registry",
            _image_pull_secrets),
    Feature("spec.{hostNetwork,hostPID,hostIPC}", "unsupported", "unsupported",
            "there is no host to share on a virtual node; remove it", _host_namespaces),
    Feature("spec.containers[].securityContext.privileged", "unsupported", "unsupported",
            "privileged containers cannot run on the virtual node", _privileged),
    Feature("spec.containers[].ports[].{hostPort,protocol}", "unsupported", "unsupported",
            "hostPort must be unset or equal containerPort; protocol must be TCP or UDP", _ports),
)


def unsupported(pod: dict, backend: str | None = None) -> list[tuple[str, str]]:
    """Every use of a feature ``backend`` cannot run (None: no backend can):
    ``[(field path, what to do)]``."""
    out: list[tuple[str, str]] = []
    backend = backend if backend in BACKENDS else None
    for f in FEATURES:
        refused = [f.status(b) == "unsupported" for b in BACKENDS] if backend is None else [
            f.status(backend) == "unsupported"]
        if all(refused) and f.check is not None:
            out.extend((path, f.note) for path in f.check(pod))
    return out


# --------------------------------------------------------------------------
# Translation
# --------------------------------------------------------------------------


def _str_list(value: Any, field: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise UnsupportedPod([(field, "must be a list of strings")])
    return tuple(value)


def _seconds(probe: dict, key: str, default: int) -> int:
    value = probe.get(key)
    return default if value is None else int(value)


def _probe(probe: Any) -> ExecProbe | CheckProbe | None:
    if not isinstance(probe, dict):
        return None
    timing = {"initial_delay": _seconds(probe, "initialDelaySeconds", 0), "period": _seconds(probe, "periodSeconds", 10),
              "timeout": _seconds(probe, "timeoutSeconds", 1)}
    if isinstance(probe.get("exec"), dict) and probe["exec"].get("command"):
        return ExecProbe(command=tuple(str(x) for x in probe["exec"]["command"]),
                         failure_threshold=_seconds(probe, "failureThreshold", 3), **timing)
    for kind, key in (("http", "httpGet"), ("tcp", "tcpSocket")):
        spec = probe.get(key)
        if isinstance(spec, dict) and isinstance(spec.get("port"), int):  # named ports: not resolved
            return CheckProbe(kind=kind, port=spec["port"], path=str(spec.get("path") or "/"), **timing)
    return None


def _container(pod: dict, node: str, path: str, c: dict, sources: Sources | None) -> ContainerSpec:
    name, image = c.get("name"), c.get("image")
    if not name:
        raise UnsupportedPod([(f"{path}.name", "a container needs a name")])
    if not image:
        raise UnsupportedPod([(f"{path}.image", "a container needs an image")])
    env, secret_env = pv.env_of(pod, node, c, sources)
    resolved = dict(env)
    command = _str_list(c.get("command"), f"{path}.command")
    args = _str_list(c.get("args"), f"{path}.args")
    ports = tuple(
        PortSpec(container_port=int(p["containerPort"]), protocol=p.get("protocol", "TCP"))
        for p in c.get("ports") or []
    )
    mounts = tuple(MountSpec(volume=m["name"], path=m["mountPath"], read_only=bool(m.get("readOnly")),
                             sub_path=str(m.get("subPath") or ""))
                   for m in c.get("volumeMounts") or [] if m.get("name") not in _token_volume_names(pod))
    return ContainerSpec(
        name=name,
        image=image,
        command=tuple(expand(x, resolved) for x in command) if command is not None else None,
        args=tuple(expand(x, resolved) for x in args) if args is not None else None,
        env=tuple(env),
        secret_env=tuple(secret_env),
        ports=ports,
        mounts=mounts,
        probes=Probes(liveness=_probe(c.get("livenessProbe")), readiness=_probe(c.get("readinessProbe")),
                      startup=_probe(c.get("startupProbe"))),
    )


def _resources(path: str, c: dict) -> tuple[int, int]:
    res = c.get("resources") or {}
    req, lim = res.get("requests") or {}, res.get("limits") or {}
    cpu = max(
        cpu_millis(req.get("cpu", 0), f"{path}.resources.requests.cpu"),
        cpu_millis(lim.get("cpu", 0), f"{path}.resources.limits.cpu"),
    )
    mem = max(
        memory_mib(req.get("memory", 0), f"{path}.resources.requests.memory"),
        memory_mib(lim.get("memory", 0), f"{path}.resources.limits.memory"),
    )
    return cpu, mem


def pod_size(pod: dict) -> tuple[int, int]:
    """What the machine must hold: (millicores, MiB), the sum over containers of
    max(request, limit), as ``machine_spec`` computes it (init containers run
    before, alone: the machine is at least as large as the largest of them).
    Raises UnsupportedPod on a malformed quantity."""
    cpu = mem = 0
    for path, c in _containers(pod):
        c_cpu, c_mem = _resources(path, c)
        cpu, mem = cpu + c_cpu, mem + c_mem
    for i, c in enumerate((pod.get("spec") or {}).get("initContainers") or []):
        i_cpu, i_mem = _resources(f"spec.initContainers[{i}]", c)
        cpu, mem = max(cpu, i_cpu), max(mem, i_mem)
    return cpu, mem


def ephemeral_storage_limit(pod: dict) -> int:
    """The pod's ephemeral-storage limit in MiB (0: none), as the kubelet's eviction
    reckons it (resourcehelper.PodLimits): the sum over containers of their limits,
    at least each init container's. Raises UnsupportedPod on a malformed quantity."""
    def limit(path: str, c: dict) -> int:
        value = ((c.get("resources") or {}).get("limits") or {}).get("ephemeral-storage", 0)
        return memory_mib(value, f"{path}.resources.limits.ephemeral-storage")

    total = sum(limit(path, c) for path, c in _containers(pod))
    for i, c in enumerate((pod.get("spec") or {}).get("initContainers") or []):
        total = max(total, limit(f"spec.initContainers[{i}]", c))
    return total


def registry_auths(pod: dict, sources: Sources | None) -> tuple[RegistryAuth, ...]:
    """Credentials from the pod's imagePullSecrets (kubernetes.io/dockerconfigjson),
    for the registries its images come from."""
    import base64
    import json

    if sources is None:
        return ()
    wanted = {registry_of(str(c.get("image") or "")) for _, c in pv.all_containers(pod)}
    out: dict[str, RegistryAuth] = {}
    for ref in (pod.get("spec") or {}).get("imagePullSecrets") or []:
        obj = sources.get("Secret", str(ref.get("name")))
        if obj is None:
            continue
        raw = pv.entries(obj, "Secret").get(".dockerconfigjson")
        try:
            auths = json.loads(raw or b"{}").get("auths") or {}
        except ValueError:
            continue
        for host, entry in auths.items():
            registry = host.removeprefix("https://").split("/", 1)[0]
            registry = "docker.io" if registry in ("index.docker.io", "registry-1.docker.io") else registry
            if registry not in wanted or registry in out or not isinstance(entry, dict):
                continue
            user, password = entry.get("username"), entry.get("password")
            if (not user or not password) and entry.get("auth"):
                user, _, password = base64.b64decode(entry["auth"]).decode(errors="replace").partition(":")
            if user and password:
                out[registry] = RegistryAuth(registry=registry, username=user, password=password, secret=ref["name"])
    return tuple(out.values())


def machine_spec(pod: dict, node: str, attempt: int, sources: Sources | None = None) -> MachineSpec:
    """The MachineSpec for run ``attempt`` of ``pod`` on ``node``.

    ``sources``: the pod's ConfigMaps and Secrets as read (``pod_values.references``
    names them); None leaves their values out (``references`` says what is missing).
    Raises UnsupportedPod (a ValueError) naming every field no backend can run,
    or a malformed field; MissingReference when a needed ConfigMap/Secret/key is absent.
    """
    problems = unsupported(pod)
    if problems:
        raise UnsupportedPod(problems)
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    for key in ("name", "uid"):
        if not meta.get(key):
            raise UnsupportedPod([(f"metadata.{key}", "the pod has none")])
    containers = list(_containers(pod))
    if not containers:
        raise UnsupportedPod([("spec.containers", "a pod needs at least one container")])
    try:
        specs = [_container(pod, node, path, c, sources) for path, c in containers]
        inits = [_container(pod, node, f"spec.initContainers[{i}]", c, sources)
                 for i, c in enumerate(spec.get("initContainers") or [])]
        volumes = [pv.volume_of(pod, node, v, sources) for v in spec.get("volumes") or [] if not _is_token_volume(v)]
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, (UnsupportedPod, MissingReference)):
            raise
        raise UnsupportedPod([("spec", f"malformed: {type(err).__name__} {err}")]) from None
    cpu, mem = pod_size(pod)
    grace = spec.get("terminationGracePeriodSeconds")
    return MachineSpec(
        pod=PodRef(
            namespace=meta.get("namespace") or "default", name=meta["name"], uid=meta["uid"]
        ),
        node=node,
        attempt=attempt,
        containers=tuple(specs),
        init_containers=tuple(inits),
        volumes=tuple(volumes),
        registry_auth=registry_auths(pod, sources),
        references=pv.references(pod, token_volume=_is_token_volume),
        cpu_millis=cpu,
        memory_mib=mem,
        ephemeral_storage_mib=ephemeral_storage_limit(pod),
        restart_policy=spec.get("restartPolicy") or "Always",
        termination_grace_seconds=30 if grace is None else max(0, int(grace)),
        annotations=tuple(sorted(
            (k, str(v)) for k, v in (meta.get("annotations") or {}).items() if k.startswith("lambdalet.io/"))),
    )
