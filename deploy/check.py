#!/usr/bin/env python3
"""Checks the Kubernetes manifests of deploy/ against spin.toml and the
spin-operator's SpinApp definition, offline. Run it through deploy/check.sh.

  - every YAML document under deploy/ parses (except monitoring/rules/ and
    monitoring/tests/, Prometheus' own files); every manifest is listed in its
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
  - every kustomization renders with `kubectl kustomize` (what `kubectl apply
    -k` applies), and the rendered objects hold: Kubernetes' own kinds validate
    strictly against kubernetes-validate's schemas of K8S_VERSION; custom
    resources against the openAPIV3Schema of their CRD, found under the folder
    $K8S_CRDS, with the API server's structural semantics (skipped, and said,
    without K8S_CRDS); every SpinApp comes after the SpinAppExecutor it names
    (the operator's webhook refuses it otherwise); the SpinApps run the image
    kustomization.yaml sets, by digest.
Without kubectl ($KUBECTL empty), the documents are checked as written, with
the kustomization's namespace, in its `resources` order (sortOptions fifo).
Exits 1 with one line per problem.
"""
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

try:
    import jsonschema
    import kubernetes_validate
    import yaml
except ImportError as e:
    sys.exit(f"check: {e.name} is missing: run deploy/check.sh, which installs it")

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent
SPINAPP_API = "core.spinkube.dev/v1alpha1"
# What the spin-operator gives every pod it creates (internal/controller,
# pkg/spinapp): the container port name and number, and the app-name label.
OPERATOR_PORT_NAME, OPERATOR_PORT = "http-app", 80
OPERATOR_NAME_LABEL = "core.spinkube.dev/app-name"
# The Kubernetes release whose schemas (bundled by kubernetes-validate) the
# built-in kinds are checked against: an older, still maintained release, so
# that a field only newer clusters know fails here.
K8S_VERSION = "1.35"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# libyaml's loader where PyYAML has it: the CRDs are large.
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

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
# Prometheus' own files, not Kubernetes manifests: the rule file that
# monitoring/prometheusrule.yaml is generated from, and promtool's tests
# (scripts/check-monitoring.sh checks both).
NOT_MANIFESTS = (Path("monitoring/rules"), Path("monitoring/tests"))

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
        if any(name.is_relative_to(d) for d in NOT_MANIFESTS):
            continue
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
            if "newTag" in image or not DIGEST.match(str(image.get("digest", ""))):
                fail(path.relative_to(DEPLOY), f"images entry {image.get('name')!r} must pin `digest: sha256:...`, "
                                               f"not newTag: a tag can move between two pod starts")


def kubectl_version(kubectl):
    run = subprocess.run([kubectl, "version", "--client", "-o", "json"], capture_output=True, text=True)
    try:
        v = json.loads(run.stdout)
        return f"kubectl {v['clientVersion']['gitVersion']} (kustomize {v.get('kustomizeVersion', '?')})"
    except (ValueError, KeyError):
        return kubectl


def render(kubectl, path, k, docs):
    """The objects `kubectl apply -k` applies for the kustomization at path, in
    its order, and True. Without kubectl, the documents it lists as written,
    with its namespace, in `resources` order, and whether that is the order
    kustomize applies them in (sortOptions fifo)."""
    name = path.parent.relative_to(DEPLOY.parent)
    if kubectl:
        run = subprocess.run([kubectl, "kustomize", str(path.parent)], capture_output=True, text=True)
        if run.returncode != 0:
            message = " ".join(l.strip() for l in run.stderr.splitlines() if l.strip() not in ("`", ">"))
            fail(name, f"kubectl kustomize fails: {message[-300:]}")
            return [], True
        return [d for d in yaml.load_all(run.stdout, Loader=LOADER) if d is not None], True
    objects = []
    for resource in k.get("resources", []):
        for _, p, doc in docs:
            if p == path.parent / resource:
                doc = copy.deepcopy(doc)
                doc["metadata"]["namespace"] = k.get("namespace")
                objects.append(doc)
    return objects, ((k.get("sortOptions") or {}).get("order") == "fifo")


def load_crds(folder):
    """(group, version, kind) -> (openAPIV3Schema, served, file) of every CRD
    in a YAML file under folder."""
    crds = {}
    for path in sorted(list(folder.rglob("*.yaml")) + list(folder.rglob("*.yml"))):
        try:
            loaded = list(yaml.load_all(path.read_text(), Loader=LOADER))
        except yaml.YAMLError as e:
            fail(path, f"does not parse: {e}".replace("\n", " "))
            continue
        for doc in loaded:
            if not (isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition"):
                continue
            spec = doc.get("spec") or {}
            for v in spec.get("versions") or []:
                schema = (v.get("schema") or {}).get("openAPIV3Schema")
                crds[(spec.get("group"), v.get("name"), (spec.get("names") or {}).get("kind"))] = (
                    schema, v.get("served"), path)
    return crds


def structural(schema, logic=False):
    """A CRD's openAPIV3Schema as a JSON schema with the API server's structural
    semantics: an object accepts only its properties, unless it is a map
    (additionalProperties) or says x-kubernetes-preserve-unknown-fields (an
    embedded resource also has apiVersion, kind and metadata); nullable admits
    null. Below allOf/anyOf/oneOf/not (logic), schemas only constrain."""
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {name: structural(item, logic) for name, item in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = structural(value, logic)
        elif key == "not":
            out[key] = structural(value, True)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [structural(item, True) for item in value]
        elif key != "description":
            out[key] = value
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if (not logic and schema.get("type") == "object" and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
        if schema.get("x-kubernetes-embedded-resource"):
            out["properties"] = {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                                 "metadata": {"type": "object"}, **out.get("properties", {})}
    return out


def dotted(path):
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path) or "."


def schema_errors(validator, obj):
    for e in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
        yield f"{dotted(e.absolute_path)}: {e.message[:200]}"


def validate_object(where, obj, crds, crd_validators):
    """Fails for what the API server would refuse in obj: a built-in kind by
    kubernetes-validate (strict), a custom resource by its CRD's schema.
    Returns False when obj's kind is neither known nor checkable."""
    api, kind = obj.get("apiVersion", ""), obj.get("kind")
    group, _, version = api.rpartition("/")
    key = (group, version, kind)
    if crds is not None and key in crds:
        schema, served, path = crds[key]
        if not served:
            fail(where, f"{api} {kind} is not served by its CRD ({path})")
        if key not in crd_validators:
            root = structural(schema or {})
            # metadata is the API server's ObjectMeta, checked below.
            root.setdefault("properties", {})["metadata"] = {"type": "object"}
            crd_validators[key] = jsonschema.Draft4Validator(root)
        for message in schema_errors(crd_validators[key], obj):
            fail(where, f"{message} (CRD {path.name})")
        # ObjectMeta, strictly, through a ConfigMap that carries it.
        try:
            kubernetes_validate.validate({"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj.get("metadata")},
                                         K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            fail(where, f"{dotted(e.path)}: {e.message[:200]} (ObjectMeta, Kubernetes {e.version})")
        return True
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        fail(where, f"{dotted(e.path)}: {e.message[:200]} (Kubernetes {e.version})")
    except kubernetes_validate.SchemaNotFoundError:
        # The kinds whose CRDs K8S_CRDS must hold (shared/k8s has them);
        # another custom kind without one (the PrometheusRule of
        # monitoring/, whose CRD is not there) stays unchecked, and says so.
        if crds is not None and kind in ("SpinApp", "SpinAppExecutor", "PodMonitor"):
            fail(where, f"{api} {kind} is neither a Kubernetes kind of {K8S_VERSION} nor defined by a CRD under K8S_CRDS")
        elif crds is not None:
            print(f"check: note: {where}: no CRD of {group} under K8S_CRDS: {kind} not validated")
        return False
    return True


def check_order(where, objects):
    """The spin-operator's validating webhook (failurePolicy Fail) refuses a
    SpinApp whose executor does not exist yet in its namespace, and `kubectl
    apply` creates objects in the order rendered."""
    executors = [(o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects
                 if o.get("kind") == "SpinAppExecutor"]
    seen = set()
    for o in objects:
        meta = o.get("metadata") or {}
        if o.get("kind") == "SpinAppExecutor":
            seen.add((meta.get("namespace"), meta.get("name")))
        elif o.get("kind") == "SpinApp":
            executor = (meta.get("namespace"), (o.get("spec") or {}).get("executor"))
            if executor not in seen:
                state = "comes after it" if executor in executors else "is not in it"
                fail(where, f"SpinApp {meta.get('name')} is applied before its SpinAppExecutor {executor[1]}, "
                            f"which {state}: the operator's webhook refuses the SpinApp on a first apply "
                            f"(list the executor first, with sortOptions order fifo)")


def check_image(where, objects, k):
    """Every rendered SpinApp runs the image kustomization.yaml sets (which
    needs kustomizeconfig.yaml: kustomize does not know SpinApp.spec.image)."""
    spinapps = [o for o in objects if o.get("kind") == "SpinApp"]
    images = k.get("images") or []
    if spinapps and len(images) != 1:
        fail(where, f"must set the SpinApps' image in exactly one `images` entry (found {len(images)})")
        return
    for image in images:
        wanted = (image.get("newName") or image.get("name")) + (
            f"@{image['digest']}" if image.get("digest") else f":{image['newTag']}" if image.get("newTag") else "")
        for app in spinapps:
            got = (app.get("spec") or {}).get("image")
            if got != wanted:
                fail(where, f"SpinApp {app['metadata']['name']} renders image {got!r}, not {wanted!r}")


def check_rendered(docs, kustomizations):
    notes = []
    kubectl = os.environ["KUBECTL"] if "KUBECTL" in os.environ else shutil.which("kubectl")
    if kubectl:
        print(f"check: rendering with {kubectl_version(kubectl)}")
    else:
        notes.append("no kubectl: kustomizations not rendered; their documents are checked as written, "
                     "in `resources` order, without the image transformer")
    folder = os.environ.get("K8S_CRDS")
    crds = None
    if not folder or not Path(folder).is_dir():
        notes.append(f"K8S_CRDS {'unset' if not folder else repr(folder) + ' is not a folder'}: "
                     f"custom resources not checked against their CRDs")
    else:
        crds = load_crds(Path(folder))
        if not crds:
            fail("K8S_CRDS", f"{folder} holds no CustomResourceDefinition")
    crd_validators = {}
    checked = unchecked = 0
    for path, k in kustomizations:
        objects, ordered = render(kubectl, path, k, docs)
        name = f"{path.parent.relative_to(DEPLOY.parent)}/ ({'rendered' if kubectl else 'as written'})"
        for obj in objects:
            where = f"{name} {obj.get('kind')} {(obj.get('metadata') or {}).get('name')}"
            if validate_object(where, obj, crds, crd_validators):
                checked += 1
            else:
                unchecked += 1
        if ordered:
            check_order(name, objects)
        elif any(o.get("kind") == "SpinApp" for o in objects):
            fail(name, "without kubectl, the apply order is known only for sortOptions order fifo")
        if kubectl:
            check_image(name, objects, k)
    used = sorted({f"{kind} {group}/{version}" for (group, version, kind) in crd_validators})
    print(f"check: {checked} objects validated (Kubernetes {K8S_VERSION}"
          f"{'; CRDs from K8S_CRDS: ' + ', '.join(used) if used else ''})"
          f"{f'; {unchecked} custom resources not validated' if unchecked else ''}")
    return notes


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

    # What `kubectl apply -k` would apply: schemas, order, image.
    notes += check_rendered(docs, kustomizations)

    for note in notes:
        print(f"check: note: {note}")
    if errors:
        for e in errors:
            print(f"check: FAIL {e}", file=sys.stderr)
        sys.exit(f"check: {len(errors)} problem(s) in deploy/")
    print(f"check: ok: {len(docs)} manifests in {len({p for _, p, _ in docs})} files, "
          f"{len(spinapps)} SpinApps ({', '.join(f'{n}: {sorted(c)}' for n, c in kept_by.items())}), "
          f"{len(kustomizations)} kustomizations; variables, secrets, references, selectors, probes, ticker, apply order and image agree")


if __name__ == "__main__":
    main()
