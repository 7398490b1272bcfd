"""Offline checks of rendered Kubernetes manifests and of the Kratos configs under deploy/.

Called by .ci/validate-deploy with the venv's Python (kubernetes-validate, jsonschema, PyYAML).

  validate_deploy.py k8s VERSION FILE...      every object, strict schema of Kubernetes VERSION
  validate_deploy.py helm-values VALUES VERSION   the sidecar in the ory/kratos chart values
  validate_deploy.py kratos-config SCHEMA FILE[:KEY.PATH]...   Kratos configs vs config.schema.json

Exits non-zero on the first kind of failure it meets, after printing every problem it found.
"""

import json
import os
import sys

import jsonschema
import kubernetes_validate.utils as kv
import yaml

# Custom resources: kubernetes-validate ships schemas for built-in kinds only.
CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def name_of(obj):
    return "%s/%s" % (obj.get("kind"), (obj.get("metadata") or {}).get("name"))


def policy_problems(obj):
    """Rules the schema cannot express."""
    problems = []
    spec = obj.get("spec") or {}
    pod = ((spec.get("template") or {}).get("spec")) if obj.get("kind") != "Pod" else spec
    if not pod:
        return problems
    for c in (pod.get("containers") or []) + (pod.get("initContainers") or []):
        for m in c.get("volumeMounts") or []:
            # A subPath mount of a ConfigMap never sees updates: the blocklist would go stale.
            if m.get("subPath") or m.get("subPathExpr"):
                problems.append("container %s mounts %s with subPath" % (c.get("name"), m.get("name")))
        if c.get("name") == "kratos-gate":
            sc = c.get("securityContext") or {}
            want = {
                "runAsNonRoot": True,
                "runAsUser": 65532,
                "readOnlyRootFilesystem": True,
                "allowPrivilegeEscalation": False,
            }
            for k, v in want.items():
                if sc.get(k) != v:
                    problems.append("container kratos-gate: securityContext.%s must be %r" % (k, v))
            if (sc.get("capabilities") or {}).get("drop") != ["ALL"]:
                problems.append("container kratos-gate: securityContext.capabilities.drop must be [ALL]")
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                got = ((c.get(probe) or {}).get("httpGet") or {}).get("path")
                if got != path:
                    problems.append("container kratos-gate: %s must GET %s (has %r)" % (probe, path, got))
    return problems


def validate_objects(label, objs, version):
    failed = 0
    for obj in objs:
        key = (obj.get("apiVersion"), obj.get("kind"))
        if key in CRDS:
            print("SKIP %s: %s is a custom resource (%s); no schema shipped offline, not validated"
                  % (label, name_of(obj), key[0]))
            continue
        bad = False
        try:
            kv.validate(obj, version, strict=True)
        except kv.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            print("ERROR %s: %s against Kubernetes %s (strict): %s: %s"
                  % (label, name_of(obj), e.version, path, e.message))
            bad = True
        except kv.SchemaNotFoundError as e:
            # kubernetes-validate only warns here; an unknown kind or apiVersion is an error to us.
            print("ERROR %s: %s: %s" % (label, name_of(obj), e.message))
            bad = True
        for p in policy_problems(obj):
            print("ERROR %s: %s: %s" % (label, name_of(obj), p))
            bad = True
        if bad:
            failed += 1
            continue
        print("ok   %s: %s" % (label, name_of(obj)))
    return failed


def cmd_k8s(version, files):
    failed = 0
    for path in files:
        label = os.path.basename(path)  # the render's name, e.g. standalone+servicemonitor.yaml
        objs = load_all(path)
        if not objs:
            print("ERROR %s: no objects" % label)
            failed += 1
        failed += validate_objects(label, objs, version)
    return failed


def cmd_helm_values(values_path, version):
    """The chart renders deployment.extraContainers (a YAML string, through `tpl`) and
    deployment.extraVolumes into the Kratos pod: check them as a Pod of their own."""
    values = yaml.safe_load(open(values_path))
    dep = values["deployment"]
    containers = yaml.safe_load(dep["extraContainers"])
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "kratos-values-extra-containers"},
        "spec": {"containers": containers, "volumes": dep.get("extraVolumes", [])},
    }
    failed = validate_objects(os.path.relpath(values_path) + " (extraContainers + extraVolumes)", [pod], version)
    for probe in ("customLivenessProbe", "customReadinessProbe", "customStartupProbe"):
        if probe in dep:
            holder = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": probe.lower()},
                "spec": {"containers": [{"name": "kratos", "image": "x", probe[6].lower() + probe[7:]: dep[probe]}]},
            }
            failed += validate_objects("%s (deployment.%s)" % (os.path.relpath(values_path), probe), [holder], version)
    if "{{" in dep["extraContainers"]:
        print("ERROR %s: extraContainers goes through Helm's tpl; do not use {{ }}" % values_path)
        failed += 1
    return failed


# Placeholders for required keys that a partial config (the Helm values) or the environment
# (DSN from a Secret) supplies at run time.
PLACEHOLDERS = {
    "dsn": "memory",
    "identity": {"default_schema_id": "default", "schemas": [{"id": "default", "url": "file:///x.json"}]},
    "selfservice": {"default_browser_return_url": "https://example.com/"},
}


def cmd_kratos_config(schema_path, specs):
    schema = json.load(open(schema_path))
    # The one remote reference in Kratos's schema (tracing settings): accept anything there.
    from referencing import Registry, Resource

    registry = Registry().with_resource(
        "ory://tracing-config", Resource.from_contents({"$schema": "http://json-schema.org/draft-07/schema#"})
    )
    validator = jsonschema.Draft7Validator(schema, registry=registry)
    failed = 0
    for spec in specs:
        path, _, key = spec.partition(":")
        config = yaml.safe_load(open(path))
        for k in key.split(".") if key else []:
            config = config[k]
        filled = []
        for k, v in PLACEHOLDERS.items():
            if k not in config:
                config[k] = v
                filled.append(k)
            elif k == "selfservice" and "default_browser_return_url" not in config[k]:
                config[k]["default_browser_return_url"] = v["default_browser_return_url"]
                filled.append(k + ".default_browser_return_url")
        errors = sorted(validator.iter_errors(config), key=lambda e: list(e.path))
        label = os.path.relpath(path) + (" (" + key + ")" if key else "")
        for e in errors:
            print("ERROR %s: %s: %s" % (label, ".".join(str(p) for p in e.path) or "(top)", e.message))
        if errors:
            failed += 1
        else:
            note = " (placeholders for %s, given at run time)" % ", ".join(filled) if filled else ""
            print("ok   %s: valid Kratos config%s" % (label, note))
    return failed


def main(argv):
    cmd = argv[1]
    if cmd == "k8s":
        failed = cmd_k8s(argv[2], argv[3:])
    elif cmd == "helm-values":
        failed = cmd_helm_values(argv[2], argv[3])
    elif cmd == "kratos-config":
        failed = cmd_kratos_config(argv[2], argv[3:])
    else:
        raise SystemExit("unknown command " + cmd)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
