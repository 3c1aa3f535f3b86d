"""Every setting lambdalet reads, in one pydantic model.

Values come from the environment (``.chalice/config.json`` sets them per
stage): ``LAMBDALET_<FIELD>`` (any case), or the field's alias (``AWS_REGION``);
dict-valued settings are JSON, lists are comma-separated. A missing or invalid
value fails at start with the variable's name, not deep inside a handler.

Read by ``from_environ`` rather than pydantic-settings: that library's import
(its sources: dotenv, secrets dirs, cloud vaults, CLI) cost more than a third
of a cold admission review, for the dozen lines below. pydantic still validates
every value.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Literal, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ENV_PREFIX = "LAMBDALET_"

CommaList = tuple[str, ...]


# Settings that only one backend needs: required when that backend is chosen.
REQUIRED_BY_BACKEND = {
    "ecs": ("ecs_cluster", "ecs_subnets", "ecs_security_groups"),
    "fly": ("fly_app", "fly_region", "fly_token_secret", "fly_claims_table"),
}


class SettingsError(RuntimeError):
    """A setting is missing or invalid; the message names the variable."""


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    # Kubernetes side
    k8s_api_url: str = Field(pattern=r"^https?://")
    k8s_ca_bundle: str = ""  # PEM text; empty: the system trust store (or plain http)
    k8s_token_secret: str = ""  # Secrets Manager id/ARN of the SA token (the ServiceAccount mode)
    # Secrets Manager id/ARN of a PEM bundle (client certificate + private key) for the node identity
    # mode: system:node:<name> in system:nodes, from the kubernetes.io/kube-apiserver-client-kubelet signer.
    k8s_client_cert_secret: str = ""
    # EKS: the cluster's name. The functions authenticate with tokens minted from their own IAM
    # role (chalicelib/kube/eks_token.py); an EKS access entry maps the role to lambdalet's group.
    k8s_eks_cluster_name: str = Field("", pattern=r"^([0-9A-Za-z][A-Za-z0-9_-]{0,99})?$")
    # Secrets Manager id/ARN of the bearer token kube-apiserver presents to /audit
    # and /admission/* (its webhook kubeconfigs). Empty: no check (the sandbox).
    webhook_token_secret: str = ""
    # Seconds after a rotation (the AWSCURRENT version's creation) during which the
    # AWSPREVIOUS token is still accepted: time for every apiserver to pick up the new one.
    webhook_token_rotation_window: int = Field(3600, ge=0)
    node_names: CommaList = Field(min_length=1)  # the virtual nodes this deployment serves
    node_cpu: str = "1000"
    node_memory: str = "4Ti"
    node_pods: str = "1000"
    # Name prefix of this deployment's functions ("<app>-<stage>", as Chalice names
    # them: lambdalet-dev-start_bound). Set: slow work is handed to an asynchronous
    # invocation (InvocationType Event) of the function named for it, so the binding
    # webhook answers at once and many nodes reconcile in parallel. Empty: done inline.
    function_prefix: str = ""

    # Machine side
    backend: Literal["ecs", "fly"] = "ecs"
    # ECS: required when backend == "ecs" (see _backend_settings)
    ecs_cluster: str = ""
    ecs_subnets: CommaList = ()
    ecs_security_groups: CommaList = ()
    ecs_assign_public_ip: bool = False
    # Needed for private ECR images and awslogs; public images run without it.
    ecs_execution_role_arn: str = ""
    ecs_task_role_arn: str = ""  # the pods' own AWS identity, if any
    # CloudWatch Logs group the awslogs driver writes container output to (infra/ creates it).
    # Empty: output is not kept and `kubectl logs` says so.
    ecs_log_group: str = ""
    # ECS Exec (`aws ecs execute-command`) on the tasks: RunTask enableExecuteCommand. The task
    # role then needs the ssmmessages:* actions ECS Exec documents.
    ecs_exec: bool = False
    # Where pods' Secret values are mirrored in Secrets Manager (the execution role reads them there).
    ecs_secrets_prefix: str = Field("lambdalet/pod-secrets/", pattern=r"^[A-Za-z0-9/_+=.@-]+/$")
    # The small public image that writes configMap/secret/downwardAPI volumes before a pod's containers start.
    ecs_files_image: str = "public.ecr.aws/docker/library/busybox:1.37"
    # RunTask calls a second each Lambda container allows itself (burst the same): Fargate's
    # published RunTask quota, 20/s burst and sustained per account and Region ("AWS Fargate
    # throttling quotas"). Over it ECS answers ThrottlingException and the SDK's adaptive
    # retries slow down further than needed. 0: no pacing.
    ecs_run_task_rate: float = Field(20.0, ge=0)
    region: str = Field(min_length=1, validation_alias="AWS_REGION")
    # Fly Machines: required when backend == "fly" (see _backend_settings)
    fly_api_url: str = Field("https://api.machines.dev", pattern=r"^https?://")
    fly_platform_url: str = Field("https://api.fly.io", pattern=r"^https?://")  # Fly's platform API: machine logs
    fly_app: str = ""  # the Fly app the machines live in
    fly_region: str = ""  # where machines go (a pod annotation lambdalet.io/fly-region may override)
    fly_fallback_regions: CommaList = ()  # tried in order when a region has no capacity
    fly_token_secret: str = ""  # Secrets Manager id/ARN of the Fly API token
    fly_claims_table: str = ""  # DynamoDB table of create claims (partition key "pk", TTL attribute "ttl")

    # Per-node differences from the settings above, as JSON: node name -> {setting: value},
    # e.g. {"vk-fly-ams": {"backend": "fly", "fly_region": "ams"}}. One deployment,
    # several nodes on several regions or backends.
    node_overrides: dict[str, dict[str, Any]] = {}

    # The kubelet API (chalicelib/kubelet_api): where the apiserver reaches it ("host" or
    # "host:port", default port 443: the API Gateway custom domain with the mTLS truststore).
    # Empty: the node advertises no endpoint (port 0), as before.
    kubelet_endpoint: str = Field("", pattern=r"^(([A-Za-z0-9.-]|\{node\})+(:[0-9]{1,5})?)?$")  # "{node}": per node
    # Who may call it: client-certificate CN -> the kubelet authorization subresources
    # (proxy, log, stats, metrics, spec, pods, healthz, configz; "*" all). The default is
    # kubeadm's --kubelet-client-certificate subject.
    kubelet_clients: dict[str, tuple[str, ...]] = {"kube-apiserver-kubelet-client": ("*",)}
    # Fronts without mTLS passthrough to the function (see README "kubelet API"): Secrets
    # Manager id of the token such a front presents with the client subject it verified.
    kubelet_front_token_secret: str = ""
    # `kubectl logs -f`: how long one response keeps collecting new output before it ends.
    kubelet_follow_seconds: int = Field(20, ge=0, le=25)  # API Gateway's integration timeout is 29 s

    @field_validator("node_names", "ecs_subnets", "ecs_security_groups", "fly_fallback_regions", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _overrides_name_our_nodes(self) -> "Settings":
        unknown = sorted(set(self.node_overrides) - set(self.node_names))
        if unknown:
            raise ValueError(f"{ENV_PREFIX}NODE_OVERRIDES names nodes not in {ENV_PREFIX}NODE_NAMES: {', '.join(unknown)}")
        bad = sorted({key for o in self.node_overrides.values() for key in o} - PER_NODE)
        if bad:
            raise ValueError(f"{ENV_PREFIX}NODE_OVERRIDES: not a per-node setting: {', '.join(bad)}")
        return self

    def for_node(self, name: str) -> "Settings":
        """The settings of one node: these, with its overrides (validated again)."""
        overrides = self.node_overrides.get(name)
        if not overrides:
            return self
        try:
            return self.model_validate({**self.model_dump(), "node_overrides": {}, **overrides})
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise SettingsError(f"{ENV_PREFIX}NODE_OVERRIDES[{name}]: {where} {first['msg']}") from None

    @model_validator(mode="after")
    def _awslogs_needs_execution_role(self) -> "Settings":
        if self.backend == "ecs" and self.ecs_log_group and not self.ecs_execution_role_arn:
            raise ValueError(f"{ENV_PREFIX}ECS_LOG_GROUP needs {ENV_PREFIX}ECS_EXECUTION_ROLE_ARN: on Fargate "
                             "the awslogs driver writes with the task execution role")
        return self

    @model_validator(mode="after")
    def _one_identity(self) -> "Settings":
        """The ServiceAccount token, the node's client certificate or the EKS role; a node identity is one node's."""
        modes = [self.k8s_token_secret, self.k8s_client_cert_secret, self.k8s_eks_cluster_name]
        if sum(map(bool, modes)) != 1:
            raise ValueError(f"{ENV_PREFIX}K8S_TOKEN_SECRET, {ENV_PREFIX}K8S_CLIENT_CERT_SECRET or "
                             f"{ENV_PREFIX}K8S_EKS_CLUSTER_NAME: set exactly one")
        if self.k8s_client_cert_secret and len(self.node_names) != 1:
            raise ValueError(f"{ENV_PREFIX}NODE_NAMES: a node identity (K8S_CLIENT_CERT_SECRET) is one node's: "
                             "name one node per deployment")
        return self

    @model_validator(mode="after")
    def _backend_settings(self) -> "Settings":
        """The chosen backend's settings are required; the others' are not."""
        missing = [ENV_PREFIX + name.upper() for name in REQUIRED_BY_BACKEND[self.backend] if not getattr(self, name)]
        if missing:
            raise ValueError(f"{', '.join(missing)}: required when {ENV_PREFIX}BACKEND={self.backend}")
        return self


# What may differ between the nodes of one deployment: where and how machines run.
PER_NODE = {"backend", "node_cpu", "node_memory", "node_pods", "ecs_cluster", "ecs_subnets",
            "ecs_security_groups", "ecs_assign_public_ip", "ecs_execution_role_arn", "ecs_task_role_arn",
            "ecs_log_group", "ecs_exec",
            "fly_api_url", "fly_platform_url", "fly_app", "fly_region", "fly_fallback_regions", "fly_token_secret",
            "fly_claims_table"}


def _variable(loc: tuple) -> str:
    field = str(loc[0]) if loc else "settings"
    if field not in Settings.model_fields:  # errors name aliased fields by their alias
        return field
    alias = Settings.model_fields[field].validation_alias
    return alias if isinstance(alias, str) else ENV_PREFIX + field.upper()


def from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings' raw values in ``environ``, by field name (JSON decoded for dict fields)."""
    upper = {key.upper(): value for key, value in environ.items()}
    values: dict[str, Any] = {}
    for name, info in Settings.model_fields.items():
        variable = _variable((name,))
        if variable not in upper:
            continue
        value = upper[variable]
        if get_origin(info.annotation) is dict:
            if not value.strip():
                continue
            try:
                value = json.loads(value)
            except ValueError as err:
                raise SettingsError(f"invalid lambdalet settings: {variable}: not JSON ({err})") from None
        values[name] = value
    return values


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the settings, or raise SettingsError naming every bad variable."""
    try:
        config = Settings.model_validate(from_environ(os.environ if environ is None else environ))
    except ValidationError as err:
        problems = "; ".join(f"{_variable(e['loc'])}: {e['msg']}" for e in err.errors())
        raise SettingsError(f"invalid lambdalet settings: {problems}") from None
    for name in config.node_names:  # every node's own settings, checked at start too
        config.for_node(name)
    return config


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The settings of this process, read once per Lambda container."""
    return load_settings()
