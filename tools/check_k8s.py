#!/usr/bin/env python3
"""Render deploy/k8s with kustomize and check the result offline (tools/check-k8s.sh runs this).

- Core resources against Kubernetes' own JSON schemas (kubernetes-validate, strict: unknown
  fields are errors), for the oldest and newest Kubernetes versions we support.
- KEDA's ScaledObject and the Prometheus Operator's PodMonitor, whose schemas are not there: their
  required fields, by hand (API version and kind, known spec fields, a scale target that exists,
  prometheus triggers with serverAddress, query and threshold as strings, sane replica bounds; a
  selector that picks the pods, endpoint ports that exist as named container ports).
- How the pieces fit: selectors match pod templates; Services, probes and PodMonitors name ports
  that exist; mounts, volumes, claims and secrets exist; each worker has one GPU, the GPU
  toleration, one model that matches its label and its ScaledObject's query, and a termination
  grace longer than its --shutdown-grace-secs; the API probes /readyz and /healthz on the port it
  listens on; every pod runs as the images' user (10001) under the restricted Pod Security
  Standard.
- With --bin-dir: darkroom-api and darkroom-worker parse each container's command line, its
  DARKROOM_* variables turned into their flags, with --help last (clap parses what comes before,
  then prints the help instead of running): an unknown flag or variable, or a refused value, fails.

--self-test (tools/check_k8s_selftest.py) breaks copies, of the rendered objects and of deploy/k8s
before rendering, in known ways and fails unless each is caught, so the check cannot pass
vacuously; and renders deploy/README.md's recipes, which must pass.
"""
from __future__ import annotations

import argparse
import functools
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml

# The oldest Kubernetes these manifests support (documented in deploy/README.md) and the newest
# that kubernetes-validate ships schemas for.
K8S_VERSIONS = ("1.30", "1.37")
# The user deploy/api.Dockerfile and deploy/worker.Dockerfile create.
IMAGE_UID = 10001
# A worker's terminationGracePeriodSeconds must exceed its --shutdown-grace-secs by this much: the
# job's last step, the hand-back and the exit happen after the grace.
GRACE_MARGIN_SECS = 15
MODEL_LABEL = "darkroom/model"
GPU = "nvidia.com/gpu"
SECRET_KEYS = ("DATABASE_URL", "REDIS_URL")

SCALED_OBJECT = ("keda.sh/v1alpha1", "ScaledObject")
POD_MONITOR = ("monitoring.coreos.com/v1", "PodMonitor")
SCALED_OBJECT_SPEC = {
    "scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod", "idleReplicaCount",
    "minReplicaCount", "maxReplicaCount", "fallback", "advanced", "triggers",
}
POD_MONITOR_SPEC = {
    "selector", "namespaceSelector", "podMetricsEndpoints", "jobLabel", "podTargetLabels", "sampleLimit",
    "targetLimit", "labelLimit", "labelNameLengthLimit", "labelValueLengthLimit", "keepDroppedTargets",
    "attachMetadata", "scrapeProtocols", "fallbackScrapeProtocol", "scrapeClass", "bodySizeLimit",
    "nativeHistogramBucketLimit", "nativeHistogramMinBucketFactor", "scrapeClassicHistograms",
    "convertClassicHistogramsToNHCB", "selectorMechanism",
}
POD_METRICS_ENDPOINT = {
    "port", "portNumber", "targetPort", "path", "scheme", "params", "interval", "scrapeTimeout",
    "honorLabels", "honorTimestamps", "trackTimestampsStaleness", "metricRelabelings", "relabelings",
    "basicAuth", "authorization", "bearerTokenSecret", "oauth2", "tlsConfig", "proxyUrl", "noProxy",
    "proxyFromEnvironment", "proxyConnectHeader", "followRedirects", "enableHttp2", "filterRunning",
}
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet")


def kn(obj: dict) -> str:
    return f"{obj.get('kind', '?')}/{(obj.get('metadata') or {}).get('name', '?')}"


def ns(obj: dict) -> str:
    return (obj.get("metadata") or {}).get("namespace", "default")


@dataclass
class Render:
    """The rendered objects, and the errors found in them."""

    docs: list[dict]
    errors: list[str] = field(default_factory=list)

    def err(self, obj: dict, message: str) -> None:
        self.errors.append(f"{kn(obj)}: {message}")

    def of_kind(self, kind: str) -> Iterator[dict]:
        return (d for d in self.docs if d.get("kind") == kind)

    def find(self, kind: str, name: str, namespace: str) -> dict | None:
        return next((d for d in self.of_kind(kind) if d["metadata"].get("name") == name and ns(d) == namespace), None)

    def workloads(self) -> Iterator[tuple[dict, dict]]:
        """(workload, pod template) for every object that makes pods."""
        for d in self.docs:
            spec = d.get("spec") or {}
            if d.get("kind") in WORKLOAD_KINDS and isinstance(spec.get("template"), dict):
                yield d, spec["template"]
            elif d.get("kind") == "CronJob":
                template = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template")
                if isinstance(template, dict):
                    yield d, template


# ---- rendering ------------------------------------------------------------------------------


def render(kubectl: str, directory: Path) -> list[dict]:
    """`kubectl kustomize DIR`, parsed. Raises RuntimeError with kustomize's message on failure."""
    try:
        done = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    except OSError as e:
        raise RuntimeError(f"cannot run {kubectl}: {e}") from e
    if done.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {directory} failed: {done.stderr.strip()}")
    return [d for d in yaml.safe_load_all(done.stdout) if d]


# ---- small helpers --------------------------------------------------------------------------


def labels_match(selector: dict | None, labels: dict) -> bool:
    """Whether a LabelSelector (matchLabels, matchExpressions) selects these labels. An empty or
    missing selector selects nothing here (in a Service it selects no pods either)."""
    if not selector or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e.get("key"), e.get("operator"), e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False
    return True


def pod_labels(template: dict) -> dict:
    return (template.get("metadata") or {}).get("labels") or {}


def containers(template: dict) -> list[dict]:
    spec = template.get("spec") or {}
    return list(spec.get("initContainers") or []) + list(spec.get("containers") or [])


def command_line(c: dict) -> list[str]:
    return [str(t) for t in (c.get("command") or []) + (c.get("args") or [])]


def parse_flags(tokens: list[str]) -> dict[str, list[str]]:
    """`--flag value` and `--flag=value` as {flag: [values]} (a flag followed by another flag or
    nothing gets the value "")."""
    flags: dict[str, list[str]] = {}
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t.startswith("--"):
            if "=" in t:
                name, value = t.split("=", 1)
            elif i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
                name, value = t, tokens[i + 1]
                i += 1
            else:
                name, value = t, ""
            flags.setdefault(name, []).append(value)
        i += 1
    return flags


def env_value(c: dict, name: str) -> str | None:
    for e in c.get("env") or []:
        if e.get("name") == name and "value" in e:
            return str(e["value"])
    return None


def setting(c: dict, flag: str, env: str) -> list[str]:
    """A darkroom setting as the binary sees it: the flag's values, else the variable's
    comma-separated values (clap's env fallback with value_delimiter)."""
    flags = parse_flags(command_line(c)[2:])
    if flag in flags:
        return [v for raw in flags[flag] for v in raw.split(",")]
    value = env_value(c, env)
    return [v for v in value.split(",")] if value is not None else []


def host_port(address: str) -> tuple[str, int] | None:
    m = re.fullmatch(r"\[?([^\]]*)\]?:(\d+)", address)
    return (m.group(1), int(m.group(2))) if m else None


def resolve_port(c: dict, port: Any) -> int | None:
    """A container port given by name or number, as a number; None when the container has none."""
    for p in c.get("ports") or []:
        if (isinstance(port, str) and p.get("name") == port) or (isinstance(port, int) and p.get("containerPort") == port):
            return p.get("containerPort")
    return None


def as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# ---- core resources: Kubernetes' schemas ----------------------------------------------------


def check_schemas(r: Render) -> None:
    import kubernetes_validate
    from kubernetes_validate import utils
    from kubernetes_validate.utils import SchemaNotFoundError

    # kubernetes-validate parses the schema files (megabytes of JSON) on every call: parse each
    # once. Nothing changes a parsed schema, so sharing it is safe.
    if not hasattr(utils.schema_contents, "cache_info"):
        utils.schema_contents = functools.lru_cache(maxsize=None)(utils.schema_contents)

    for d in r.docs:
        if (d.get("apiVersion"), d.get("kind")) in (SCALED_OBJECT, POD_MONITOR):
            continue
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(d, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                r.err(d, f"Kubernetes {version} schema: {path}: {e.message}")
                break
            except SchemaNotFoundError as e:
                r.err(d, f"no Kubernetes schema: {e.message} (a custom resource this checker does not know?)")
                break


DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
DNS_SUBDOMAIN = rf"(?=.{{1,253}}$){DNS_LABEL}(\.{DNS_LABEL})*"
LABEL_VALUE = r"(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?"


def check_identity(r: Render) -> bool:
    """Required identity fields, names and labels Kubernetes accepts (its JSON schemas do not
    check names), and no object twice. False when an object lacks its identity, which the other
    checks need."""
    seen: set[tuple] = set()
    complete = True
    for d in r.docs:
        meta = d.get("metadata") or {}
        if not d.get("apiVersion") or not d.get("kind") or not meta.get("name"):
            r.err(d, "apiVersion, kind and metadata.name are required")
            complete = False
            continue
        pattern = DNS_LABEL if d["kind"] in ("Namespace", "Service") else DNS_SUBDOMAIN
        if not re.fullmatch(pattern, str(meta["name"])):
            r.err(d, "the name must be lower-case letters, digits and '-' (a DNS name)")
        templates = [t for w, t in Render([d]).workloads()]
        for labels in [meta.get("labels") or {}] + [pod_labels(t) for t in templates]:
            for key, value in labels.items():
                if not re.fullmatch(LABEL_VALUE, str(value)):
                    r.err(d, f"label {key}={value!r}: a label value is at most 63 letters, digits and '-_.'")
        key = (d["apiVersion"].split("/")[0], d["kind"], ns(d), meta["name"])
        if key in seen:
            r.err(d, "defined twice")
        seen.add(key)
    return complete


# ---- pods -----------------------------------------------------------------------------------


def check_pod_template(r: Render, w: dict, template: dict) -> None:
    spec = template.get("spec") or {}
    pod_sc = spec.get("securityContext") or {}
    volumes = {v.get("name"): v for v in spec.get("volumes") or []}
    for v in volumes.values():
        claim = (v.get("persistentVolumeClaim") or {}).get("claimName")
        if claim and not r.find("PersistentVolumeClaim", claim, ns(w)):
            r.err(w, f"volume {v['name']!r} claims {claim!r}, which is not in the render")
    if not containers(template):
        r.err(w, "pod template without containers")
    for c in containers(template):
        where = f"container {c.get('name')!r}"
        check_container_security(r, w, c, pod_sc, where)
        check_container_resources(r, w, c, where)
        check_container_refs(r, w, c, volumes, where)
        for probe_name in ("readinessProbe", "livenessProbe", "startupProbe"):
            probe = c.get(probe_name) or {}
            for kind in ("httpGet", "tcpSocket", "grpc"):
                if kind in probe and resolve_port(c, probe[kind].get("port")) is None:
                    r.err(w, f"{where}: {probe_name} uses port {probe[kind].get('port')!r}, which the container does not declare")
        if not command_line(c):
            r.err(w, f"{where}: give the command explicitly (args), so that these checks can read it")


def check_container_security(r: Render, w: dict, c: dict, pod_sc: dict, where: str) -> None:
    sc = c.get("securityContext") or {}

    def get(key: str) -> Any:
        return sc.get(key, pod_sc.get(key))

    if get("runAsUser") != IMAGE_UID:
        r.err(w, f"{where}: runAsUser must be {IMAGE_UID}, the images' user (deploy/*.Dockerfile)")
    if get("runAsNonRoot") is not True:
        r.err(w, f"{where}: runAsNonRoot must be true")
    if sc.get("allowPrivilegeEscalation") is not False:
        r.err(w, f"{where}: allowPrivilegeEscalation must be false")
    if sc.get("readOnlyRootFilesystem") is not True:
        r.err(w, f"{where}: readOnlyRootFilesystem must be true")
    if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
        r.err(w, f"{where}: capabilities must drop ALL")
    if (get("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
        r.err(w, f"{where}: seccompProfile must be RuntimeDefault (restricted Pod Security Standard)")


def check_container_resources(r: Render, w: dict, c: dict, where: str) -> None:
    res = c.get("resources") or {}
    for part, key in (("requests", "cpu"), ("requests", "memory"), ("limits", "memory")):
        if key not in (res.get(part) or {}):
            r.err(w, f"{where}: resources.{part}.{key} is missing")


def check_container_refs(r: Render, w: dict, c: dict, volumes: dict, where: str) -> None:
    for m in c.get("volumeMounts") or []:
        if m.get("name") not in volumes:
            r.err(w, f"{where}: mounts volume {m.get('name')!r}, which the pod does not define")
    for source in c.get("envFrom") or []:
        for kind, ref_key in (("Secret", "secretRef"), ("ConfigMap", "configMapRef")):
            ref = source.get(ref_key)
            if ref and not ref.get("optional") and not r.find(kind, ref.get("name"), ns(w)):
                r.err(w, f"{where}: envFrom names {kind} {ref.get('name')!r}, which is not in the render")
    for e in c.get("env") or []:
        ref = (e.get("valueFrom") or {}).get("secretKeyRef")
        if ref and not ref.get("optional"):
            secret = r.find("Secret", ref.get("name"), ns(w))
            if not secret or ref.get("key") not in secret_keys(secret):
                r.err(w, f"{where}: env {e.get('name')} reads Secret {ref.get('name')!r} key {ref.get('key')!r}, which is not in the render")


def secret_keys(secret: dict) -> set[str]:
    return set(secret.get("data") or {}) | set(secret.get("stringData") or {})


def check_deployments(r: Render) -> None:
    for d in r.of_kind("Deployment"):
        spec = d.get("spec") or {}
        if not labels_match(spec.get("selector"), pod_labels(spec.get("template") or {})):
            r.err(d, "spec.selector does not select the pod template's labels")
    for (a, ta), (b, tb) in pairs(list(r.workloads())):
        sel_a = (a.get("spec") or {}).get("selector")
        if a.get("kind") == "Deployment" and ns(a) == ns(b) and labels_match(sel_a, pod_labels(tb)):
            r.err(a, f"its selector also selects the pods of {kn(b)}")


def pairs(items: list) -> Iterator[tuple]:
    for i, x in enumerate(items):
        for j, y in enumerate(items):
            if i != j:
                yield x, y


# ---- darkroom's processes -------------------------------------------------------------------


def darkroom(template: dict, program: str, sub: str) -> dict | None:
    """The container that runs `PROGRAM SUB ...`, if any."""
    return next((c for c in containers(template) if command_line(c)[:2] == [program, sub]), None)


def check_secrets(r: Render) -> None:
    for w, template in r.workloads():
        for c in containers(template):
            if not command_line(c)[:1] or command_line(c)[0] not in ("darkroom-api", "darkroom-worker"):
                continue
            provided = {e.get("name") for e in c.get("env") or []}
            for source in c.get("envFrom") or []:
                name = (source.get("secretRef") or {}).get("name")
                secret = r.find("Secret", name, ns(w)) if name else None
                if secret:
                    provided |= secret_keys(secret)
                    check_secret_values(r, secret)
            for key in SECRET_KEYS:
                if key not in provided:
                    r.err(w, f"container {c.get('name')!r} gets no {key}")


def check_secret_values(r: Render, secret: dict) -> None:
    values = secret.get("stringData") or {}
    schemes = {"DATABASE_URL": ("postgres://", "postgresql://"), "REDIS_URL": ("redis://",)}
    for key, prefixes in schemes.items():
        if key in values and not str(values[key]).startswith(prefixes):
            r.err(secret, f"{key} must start with {' or '.join(prefixes)}")


def check_api(r: Render) -> None:
    apis = [(w, t, darkroom(t, "darkroom-api", "serve")) for w, t in r.workloads()]
    apis = [(w, t, c) for w, t, c in apis if c]
    if not apis:
        r.errors.append("no workload runs `darkroom-api serve`")
    for w, template, c in apis:
        listen = parse_flags(command_line(c)[2:]).get("--listen", [env_value(c, "DARKROOM_LISTEN") or "127.0.0.1:8080"])[-1]
        hp = host_port(listen)
        if not hp or hp[0] in ("127.0.0.1", "localhost", "::1"):
            r.err(w, f"the API listens on {listen!r}: give --listen a non-loopback address, or nothing outside the pod reaches it")
            continue
        if resolve_port(c, hp[1]) is None:
            r.err(w, f"the API listens on port {hp[1]}, which its container does not declare")
        for probe_name, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = (c.get(probe_name) or {}).get("httpGet") or {}
            if get.get("path") != path or resolve_port(c, get.get("port")) != hp[1]:
                r.err(w, f"{probe_name} must be GET {path} on the port the API listens on ({hp[1]})")
        services = [s for s in r.of_kind("Service") if ns(s) == ns(w) and labels_match(
            {"matchLabels": (s.get("spec") or {}).get("selector") or {}}, pod_labels(template))]
        if not services:
            r.err(w, "no Service selects the API's pods")
        for s in services:
            for p in (s.get("spec") or {}).get("ports") or []:
                if resolve_port(c, p.get("targetPort", p.get("port"))) != hp[1]:
                    r.err(s, f"port {p.get('name') or p.get('port')} does not reach the port the API listens on ({hp[1]})")
    if not any(darkroom(t, "darkroom-api", "migrate") for w, t in r.workloads() if w.get("kind") == "Job"):
        r.errors.append("no Job runs `darkroom-api migrate`")


def check_services(r: Render) -> None:
    for s in r.of_kind("Service"):
        selector = (s.get("spec") or {}).get("selector") or {}
        selected = [(w, t) for w, t in r.workloads() if ns(w) == ns(s) and labels_match({"matchLabels": selector}, pod_labels(t))]
        if not selected:
            r.err(s, "selects no pods of the render")
        for w, t in selected:
            if w.get("kind") == "Job":
                r.err(s, f"selects the pods of {kn(w)}")
            if darkroom(t, "darkroom-worker", "run"):
                r.err(s, f"selects the worker pods of {kn(w)} (workers serve no HTTP besides metrics)")


def worker_model(c: dict) -> list[tuple[str, str]]:
    return [tuple(m.split("=", 1)) if "=" in m else (m, "") for m in setting(c, "--model", "DARKROOM_MODELS") if m]


def check_workers(r: Render) -> None:
    workers = [(w, t, darkroom(t, "darkroom-worker", "run")) for w, t in r.workloads()]
    workers = [(w, t, c) for w, t, c in workers if c]
    if not workers:
        r.errors.append("no workload runs `darkroom-worker run`")
    for w, template, c in workers:
        spec = template.get("spec") or {}
        check_worker_grace(r, w, c, spec)
        check_worker_gpu(r, w, c, spec)
        check_worker_model(r, w, c, template)
        check_worker_metrics(r, w, c)


def check_worker_grace(r: Render, w: dict, c: dict, spec: dict) -> None:
    grace = setting(c, "--shutdown-grace-secs", "DARKROOM_SHUTDOWN_GRACE_SECS")
    if not grace:
        r.err(w, "set --shutdown-grace-secs explicitly (next to terminationGracePeriodSeconds)")
        return
    try:
        secs = float(grace[-1])
    except ValueError:
        r.err(w, f"--shutdown-grace-secs {grace[-1]!r} is not a number")
        return
    termination = spec.get("terminationGracePeriodSeconds", 30)
    if not isinstance(termination, int) or termination < secs + GRACE_MARGIN_SECS:
        r.err(w, f"terminationGracePeriodSeconds ({termination}) must exceed --shutdown-grace-secs ({grace[-1]}) "
                 f"by at least {GRACE_MARGIN_SECS} s, or Kubernetes kills the worker before it hands its job back")


def check_worker_gpu(r: Render, w: dict, c: dict, spec: dict) -> None:
    res = c.get("resources") or {}
    limit, request = (res.get("limits") or {}).get(GPU), (res.get("requests") or {}).get(GPU)
    if str(limit) != "1" or (request is not None and str(request) != "1"):
        r.err(w, f"the worker must ask for exactly one GPU: resources.limits[{GPU}] = 1 (requests, if set, equal)")
    if not any(t.get("key") == GPU and t.get("operator", "Equal") in ("Exists", "Equal") and t.get("effect") in (None, "", "NoSchedule")
               for t in spec.get("tolerations") or []):
        r.err(w, f"the worker needs a toleration for the {GPU} taint (effect NoSchedule)")


def check_worker_model(r: Render, w: dict, c: dict, template: dict) -> None:
    models = worker_model(c)
    if len(models) != 1:
        r.err(w, f"a worker Deployment serves exactly one model (--model or DARKROOM_MODELS), got {models}")
        return
    name, directory = models[0]
    mounts = [m for m in c.get("volumeMounts") or [] if m.get("readOnly")]
    if not any(directory == m.get("mountPath") or directory.startswith(m.get("mountPath", "").rstrip("/") + "/") for m in mounts):
        r.err(w, f"model {name!r} is read from {directory!r}, which is not under a read-only volume mount")
    if pod_labels(template).get(MODEL_LABEL) != name:
        r.err(w, f"pod label {MODEL_LABEL} is {pod_labels(template).get(MODEL_LABEL)!r}, but the worker serves {name!r}")


def check_worker_metrics(r: Render, w: dict, c: dict) -> None:
    listen = setting(c, "--metrics-listen", "DARKROOM_METRICS_LISTEN")
    hp = host_port(listen[-1]) if listen else None
    if not hp:
        r.err(w, "the worker needs --metrics-listen HOST:PORT for Prometheus")
    elif hp[0] in ("127.0.0.1", "localhost", "::1"):
        r.err(w, f"--metrics-listen {listen[-1]} is a loopback address: Prometheus cannot scrape it")
    elif resolve_port(c, "metrics") != hp[1]:
        r.err(w, f"the container port named 'metrics' must be {hp[1]}, the port of --metrics-listen")


# ---- KEDA ScaledObject ----------------------------------------------------------------------


def check_scaled_objects(r: Render) -> None:
    targeted: dict[str, list[dict]] = {}
    for so in r.of_kind("ScaledObject"):
        if (so.get("apiVersion"), so.get("kind")) != SCALED_OBJECT:
            r.err(so, f"apiVersion must be {SCALED_OBJECT[0]}")
        spec = so.get("spec") or {}
        for key in set(spec) - SCALED_OBJECT_SPEC:
            r.err(so, f"spec.{key} is not a field of KEDA's ScaledObject")
        check_replica_bounds(r, so, spec)
        target = check_scale_target(r, so, spec.get("scaleTargetRef") or {})
        if target:
            targeted.setdefault(target["metadata"]["name"], []).append(so)
        triggers = spec.get("triggers")
        if not isinstance(triggers, list) or not triggers:
            r.err(so, "spec.triggers must list at least one trigger")
            continue
        for i, t in enumerate(triggers):
            check_trigger(r, so, i, t, target)
    for w, template in r.workloads():
        if w.get("kind") == "Deployment" and darkroom(template, "darkroom-worker", "run"):
            scalers = targeted.get(w["metadata"]["name"], [])
            if len(scalers) != 1:
                r.err(w, f"a worker Deployment needs exactly one ScaledObject, has {len(scalers)}")
            if "replicas" in (w.get("spec") or {}):
                r.err(w, "spec.replicas is set: every apply would reset what KEDA chose (leave it out)")


def check_replica_bounds(r: Render, so: dict, spec: dict) -> None:
    low, high = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
    if as_int(low) is None or as_int(high) is None or not 0 <= low <= high or high < 1:
        r.err(so, f"need integers 0 <= minReplicaCount ({low!r}) <= maxReplicaCount ({high!r}), maxReplicaCount >= 1")
    for key in ("pollingInterval", "cooldownPeriod", "initialCooldownPeriod"):
        if key in spec and (as_int(spec[key]) is None or spec[key] < 0):
            r.err(so, f"spec.{key} must be a non-negative integer")
    idle = spec.get("idleReplicaCount")
    if idle is not None and (as_int(idle) is None or as_int(low) is None or idle >= low):
        r.err(so, "spec.idleReplicaCount must be an integer below minReplicaCount")


def check_scale_target(r: Render, so: dict, ref: dict) -> dict | None:
    kind, api = ref.get("kind", "Deployment"), ref.get("apiVersion", "apps/v1")
    if (api, kind) != ("apps/v1", "Deployment"):
        r.err(so, f"scaleTargetRef must name a Deployment (apps/v1), not {api} {kind}")
        return None
    target = r.find("Deployment", ref.get("name"), ns(so)) if ref.get("name") else None
    if not target:
        r.err(so, f"scaleTargetRef names Deployment {ref.get('name')!r}, which is not in the render (namespace {ns(so)})")
    return target


def check_trigger(r: Render, so: dict, i: int, t: dict, target: dict | None) -> None:
    where = f"trigger {i}"
    if t.get("type") != "prometheus":
        r.err(so, f"{where}: type must be prometheus (queue depth plus running jobs), not {t.get('type')!r}")
        return
    meta = t.get("metadata") or {}
    for key, value in meta.items():
        if not isinstance(value, str):
            r.err(so, f"{where}: metadata.{key} must be a string (KEDA's metadata is a map of strings), got {value!r}")
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", str(meta.get("serverAddress", ""))):
        r.err(so, f"{where}: metadata.serverAddress must be Prometheus' http(s) URL")
    for key, minimum in (("threshold", 0.0), ("activationThreshold", None)):
        if key not in meta and key == "activationThreshold":
            continue
        try:
            value = float(meta.get(key))
            ok = value > minimum if minimum is not None else value >= 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            r.err(so, f"{where}: metadata.{key} must be a number {'above 0' if minimum is not None else 'of 0 or more'}, got {meta.get(key)!r}")
    check_query(r, so, where, str(meta.get("query", "")), target)


def check_query(r: Render, so: dict, where: str, query: str, target: dict | None) -> None:
    for metric in ("darkroom_queue_depth", "darkroom_jobs_running"):
        if metric not in query:
            r.err(so, f"{where}: the query must count {metric}")
    models = set(re.findall(r'model="([^"]*)"', query))
    worker = darkroom((target.get("spec") or {}).get("template") or {}, "darkroom-worker", "run") if target else None
    served = {m for m, _ in worker_model(worker)} if worker else set()
    if target and not worker:
        r.err(so, f"{where}: its target {kn(target)} runs no `darkroom-worker run`")
    elif target and (not models or models != served):
        r.err(so, f"{where}: the query counts model {sorted(models)}, but {kn(target)} serves {sorted(served)}")
    if query.count("(") != query.count(")") or query.count("{") != query.count("}"):
        r.err(so, f"{where}: the query's brackets do not balance")


# ---- Prometheus Operator PodMonitor ---------------------------------------------------------


def check_pod_monitors(r: Render) -> None:
    monitors = list(r.of_kind("PodMonitor"))
    scraped: dict[str, set[int]] = {}
    for pm in monitors:
        if (pm.get("apiVersion"), pm.get("kind")) != POD_MONITOR:
            r.err(pm, f"apiVersion must be {POD_MONITOR[0]}")
        spec = pm.get("spec") or {}
        for key in set(spec) - POD_MONITOR_SPEC:
            r.err(pm, f"spec.{key} is not a field of the PodMonitor")
        endpoints = spec.get("podMetricsEndpoints")
        if not isinstance(endpoints, list) or not endpoints:
            r.err(pm, "spec.podMetricsEndpoints must list at least one endpoint")
            endpoints = []
        for i, e in enumerate(endpoints):
            for key in set(e) - POD_METRICS_ENDPOINT:
                r.err(pm, f"podMetricsEndpoints[{i}].{key} is not a field of an endpoint")
            if not isinstance(e.get("port"), str) or not e["port"]:
                r.err(pm, f"podMetricsEndpoints[{i}] must name a container port (port)")
            if not str(e.get("path", "/metrics")).startswith("/"):
                r.err(pm, f"podMetricsEndpoints[{i}].path must start with /")
        selected = [(w, t) for w, t in r.workloads() if ns(w) == ns(pm) and labels_match(spec.get("selector"), pod_labels(t))]
        if not selected:
            r.err(pm, "its selector selects no pods of the render")
        ports = [e.get("port") for e in endpoints]
        for port in ports:
            if not any(resolve_port(c, port) for _, t in selected for c in containers(t)):
                r.err(pm, f"endpoint port {port!r} is a named port of none of the pods it selects")
        for w, t in selected:
            found = {resolve_port(c, p) for c in containers(t) for p in ports} - {None}
            if not found:
                r.err(pm, f"selects {kn(w)}, whose containers have none of the ports {ports}")
            scraped.setdefault(kn(w), set()).update(found)
    check_everything_scraped(r, scraped)


def check_everything_scraped(r: Render, scraped: dict[str, set[int]]) -> None:
    """The API's /metrics (its listen port) and every worker's metrics port are scraped."""
    for w, t in r.workloads():
        api, worker = darkroom(t, "darkroom-api", "serve"), darkroom(t, "darkroom-worker", "run")
        if api:
            listen = host_port(parse_flags(command_line(api)[2:]).get("--listen", [""])[-1])
            if listen and listen[1] not in scraped.get(kn(w), set()):
                r.err(w, f"no PodMonitor scrapes the API's port {listen[1]}")
        if worker:
            port = resolve_port(worker, "metrics")
            if port is None or port not in scraped.get(kn(w), set()):
                r.err(w, "no PodMonitor scrapes the worker's port 'metrics'")


# ---- the binaries' flags --------------------------------------------------------------------


def check_flags(r: Render, bin_dir: Path) -> None:
    """Each darkroom container's command line, with its DARKROOM_* variables turned into the
    flags they stand for, is parsed by the real binary: `--help` at the end makes clap print the
    help once every argument before it parsed, or fail on an unknown flag or a bad value, before
    the program does anything."""
    helps: dict[tuple[str, str], dict[str, str]] = {}
    for w, template in r.workloads():
        for c in containers(template):
            line = command_line(c)
            if len(line) < 2 or line[0] not in ("darkroom-api", "darkroom-worker"):
                continue
            binary = bin_dir / line[0]
            if (line[0], line[1]) not in helps:
                helps[(line[0], line[1])] = env_flags(run_binary(binary, [line[1], "--help"]).stdout)
            flag_of = helps[(line[0], line[1])]
            argv = line[1:]
            for e in c.get("env") or []:
                name = e.get("name", "")
                if not name.startswith("DARKROOM_") and name not in SECRET_KEYS:
                    continue
                if name not in flag_of:
                    r.err(w, f"`{line[0]} {line[1]}` reads no variable {name} (its --help)")
                elif "value" in e:
                    argv.append(f"{flag_of[name]}={e['value']}")
            done = run_binary(binary, [*argv, "--help"])
            if done.returncode != 0:
                message = " ".join(done.stderr.strip().splitlines()[:1])
                r.err(w, f"`{line[0]} {line[1]}` rejects its arguments {argv[1:]}: {message}")


def env_flags(help_text: str) -> dict[str, str]:
    """{variable: flag} from a clap --help: each option's block, from its `--flag` line to the
    next, ends with `[env: NAME=...]`."""
    blocks = re.split(r"\n(?=\s*(?:-\w, )?--[a-z0-9])", help_text)
    found = {}
    for block in blocks:
        flag = re.match(r"\s*(?:-\w, )?(--[a-z0-9][a-z0-9-]*)", block)
        env = re.search(r"\[env:\s*([A-Z0-9_]+)", " ".join(block.split()))
        if flag and env:
            found[env.group(1)] = flag.group(1)
    return found


def run_binary(binary: Path, argv: list[str]) -> subprocess.CompletedProcess:
    """The binary with a bare environment, so that the caller's DARKROOM_* variables do not count."""
    try:
        return subprocess.run([str(binary), *argv], capture_output=True, text=True, timeout=30,
                              env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RuntimeError(f"cannot run {binary}: {e}") from e


# ---- all of it ------------------------------------------------------------------------------


def check(docs: list[dict], bin_dir: Path | None = None, schemas: bool = True) -> list[str]:
    r = Render(docs)
    if not check_identity(r):
        return r.errors
    if schemas:
        check_schemas(r)
    for w, template in r.workloads():
        check_pod_template(r, w, template)
    check_deployments(r)
    check_services(r)
    check_secrets(r)
    check_api(r)
    check_workers(r)
    check_scaled_objects(r)
    check_pod_monitors(r)
    if bin_dir:
        check_flags(r, bin_dir)
    return r.errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", nargs="?", default="deploy/k8s", type=Path, help="the kustomization to check (default deploy/k8s)")
    parser.add_argument("--kubectl", default="kubectl", help="the kubectl whose `kustomize` renders (default: kubectl on PATH)")
    parser.add_argument("--bin-dir", type=Path, help="directory with darkroom-api and darkroom-worker: check the flags against their --help")
    parser.add_argument("--self-test", action="store_true", help="also check that broken copies fail")
    parser.add_argument("--print", action="store_true", help="print the rendered manifests")
    parser.add_argument("--readme", type=Path, default=Path("deploy/README.md"),
                        help="the documentation whose examples the self-test renders (default deploy/README.md)")
    args = parser.parse_args()

    started = time.monotonic()
    try:
        docs = render(args.kubectl, args.directory)
        if args.print:
            print(yaml.safe_dump_all(docs, sort_keys=False), end="")
        errors = check(docs, bin_dir=args.bin_dir)
    except RuntimeError as e:  # kustomize failed, or a binary's --help did
        print(f"check-k8s: {e}", file=sys.stderr)
        return 1
    for e in errors:
        print(f"check-k8s: ERROR {e}")
    kinds = ", ".join(sorted({d["kind"] for d in docs}))
    flags = " and the binaries' flags" if args.bin_dir else ""
    print(f"check-k8s: {args.directory}: {len(docs)} objects ({kinds}) against Kubernetes {' and '.join(K8S_VERSIONS)}{flags}: "
          f"{f'FAILED, {len(errors)} error(s)' if errors else 'ok'}")
    status = 1 if errors else 0
    if args.self_test:
        from check_k8s_selftest import self_test

        status |= self_test(args.kubectl, args.directory, docs, args.bin_dir, args.readme if args.readme.exists() else None)
    print(f"check-k8s: {time.monotonic() - started:.1f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
