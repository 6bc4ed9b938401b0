"""What the rendered Kubernetes manifests must hold for hello, beyond the schema.

kubernetes-validate says the YAML is a valid Deployment; this says it is *our*
Deployment: probes on hello's own health routes, nobody (65534) and a read-only
root, a grace period that covers the preStop sleep plus hello's drain, an
exec-able in-memory /tmp, a PDB and an HPA that select it, a Service that reaches
its port, a NetworkPolicy that admits only that port and lets nothing out.
`findings(docs)` lists what is wrong, one line each; [] is a pass.
"""

from __future__ import annotations

HEALTH = "/healthz"
READY = "/readyz"
NOBODY = 65534
DO_HEALTHCHECK_PATH = "service.beta.kubernetes.io/do-loadbalancer-healthcheck-path"


def _one(docs: list[dict], kind: str) -> dict | None:
    found = [doc for doc in docs if doc.get("kind") == kind]
    return found[0] if len(found) == 1 else None


def _env(container: dict, name: str) -> str | None:
    for item in container.get("env", []):
        if item.get("name") == name:
            return item.get("value")
    return None


def _probe_path(container: dict, probe: str) -> str | None:
    return ((container.get(probe) or {}).get("httpGet") or {}).get("path")


def _container_findings(pod: dict, container: dict) -> list[str]:
    out = []
    for probe, path in (("startupProbe", HEALTH), ("livenessProbe", HEALTH), ("readinessProbe", READY)):
        if _probe_path(container, probe) != path:
            out.append(f"{probe}: expected an httpGet on {path}, got {_probe_path(container, probe)!r}")
    pod_security = pod.get("securityContext") or {}
    security = {**pod_security, **(container.get("securityContext") or {})}
    if security.get("runAsNonRoot") is not True:
        out.append("securityContext: runAsNonRoot must be true")
    if security.get("runAsUser") != NOBODY:
        out.append(f"securityContext: runAsUser must be {NOBODY}, got {security.get('runAsUser')!r}")
    if (container.get("securityContext") or {}).get("readOnlyRootFilesystem") is not True:
        out.append("securityContext: readOnlyRootFilesystem must be true")
    if (container.get("securityContext") or {}).get("allowPrivilegeEscalation") is not False:
        out.append("securityContext: allowPrivilegeEscalation must be false")
    mounts = {m.get("mountPath"): m.get("name") for m in container.get("volumeMounts", [])}
    volumes = {v.get("name"): v for v in pod.get("volumes", [])}
    tmp = volumes.get(mounts.get("/tmp")) or {}
    if (tmp.get("emptyDir") or {}).get("medium") != "Memory":
        out.append("/tmp must be an emptyDir with medium Memory (the binary unpacks there)")
    drain = float(_env(container, "HELLO_DRAIN_TIMEOUT") or 10)
    pre_stop = ((container.get("lifecycle") or {}).get("preStop") or {}).get("sleep", {}).get("seconds", 0)
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if grace <= drain + pre_stop:
        out.append(f"terminationGracePeriodSeconds {grace} must exceed preStop {pre_stop}s "
                   f"+ HELLO_DRAIN_TIMEOUT {drain:g}s")
    resources = container.get("resources") or {}
    if not (resources.get("requests") and (resources.get("limits") or {}).get("memory")):
        out.append("resources: requests and a memory limit are required")
    return out


def findings(docs: list[dict], overlay: str = "base") -> list[str]:
    """Every broken property of the rendered manifests; [] if none."""
    out = []
    deployment = _one(docs, "Deployment")
    if deployment is None:
        return ["expected exactly one Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    labels = deployment["spec"]["template"]["metadata"].get("labels", {})
    containers = pod.get("containers", [])
    if len(containers) != 1:
        return ["expected exactly one container"]
    container = containers[0]
    out += _container_findings(pod, container)
    pdb = _one(docs, "PodDisruptionBudget")
    if pdb is None:
        out.append("PodDisruptionBudget: missing")
    elif not _selects(pdb["spec"].get("selector", {}), labels):
        out.append("PodDisruptionBudget: its selector does not match the pods")
    hpa = _one(docs, "HorizontalPodAutoscaler")
    if hpa is None or hpa["spec"]["scaleTargetRef"].get("name") != deployment["metadata"]["name"]:
        out.append("HorizontalPodAutoscaler: missing or not aimed at the Deployment")
    service = _one(docs, "Service")
    ports = {p.get("name"): p.get("containerPort") for p in container.get("ports", [])}
    if service is None:
        out.append("Service: missing")
    else:
        if service["spec"].get("selector") != {k: labels.get(k) for k in service["spec"].get("selector", {})}:
            out.append("Service: its selector does not match the pods")
        targets = [p.get("targetPort") for p in service["spec"].get("ports", [])]
        if not any(t in ports or t in ports.values() for t in targets):
            out.append(f"Service: targetPort {targets} is not a container port {ports}")
    out += _network_policy_findings(_one(docs, "NetworkPolicy"), labels, ports)
    if str(ports.get("http")) != (_env(container, "PORT") or "8080"):
        out.append(f"the container port {ports.get('http')} is not the PORT hello listens on")
    if overlay == "do":
        image = container.get("image", "")
        if not image.startswith("registry.digitalocean.com/") or "@sha256:" not in image:
            out.append(f"image {image!r}: expected registry.digitalocean.com/...@sha256:<digest>")
        if service is None or service["spec"].get("type") != "LoadBalancer":
            out.append("Service: the DO overlay needs type LoadBalancer")
        elif service["metadata"].get("annotations", {}).get(DO_HEALTHCHECK_PATH) != READY:
            out.append(f"Service: {DO_HEALTHCHECK_PATH} must be {READY}")
    return out


def _selects(selector: dict, labels: dict) -> bool:
    wanted = selector.get("matchLabels", {})
    return bool(wanted) and all(labels.get(k) == v for k, v in wanted.items())


def _network_policy_findings(policy: dict | None, labels: dict, ports: dict) -> list[str]:
    if policy is None:
        return ["NetworkPolicy: missing"]
    spec = policy["spec"]
    out = []
    if not _selects(spec.get("podSelector", {}), labels):
        out.append("NetworkPolicy: its podSelector does not match the pods")
    if sorted(spec.get("policyTypes", [])) != ["Egress", "Ingress"]:
        out.append("NetworkPolicy: policyTypes must be Ingress and Egress")
    admitted = [port.get("port") for rule in spec.get("ingress", [])
                for port in rule.get("ports") or [{"port": "any"}]]
    if not admitted or any(port not in ports and port not in ports.values() for port in admitted):
        out.append(f"NetworkPolicy: ingress must admit only the container port, got {admitted}")
    if spec.get("egress"):
        out.append("NetworkPolicy: hello opens no connection; egress must be []")
    return out
