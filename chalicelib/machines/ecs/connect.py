"""What to run instead of kubectl exec/attach/port-forward for an ECS task (pure).

ECS Exec: ``aws ecs execute-command`` opens an SSM session into a container of a
task started with ``enableExecuteCommand`` (LAMBDALET_ECS_EXEC; the task role
needs the ``ssmmessages`` actions). Port forwarding goes through the same agent:
``aws ssm start-session`` with the ``AWS-StartPortForwardingSession`` document and
the target ``ecs:<cluster>_<task id>_<container runtime id>``
(https://docs.aws.amazon.com/AmazonECS/latest/developerguide/ecs-exec.html).
"""

from __future__ import annotations

import shlex

from ..contract import Machine


def command(machine: Machine, container: str, action: str, argv: tuple[str, ...], ports: tuple[int, ...],
            *, cluster: str, region: str, exec_enabled: bool) -> str:
    task_id = machine.id.rsplit("/", 1)[-1]
    cluster_name = cluster.rsplit("/", 1)[-1]
    if not exec_enabled:
        return (f"lambdalet runs this pod as ECS task {task_id} (cluster {cluster_name}); a Lambda function "
                f"cannot hold a {action} stream open, and ECS Exec is off for this node: the operator can "
                "turn it on (LAMBDALET_ECS_EXEC=true and the ssmmessages actions on the task role) for pods "
                f"started afterwards. Meanwhile: kubectl logs -f {machine.pod.name} -c {container}")
    base = f"aws ecs execute-command --region {region} --cluster {cluster_name} --task {task_id} --container {container}"
    if action == "exec":
        shell = shlex.join(argv) if argv else "/bin/sh"
        return (f"kubectl {action} is not served by lambdalet (a Lambda function cannot hold the stream); "
                f"run it with ECS Exec: {base} --interactive --command {shlex.quote(shell)}")
    if action == "portforward":
        runtime = next((c.container_id for c in machine.containers if c.name == container and c.container_id), None)
        target = f"ecs:{cluster_name}_{task_id}_{runtime.removeprefix('ecs://')}" if runtime else f"ecs:{cluster_name}_{task_id}_<runtime id>"
        port = ports[0] if ports else 80
        return (f"kubectl port-forward is not served by lambdalet; forward through ECS Exec's agent: "
                f"aws ssm start-session --region {region} --target {target} "
                f"--document-name AWS-StartPortForwardingSession "
                f"--parameters '{{\"portNumber\":[\"{port}\"],\"localPortNumber\":[\"{port}\"]}}'")
    return (f"kubectl {action} is not served by lambdalet (a Lambda function cannot hold the stream); "
            f"for a shell in the container: {base} --interactive --command /bin/sh; "
            f"for its output: kubectl logs -f {machine.pod.name} -c {container}")
