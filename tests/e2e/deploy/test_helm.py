"""The Helm chart: Helm's own lint, and the objects Helm renders checked against conventions.md."""

from __future__ import annotations

import asyncio
import math
import re
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from atp_common.config import AtpConfig
from atp_common.server import LIVENESS_SERVICE

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "deploy" / "helm" / "atp"
ALL_OPTIONS = CHART / "ci" / "all-options-values.yaml"
SERVICES = ("gateway", "router", "observer", "adapters")
STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
)


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def _ports(container: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container["ports"]}


@pytest.mark.parametrize("values_files", [[], [ALL_OPTIONS]], ids=["default", "all-options"])
async def test_helm_lint_passes_with_zero_errors(helmcheck: ModuleType, values_files: list[Path]) -> None:
    result = await helmcheck.lint(CHART, values_files)
    assert result["TotalChartsLinted"] == 1
    problems = helmcheck.lint_problems(result)
    assert problems == [], "\n".join(problems) + "\n" + await helmcheck.explain(CHART, values_files)


async def test_lint_catches_a_broken_value(helmcheck: ModuleType, tmp_path: Path) -> None:
    # The check can fail: a template that does not render is a lint error. (Lint runs templates leniently:
    # `required` and `fail` only warn there, which is why the render tests below matter too.)
    broken = tmp_path / "atp"
    shutil.copytree(CHART, broken)
    (broken / "templates" / "broken.yaml").write_text("kind: ConfigMap\nname: {{ .Values.nothing.here }}\n")
    result = await helmcheck.lint(broken)
    assert result["Errors"], result
    assert "nil pointer" in await helmcheck.explain(broken)


def test_missing_required_values_fail_the_render(helmcheck: ModuleType, tmp_path: Path) -> None:
    # helm lint only warns about `required`; the render (what install does) refuses.
    bad = tmp_path / "bad-values.yaml"
    bad.write_text("tls: {enabled: true, existingSecret: ''}\n")
    with pytest.raises(Exception, match=r"tls\.existingSecret is required"):
        asyncio.run(helmcheck.render(CHART, [bad]))


def test_every_service_has_a_deployment_and_a_service(rendered: Any) -> None:
    for name in SERVICES:
        deployment = rendered.component("Deployment", name)
        service = rendered.component("Service", name)
        assert _container(deployment)["command"] == ["python", "-m", f"atp_{name}"]
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items()
        assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_probe_ports_are_the_service_ports(rendered: Any) -> None:
    tls = rendered.values["tls"]["enabled"]
    for name in SERVICES:
        svc_values = rendered.values["services"][name]
        container = _container(rendered.component("Deployment", name))
        service = rendered.component("Service", name)
        ports = _ports(container)
        service_ports = {p["name"]: p for p in service["spec"]["ports"]}
        if name == "gateway":
            assert ports["http"] == svc_values["port"] == service_ports["http"]["port"]
            paths = {"startupProbe": "/startupz", "readinessProbe": "/readyz", "livenessProbe": "/livez"}
            for probe, path in paths.items():
                assert container[probe]["httpGet"] == {"path": path, "port": ports["http"]}, probe
            continue
        assert ports["grpc"] == svc_values["port"] == service_ports["grpc"]["port"]
        assert service_ports["grpc"]["appProtocol"] == "grpc"
        # Liveness asks for the kit's "liveness" health name, which stays SERVING during a drain; the
        # others ask for "" (the whole server), which turns NOT_SERVING as the drain starts.
        health_names = {"startupProbe": "", "readinessProbe": "", "livenessProbe": LIVENESS_SERVICE}
        for probe, health_name in health_names.items():
            if tls:
                # kubelet's gRPC probe cannot do TLS: the image's probe dials the gRPC port with the certs.
                command = container[probe]["exec"]["command"]
                assert command[:3] == ["python", "-m", "atp_tools.probe"]
                assert command[3] == f"127.0.0.1:{ports['grpc']}"
                assert "--ca=/etc/atp/tls/ca.crt" in command
                service_args = [arg for arg in command if arg.startswith("--service")]
                assert service_args == ([f"--service={health_name}"] if health_name else []), probe
            else:
                expected = {"port": ports["grpc"], **({"service": health_name} if health_name else {})}
                assert container[probe]["grpc"] == expected, probe
        assert ports["metrics"] == svc_values["metricsPort"] == service_ports["metrics"]["port"]


def test_environment_follows_the_conventions(rendered: Any) -> None:
    fullname = rendered.component("Deployment", "router")["metadata"]["name"].removesuffix("-router")
    drain = rendered.values["drain"]
    services = rendered.values["services"]
    for name in SERVICES:
        container = _container(rendered.component("Deployment", name))
        env, ports = _env(container), _ports(container)
        prefix = f"ATP_{name.upper()}"
        assert env[f"{prefix}_HOST"] == "0.0.0.0"
        assert int(env[f"{prefix}_PORT"]) == ports["http" if name == "gateway" else "grpc"]
        assert int(env[f"{prefix}_METRICS_PORT"]) == ports["metrics"]
        assert float(env[f"{prefix}_DRAIN_DELAY_S"]) == drain["delaySeconds"]
        assert float(env[f"{prefix}_GRACE_S"]) == drain["graceSeconds"]
        assert env["ATP_API_KEY"]["secretKeyRef"]["key"] == rendered.values["secrets"]["apiKeyKey"]
        assert env["ATP_CONFIG"] == ("/etc/atp/atp.yaml" if rendered.values["config"] else "")
    expected_addresses = {
        "ATP_ROUTER_OBSERVER_ADDR": "observer",
        "ATP_ADAPTERS_ROUTER_ADDR": "router",
        "ATP_ADAPTERS_OBSERVER_ADDR": "observer",
        "ATP_GATEWAY_ADAPTERS_ADDR": "adapters",
        "ATP_GATEWAY_ROUTER_ADDR": "router",
        "ATP_GATEWAY_OBSERVER_ADDR": "observer",
    }
    for variable, target in expected_addresses.items():
        owner = variable.split("_")[1].lower()
        env = _env(_container(rendered.component("Deployment", owner)))
        assert env[variable] == f"{fullname}-{target}:{services[target]['port']}"
        assert rendered.component("Service", target)["metadata"]["name"] == f"{fullname}-{target}"
    observer_env = _env(_container(rendered.component("Deployment", "observer")))
    assert ("ATP_OBSERVER_DATABASE_URL" in observer_env) == rendered.values["postgresql"]["enabled"]
    for owner in ("router", "adapters", "gateway"):
        env = _env(_container(rendered.component("Deployment", owner)))
        # Limits are enforced in the adapters and keys administered by the router: all share one Redis.
        assert ("ATP_REDIS_URL" in env) == rendered.values["redis"]["enabled"], owner


def test_termination_grace_covers_prestop_drain_delay_and_grace(rendered: Any) -> None:
    drain = rendered.values["drain"]
    probes = rendered.values["probes"]
    for name in SERVICES:
        spec = rendered.component("Deployment", name)["spec"]["template"]["spec"]
        container = _container(rendered.component("Deployment", name))
        pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
        assert pre_stop[0] == "sleep"
        assert float(pre_stop[1]) == drain["preStopSleepSeconds"]
        env = _env(container)
        prefix = f"ATP_{name.upper()}"
        # Kubernetes counts the preStop hook inside the grace period; the service drains after it.
        needed = float(pre_stop[1]) + float(env[f"{prefix}_DRAIN_DELAY_S"]) + float(env[f"{prefix}_GRACE_S"])
        termination = spec["terminationGracePeriodSeconds"]
        assert isinstance(termination, int)
        assert termination > needed
        assert termination == math.ceil(needed + drain["marginSeconds"])
        # A draining gRPC service answers NOT_SERVING; liveness must not restart it before the drain ends.
        liveness = container["livenessProbe"]
        assert liveness["periodSeconds"] * liveness["failureThreshold"] > termination
        assert probes["liveness"]["failureThreshold"] == liveness["failureThreshold"]


def test_standard_labels_on_every_object(rendered: Any) -> None:
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert rendered.objects
    for obj in rendered.objects:
        labels = obj["metadata"]["labels"]
        missing = [label for label in STANDARD_LABELS if label not in labels]
        assert not missing, f"{obj['kind']} {obj['metadata']['name']} lacks {missing}"
        assert labels["app.kubernetes.io/instance"] == "atp"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/version"] == version
        template = obj.get("spec", {}).get("template")
        if template:
            assert all(label in template["metadata"]["labels"] for label in STANDARD_LABELS)


def test_hardened_pods(rendered: Any) -> None:
    for name in SERVICES:
        spec = rendered.component("Deployment", name)["spec"]["template"]["spec"]
        container = _container(rendered.component("Deployment", name))
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert "emptyDir" in volumes[mounts["/app/var"]]
        assert "emptyDir" in volumes[mounts["/tmp"]]
        assert container["resources"]["requests"]
        assert spec["serviceAccountName"] == rendered.of_kind("ServiceAccount")[0]["metadata"]["name"]


def test_only_the_gateway_is_exposed_by_the_network_policies(rendered: Any) -> None:
    policies = rendered.of_kind("NetworkPolicy")
    if not rendered.values["networkPolicy"]["enabled"]:
        assert policies == []
        return
    suite = {"app.kubernetes.io/name": "atp", "app.kubernetes.io/instance": "atp"}
    gateway_from = rendered.values["networkPolicy"]["gatewayFrom"]
    metrics_from = rendered.values["networkPolicy"]["metricsFrom"]
    covered = set()
    for policy in policies:
        component = policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        covered.add(component)
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        svc_values = rendered.values["services"][component]
        for rule in policy["spec"]["ingress"]:
            (port,) = [p["port"] for p in rule["ports"]]
            peers = rule.get("from", [])
            suite_peers = [p for p in peers if p.get("podSelector", {}).get("matchLabels") == suite]
            outside = [p for p in peers if p not in suite_peers]
            if port == svc_values["metricsPort"]:
                assert outside == metrics_from
            elif component == "gateway":
                assert port == svc_values["port"]
                assert peers == gateway_from
            else:
                # Internal gRPC ports: the suite's own pods and nobody else.
                assert port == svc_values["port"]
                assert peers and not outside, f"{component} is reachable from {outside}"
    assert covered == set(SERVICES)


def test_config_map_holds_the_values_config_and_rolls_pods(
    rendered: Any, render_with: Any, tmp_path: Path
) -> None:
    config = rendered.values["config"]
    config_maps = rendered.of_kind("ConfigMap")
    if not config:
        assert config_maps == []
        return
    (config_map,) = config_maps
    loaded = yaml.safe_load(config_map["data"]["atp.yaml"])
    assert loaded == config
    AtpConfig.model_validate(loaded)  # what the services will load must be a valid configuration
    checksums = {
        rendered.component("Deployment", n)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        for n in SERVICES
    }
    changed = tmp_path / "changed.yaml"
    changed.write_text(
        yaml.safe_dump({"config": {"default_route": "auto", "routes": {"auto": {"policy": "ucb"}}}})
    )
    other = render_with(ALL_OPTIONS, changed)
    other_checksums = {
        other.component("Deployment", n)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        for n in SERVICES
    }
    assert len(checksums) == 1 and len(other_checksums) == 1
    assert checksums != other_checksums


def test_optional_objects_follow_their_switches(rendered: Any) -> None:
    services = rendered.values["services"]
    hpas = {
        h["metadata"]["labels"]["app.kubernetes.io/component"]: h
        for h in rendered.of_kind("HorizontalPodAutoscaler")
    }
    for name in SERVICES:
        deployment = rendered.component("Deployment", name)
        autoscaling = services[name]["autoscaling"]
        assert (name in hpas) == autoscaling["enabled"]
        # With an HPA the Deployment leaves replicas alone, or every upgrade would reset the scale.
        assert ("replicas" in deployment["spec"]) != autoscaling["enabled"]
        if autoscaling["enabled"]:
            assert hpas[name]["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
        pdb = rendered.component("PodDisruptionBudget", name)
        assert pdb["spec"]["maxUnavailable"] == services[name]["pdb"]["maxUnavailable"]
    assert bool(rendered.of_kind("Ingress")) == rendered.values["ingress"]["enabled"]
    generated_secret = not rendered.values["secrets"]["existingSecret"]
    assert bool(rendered.of_kind("Secret")) == generated_secret


def test_manifests_match_the_kubernetes_schemas(rendered: Any, require_tool: Any) -> None:
    try:
        import kubernetes_validate
    except ImportError:
        require_tool("kubernetes-validate", False)
        return
    for obj in rendered.objects:
        kubernetes_validate.validate(obj, "1.32.0", strict=True)


def test_notes_tell_how_to_reach_the_gateway_and_use_grpcurl(rendered: Any) -> None:
    notes = rendered.notes
    assert "grpcurl -plaintext 127.0.0.1:50051 list" in notes
    assert "describe atp.router.v1.RouterService" in notes
    if rendered.values["ingress"]["enabled"]:
        assert "https://atp.example.com" in notes
    else:
        assert "kubectl port-forward --namespace atp svc/atp-gateway 8080:8080" in notes


def test_observer_replicas_without_postgres_are_refused(helmcheck: ModuleType, tmp_path: Path) -> None:
    values = tmp_path / "two-observers.yaml"
    values.write_text("services: {observer: {replicas: 2}}\n")
    with pytest.raises(Exception, match=r"needs postgresql\.enabled"):
        asyncio.run(helmcheck.render(CHART, [values]))


def test_router_replicas_without_redis_are_refused(helmcheck: ModuleType, tmp_path: Path) -> None:
    values = tmp_path / "two-routers.yaml"
    values.write_text("services: {router: {replicas: 2}}\n")
    with pytest.raises(Exception, match=r"needs redis\.enabled"):
        asyncio.run(helmcheck.render(CHART, [values]))


def test_every_value_is_documented() -> None:
    text = (CHART / "values.yaml").read_text()
    documented = set(re.findall(r"^## @param (\S+)", text, flags=re.MULTILINE))

    def leaves(node: Any, path: str) -> list[str]:
        if isinstance(node, dict) and node:
            return [
                leaf
                for key, value in node.items()
                for leaf in leaves(value, f"{path}.{key}" if path else key)
            ]
        return [path]

    undocumented = [
        leaf
        for leaf in leaves(yaml.safe_load(text), "")
        # A documented map (podSecurityContext, resources, ...) documents what is inside it.
        if not any(leaf == d or leaf.startswith(d + ".") for d in documented)
    ]
    assert undocumented == []
