"""Build the World from the settings: the I/O edge, once per Lambda container."""

from __future__ import annotations

from functools import lru_cache

from chalicelib.settings import Settings, settings
from chalicelib.usecases import World, utcnow


def service_account_token(secret_id: str) -> str:
    # Powertools caches the value for max_age seconds: one Secrets Manager call
    # per container and per rotation window, not per invocation.
    from aws_lambda_powertools.utilities import parameters

    return parameters.get_secret(secret_id, max_age=300)


def build_world(config: Settings) -> World:
    from chalicelib import node as vnode
    from chalicelib.kube.client import KubeClient, api_client
    from chalicelib.machines.ecs import EcsBackend, make_client

    token = service_account_token(config.k8s_token_secret)
    kube = KubeClient(api_client(config.k8s_api_url, token, config.k8s_ca_bundle))
    backend = EcsBackend(
        make_client(config.region),
        cluster=config.ecs_cluster,
        subnets=list(config.ecs_subnets),
        security_groups=list(config.ecs_security_groups),
        assign_public_ip=config.ecs_assign_public_ip,
        execution_role_arn=config.ecs_execution_role_arn or None,
        task_role_arn=config.ecs_task_role_arn or None,
    )
    capacity = {"cpu": config.node_cpu, "memory": config.node_memory, "pods": config.node_pods}
    nodes = {
        name: vnode.node_object(name, backend.name, config.region, capacity, utcnow())
        for name in config.node_names
    }
    return World(kube=kube, backend=backend, nodes=nodes)


@lru_cache(maxsize=1)
def world() -> World:
    return build_world(settings())


def reset() -> None:
    """Forget the cached settings and World (tests and the sandbox change the environment)."""
    world.cache_clear()
    settings.cache_clear()
