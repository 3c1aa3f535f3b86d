"""Settings fail at start, naming the variable."""

import pytest

from chalicelib.settings import SettingsError, load_settings

GOOD = {
    "LAMBDALET_K8S_API_URL": "https://k8s.example:6443",
    "LAMBDALET_K8S_TOKEN_SECRET": "lambdalet/token",
    "LAMBDALET_NODE_NAMES": "vk-a, vk-b",
    "LAMBDALET_ECS_CLUSTER": "c1",
    "LAMBDALET_ECS_SUBNETS": "subnet-1,subnet-2",
    "LAMBDALET_ECS_SECURITY_GROUPS": "sg-1",
    "AWS_REGION": "eu-west-1",
}


@pytest.fixture
def env(monkeypatch):
    for key in list(__import__("os").environ):
        if key.startswith("LAMBDALET_"):
            monkeypatch.delenv(key)
    for key, value in GOOD.items():
        monkeypatch.setenv(key, value)
    return monkeypatch


def test_good_settings_parse_lists_and_bools(env):
    env.setenv("LAMBDALET_ECS_ASSIGN_PUBLIC_IP", "true")
    s = load_settings()
    assert s.node_names == ("vk-a", "vk-b") and s.ecs_subnets == ("subnet-1", "subnet-2")
    assert s.ecs_assign_public_ip is True and s.region == "eu-west-1"


@pytest.mark.parametrize("var", ["LAMBDALET_K8S_API_URL", "LAMBDALET_ECS_CLUSTER", "AWS_REGION", "LAMBDALET_NODE_NAMES"])
def test_missing_setting_names_the_variable(env, var):
    env.delenv(var)
    with pytest.raises(SettingsError, match=var):
        load_settings()


def test_invalid_setting_names_the_variable(env):
    env.setenv("LAMBDALET_K8S_API_URL", "kubernetes:6443")
    env.setenv("LAMBDALET_ECS_ASSIGN_PUBLIC_IP", "perhaps")
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "LAMBDALET_K8S_API_URL" in str(err.value) and "LAMBDALET_ECS_ASSIGN_PUBLIC_IP" in str(err.value)


def test_empty_list_is_invalid(env):
    env.setenv("LAMBDALET_ECS_SECURITY_GROUPS", " , ")
    with pytest.raises(SettingsError, match="LAMBDALET_ECS_SECURITY_GROUPS"):
        load_settings()


def test_one_identity_a_token_or_a_node_certificate_and_a_node_identity_serves_one_node(env):
    env.setenv("LAMBDALET_K8S_CLIENT_CERT_SECRET", "lambdalet/node-cert")
    with pytest.raises(SettingsError, match="set exactly one"):
        load_settings()
    env.delenv("LAMBDALET_K8S_TOKEN_SECRET")
    with pytest.raises(SettingsError, match="a node identity .* is one node's"):
        load_settings()
    env.setenv("LAMBDALET_NODE_NAMES", "vk-a")
    assert load_settings().k8s_client_cert_secret == "lambdalet/node-cert"
    env.delenv("LAMBDALET_K8S_CLIENT_CERT_SECRET")
    with pytest.raises(SettingsError, match="LAMBDALET_K8S_TOKEN_SECRET, LAMBDALET_K8S_CLIENT_CERT_SECRET or "
                                            "LAMBDALET_K8S_EKS_CLUSTER_NAME: set exactly one"):
        load_settings()


def test_the_eks_identity_is_a_third_mode_exclusive_with_the_other_two(env):
    env.setenv("LAMBDALET_K8S_EKS_CLUSTER_NAME", "prod-1")
    with pytest.raises(SettingsError, match="set exactly one"):  # with the SA token of env()
        load_settings()
    env.delenv("LAMBDALET_K8S_TOKEN_SECRET")
    assert load_settings().k8s_eks_cluster_name == "prod-1"  # several nodes: the role is not a node's
    env.setenv("LAMBDALET_K8S_CLIENT_CERT_SECRET", "lambdalet/node-cert")
    with pytest.raises(SettingsError, match="set exactly one"):
        load_settings()
    env.delenv("LAMBDALET_K8S_CLIENT_CERT_SECRET")
    env.setenv("LAMBDALET_K8S_EKS_CLUSTER_NAME", "prod 1")  # EKS names: [0-9A-Za-z][A-Za-z0-9_-]*
    with pytest.raises(SettingsError, match="LAMBDALET_K8S_EKS_CLUSTER_NAME"):
        load_settings()


@pytest.mark.parametrize("value", ["kubelet.example.com", "{node}.kubelet.example.com:8443", ""])
def test_the_kubelet_endpoint_takes_a_host_a_port_and_the_node_placeholder(env, value):
    env.setenv("LAMBDALET_KUBELET_ENDPOINT", value)
    assert load_settings().kubelet_endpoint == value


def test_a_kubelet_endpoint_with_a_scheme_or_path_names_the_variable(env):
    env.setenv("LAMBDALET_KUBELET_ENDPOINT", "https://kubelet.example.com/x")
    with pytest.raises(SettingsError, match="LAMBDALET_KUBELET_ENDPOINT"):
        load_settings()
