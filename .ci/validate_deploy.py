"""Offline checks of rendered Kubernetes manifests and of the Kratos configs under deploy/.

Called by .ci/validate-deploy with the venv's Python (kubernetes-validate, jsonschema, PyYAML).

  validate_deploy.py k8s VERSION FILE...      every object, strict schema of Kubernetes VERSION
  validate_deploy.py helm-values VALUES VERSION   the sidecar in the ory/kratos chart values
  validate_deploy.py kratos-config SCHEMA FILE[:KEY.PATH]...   Kratos configs vs config.schema.json
  validate_deploy.py monitoring DIR README OUT   deploy/monitoring: the PrometheusRule's spec equals the
                                              rules file (written to OUT for promtool), the dashboard
                                              against DIR/dashboard.schema.json, and every metric the
                                              rules and the dashboard name is in README's metrics table

Exits non-zero on the first kind of failure it meets, after printing every problem it found.
"""

import json
import os
import re
import sys

import jsonschema
import kubernetes_validate.utils as kv
import yaml

# Custom resources: kubernetes-validate ships schemas for built-in kinds only.
CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}


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


# A metric name of the gateway's in a PromQL expression.
METRIC = re.compile(r"\b((?:kratos_gate|process)_[a-z0-9_]+)")


def documented_metrics(readme_path):
    """Names in the first column of README's metrics table (rows starting with | `name`)."""
    names = set()
    for line in open(readme_path):
        m = re.match(r"\|\s*`((?:kratos_gate|process)_[a-z0-9_]+)`", line)
        if m:
            names.add(m.group(1))
    return names


def family(name):
    """The family a sample name belongs to: histogram series end in _bucket, _sum, _count."""
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def undocumented(exprs, documented):
    return sorted({n for e in exprs for n in METRIC.findall(e) if n not in documented and family(n) not in documented})


def cmd_monitoring(mon_dir, readme, out):
    failed = 0
    documented = documented_metrics(readme)
    if not documented:
        print("ERROR %s: no metrics table found" % readme)
        return 1

    rules_path = os.path.join(mon_dir, "kratos-gate.rules.yaml")
    rules = yaml.safe_load(open(rules_path))
    crd = yaml.safe_load(open(os.path.join(mon_dir, "prometheusrule.yaml")))
    if (crd.get("apiVersion"), crd.get("kind")) != ("monitoring.coreos.com/v1", "PrometheusRule"):
        print("ERROR prometheusrule.yaml: not a monitoring.coreos.com/v1 PrometheusRule")
        failed += 1
    if crd.get("spec") != rules:
        print("ERROR deploy/monitoring: prometheusrule.yaml's spec differs from kratos-gate.rules.yaml")
        failed += 1
    else:
        print("ok   deploy/monitoring/prometheusrule.yaml: spec equals kratos-gate.rules.yaml")
    with open(out, "w") as f:
        yaml.safe_dump(crd.get("spec") or {}, f, sort_keys=False)
    exprs = [r["expr"] for g in rules.get("groups", []) for r in g.get("rules", [])]
    alerts = {r.get("alert") for g in rules.get("groups", []) for r in g.get("rules", [])}
    bad = undocumented(exprs, documented)
    if bad:
        print("ERROR kratos-gate.rules.yaml: metrics not in README's metrics table: %s" % ", ".join(bad))
        failed += 1
    else:
        print("ok   kratos-gate.rules.yaml: %d alerts, every metric documented" % len(alerts))

    dash_path = os.path.join(mon_dir, "grafana-dashboard.json")
    schema = json.load(open(os.path.join(mon_dir, "dashboard.schema.json")))
    dash = json.load(open(dash_path))
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(dash), key=lambda e: list(e.path))
    for e in errors:
        print("ERROR grafana-dashboard.json: %s: %s" % ("/".join(str(p) for p in e.path) or "(top)", e.message))
    if errors:
        failed += 1
    panels = []
    for p in dash.get("panels", []):
        panels.append(p)
        panels.extend(p.get("panels", []))
    ids = [p.get("id") for p in panels]
    if len(ids) != len(set(ids)):
        print("ERROR grafana-dashboard.json: panel ids are not unique")
        failed += 1
    dash_exprs = [t.get("expr", "") for p in panels for t in p.get("targets", [])]
    bad = undocumented(dash_exprs, documented)
    if bad:
        print("ERROR grafana-dashboard.json: metrics not in README's metrics table: %s" % ", ".join(bad))
        failed += 1
    # What the dashboard must show: blocks, fail-closed answers, lookups, revocations,
    # reloads, latency and the checksum.
    used = {n for e in dash_exprs for n in METRIC.findall(e)}
    for must in (
        "kratos_gate_blocked_total",
        "kratos_gate_fail_closed_total",
        "kratos_gate_attribution_lookups_total",
        "kratos_gate_revocations_total",
        "kratos_gate_blocklist_reloads_total",
        "kratos_gate_request_duration_seconds_bucket",
        "kratos_gate_blocklist_info",
    ):
        if must not in used:
            print("ERROR grafana-dashboard.json: no panel shows %s" % must)
            failed += 1
    if not errors and not failed:
        print("ok   grafana-dashboard.json: %d panels, schema and metric names" % len(panels))
    return failed


def main(argv):
    cmd = argv[1]
    if cmd == "k8s":
        failed = cmd_k8s(argv[2], argv[3:])
    elif cmd == "helm-values":
        failed = cmd_helm_values(argv[2], argv[3])
    elif cmd == "kratos-config":
        failed = cmd_kratos_config(argv[2], argv[3:])
    elif cmd == "monitoring":
        failed = cmd_monitoring(argv[2], argv[3], argv[4])
    else:
        raise SystemExit("unknown command " + cmd)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
