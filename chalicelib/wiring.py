"""Build the World from the settings: the I/O edge, once per Lambda container."""

from __future__ import annotations

import threading
from datetime import timedelta
from functools import lru_cache

from chalicelib.settings import Settings, settings
from chalicelib.usecases.world import World, utcnow


def secret(secret_id: str) -> str:
    """A Secrets Manager secret. Powertools caches the value for max_age
    seconds: one Secrets Manager call per container and per rotation window,
    not per invocation."""
    from aws_lambda_powertools.utilities import parameters

    return parameters.get_secret(secret_id, max_age=300)


def build_backend(config: Settings):
    """The MachineBackend the settings choose (``LAMBDALET_BACKEND``)."""
    if config.backend == "fly":
        import boto3

        from chalicelib.machines.claims import Claims
        from chalicelib.machines.fly import FlyApi, FlyBackend

        # The Fly token: read from Secrets Manager (cached by powertools), never logged.
        api = FlyApi(config.fly_api_url, config.fly_app,
                     lambda: secret(config.fly_token_secret), platform_url=config.fly_platform_url)
        claims = Claims(boto3.client("dynamodb", region_name=config.region), config.fly_claims_table,
                        scope=config.fly_app)
        return FlyBackend(api, region=config.fly_region, fallback_regions=config.fly_fallback_regions,
                          claims=claims)
    import boto3

    from chalicelib.machines.ecs import EcsBackend
    from chalicelib.machines.secret_store import SecretStore

    store = SecretStore(boto3.client("secretsmanager", region_name=config.region), config.ecs_secrets_prefix,
                        scope=config.ecs_cluster)
    return EcsBackend(
        ecs_client(config.region),
        cluster=config.ecs_cluster,
        subnets=list(config.ecs_subnets),
        security_groups=list(config.ecs_security_groups),
        assign_public_ip=config.ecs_assign_public_ip,
        execution_role_arn=config.ecs_execution_role_arn or None,
        task_role_arn=config.ecs_task_role_arn or None,
        log_group=config.ecs_log_group,
        exec_enabled=config.ecs_exec,
        region=config.region,
        secrets=store,
        files_image=config.ecs_files_image,
        run_task_pace=run_task_pace(config.ecs_run_task_rate),
    )


def run_task_pace(rate: float):
    """RunTask's pacing for one backend (None: none): one bucket, shared by the converger's threads."""
    if not rate:
        return None
    from chalicelib.machines.pacing import TokenBuckets

    return TokenBuckets(rate, max(1, int(rate)))


class OnFirstUse:
    """Builds the object on its first attribute use, then stands for it.

    Cold start: the admission webhook needs neither the Kubernetes client
    (``import kubernetes``) nor a cloud client, only each backend's ``name`` and
    ``sizes`` (``known``); a container that only answers reviews never builds them.
    """

    def __init__(self, build, **known):
        self._build, self._known, self._built, self._lock = build, known, None, threading.Lock()

    def __getattr__(self, attr: str):
        if attr in self._known:
            return self._known[attr]
        if self._built is None:
            with self._lock:  # the converger's threads may get here together
                if self._built is None:
                    self._built = self._build()
        return getattr(self._built, attr)


def backend_sizes(kind: str):
    """What a backend kind can run (pure tables, no client)."""
    if kind == "fly":
        from chalicelib.machines.fly.guest import SIZES
    else:
        from chalicelib.machines.fargate_sizes import SIZES
    return SIZES


def build_kube(config: Settings):
    from chalicelib.kube.client import KubeClient, api_client

    if config.k8s_client_cert_secret:  # node identity: the apiserver's Node authorizer scopes every call
        return KubeClient(api_client(config.k8s_api_url, None, config.k8s_ca_bundle,
                                     client_pem=secret(config.k8s_client_cert_secret)))
    if config.k8s_eks_cluster_name:  # EKS: tokens from the function's own role, no stored secret
        from chalicelib.kube.eks_token import EksTokens

        return KubeClient(api_client(config.k8s_api_url, EksTokens(config.k8s_eks_cluster_name, config.region),
                                     config.k8s_ca_bundle))
    token = lambda: secret(config.k8s_token_secret)  # noqa: E731 - re-read (cached) per request: rotation works
    return KubeClient(api_client(config.k8s_api_url, token, config.k8s_ca_bundle))


def ecs_client(region: str):
    """The ECS client: ``client_config()`` with botocore's adaptive retry mode (after a
    throttle it paces its own calls: 1,000 creates meet Fargate's 20 RunTask/s
    without a storm of 429s), timestamps left as the epoch seconds ECS sends:
    botocore would make each a dateutil-aware datetime, a third of the CPU of a
    10,000-task DescribeTasks listing; machine_from_task reads both. Its model
    has botocore's parser hand tasks over as ECS sent them (ecs/read_model.py):
    walking each modelled member of each task was half of that listing's CPU."""
    import boto3
    import botocore.session

    from chalicelib.machines.ecs import client_config
    from chalicelib.machines.ecs.read_model import loader

    core = botocore.session.get_session()
    core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=lambda value: value)
    core.register_component("data_loader", loader(core.get_config_variable("data_path")))
    session = boto3.session.Session(botocore_session=core, region_name=region)
    return session.client("ecs", config=client_config(mode="adaptive"))


def build_world(config: Settings) -> World:
    from chalicelib import node as vnode

    kube = OnFirstUse(lambda: build_kube(config))
    backends, nodes, shared = {}, {}, {}
    for name in config.node_names:
        mine = config.for_node(name)
        key = mine.model_dump_json(include=PER_BACKEND)  # nodes with the same machine settings share a backend
        if key not in shared:
            shared[key] = OnFirstUse(lambda mine=mine: build_backend(mine), name=mine.backend,
                                     sizes=backend_sizes(mine.backend))
        backends[name] = shared[key]
        capacity = {"cpu": mine.node_cpu, "memory": mine.node_memory, "pods": mine.node_pods}
        region = mine.fly_region if mine.backend == "fly" else mine.region
        nodes[name] = vnode.node_object(name, backends[name].name, region, capacity, utcnow(),
                                        kubelet_endpoint=config.kubelet_endpoint)
    defer = async_invoker(config.function_prefix, config.region) if config.function_prefix else None
    return World(kube=kube, backends=backends, nodes=nodes, webhook_tokens=webhook_tokens(config), defer=defer)


def async_invoker(prefix: str, region: str):
    """defer(function, payload): Lambda Invoke with InvocationType Event of ``<prefix>-<function>``
    (Lambda queues it and retries it twice on error; the call returns in tens of ms)."""
    import json

    lam = OnFirstUse(lambda: __import__("boto3").client("lambda", region_name=region))

    def defer(function: str, payload: dict) -> None:
        lam.invoke(FunctionName=f"{prefix}-{function}", InvocationType="Event", Payload=json.dumps(payload).encode())

    return defer


def webhook_tokens(config: Settings):
    """The tokens our webhooks accept (current, and previous during a rotation); None: no check."""
    if not config.webhook_token_secret:
        return None
    import botocore.session

    from chalicelib.webhook_guard import WebhookTokens, secrets_manager_fetch

    # botocore's own client (what boto3 hands out), without importing boto3 and its
    # s3transfer: a fifth of a cold admission review, which needs only this one call.
    client = botocore.session.get_session().create_client("secretsmanager", region_name=config.region)
    return WebhookTokens(secrets_manager_fetch(client, config.webhook_token_secret), utcnow,
                         window=timedelta(seconds=config.webhook_token_rotation_window))


# The settings a backend instance is built from (node capacity is not one).
PER_BACKEND = {"backend", "region", "ecs_cluster", "ecs_subnets", "ecs_security_groups", "ecs_assign_public_ip",
               "ecs_execution_role_arn", "ecs_task_role_arn", "ecs_log_group", "ecs_exec", "ecs_secrets_prefix",
               "ecs_files_image", "ecs_run_task_rate", "fly_api_url", "fly_platform_url", "fly_app", "fly_region",
               "fly_fallback_regions", "fly_token_secret", "fly_claims_table"}


@lru_cache(maxsize=1)
def world() -> World:
    return build_world(settings())


@lru_cache(maxsize=1)
def kubelet_access():
    """Who may call the kubelet API, and its settings (chalicelib/kubelet_api)."""
    from chalicelib.kubelet_api.service import Access

    config = settings()
    token = (lambda: secret(config.kubelet_front_token_secret)) if config.kubelet_front_token_secret else None
    return Access(clients=dict(config.kubelet_clients), front_token=token,
                  follow_seconds=config.kubelet_follow_seconds, host_template=config.kubelet_endpoint)


def reset() -> None:
    """Forget the cached settings and World (tests and the sandbox change the environment)."""
    world.cache_clear()
    kubelet_access.cache_clear()
    settings.cache_clear()
