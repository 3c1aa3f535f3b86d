"""The scoped Kubernetes client against the simulator."""

from chalicelib.kube.client import KubeClient, api_client
from tests.world.kube_sim import KubeSim


def test_a_rotated_token_is_used_by_a_client_built_before_the_rotation():
    current = {"token": "old-token"}
    with KubeSim() as sim:
        sim.add_token("old-token", "system:serviceaccount:lambdalet:lambdalet")
        sim.api.allow_anonymous = False
        kube = KubeClient(api_client(sim.url, lambda: current["token"]))
        assert kube.get_node("nope") is None  # authenticated: a 404, not a 401
        sim.api.tokens.pop("old-token")
        sim.add_token("new-token", "system:serviceaccount:lambdalet:lambdalet")
        current["token"] = "new-token"
        assert kube.get_node("nope") is None
        users = {user for (user, _, _) in sim.api.calls}
        assert users == {"system:serviceaccount:lambdalet:lambdalet"}
