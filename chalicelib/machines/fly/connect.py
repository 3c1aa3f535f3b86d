"""What to run instead of kubectl exec/attach/port-forward for a Fly Machine (pure).

flyctl reaches a machine over the app's WireGuard network: ``fly ssh console``
opens a shell (or runs ``--command``) in a machine picked with ``--machine``;
``fly proxy <local>:<remote> <address>`` forwards a port to an address on the
6PN network, where ``<machine id>.vm.<app>.internal`` names one machine.
"""

from __future__ import annotations

import shlex

from ..contract import Machine


def command(machine: Machine, container: str, action: str, argv: tuple[str, ...], ports: tuple[int, ...],
            *, app: str) -> str:
    console = f"fly ssh console --app {app} --machine {machine.id}"
    if action == "exec":
        run = f"{console} --command {shlex.quote(shlex.join(argv))}" if argv else console
        return f"kubectl exec is not served by lambdalet (a Lambda function cannot hold the stream); run: {run}"
    if action == "portforward":
        port = ports[0] if ports else 80
        return (f"kubectl port-forward is not served by lambdalet; forward with flyctl: "
                f"fly proxy {port}:{port} {machine.id}.vm.{app}.internal --app {app}")
    return (f"kubectl {action} is not served by lambdalet (a Lambda function cannot hold the stream); "
            f"for a shell: {console}; for the output: fly logs --app {app} --machine {machine.id}")
