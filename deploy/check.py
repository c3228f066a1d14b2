#!/usr/bin/env python3
"""Checks the Kubernetes manifests of deploy/ against spin.toml and the
spin-operator's SpinApp definition, offline. Run it through deploy/check.sh.

  - every YAML document under deploy/ parses; every manifest is listed in its
    directory's kustomization.yaml (and nothing listed is missing);
  - SpinApps are core.spinkube.dev/v1alpha1 and use only fields of the
    operator's SpinApp (as read at the version named in deploy/README.md), all
    run the same image, and name an executor defined here;
  - the scorer SpinApp keeps exactly the Redis-trigger components, the HTTP
    SpinApp exactly the HTTP ones; together they cover spin.toml;
  - each SpinApp provides every variable spin.toml requires (Spin refuses to
    start otherwise, whatever components it keeps), jwt_secret and
    metrics_token where its components use them, and every variable its
    components use whose default is a loopback address; every variable it sets
    is declared in spin.toml;
  - secret-like values (secret variables, tokens, passwords, URLs) come only
    from Secrets: no literal in a SpinApp or container env, no URL with
    credentials anywhere, no Secret manifest with data;
  - every Secret, ConfigMap and key referenced exists (Secrets: as
    deploy/secrets.sh creates them); every label selector selects the pods of
    exactly one workload; the PodMonitor scrapes only HTTP pods on the
    operator's port name, with the app's metrics_token as its bearer token; probes are /health/live and /health on the HTTP
    SpinApp, none on the scorer; one ticker, on the scorer's channel;
  - with kubectl installed, `kubectl kustomize` builds every kustomization.
Exits 1 with one line per problem.
"""
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

try:
    import yaml
except ImportError:
    sys.exit("check: PyYAML is missing: run deploy/check.sh, which installs it")

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent
SPINAPP_API = "core.spinkube.dev/v1alpha1"
# What the spin-operator gives every pod it creates (internal/controller,
# pkg/spinapp): the container port name and number, and the app-name label.
OPERATOR_PORT_NAME, OPERATOR_PORT = "http-app", 80
OPERATOR_NAME_LABEL = "core.spinkube.dev/app-name"

# Fields of the SpinApp and SpinAppExecutor specs (api/v1alpha1 of the
# spin-operator); None accepts any value below it.
KEYREF = {"name": None, "key": None, "optional": None}
PROBE = {"httpGet": {"path": None, "httpHeaders": None}, "initialDelaySeconds": None,
         "timeoutSeconds": None, "periodSeconds": None, "successThreshold": None,
         "failureThreshold": None}
OPTIONS = {"name": None, "value": None,
           "valueFrom": {"configMapKeyRef": KEYREF, "secretKeyRef": KEYREF}}
STORE = {"name": None, "type": None, "options": OPTIONS}
SPINAPP_SPEC = {
    **dict.fromkeys(["executor", "image", "imagePullSecrets", "replicas", "enableAutoscaling",
                     "volumes", "volumeMounts", "serviceAnnotations", "deploymentAnnotations",
                     "podAnnotations", "podLabels", "components", "serviceAccountName",
                     "invocationLimits"]),
    "checks": {"readiness": PROBE, "liveness": PROBE},
    "resources": {"limits": None, "requests": None},
    "runtimeConfig": {"loadFromSecret": None, "sqliteDatabases": STORE, "keyValueStores": STORE,
                      "llmCompute": {"type": None, "options": OPTIONS}},
    "variables": {"name": None, "value": None,
                  "valueFrom": {"secretKeyRef": KEYREF, "configMapKeyRef": KEYREF,
                                "fieldRef": None, "resourceFieldRef": None}},
}
EXECUTOR_SPEC = {"createDeployment": None, "deploymentConfig": dict.fromkeys(
    ["runtimeClassName", "spinImage", "caCertSecret", "installDefaultCACerts", "otel"])}

SECRETISH = re.compile(r"secret|token|password|passwd|credential|(^|_)url$", re.I)
CREDENTIAL_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]*:[^@\s/]+@", re.I)
LOOPBACK = re.compile(r"^(127(\.\d+){3}|localhost|\[::1\])(:\d+)?$")
TEMPLATE = re.compile(r"\{\{\s*([a-z0-9_]+)\s*\}\}")

errors = []


def fail(where, message):
    errors.append(f"{where}: {message}")


def strings(value, path=""):
    """Every string below value, with its path."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from strings(item, f"{path}[{i}]")
    elif isinstance(value, str):
        yield path, value


def refs(value, kind, path=""):
    """Every (path, name, key) of a secretKeyRef/configMapKeyRef below value."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == kind and isinstance(item, dict):
                yield f"{path}.{key}", item.get("name"), item.get("key")
            elif kind == "secretKeyRef" and key == "credentials" and isinstance(item, dict):
                yield f"{path}.{key}", item.get("name"), item.get("key")
            else:
                yield from refs(item, kind, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from refs(item, kind, f"{path}[{i}]")


def only_fields(tree, value, where, what):
    if tree is None:
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            only_fields(tree, item, f"{where}[{i}]", what)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in tree:
                fail(where, f"`{key}` is not a field of the spin-operator's {what}")
            else:
                only_fields(tree[key], item, f"{where}.{key}", what)


def load_documents():
    docs, kustomizations = [], []
    for path in sorted(list(DEPLOY.rglob("*.yaml")) + list(DEPLOY.rglob("*.yml"))):
        name = path.relative_to(DEPLOY)
        try:
            loaded = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        except yaml.YAMLError as e:
            fail(name, f"does not parse: {e}".replace("\n", " "))
            continue
        for i, doc in enumerate(loaded):
            where = f"{name}#{i + 1}"
            if not isinstance(doc, dict):
                fail(where, "is not a mapping")
            elif doc.get("kind") == "Kustomization":
                kustomizations.append((path, doc))
            elif path.name == "kustomizeconfig.yaml":
                pass
            elif not (doc.get("apiVersion") and doc.get("kind") and (doc.get("metadata") or {}).get("name")):
                fail(where, "lacks apiVersion, kind or metadata.name")
            else:
                if "namespace" in doc["metadata"]:
                    fail(where, "sets metadata.namespace: kustomization.yaml sets it for all")
                docs.append((where, path, doc))
    return docs, kustomizations


def image_name(reference):
    """An image reference without its tag or digest."""
    name = reference.split("@")[0]
    return name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name


def check_kustomizations(docs, kustomizations, spinapps):
    namespaces = {k.get("namespace") for _, k in kustomizations}
    if len(namespaces) != 1 or None in namespaces:
        fail("kustomization.yaml", f"every kustomization must set the same namespace (found {namespaces})")
    for path, k in kustomizations:
        here = path.parent
        listed = {here / r for r in k.get("resources", [])} | {here / c for c in k.get("configurations", [])}
        for p in listed:
            if not p.exists():
                fail(path.relative_to(DEPLOY), f"lists {p.name}, which does not exist")
        for _, p, _ in docs:
            if p.parent == here and p not in listed:
                fail(path.relative_to(DEPLOY), f"does not list {p.name}: `kubectl apply -k` would skip it")
        for image in k.get("images", []):
            if spinapps and not any(image_name((a.get("spec") or {}).get("image") or "") == image.get("name")
                                    for _, a in spinapps):
                fail(path.relative_to(DEPLOY), f"images entry {image.get('name')!r} matches no SpinApp image")


def load_spin():
    spin = tomllib.loads((ROOT / "spin.toml").read_text())
    variables = spin.get("variables", {})
    components = spin.get("component", {})
    triggers = {}  # component -> set of trigger types
    routes = []  # (route, component)
    for ttype, entries in spin.get("trigger", {}).items():
        for t in entries:
            triggers.setdefault(t["component"], set()).add(ttype)
            if ttype == "http":
                routes.append((t["route"], t["component"]))
    uses = {}
    for cid, table in components.items():
        used = {v for _, s in strings({k: x for k, x in table.items() if k != "build"}) for v in TEMPLATE.findall(s)}
        for ttype, entries in spin.get("trigger", {}).items():
            for t in entries:
                if t["component"] == cid:
                    used |= {v for _, s in strings(t) for v in TEMPLATE.findall(s)}
        for ttype in triggers.get(cid, ()):
            app_trigger = spin.get("application", {}).get("trigger", {}).get(ttype, {})
            used |= {v for _, s in strings(app_trigger) for v in TEMPLATE.findall(s)}
        uses[cid] = used
    return variables, components, triggers, routes, uses


def served_by(path, routes):
    best = None
    for route, component in routes:
        base = route[:-4] if route.endswith("/...") else None
        if (base is not None and (path == base or path.startswith(base + "/"))) or route == path:
            length = len(base if base is not None else route)
            if best is None or length > best[0]:
                best = (length, component)
    return best and best[1]


def pod_labels(doc):
    if doc["kind"] == "SpinApp":
        name = doc["metadata"]["name"]
        return {**((doc.get("spec") or {}).get("podLabels") or {}), OPERATOR_NAME_LABEL: name,
                f"core.spinkube.dev/app.{name}.status": "ready"}
    if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet"):
        return (((doc.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}
    return None


def secrets_created():
    text = (DEPLOY / "secrets.sh").read_text()
    app = re.search(r"^APP_SECRET=(\S+)$", text, re.M)
    keys = re.search(r"^APP_SECRET_KEYS=\(([^)]*)\)$", text, re.M)
    runtime = re.search(r"^RUNTIME_SECRET=(\S+)$", text, re.M)
    if not (app and keys and runtime):
        fail("secrets.sh", "APP_SECRET=, APP_SECRET_KEYS=(...) and RUNTIME_SECRET= lines not found")
        return set(), None
    created = {(app.group(1), k) for k in keys.group(1).split()} | {(runtime.group(1), "runtime-config.toml")}
    return created, runtime.group(1)


def main():
    docs, kustomizations = load_documents()
    by_kind = {}
    for where, _, doc in docs:
        by_kind.setdefault(doc["kind"], []).append((where, doc))
    spinapps = by_kind.get("SpinApp", [])
    check_kustomizations(docs, kustomizations, spinapps)
    variables, components, triggers, routes, uses = load_spin()
    http = {c for c, t in triggers.items() if "http" in t}
    redis = {c for c, t in triggers.items() if "redis" in t}
    required = {v for v, d in variables.items() if "default" not in d}
    secret_vars = {v for v, d in variables.items() if d.get("secret")} | {"jwt_secret", "metrics_token"}
    created, runtime_secret = secrets_created()
    configmaps = {d["metadata"]["name"]: d.get("data") or {} for _, d in by_kind.get("ConfigMap", [])}
    executors = {d["metadata"]["name"] for _, d in by_kind.get("SpinAppExecutor", [])}
    notes = []

    for where, doc in by_kind.get("SpinAppExecutor", []):
        if doc["apiVersion"] != SPINAPP_API:
            fail(where, f"apiVersion must be {SPINAPP_API}")
        only_fields(EXECUTOR_SPEC, doc.get("spec") or {}, f"{where} spec", "SpinAppExecutor")

    # SpinApps: fields, image, executor, components, variables, probes.
    sources = {}  # (app, variable) -> ref
    for where, app in spinapps:
        name, spec = app["metadata"]["name"], app.get("spec") or {}
        where = f"{where} ({name})"
        if app["apiVersion"] != SPINAPP_API:
            fail(where, f"apiVersion is {app['apiVersion']}, not {SPINAPP_API}")
        only_fields(SPINAPP_SPEC, spec, f"{where} spec", "SpinApp")
        if not spec.get("image"):
            fail(where, "has no spec.image")
        if spec.get("executor") not in executors:
            fail(where, f"executor {spec.get('executor')!r} is not a SpinAppExecutor in deploy/")
        if spec.get("enableAutoscaling") and spec.get("replicas"):
            fail(where, "replicas cannot be set with enableAutoscaling (the operator's webhook refuses it)")
        if not spec.get("enableAutoscaling") and not (isinstance(spec.get("replicas"), int) and spec["replicas"] >= 1):
            fail(where, "replicas must be at least 1")
        kept = spec.get("components")
        if not kept:
            fail(where, "must list its components (without the list it would run all of them)")
            kept = list(components)
        for c in kept:
            if c not in components:
                fail(where, f"component {c!r} is not in spin.toml")
        kept = set(kept) & set(components)
        # Variables.
        given = {}
        for i, var in enumerate(spec.get("variables") or []):
            vname = var.get("name")
            if vname in given:
                fail(where, f"variable {vname} is set twice")
            given[vname] = var
            if vname not in variables:
                fail(where, f"variable {vname} is not declared in spin.toml (a typo is silently ignored)")
            if ("value" in var) == ("valueFrom" in var):
                fail(where, f"variable {vname} needs exactly one of value and valueFrom")
            source = (var.get("valueFrom") or {})
            sources[(name, vname)] = source
            if vname in secret_vars or SECRETISH.search(vname or ""):
                if "secretKeyRef" not in source:
                    fail(where, f"variable {vname} is secret-like: it must come from a Secret (valueFrom.secretKeyRef), not inline or from a ConfigMap")
        used = set().union(*(uses[c] for c in kept)) if kept else set()
        needed = set(required)
        needed |= {v for v in used if LOOPBACK.match(variables.get(v, {}).get("default", "") or "-")}
        needed |= {"jwt_secret", "metrics_token"} & used
        for v in sorted(needed - set(given)):
            why = ("required by spin.toml" if v in required else
                   "its default is a loopback address" if "default" in variables[v] and v not in secret_vars else
                   "used by its components")
            fail(where, f"does not provide variable {v} ({why})")
        # Runtime config: the key-value store must be the shared Redis.
        rc = spec.get("runtimeConfig") or {}
        if any(components[c].get("key_value_stores") for c in kept):
            if rc.get("loadFromSecret") != runtime_secret:
                fail(where, f"its components use key-value: runtimeConfig.loadFromSecret must be {runtime_secret} (without it every pod gets a private store)")
        for path, value in strings({k: v for k, v in rc.items() if k != "loadFromSecret"}):
            if path.endswith(".value"):
                fail(where, f"runtimeConfig{path} is a literal: runtime config belongs in the Secret {runtime_secret}")
        # Probes.
        checks = spec.get("checks") or {}
        if kept & http:
            for probe, path in (("liveness", "/health/live"), ("readiness", "/health")):
                got = ((checks.get(probe) or {}).get("httpGet") or {}).get("path")
                if got != path:
                    fail(where, f"checks.{probe} must GET {path} (found {got!r})")
                elif served_by(path, routes) not in kept:
                    fail(where, f"checks.{probe} path {path} is served by {served_by(path, routes)!r}, which this SpinApp does not run")
            if ((checks.get("readiness") or {}).get("timeoutSeconds") or 1) <= 5:
                fail(where, "checks.readiness.timeoutSeconds must exceed 5: /health may take 5 s when a dependency hangs")
        elif checks:
            fail(where, "has checks but no HTTP component: nothing listens, the probes could only fail")
        annotations = spec.get("podAnnotations") or {}
        if annotations.get("prometheus.io/scrape") == "true" and annotations.get("prometheus.io/port") != str(OPERATOR_PORT):
            fail(where, f"prometheus.io/port must be {OPERATOR_PORT}, the operator's container port")

    # The two SpinApps partition spin.toml's components.
    kept_by = {a["metadata"]["name"]: set((a.get("spec") or {}).get("components") or components) for _, a in spinapps}
    if sorted(map(sorted, kept_by.values())) != sorted(map(sorted, [redis, http])):
        fail("SpinApps", f"must be one SpinApp with exactly the Redis-trigger components {sorted(redis)} "
                         f"and one with exactly the HTTP ones {sorted(http)}; found {dict((k, sorted(v)) for k, v in kept_by.items())}")
    images = {(a.get("spec") or {}).get("image") for _, a in spinapps}
    if len(images) > 1:
        fail("SpinApps", f"run different images {sorted(map(str, images))}: HTTP and scorer must be one build")

    # Secrets: nothing inline, every reference created by secrets.sh.
    for where, path, doc in docs:
        if doc["kind"] == "Secret" and (doc.get("data") or doc.get("stringData")):
            fail(where, "is a Secret with values: Secrets are made by deploy/secrets.sh, never checked in")
        for p, s in strings(doc):
            if CREDENTIAL_URL.search(s) or re.search(r"password\s*=", s, re.I):
                fail(where, f"{p} holds a credential inline")
        for container in ((doc.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers", []) or []:
            for env in container.get("env") or []:
                if SECRETISH.search(env.get("name", "")) and "secretKeyRef" not in (env.get("valueFrom") or {}):
                    fail(where, f"env {env.get('name')} of container {container.get('name')} is secret-like: use valueFrom.secretKeyRef")
        for p, sname, key in refs(doc, "secretKeyRef"):
            if (sname, key) not in created:
                fail(where, f"{p} refers to Secret {sname} key {key}, which deploy/secrets.sh does not create")
        for p, cname, key in refs(doc, "configMapKeyRef"):
            if cname not in configmaps or key not in configmaps[cname]:
                fail(where, f"{p} refers to ConfigMap {cname} key {key}, which deploy/ does not define")

    # Label selectors: each selects the pods of exactly one workload.
    workloads = {f"{d['kind']} {d['metadata']['name']}": (pod_labels(d), d) for _, _, d in docs if pod_labels(d) is not None}
    for where, path, doc in docs:
        selector = (doc.get("spec") or {}).get("selector")
        if not isinstance(selector, dict) or doc["kind"] == "Service":
            continue
        wanted = selector.get("matchLabels") or {}
        if doc["kind"] == "ServiceMonitor":  # selects the operator's Services
            hits = [f"SpinApp {a['metadata']['name']}" for _, a in spinapps
                    if wanted.items() <= {OPERATOR_NAME_LABEL: a["metadata"]["name"]}.items()]
        else:
            hits = [w for w, (labels, _) in workloads.items() if wanted and wanted.items() <= labels.items()]
        if len(hits) != 1:
            fail(where, f"selector {wanted} selects {hits or 'nothing'}; it must select exactly one workload")
            continue
        target = workloads.get(hits[0], (None, None))[1]
        if doc["kind"] in ("PodMonitor", "ServiceMonitor"):
            if not (target and target["kind"] == "SpinApp" and kept_by.get(target["metadata"]["name"], set()) & http):
                fail(where, f"scrapes {hits[0]}, which serves no HTTP")
            for ep in doc["spec"].get("podMetricsEndpoints") or []:
                if ep.get("port") != OPERATOR_PORT_NAME:
                    fail(where, f"port must be {OPERATOR_PORT_NAME!r}, the operator's container port name")
                path_annotation = ((target or {}).get("spec", {}).get("podAnnotations") or {}).get("prometheus.io/path")
                if path_annotation and ep.get("path") != path_annotation:
                    fail(where, f"path {ep.get('path')!r} differs from the pods' prometheus.io/path {path_annotation!r}")
                # GET /metrics wants the app's metrics_token as a bearer token.
                app_name = ((target or {}).get("metadata") or {}).get("name")
                app_token = (sources.get((app_name, "metrics_token")) or {}).get("secretKeyRef")
                auth = ep.get("authorization") or {}
                sent = auth.get("credentials") if (auth.get("type") or "Bearer") == "Bearer" else None
                sent = sent or ep.get("bearerTokenSecret")
                if not app_token:
                    fail(where, "scrapes a SpinApp that gets no metrics_token from a Secret: /metrics would answer 404")
                elif not sent or (sent.get("name"), sent.get("key")) != (app_token.get("name"), app_token.get("key")):
                    fail(where, f"must send the metrics token as a bearer token (authorization.credentials or bearerTokenSecret) from Secret {app_token.get('name')} key {app_token.get('key')}, where the app reads metrics_token")

    # The ticker: one, on the scorer's channel and Redis, not too often.
    scorer = next((a["metadata"]["name"] for _, a in spinapps if kept_by[a["metadata"]["name"]] == redis), None)
    tickers = [(w, d) for w, _, d in docs if d["kind"] == "Deployment" and
               (d["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "ticker"]
    if len(tickers) != 1:
        fail("ticker", f"expected one Deployment labelled app.kubernetes.io/component=ticker, found {len(tickers)}")
    for where, d in tickers:
        if (d.get("spec") or {}).get("replicas") != 1:
            fail(where, "replicas must be 1: every scorer hears every tick, a second ticker only doubles the wake-ups")
        env = {e["name"]: e.get("valueFrom") for c in ((d.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or [] for e in c.get("env") or []}
        for env_name, variable in (("CHANNEL", "events_channel"), ("REDIS_URL", "redis_url")):
            if scorer and env.get(env_name) != sources.get((scorer, variable)):
                fail(where, f"env {env_name} must come from where {scorer}'s {variable} comes from")
        ref = (env.get("TICK_SECONDS") or {}).get("configMapKeyRef") or {}
        tick = configmaps.get(ref.get("name"), {}).get(ref.get("key"))
        if not (tick and tick.isdigit() and int(tick) >= 1):
            fail(where, f"TICK_SECONDS must come from a ConfigMap key holding whole seconds >= 1 (found {tick!r})")

    # kustomize builds, when kubectl is here.
    if shutil.which("kubectl"):
        for path, _ in kustomizations:
            run = subprocess.run(["kubectl", "kustomize", str(path.parent)], capture_output=True, text=True)
            if run.returncode != 0:
                message = " ".join(l.strip() for l in run.stderr.splitlines() if l.strip() not in ("`", ">"))
                fail(path.relative_to(DEPLOY), f"kubectl kustomize fails: {message[-300:]}")
    else:
        notes.append("kubectl not found: kustomize builds not checked")

    for note in notes:
        print(f"check: note: {note}")
    if errors:
        for e in errors:
            print(f"check: FAIL {e}", file=sys.stderr)
        sys.exit(f"check: {len(errors)} problem(s) in deploy/")
    print(f"check: ok: {len(docs)} manifests in {len({p for _, p, _ in docs})} files, "
          f"{len(spinapps)} SpinApps ({', '.join(f'{n}: {sorted(c)}' for n, c in kept_by.items())}), "
          f"{len(kustomizations)} kustomizations; variables, secrets, references, selectors, probes and ticker agree")


if __name__ == "__main__":
    main()
