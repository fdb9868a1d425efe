"""Helm's own lint and template rendering for the ATP chart through helm-sdkpy, with no cluster needed."""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

# helm lint reports INFO=1, WARNING=2, ERROR=3 (helm's support.Severity).
SEVERITY = {1: "INFO", 2: "WARNING", 3: "ERROR"}

# What the fake API server's discovery advertises: every kind the chart may render, plus what Helm's release
# storage uses (Secrets). Name, kind, namespaced.
_RESOURCES: dict[str, list[tuple[str, str, bool]]] = {
    "v1": [
        ("configmaps", "ConfigMap", True),
        ("secrets", "Secret", True),
        ("services", "Service", True),
        ("serviceaccounts", "ServiceAccount", True),
        ("pods", "Pod", True),
        ("namespaces", "Namespace", False),
    ],
    "apps/v1": [("deployments", "Deployment", True)],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "autoscaling/v2": [("horizontalpodautoscalers", "HorizontalPodAutoscaler", True)],
    "networking.k8s.io/v1": [("networkpolicies", "NetworkPolicy", True), ("ingresses", "Ingress", True)],
}
_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
# Bound on a request body the fake server reads: a rendered chart object is a few KB.
_MAX_BODY = 8 * 1024 * 1024


def merge_values(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's values merge: maps merge key by key, anything else in `override` replaces what `base` had."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_values(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_values(files: Sequence[str | Path]) -> dict[str, Any]:
    """The values files merged in order, as `helm -f a -f b` merges them."""
    values: dict[str, Any] = {}
    for path in files:
        values = merge_values(values, yaml.safe_load(Path(path).read_text()) or {})
    return values


def _helm() -> Any:
    try:
        import helm_sdkpy
    except ImportError as exc:
        raise SystemExit(
            "helm-sdkpy is not installed: `make helm-lint` installs deploy/requirements-deploy.txt"
        ) from exc
    return helm_sdkpy


async def lint(chart: str | Path, values_files: Sequence[str | Path] = ()) -> dict[str, Any]:
    """Run Helm's linter on `chart` with the values files applied; returns Helm's result (Messages, Errors).

    helm-sdkpy's Lint takes no values, so the chart is copied with the merged values as its values.yaml:
    exactly what `helm lint -f` lints (the chart defaults with the files merged over them).
    """
    helm = _helm()
    chart = Path(chart)
    if not values_files:
        return await helm.Lint(helm.Configuration()).run(str(chart))
    with tempfile.TemporaryDirectory(prefix="atp-helm-lint-") as tmp:
        copy_dir = Path(tmp) / chart.name
        shutil.copytree(chart, copy_dir)
        defaults = yaml.safe_load((chart / "values.yaml").read_text()) or {}
        merged = merge_values(defaults, load_values(values_files))
        (copy_dir / "values.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
        return await helm.Lint(helm.Configuration()).run(str(copy_dir))


async def explain(chart: str | Path, values_files: Sequence[str | Path] = ()) -> str:
    """Why the chart does not render, in Helm's words; helm-sdkpy's lint result loses its errors' text."""
    try:
        await render(chart, values_files)
    except Exception as exc:  # helm-sdkpy raises its own error types; any of them explains the failure.
        return str(exc)
    return "renders cleanly; see the lint messages"


def lint_problems(result: dict[str, Any]) -> list[str]:
    """The lint messages at WARNING or worse, and any errors, as readable lines."""
    lines = [
        f"{SEVERITY.get(m.get('Severity'), m.get('Severity'))} {m.get('Path')}: {m.get('Err')}"
        for m in result.get("Messages") or []
        if (m.get("Severity") or 0) >= 2
    ]
    lines.extend(str(e) for e in result.get("Errors") or [])
    return lines


class _FakeKubeApi(BaseHTTPRequestHandler):
    """Just enough of the Kubernetes API for Helm to install into: discovery, and accepting every write.

    Nothing is stored but Helm's release record is never read back, so install runs to completion and returns
    the release with its rendered manifest and notes.
    """

    server_version = "atp-fake-kube/1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _reply(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            raise ValueError("request body too large")
        return self.rfile.read(length)

    def do_GET(self) -> None:
        path = urlparse(self.path).path
        if path == "/version":
            return self._reply(200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0"})
        if path == "/api":
            return self._reply(200, {"kind": "APIVersions", "versions": ["v1"]})
        if path == "/apis":
            groups = []
            for group_version in _RESOURCES:
                if "/" in group_version:
                    group, version = group_version.split("/")
                    entry = {"groupVersion": group_version, "version": version}
                    groups.append({"name": group, "versions": [entry], "preferredVersion": entry})
            return self._reply(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        for group_version, resources in _RESOURCES.items():
            if path == ("/api/v1" if group_version == "v1" else f"/apis/{group_version}"):
                listed = [
                    {"name": n, "singularName": "", "namespaced": ns, "kind": k, "verbs": _VERBS}
                    for n, k, ns in resources
                ]
                return self._reply(
                    200, {"kind": "APIResourceList", "groupVersion": group_version, "resources": listed}
                )
        if path.endswith("/secrets"):
            # Helm's release history: none, so this is a fresh install.
            return self._reply(200, {"kind": "SecretList", "apiVersion": "v1", "metadata": {}, "items": []})
        return self._reply(
            404,
            {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404},
        )

    def _accept_write(self, code: int) -> None:
        raw = self._read_body()
        if "json" in (self.headers.get("Content-Type") or ""):
            body = json.loads(raw)
            body.setdefault("metadata", {})["resourceVersion"] = "1"
            return self._reply(code, body)
        # Helm writes its release record (a Secret) as protobuf; any well-formed Secret will do as the answer.
        return self._reply(
            code,
            {"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "release", "resourceVersion": "1"}},
        )

    def do_POST(self) -> None:
        self._accept_write(201)

    def do_PUT(self) -> None:
        self._accept_write(200)

    def do_PATCH(self) -> None:
        self._accept_write(200)


@contextmanager
def fake_cluster() -> Iterator[str]:
    """A kubeconfig (YAML text) for a fake API server on loopback that lives as long as the context."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeKubeApi)
    thread = threading.Thread(target=server.serve_forever, name="fake-kube-api", daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        yield yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": url}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                "users": [{"name": "fake", "user": {"token": "fake"}}],
                "current-context": "fake",
            }
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


async def render(
    chart: str | Path,
    values_files: Sequence[str | Path] = (),
    *,
    release: str = "atp",
    namespace: str = "atp",
    timeout_s: int = 60,
) -> tuple[str, str]:
    """Render the chart with Helm's own engine (an install into a fake cluster): (manifest, notes)."""
    helm = _helm()
    # File reads off the event loop: callers may be running other work on it.
    chart_path, values = await asyncio.to_thread(
        lambda: (str(Path(chart).resolve()), load_values(values_files))
    )
    with fake_cluster() as kubeconfig:
        config = helm.Configuration(namespace=namespace, kubeconfig=kubeconfig)
        result = await helm.Install(config).run(
            release, chart_path, values=values or None, wait=False, timeout=timeout_s
        )
    return result.get("manifest") or "", (result.get("info") or {}).get("notes") or ""


def documents(manifest: str) -> list[dict[str, Any]]:
    """The Kubernetes objects in a rendered manifest."""
    return [doc for doc in yaml.safe_load_all(manifest) if doc]


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python deploy/helmcheck.py", description=__doc__)
    parser.add_argument("action", choices=["lint", "template", "render-check"])
    parser.add_argument("chart")
    parser.add_argument("-f", "--values", action="append", default=[], help="values file (repeatable)")
    args = parser.parse_args(argv)
    label = " ".join(["-f " + v for v in args.values]) or "default values"
    if args.action == "render-check":
        try:
            manifest, _ = asyncio.run(render(args.chart, args.values))
        except Exception as exc:  # helm-sdkpy's error types vary; each carries Helm's explanation.
            print(f"helm template {args.chart} ({label}) failed: {exc}", file=sys.stderr)
            return 1
        print(f"helm template {args.chart} ({label}): {len(documents(manifest))} objects")
        return 0
    if args.action == "template":
        manifest, notes = asyncio.run(render(args.chart, args.values))
        sys.stdout.write(manifest)
        sys.stderr.write(notes)
        return 0
    result = asyncio.run(lint(args.chart, args.values))
    for message in result.get("Messages") or []:
        severity = SEVERITY.get(message.get("Severity"), message.get("Severity"))
        print(f"[{severity}] {message.get('Path')}: {message.get('Err')}")
    problems = lint_problems(result)
    if problems:
        print(f"helm lint {args.chart} ({label}): {len(problems)} problem(s)", file=sys.stderr)
        for line in problems:
            print("  " + line, file=sys.stderr)
        print(asyncio.run(explain(args.chart, args.values)), file=sys.stderr)
        return 1
    print(f"helm lint {args.chart} ({label}): 1 chart linted, 0 errors")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
