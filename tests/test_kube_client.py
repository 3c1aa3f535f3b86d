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


def test_an_expired_continue_token_restarts_the_list_once(monkeypatch):
    from chalicelib.kube import client

    monkeypatch.setattr(client, "PAGE_SIZE", 2)
    with KubeSim() as sim:
        for i in range(5):
            r = sim.request("POST", "/api/v1/namespaces/default/pods", {
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p{i}"},
                "spec": {"nodeName": "vk", "containers": [{"name": "c", "image": "busybox"}]}})
            assert r.status == 201, r.body
        kube = KubeClient(api_client(sim.url, "admin-token"))
        sim.api.faults.add("list", "pods", 410, continued_only=True)  # the second page's token expired
        assert sorted(p["metadata"]["name"] for p in kube.list_node_pods("vk")) == ["p0", "p1", "p2", "p3", "p4"]
        assert sim.api.faults.injected == 1
        sim.api.faults.add("list", "pods", 410, continued_only=True, times=2)  # expired again: the error stands
        try:
            kube.list_node_pods("vk")
        except client.KubeError as err:
            assert "410" in str(err)
        else:
            raise AssertionError("a second expiry must fail the list")
