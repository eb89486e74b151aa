"""The self-test of tools/check_k8s.py: copies of deploy/k8s broken in known ways, before and after
rendering, must each fail with the expected error, so that the check cannot pass vacuously; and
deploy/README.md's recipes (another model, the operator's overlay, the models-loader pod) must
pass, so that the documentation stays true.
"""
from __future__ import annotations

import copy
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import yaml

from check_k8s import (GPU, K8S_VERSIONS, MODEL_LABEL, Render, check, check_container_security, containers, render)


def first(docs: list[dict], kind: str, pred: Callable[[dict], bool] = lambda d: True) -> dict:
    return next(d for d in docs if d.get("kind") == kind and pred(d))


def api_container(docs: list[dict]) -> dict:
    return first(docs, "Deployment", lambda d: d["metadata"]["name"] == "darkroom-api")["spec"]["template"]["spec"]["containers"][0]


def worker(docs: list[dict]) -> dict:
    return first(docs, "Deployment", lambda d: d["metadata"]["name"].startswith("darkroom-worker"))


def worker_container(docs: list[dict]) -> dict:
    return worker(docs)["spec"]["template"]["spec"]["containers"][0]


def set_arg(c: dict, flag: str, value: str | None) -> None:
    args = c["args"]
    i = args.index(flag)
    if value is None:
        del args[i:i + 2]
    else:
        args[i + 1] = value


def trigger(docs: list[dict]) -> dict:
    return first(docs, "ScaledObject")["spec"]["triggers"][0]


# (what is broken, how, a piece of the error that must result, whether the schemas are needed)
MUTATIONS: list[tuple[str, Callable[[list[dict]], None], str, bool]] = [
    ("worker grace too short", lambda d: worker(d)["spec"]["template"]["spec"].update(terminationGracePeriodSeconds=70),
     "terminationGracePeriodSeconds (70) must exceed", False),
    ("worker grace flag left out", lambda d: set_arg(worker_container(d), "--shutdown-grace-secs", None),
     "set --shutdown-grace-secs explicitly", False),
    ("readiness probe on a port that does not exist",
     lambda d: api_container(d)["readinessProbe"]["httpGet"].update(port="htttp"), "readinessProbe uses port 'htttp'", False),
    ("liveness probe on another path", lambda d: api_container(d)["livenessProbe"]["httpGet"].update(path="/readyz"),
     "livenessProbe must be GET /healthz", False),
    ("Service selecting nothing", lambda d: first(d, "Service")["spec"]["selector"].update({"app.kubernetes.io/component": "apii"}),
     "selects no pods", False),
    ("Service selecting the workers", lambda d: first(d, "Service")["spec"]["selector"].update({"app.kubernetes.io/component": "worker"}),
     "selects the worker pods", False),
    ("Service to a wrong target port", lambda d: first(d, "Service")["spec"]["ports"][0].update(targetPort=9090),
     "does not reach the port the API listens on", False),
    ("API on loopback", lambda d: set_arg(api_container(d), "--listen", "127.0.0.1:8080"), "non-loopback", False),
    ("ScaledObject targeting a missing Deployment",
     lambda d: first(d, "ScaledObject")["spec"]["scaleTargetRef"].update(name="darkroom-worker-nope"), "not in the render", False),
    ("ScaledObject query of another model",
     lambda d: trigger(d)["metadata"].update(query=trigger(d)["metadata"]["query"].replace('model="', 'model="x')),
     "the query counts model", False),
    ("ScaledObject query without running jobs",
     lambda d: trigger(d)["metadata"].update(query='max(darkroom_queue_depth{model="sd15"})'), "must count darkroom_jobs_running", False),
    ("ScaledObject trigger of another type", lambda d: trigger(d).update(type="redis"), "type must be prometheus", False),
    ("ScaledObject threshold as a YAML number", lambda d: trigger(d)["metadata"].update(threshold=2), "must be a string", False),
    ("ScaledObject without serverAddress", lambda d: trigger(d)["metadata"].pop("serverAddress"), "serverAddress", False),
    ("ScaledObject min above max", lambda d: first(d, "ScaledObject")["spec"].update(minReplicaCount=9, maxReplicaCount=8),
     "minReplicaCount", False),
    ("ScaledObject field misspelt", lambda d: first(d, "ScaledObject")["spec"].update(minReplicas=1), "spec.minReplicas is not a field", False),
    ("ScaledObject of the wrong API version", lambda d: first(d, "ScaledObject").update(apiVersion="keda.sh/v1"),
     "apiVersion must be keda.sh/v1alpha1", False),
    ("worker Deployment with replicas", lambda d: worker(d)["spec"].update(replicas=1), "spec.replicas is set", False),
    ("worker Deployment without ScaledObject", lambda d: d.remove(first(d, "ScaledObject")), "needs exactly one ScaledObject", False),
    ("PodMonitor endpoint on a missing port",
     lambda d: first(d, "PodMonitor")["spec"]["podMetricsEndpoints"][1].update(port="metric"), "endpoint port 'metric'", False),
    ("PodMonitor selecting nothing",
     lambda d: first(d, "PodMonitor")["spec"]["selector"]["matchLabels"].update({"app.kubernetes.io/name": "other"}), "selects no pods", False),
    ("PodMonitor without endpoints", lambda d: first(d, "PodMonitor")["spec"].pop("podMetricsEndpoints"), "podMetricsEndpoints", False),
    ("worker metrics port renamed", lambda d: worker_container(d)["ports"][0].update(name="prom"), "port named 'metrics'", False),
    ("worker metrics on loopback", lambda d: set_arg(worker_container(d), "--metrics-listen", "127.0.0.1:9090"), "loopback", False),
    ("worker without a GPU", lambda d: worker_container(d)["resources"]["limits"].pop(GPU), "exactly one GPU", False),
    ("worker without the GPU toleration", lambda d: worker(d)["spec"]["template"]["spec"].pop("tolerations"), "toleration", False),
    ("worker model not matching its label",
     lambda d: worker(d)["spec"]["template"]["metadata"]["labels"].update({MODEL_LABEL: "sdxl"}), "but the worker serves", False),
    ("worker model outside the models volume",
     lambda d: next(e for e in worker_container(d)["env"] if e["name"] == "DARKROOM_MODELS").update(value="sd15=/data/sd15"),
     "not under a read-only volume mount", False),
    ("Deployment selector not matching its pods",
     lambda d: worker(d)["spec"]["selector"]["matchLabels"].update({MODEL_LABEL: "other"}), "does not select the pod template", False),
    ("container running as root", lambda d: worker(d)["spec"]["template"]["spec"]["securityContext"].update(runAsUser=0),
     "runAsUser must be 10001", False),
    ("mount of an undefined volume", lambda d: worker_container(d)["volumeMounts"][0].update(name="modles"), "mounts volume 'modles'", False),
    ("secret without REDIS_URL", lambda d: first(d, "Secret")["stringData"].pop("REDIS_URL"), "gets no REDIS_URL", False),
    ("a name Kubernetes refuses", lambda d: worker(d)["metadata"].update(name="darkroom-worker-SD_15"), "a DNS name", False),
    ("a label value Kubernetes refuses",
     lambda d: worker(d)["spec"]["template"]["metadata"]["labels"].update({MODEL_LABEL: "stabilityai/sdxl"}), "a label value is", False),
    ("migration Job missing", lambda d: d.remove(first(d, "Job")), "no Job runs `darkroom-api migrate`", False),
    ("schema: a port number as a string", lambda d: api_container(d)["ports"][0].update(containerPort="8080"),
     "schema: spec.template.spec.containers.0.ports.0.containerPort", True),
    ("schema: a misspelt field", lambda d: api_container(d).update(readinesProbe={}), "schema", True),
]


def self_test(kubectl: str, directory: Path, docs: list[dict], bin_dir: Path | None, readme: Path | None) -> int:
    """Every mutation and broken tree must be caught; the documented recipes must pass."""
    passed, failed = 0, []
    for name, mutate, expected, schemas in MUTATIONS:
        broken = copy.deepcopy(docs)
        mutate(broken)
        errors = check(broken, schemas=schemas)
        if any(expected in e for e in errors):
            passed += 1
        else:
            failed.append(f"{name}: expected an error with {expected!r}, got {errors or 'none'}")
    cases: list[tuple[str, Callable[[], str | None]]] = [
        ("broken copy of deploy/k8s", lambda: broken_tree(kubectl, directory)),
        ("copy of deploy/k8s that kustomize cannot render", lambda: unrenderable_tree(kubectl, directory)),
        ("flags and variables the binaries reject", lambda: unknown_flag(docs, bin_dir)),
        ("another model, added as documented", lambda: another_model(kubectl, directory, bin_dir)),
        ("the documented overlay", lambda: documented_overlay(kubectl, directory, readme, bin_dir)),
        ("the documented models-loader pod", lambda: documented_loader(readme)),
    ]
    for name, case in cases:
        outcome = case()
        if outcome is None:
            passed += 1
        elif outcome.startswith("skipped"):
            print(f"check-k8s self-test: {name}: {outcome}")
        else:
            failed.append(f"{name}: {outcome}")
    for f in failed:
        print(f"check-k8s self-test FAILED: {f}")
    print(f"check-k8s self-test: {passed} passed, {len(failed)} failed")
    return 1 if failed else 0


def broken_tree(kubectl: str, directory: Path) -> str | None:
    """Break the sources (a worker grace shorter than its flag, a query of another model),
    render them with kustomize and expect both errors."""
    with tempfile.TemporaryDirectory() as tmp:
        copy_dir = Path(tmp) / "k8s"
        shutil.copytree(directory, copy_dir)
        edit(copy_dir / "worker/deployment.yaml", "terminationGracePeriodSeconds: 90", "terminationGracePeriodSeconds: 30")
        edit(copy_dir / "models/sd15/kustomization.yaml", 'max(darkroom_jobs_running{model="sd15"})', 'max(darkroom_jobs_running{model="sd51"})')
        errors = check(render(kubectl, copy_dir), schemas=False)
    expected = ("terminationGracePeriodSeconds (30) must exceed", "the query counts model ['sd15', 'sd51']")
    missing = [e for e in expected if not any(e in x for x in errors)]
    return f"expected errors with {missing}, got {errors or 'none'}" if missing else None


def unrenderable_tree(kubectl: str, directory: Path) -> str | None:
    with tempfile.TemporaryDirectory() as tmp:
        copy_dir = Path(tmp) / "k8s"
        shutil.copytree(directory, copy_dir)
        edit(copy_dir / "kustomization.yaml", "  - models/sd15\n", "  - models/sd15\n  - models/missing\n")
        try:
            render(kubectl, copy_dir)
        except RuntimeError:
            return None
    return "kustomize rendered a kustomization that names a missing directory"


def unknown_flag(docs: list[dict], bin_dir: Path | None) -> str | None:
    """With the binaries: a misspelt flag, a bad value in a variable and a variable the binary
    does not read are each caught."""
    if not bin_dir:
        return "skipped (no --bin-dir)"
    cases = [
        (lambda c: c["args"].extend(["--shutdown-grace", "60"]), "unexpected argument '--shutdown-grace'"),
        (lambda c: c["env"].append({"name": "DARKROOM_THREADS", "value": "many"}), "invalid value 'many'"),
        (lambda c: c["env"].append({"name": "DARKROOM_MODEL", "value": "sd15=/models/sd15"}), "reads no variable DARKROOM_MODEL"),
    ]
    for mutate, expected in cases:
        broken = copy.deepcopy(docs)
        mutate(worker_container(broken))
        errors = check(broken, bin_dir=bin_dir, schemas=False)
        if not any(expected in e for e in errors):
            return f"expected an error with {expected!r}, got {errors or 'none'}"
    return None


def another_model(kubectl: str, directory: Path, bin_dir: Path | None) -> str | None:
    """deploy/README.md's recipe for another model (copy models/sd15, replace sd15, list it)
    passes; the same with the query left at sd15 fails."""
    with tempfile.TemporaryDirectory() as tmp:
        copy_dir = Path(tmp) / "k8s"
        shutil.copytree(directory, copy_dir)
        shutil.copytree(copy_dir / "models/sd15", copy_dir / "models/sdxl")
        source = (copy_dir / "models/sd15/kustomization.yaml").read_text()
        (copy_dir / "models/sdxl/kustomization.yaml").write_text(source.replace("sd15", "sdxl"))
        edit(copy_dir / "kustomization.yaml", "  - models/sd15\n", "  - models/sd15\n  - models/sdxl\n")
        docs = render(kubectl, copy_dir)
        errors = check(docs, bin_dir=bin_dir)
        workers = sorted(d["metadata"]["name"] for d in docs if d["kind"] == "Deployment" and "worker" in d["metadata"]["name"])
        if errors or workers != ["darkroom-worker-sd15", "darkroom-worker-sdxl"]:
            return f"the recipe gave workers {workers} and errors {errors or 'none'}"
        half_done = "\n".join(line if "darkroom_queue_depth" in line else line.replace("sd15", "sdxl") for line in source.splitlines())
        (copy_dir / "models/sdxl/kustomization.yaml").write_text(half_done)
        errors = check(render(kubectl, copy_dir), schemas=False)
    return None if any("the query counts model ['sd15']" in e for e in errors) else f"a query left at sd15 was not caught: {errors}"


def readme_block(readme: Path, opening: str) -> str | None:
    """The fenced block of deploy/README.md whose first line is `opening`, unindented."""
    text = readme.read_text()
    m = re.search(r"^( *)```(?:yaml|sh)\n\1" + re.escape(opening) + r"\n(.*?)^\1```", text, re.M | re.S)
    if not m:
        return None
    return "\n".join(line[len(m.group(1)):] for line in (opening + "\n" + m.group(2)).splitlines()) + "\n"


def documented_overlay(kubectl: str, directory: Path, readme: Path | None, bin_dir: Path | None) -> str | None:
    """The overlay example of deploy/README.md ("What an operator sets") renders and passes,
    with the images, the Secret and the Prometheus settings it sets."""
    if not readme:
        return "skipped (no README)"
    block = readme_block(readme, "# my-darkroom/kustomization.yaml")
    if not block:
        return f"{readme} has no yaml block opening with '# my-darkroom/kustomization.yaml'"
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(directory, Path(tmp) / "darkroom/deploy/k8s")
        overlay = Path(tmp) / "my-darkroom"
        overlay.mkdir()
        (overlay / "kustomization.yaml").write_text(block)
        (overlay / "backends.env").write_text("DATABASE_URL=postgres://darkroom:s3cret@pg.internal:5432/darkroom\n"
                                              "REDIS_URL=redis://:s3cret@redis.internal:6379\n")
        docs = render(kubectl, overlay)
    errors = check(docs, bin_dir=bin_dir)
    secret = first(docs, "Secret")
    images = {c["image"] for _, t in Render(docs).workloads() for c in containers(t)}
    if "stringData" in secret or not all(i.startswith("registry.example.com/") for i in images):
        errors.append(f"the overlay left the template's Secret or the images {sorted(images)}")
    monitor, scaler = first(docs, "PodMonitor"), first(docs, "ScaledObject")
    if "release" not in monitor["metadata"].get("labels", {}) or "kube-prometheus-stack" not in scaler["spec"]["triggers"][0]["metadata"]["serverAddress"]:
        errors.append("the overlay did not set the PodMonitor's label or KEDA's Prometheus")
    return f"errors: {errors}" if errors else None


def documented_loader(readme: Path | None) -> str | None:
    """The models-loader pod of deploy/README.md is a valid Pod that meets the namespace's
    restricted policy (non-root, seccomp, no privilege escalation, no capabilities)."""
    import kubernetes_validate

    if not readme:
        return "skipped (no README)"
    block = readme_block(readme, "kubectl -n darkroom apply -f - <<'YAML'")
    pod_text = block.split("\n", 1)[1].split("\nYAML\n")[0] if block and "\nYAML\n" in block else None
    if not pod_text:
        return f"{readme} has no models-loader heredoc"
    pod = yaml.safe_load(pod_text)
    try:
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(pod, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return f"schema: {'.'.join(str(p) for p in e.path)}: {e.message}"
    r = Render([pod])
    for c in pod["spec"]["containers"]:
        sc = c.get("securityContext") or {}
        # The loader writes to the volume, not to its root file system: that one need not be read-only.
        check_container_security(r, pod, {**c, "securityContext": {**sc, "readOnlyRootFilesystem": True}}, pod["spec"].get("securityContext") or {}, "loader")
    return f"errors: {r.errors}" if r.errors else None


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    if old not in text:
        raise RuntimeError(f"self-test: {path} no longer holds {old!r}: update the self-test")
    path.write_text(text.replace(old, new))
