"""Offline checks of rendered Kubernetes manifests and of the Kratos configs under deploy/.

Called by .ci/validate-deploy with the venv's Python (kubernetes-validate, jsonschema, PyYAML).

  validate_deploy.py k8s VERSION FILE...      every object, strict schema of Kubernetes VERSION
  validate_deploy.py helm-values VALUES VERSION   the sidecar in the ory/kratos chart values
  validate_deploy.py kratos-config SCHEMA FILE[:KEY.PATH]...   Kratos configs vs config.schema.json
  validate_deploy.py recipe --chart DIR --repo DIR --helm-render F --sidecar-render F --hook-secret F
                       [--expect ID,...]         the Helm recipe against the chart's templates, and
                                              each layout's web hook, shutdown, metrics and docs
                                              (--expect: self-test, every ID must be reported)
  validate_deploy.py monitoring DIR README OUT   deploy/monitoring: the PrometheusRule's spec equals the
                                              rules file (written to OUT for promtool), the dashboard
                                              against DIR/dashboard.schema.json, and every metric the
                                              rules and the dashboard name is in README's metrics table

Exits non-zero on the first kind of failure it meets, after printing every problem it found.
"""

import base64
import json
import os
import re
import sys
import urllib.parse

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


def writable_path_problems(objs):
    """The files the gateway writes (revocation.journal, blocklist.cache_path) lie on a writable
    volume of its container (an emptyDir or a claim, not read-only): the root is read-only."""
    gw = None
    for o in objs:
        if o.get("kind") == "ConfigMap" and o["metadata"]["name"].startswith("kratos-gate-config"):
            gw = yaml.safe_load(o["data"]["gateway.yaml"]) or {}
    if gw is None:
        return []
    problems = []
    for o in objs:
        spec = ((o.get("spec") or {}).get("template") or {}).get("spec") or {}
        gate = next((c for c in spec.get("containers") or [] if c.get("name") == "kratos-gate"), None)
        if gate is not None:
            problems += ["%s: %s" % (name_of(o), p) for p in unwritable(gw, gate, spec.get("volumes") or [])]
    return problems


def unwritable(gw, gate, volumes):
    by_name = {v.get("name"): v for v in volumes}
    out = []
    for key, path in (("revocation.journal", (gw.get("revocation") or {}).get("journal")),
                      ("blocklist.cache_path", (gw.get("blocklist") or {}).get("cache_path"))):
        if path and not any(
                str(path).startswith(m["mountPath"].rstrip("/") + "/") and not m.get("readOnly")
                and ("emptyDir" in by_name.get(m["name"], {}) or "persistentVolumeClaim" in by_name.get(m["name"], {}))
                for m in gate.get("volumeMounts") or []):
            out.append("%s %s is not on a writable volume of the kratos-gate container" % (key, path))
    return out


def cmd_k8s(version, files):
    failed = 0
    for path in files:
        label = os.path.basename(path)  # the render's name, e.g. standalone+servicemonitor.yaml
        objs = load_all(path)
        if not objs:
            print("ERROR %s: no objects" % label)
            failed += 1
        failed += validate_objects(label, objs, version)
        for p in writable_path_problems(objs):
            print("ERROR %s: %s" % (label, p))
            failed += 1
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
        # ${VAR} placeholders (the web hook's secret, filled in at deploy time) as a string.
        config = yaml.safe_load(re.sub(r"\$\{[^}]*\}", "placeholder", open(path).read()))
        for k in key.split(".") if key else []:
            config = config[k]
        if isinstance(config, str):  # a config file inline (Compose `configs.<name>.content`)
            config = yaml.safe_load(config)
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


# ---------------------------------------------------------------------------------------------
# The Helm recipe against the ory/kratos chart's real templates (.ci/chart/kratos-<version>/).
#
# No `helm` binary here, so the checks read the templates: for every workload template, which
# value feeds each `tpl`/`toYaml` (following `$x := ternary .Values.own .Values.fallback (not
# (empty .Values.own))`, the chart's fall-back idiom), at which place in the object (the YAML
# key path above the line) and in which container. Values are the chart's values.yaml with
# ours merged over it (Helm's coalesce: maps merge, everything else replaces).
#
# Every problem is reported with an id in brackets; `--expect ID,...` (the self-test against the
# files before the fix) passes when every listed id was reported.

PROBLEMS = []


def problem(pid, msg):
    PROBLEMS.append(pid)
    print("ERROR [%s] %s" % (pid, msg))


def coalesce(base, over):
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = coalesce(base.get(k), v) if k in base else v
        return out
    return over


def go_empty(v):
    """Go template `empty`: nil, false, 0, "" and empty collections."""
    return v is None or v is False or v == 0 or v == "" or v == [] or v == {}


def dig(values, dotted):
    cur = values
    for k in dotted.split("."):
        if not isinstance(cur, dict) or k not in cur:
            return None
        cur = cur[k]
    return cur


TERNARY = re.compile(r"\$(\w+)\s*:=\s*ternary\s+(\S+)\s+(\S+)\s+\(not \(empty\s+(\S+?)\s*\)\)")
SINK = re.compile(r"\{\{-?\s*(tpl|toYaml)\s+\(?\s*(?:toYaml\s+)?([.$][\w.$]*)[^}]*?n?indent\s+(\d+)")
WITH = re.compile(r"\{\{-?\s*with\s+([.$][\w.$]*)\s*\}\}")
KEY = re.compile(r"^(\s*)(- )?([\w.-]+):")


class Sink:
    def __init__(self, template, kind, path, expr, value, source):
        self.template, self.kind, self.path, self.expr = template, kind, path, expr
        self.value, self.source = value, source

    def at(self, *suffix):
        keys = [p for p in self.path if not p.startswith("[")]
        return keys[-len(suffix):] == list(suffix)

    def container(self):
        """The list item (`name: …` text) the sink is inside, if any."""
        items = [p for p in self.path if p.startswith("[")]
        return items[-1][1:-1] if items else None


def yaml_path(lines, i, indent):
    """Keys and list items above line i, for a sink rendered at `indent`, outermost first."""
    path = []
    cur, key_equal = indent, True
    for j in range(i - 1, -1, -1):
        s = lines[j]
        st = s.strip()
        if not st or st.startswith("{{") or st.startswith("#"):
            continue
        m = KEY.match(s)
        if not m:
            continue
        ind = len(m.group(1))
        if m.group(2):
            if ind < cur:
                path.append("[" + st[2:].strip() + "]")
                cur, key_equal = ind, True
        elif ind < cur or (key_equal and ind == cur):
            path.append(m.group(3))
            cur, key_equal = ind, False
        if cur == 0 and not key_equal:
            break
    return list(reversed(path))


def resolve(expr, values, variables, with_value):
    """(value, where it came from) for a template expression."""
    if expr == ".":
        return with_value
    if expr.startswith("$.Values.") or expr.startswith(".Values."):
        p = expr.split(".Values.", 1)[1]
        return dig(values, p), p
    if expr.startswith("$"):
        name = expr[1:].split(".")[0]
        if name in variables:
            own, fallback, cond = variables[name]
            ov, op = resolve(own, values, variables, with_value)
            cv, _ = resolve(cond, values, variables, with_value)
            if not go_empty(cv):
                return ov, op
            fv, fp = resolve(fallback, values, variables, with_value)
            return fv, "%s (as %s is empty)" % (fp, op)
        return None, expr  # a range variable ($job, $root): nothing of ours
    return None, expr


def template_sinks(path, values):
    text = open(path).read()
    lines = text.split("\n")
    variables = {m.group(1): (m.group(2), m.group(3), m.group(4)) for m in TERNARY.finditer(text)}
    sinks = []
    withs = []  # (indent, value) of open `with` blocks, innermost last
    for i, line in enumerate(lines):
        w = WITH.search(line)
        if w:
            withs.append(resolve(w.group(1), values, variables, (None, "")))
        elif re.search(r"\{\{-?\s*end\s*-?\}\}", line) and withs and not re.search(r"\{\{-?\s*if", line):
            # `end` closes the innermost block; only `with` blocks are tracked, so an `end` of an
            # `if` may pop a `with` early: harmless, as each `with` body here is one line.
            withs.pop()
        for m in SINK.finditer(line):
            kind, expr, indent = m.group(1), m.group(2), int(m.group(3))
            value, source = resolve(expr, values, variables, withs[-1] if withs else (None, ""))
            sinks.append(Sink(os.path.basename(path), kind, yaml_path(lines, i, indent), expr, value, source))
    return sinks


class Pod:
    """What our values add to one workload's pod, as the template places it."""

    def __init__(self, template, sinks):
        self.template = template
        self.containers, self.volumes, self.mounts = [], [], []
        self.annotations, self.container_args, self.lifecycle = {}, {}, {}
        self.sources = {}
        for s in sinks:
            if s.at("containers") and s.kind == "tpl" and s.expr.endswith("xtraContainers"):
                if isinstance(s.value, str) and "{{" in s.value:
                    problem("tpl", "%s: %s goes through Helm's tpl; do not use {{ }} in it" % (self.template, s.source))
                got = yaml.safe_load(s.value) if isinstance(s.value, str) and s.value.strip() else None
                if got is not None and not (isinstance(got, list) and all(isinstance(c, dict) for c in got)):
                    problem("tpl", "%s: %s is not a YAML list of containers" % (self.template, s.source))
                    got = None
                self.containers += got or []
                self.sources["containers"] = s.source
            elif s.at("volumes") and s.kind == "toYaml":
                self.volumes += s.value or []
                self.sources.setdefault("volumes", []).append(s.source)
            elif s.at("volumeMounts") and s.kind == "toYaml":
                for mnt in s.value or []:
                    self.mounts.append((s.container(), mnt))
                self.sources.setdefault("volumeMounts", []).append(s.source)
            elif s.at("template", "metadata", "annotations") and isinstance(s.value, dict):
                self.annotations.update(s.value)
            elif s.at("args") and isinstance(s.value, list):
                self.container_args.setdefault(s.container(), []).extend(s.value)
            elif s.at("lifecycle"):
                self.lifecycle[s.container()] = s.value

    def volume_names(self):
        return {v.get("name") for v in self.volumes}


WORKLOADS = [
    "deployment-kratos.yaml",
    "statefulset-mail.yaml",
    "job-migration.yaml",
    "job-migrations-custom.yaml",
    "deployment-watcher.yaml",
    "cronjob-cleanup.yaml",
]
KRATOS_CONTAINER = 'name: {{ include "kratos.name" . }}'


def chart_name(chart, values):
    """kratos.name: nameOverride, else the chart's name (the pods' app.kubernetes.io/name)."""
    return (values.get("nameOverride") or yaml.safe_load(open(os.path.join(chart, "Chart.yaml")))["name"])[:63].rstrip("-")


def pod_labels(chart, values, release):
    """The selector labels of the Kratos Deployment's pods (and of the `helm test` pod)."""
    dk = open(os.path.join(chart, "templates", "deployment-kratos.yaml")).read()
    assert 'app.kubernetes.io/name: {{ include "kratos.name" . }}' in dk, "chart's pod selector changed"
    return {"app.kubernetes.io/name": chart_name(chart, values), "app.kubernetes.io/instance": release}


def fullname(chart, values, release):
    helpers = open(os.path.join(chart, "templates", "_helpers.tpl")).read()
    assert "contains $name .Release.Name" in helpers, "kratos.fullname changed; update fullname()"
    name = values.get("nameOverride") or yaml.safe_load(open(os.path.join(chart, "Chart.yaml")))["name"]
    if values.get("fullnameOverride"):
        return values["fullnameOverride"][:63].rstrip("-")
    return (release if name in release else "%s-%s" % (release, name))[:63].rstrip("-")


def duration_s(v):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", str(v).strip())
    if not m:
        raise ValueError("not a duration: %r" % v)
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def host_port(addr):
    host, _, port = str(addr).rpartition(":")
    return host.strip("[]"), int(port)


def labels_match(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).get("matchLabels", {}).items())


def admitted(policies, pod_labels, port, peer_labels=None):
    """Whether some NetworkPolicy selecting pods with pod_labels admits TCP `port` (from a peer
    with peer_labels in the same namespace, if given; else from anyone a rule names). No policy
    selecting the pod: everything is admitted."""
    selecting = [p for p in policies if labels_match(p["spec"].get("podSelector"), pod_labels)]
    if not selecting:
        return True
    for p in selecting:
        for rule in p["spec"].get("ingress") or []:
            ports = rule.get("ports")
            if ports and not any(pp.get("port") == port for pp in ports):
                continue
            peers = rule.get("from")
            if not peers:
                return True
            if peer_labels is None:
                return True
            for peer in peers:
                if "namespaceSelector" in peer or "ipBlock" in peer:
                    continue
                if labels_match(peer.get("podSelector"), peer_labels):
                    return True
    return False


def container_port(container, ref):
    if isinstance(ref, int):
        return ref
    for p in container.get("ports") or []:
        if p.get("name") == ref:
            return p.get("containerPort")
    return None


def gateway_config(objs, name="kratos-gate-config"):
    for o in objs:
        if o.get("kind") == "ConfigMap" and o["metadata"]["name"].startswith(name):
            return yaml.safe_load(o["data"]["gateway.yaml"])
    return None


def hook_entries(config):
    """Every web_hook of a Kratos config (or snippet) that calls /hooks/kratos."""
    found = []

    def walk(node, where):
        if isinstance(node, dict):
            if node.get("hook") == "web_hook" and "/hooks/kratos" in str((node.get("config") or {}).get("url", "")):
                found.append((where, node["config"]))
            for k, v in node.items():
                walk(v, where + [str(k)])
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, where + [str(i)])

    walk(config, [])
    return found


class HookSource:
    """A Kratos config file that Kratos loads in a layout, and whether it comes from a Secret."""

    def __init__(self, label, config, from_secret, files):
        self.label, self.config, self.from_secret, self.files = label, config, from_secret, files


def check_hooks(layout, sources, gateway, kratos_env, reach, readme, jsonnet):
    """The web hook wired end to end in one layout.

    sources: HookSource list (every Kratos config file of the layout);
    gateway: its gateway.yaml; kratos_env: how the gateway gets its secret (a function
    secret_from_secret(gateway) -> (ok, detail)); reach(url) -> (ok, detail): whether Kratos
    reaches that URL at the gateway's hooks listener; files: paths Kratos can read."""
    before = len(PROBLEMS)
    hooks = [(s, where, cfg) for s in sources for where, cfg in hook_entries(s.config)]
    if not hooks:
        problem("hook-missing", "%s: Kratos calls no web hook at /hooks/kratos" % layout)
        return []
    listen = (gateway.get("listen") or {}).get("hooks")
    if not listen:
        problem("hook-listen", "%s: gateway.yaml has no listen.hooks, but Kratos calls %s"
                % (layout, hooks[0][2].get("url")))
    ok, detail = kratos_env(gateway)
    if not ok:
        problem("hook-secret", "%s: the gateway's hook secret: %s" % (layout, detail))
    # One report per distinct hook config (the snippets repeat one hook with a YAML anchor).
    groups = {}
    for src, where, cfg in hooks:
        groups.setdefault((src.label, json.dumps(cfg, sort_keys=True)), (src, cfg, []))[2].append(".".join(where))
    for src, cfg, wheres in groups.values():
        at = "%s (%s)" % (src.label, ", ".join(w.replace("selfservice.flows.", "") for w in wheres))
        url = urllib.parse.urlsplit(cfg.get("url", ""))
        port = url.port or 80
        # Without listen.hooks, still ask whether anything would carry the call to that port.
        lh, lp = host_port(listen) if listen else ("0.0.0.0", port)
        r_ok, r_detail = reach(url.hostname, port, lh, lp)
        if not r_ok:
            problem("hook-reach", "%s: %s: %s" % (layout, at, r_detail))
        auth = cfg.get("auth") or {}
        value = ((auth.get("config") or {}).get("value"))
        if auth.get("type") != "api_key" or not value:
            problem("hook-secret", "%s: %s: no api_key auth: the gateway then accepts any caller" % (layout, at))
        elif not src.from_secret:
            problem("hook-secret", "%s: %s: the shared secret %r is a literal in a file of the repository, "
                    "not from a Kubernetes Secret (or the environment)" % (layout, at, value))
        parse = (cfg.get("response") or {}).get("parse")
        if not isinstance(parse, bool):
            problem("hook-parse", "%s: %s: response.parse is not set (true or false, with the reason in "
                    "deploy/README.md)" % (layout, at))
        elif "`response.parse: %s`" % str(parse).lower() not in readme:
            problem("hook-parse", "%s: %s: response.parse: %s, but deploy/README.md gives no reason for it"
                    % (layout, at, str(parse).lower()))
        body = str(cfg.get("body", ""))
        if body.startswith("base64://"):
            try:
                decoded = base64.b64decode(body[len("base64://"):]).decode()
            except Exception as e:
                decoded = "(%s)" % e
            if decoded != jsonnet:
                problem("hook-body", "%s: %s: the base64 body is not deploy/kratos-webhook/blocklist-hook.jsonnet"
                        % (layout, at))
        elif body.startswith("file://"):
            if body[len("file://"):] not in src.files:
                problem("hook-body", "%s: %s: body %s is not a file Kratos has here (%s)"
                        % (layout, at, body, ", ".join(sorted(src.files)) or "no mounted files"))
        else:
            problem("hook-body", "%s: %s: body %r is neither base64:// nor file://" % (layout, at, body))
    if len(PROBLEMS) == before:
        print("ok   %s: web hook: Kratos -> %s (listen.hooks %s), secret %s, parse %s, body %s" % (
            layout, hooks[0][2].get("url"), listen, kratos_env(gateway)[1],
            (hooks[0][2].get("response") or {}).get("parse"), str(hooks[0][2].get("body"))[:16] + "…"))
    return hooks


LOOPBACK = ("127.0.0.1", "localhost", "::1")
ANY = ("0.0.0.0", "::", "")


def config_args(args):
    """The files of `--config P`, `--config=P`, `-c P` in a container's args."""
    out, it = [], iter(args or [])
    for a in it:
        a = str(a)
        if a in ("--config", "-c"):
            out.append(str(next(it, "")))
        elif a.startswith("--config="):
            out.append(a.split("=", 1)[1])
    return out


def secret_data(secrets, name, key):
    for o in secrets:
        if o.get("kind") == "Secret" and o["metadata"]["name"] == name:
            if key in (o.get("data") or {}):
                return base64.b64decode(o["data"][key]).decode()
            if key in (o.get("stringData") or {}):
                return o["stringData"][key]
    return None


def configmap_data(objs, name, key):
    for o in objs:
        if o.get("kind") == "ConfigMap" and o["metadata"]["name"] == name:
            return (o.get("data") or {}).get(key)
    return None


def volume_files(volume, objs, secrets):
    """{file name in the mount: (content, from a Secret)} of a configMap, secret or projected volume."""
    out = {}

    def add(kind, name, items):
        store = secrets if kind == "secret" else objs
        data = None
        for o in store:
            if o.get("kind") == ("Secret" if kind == "secret" else "ConfigMap") and o["metadata"]["name"] == name:
                data = o.get("data") or {}
        if data is None:
            return
        pairs = [(i["key"], i["path"]) for i in items] if items else [(k, k) for k in data]
        for key, path in pairs:
            if key in data:
                v = base64.b64decode(data[key]).decode() if kind == "secret" else data[key]
                out[path] = (v, kind == "secret")

    if "configMap" in volume:
        add("configMap", volume["configMap"]["name"], volume["configMap"].get("items"))
    if "secret" in volume:
        add("secret", volume["secret"]["secretName"], volume["secret"].get("items"))
    for src in (volume.get("projected") or {}).get("sources") or []:
        if "configMap" in src:
            add("configMap", src["configMap"]["name"], src["configMap"].get("items"))
        if "secret" in src:
            add("secret", src["secret"]["name"], src["secret"].get("items"))
    return out


def mounted_files(mounts, volumes, objs, secrets):
    """{absolute path: (content, from a Secret)} of what a container's mounts hold."""
    by_name = {v.get("name"): v for v in volumes}
    files = {}
    for m in mounts:
        v = by_name.get(m.get("name"))
        if v is None:
            continue
        for rel, val in volume_files(v, objs, secrets).items():
            files[m["mountPath"].rstrip("/") + "/" + rel] = val
    return files


def kratos_sources(label, config_files, files, fallback_snippet):
    """HookSources of the Kratos config files a container loads; when none calls the web hook,
    the documented snippet as a user would merge it in (a file of the repository)."""
    sources = []
    for path in config_files:
        if path not in files:
            problem("hook-config-file", "%s: Kratos loads --config %s, which no mount provides" % (label, path))
            continue
        content, from_secret = files[path]
        sources.append(HookSource("%s %s" % (label, path), yaml.safe_load(content) or {}, from_secret, set(files)))
    if not any(hook_entries(s.config) for s in sources) and fallback_snippet is not None:
        sources.append(HookSource("deploy/kratos-webhook/kratos-hooks.yaml merged into %s's config" % label,
                                  fallback_snippet, False, set(files)))
    return sources


def gateway_secret_check(gateway, container, files):
    """The gateway's hooks.secret_env from a secretKeyRef, or hooks.secret_file from a Secret mount."""
    hooks = gateway.get("hooks") or {}
    if hooks.get("secret_env"):
        var = hooks["secret_env"]
        for e in container.get("env") or []:
            if e.get("name") == var:
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    return True, "env %s from Secret %s key %s" % (var, ref.get("name"), ref.get("key")), ref
                return False, "env %s is not from a Secret (secretKeyRef)" % var, None
        return False, "hooks.secret_env names %s, which the container does not set" % var, None
    if hooks.get("secret_file"):
        got = files.get(hooks["secret_file"])
        if got and got[1]:
            return True, "file %s from a Secret" % hooks["secret_file"], None
        return False, "hooks.secret_file %s is not mounted from a Secret" % hooks["secret_file"], None
    return False, "no hooks.secret_env or hooks.secret_file: the endpoint accepts any caller", None


def same_pod_reach(gate_container):
    def reach(host, port, lh, lp):
        if host in LOOPBACK:
            if port != lp:
                return False, "calls %s:%d, the gateway's listen.hooks is port %d" % (host, port, lp)
            if lh not in LOOPBACK + ANY:
                return False, "listen.hooks %s:%d is not reachable on 127.0.0.1" % (lh, lp)
            if gate_container is None:
                return False, "calls %s but no gateway runs in Kratos's pod" % host
            return True, "same pod"
        return False, "calls %s:%d; in a sidecar layout Kratos reaches the gateway on 127.0.0.1" % (host, port)
    return reach


def service_reach(services, policies, kratos_labels, gate_container, gate_labels, remote_gate=None):
    """Kratos (pods with kratos_labels) calling a Service name that must lead to the gateway
    (gate_container: the gateway in Kratos's own pod, if any; remote_gate: in pods of its own)."""
    def reach(host, port, lh, lp):
        if host in LOOPBACK and gate_container is not None:
            return same_pod_reach(gate_container)(host, port, lh, lp)
        bad = []
        svc = next((s for s in services if s["metadata"]["name"] == host.split(".")[0]), None)
        sp = svc and next((p for p in svc["spec"].get("ports") or [] if p.get("port") == port), None)
        if svc is None:
            bad.append("no Service %s exposes the hooks port (it calls %s:%d)" % (host, host, port))
        elif sp is None:
            bad.append("Service %s has no port %d for the hooks listener" % (host, port))
        elif container_port(gate_container or remote_gate or {}, sp.get("targetPort", port)) != lp:
            bad.append("Service %s port %d targets %r, not the gateway's hooks port %d" % (host, port, sp.get("targetPort"), lp))
        if not admitted(policies, gate_labels, lp, kratos_labels):
            bad.append("no NetworkPolicy admits Kratos's pods to the gateway's hooks port %d" % lp)
        if bad:
            return False, "; ".join(bad)
        return True, "Service %s" % host
    return reach


def check_readme_docs(readme):
    for pid, needle, why in (
        ("list-docs", "blocklist.url", "the remote list source (blocklist.url) as the way beyond ConfigMap size and for instant cut-off"),
        ("list-docs", "1 MiB", "the ConfigMap size limit (1 MiB)"),
        ("list-docs", "256 KiB", "client-side apply's 256 KiB last-applied-configuration annotation"),
        ("list-docs", "--server-side", "`kubectl apply --server-side` for the blocklist ConfigMap"),
        ("rollout-doc", "kubectl rollout restart deployment/kratos", "`kubectl rollout restart` after a config change"),
    ):
        if needle not in readme:
            problem(pid, "deploy/README.md does not state %s" % why)


def compose_interpolate(text, env):
    def sub(m):
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(3)
        return env.get(name, "")
    return re.sub(r"\$\$|\$\{(\w+)(?:(:?[-?])[^}]*)?\}|\$(\w+)", sub, text)


def cmd_recipe(args):
    """The Helm values against the chart's templates, and the web hook, Kratos shutdown and
    metrics in every layout (Helm, kustomize sidecar, Compose)."""
    a = dict(zip(args[::2], args[1::2]))
    chart, repo = a["--chart"], a["--repo"]
    expect = [x for x in a.get("--expect", "").split(",") if x]
    dep = os.path.join(repo, "deploy")
    values = coalesce(yaml.safe_load(open(os.path.join(chart, "values.yaml"))),
                      yaml.safe_load(open(os.path.join(dep, "helm", "kratos-values.yaml"))))
    helm_objs = load_all(a["--helm-render"])
    secrets = load_all(a["--hook-secret"]) if os.path.getsize(a["--hook-secret"]) else []
    readme = open(os.path.join(dep, "README.md")).read()
    jsonnet_path = os.path.join(dep, "kratos-webhook", "blocklist-hook.jsonnet")
    jsonnet = open(jsonnet_path).read()
    snippet = yaml.safe_load(open(os.path.join(dep, "kratos-webhook", "kratos-hooks.yaml")))
    release = "kratos"
    full = fullname(chart, values, release)
    kratos_labels = pod_labels(chart, values, release)
    policies = [o for o in helm_objs if o.get("kind") == "NetworkPolicy"]
    services = [o for o in helm_objs if o.get("kind") == "Service"]
    gw = gateway_config(helm_objs)
    if gw is None:
        problem("helm-config", "deploy/helm renders no ConfigMap kratos-gate-config")
        gw = {}
    listen = gw.get("listen") or {}

    # --- which pods our values reach, and with what
    pods = {t: Pod(t, template_sinks(os.path.join(chart, "templates", t), values)) for t in WORKLOADS}
    kratos = pods["deployment-kratos.yaml"]
    gates = [c for c in kratos.containers if c.get("name") == "kratos-gate"]
    if len(gates) != 1:
        problem("gateway-missing", "deployment-kratos.yaml: %d kratos-gate containers from %s"
                % (len(gates), kratos.sources.get("containers")))
    gate = gates[0] if gates else {}
    gate_volumes = {m.get("name") for m in gate.get("volumeMounts") or []}
    check_chart_pods("helm", pods, gate_volumes, helm_objs + secrets)
    for p in unwritable(gw, gate, kratos.volumes) if gate else []:
        problem("writable", "helm: " + p)
    for m in gate.get("volumeMounts") or []:
        if m.get("name") not in kratos.volume_names():
            problem("mounts-defined", "kratos-gate mounts %s, not a volume of the Kratos pod" % m.get("name"))

    # --- the public Ingress and `helm test`: which Services they name, and where those lead
    def gate_target(service_port):
        """The gateway port a Service port leads to (None: not the gateway's)."""
        target = service_port.get("targetPort", service_port.get("port"))
        return container_port(gate, target) if gate else None

    def chart_service(kind):
        tpl = open(os.path.join(chart, "templates", "service-%s.yaml" % kind)).read()
        enabled = dig(values, "service.%s.enabled" % kind)
        target = re.search(r"targetPort: (\S+)", tpl).group(1)
        return enabled, target

    ing = open(os.path.join(chart, "templates", "ingress-public.yaml")).read()
    m = re.search(r"service:\s*\n\s*name: \{\{ \$fullName \}\}(-[\w-]+)\s*\n\s*port:\s*\n\s*name: "
                  r"\{\{ \$\.Values\.([\w.]+) \}\}", ing)
    ing_svc, ing_port = full + m.group(1), dig(values, m.group(2))
    enabled, target = chart_service("public")
    _, pub_port = host_port(listen.get("public", ":0"))
    if enabled:
        problem("ingress-backend", "the chart's public Ingress leads to its Service %s, targetPort %s: Kratos's "
                "own port, around the gateway" % (ing_svc, target))
    else:
        svc = next((s for s in services if s["metadata"]["name"] == ing_svc), None)
        port = svc and next((p for p in svc["spec"]["ports"] if p.get("name") == ing_port), None)
        if not svc or not port:
            problem("ingress-backend", "the chart's public Ingress (ingress.public.enabled) leads to Service %s port "
                    "%r, which neither the chart (service.public.enabled: false) nor deploy/helm creates"
                    % (ing_svc, ing_port))
        elif gate_target(port) != pub_port or not labels_match({"matchLabels": svc["spec"]["selector"]}, kratos_labels):
            problem("ingress-backend", "Service %s port %s does not lead to the gateway's public port %d"
                    % (ing_svc, ing_port, pub_port))
        else:
            print("ok   ingress-public.yaml: backend %s:%s -> the gateway's public port %d" % (ing_svc, ing_port, pub_port))

    test = open(os.path.join(chart, "templates", "tests", "test-connection.yaml")).read()
    m = re.search(r"args:\s*\['\{\{ include \"kratos.fullname\" \. \}\}(-[\w-]+):\{\{ \.Values\.([\w.]+) \}\}(/[^']*)'\]", test)
    test_svc, test_port, test_path = full + m.group(1), dig(values, m.group(2)), m.group(3)
    enabled, target = chart_service("admin")
    _, adm_port = host_port(listen.get("admin", ":0"))
    test_labels = dict(kratos_labels, **{"app.kubernetes.io/managed-by": "Helm"})
    if enabled:
        host = dig(values, "kratos.config.serve.admin.host") or ""
        if host in LOOPBACK:
            problem("helm-test", "helm test calls %s:%s%s, the chart's Service to Kratos's admin port, where "
                    "Kratos listens on %s only" % (test_svc, test_port, test_path, host))
    else:
        svc = next((s for s in services if s["metadata"]["name"] == test_svc), None)
        port = svc and next((p for p in svc["spec"]["ports"] if p.get("port") == test_port), None)
        if not svc or not port:
            problem("helm-test", "helm test (templates/tests/test-connection.yaml) calls %s:%s%s: no such Service "
                    "(service.admin.enabled: false, and deploy/helm has none)" % (test_svc, test_port, test_path))
        elif gate_target(port) != adm_port:
            problem("helm-test", "Service %s port %s does not lead to the gateway's admin port %d" % (test_svc, test_port, adm_port))
        elif not admitted(policies, kratos_labels, adm_port, test_labels):
            problem("helm-test", "no NetworkPolicy admits the helm test pod (labels %s) to the gateway's admin port %d"
                    % (test_labels, adm_port))
        else:
            print("ok   tests/test-connection.yaml: %s:%s%s -> the gateway's admin port %d -> Kratos"
                  % (test_svc, test_port, test_path, adm_port))

    # --- metrics: Kratos's (through the gateway's admin listener) and the gateway's
    ann = kratos.annotations
    metrics_path = dig(values, "service.admin.metricsPath")
    kratos_admin_host = dig(values, "kratos.config.serve.admin.host") or "0.0.0.0"
    kratos_admin_port = dig(values, "kratos.config.serve.admin.port")
    up = urllib.parse.urlsplit((gw.get("upstream") or {}).get("admin", ""))
    reach_kratos = set()
    if up.hostname in LOOPBACK and up.port == kratos_admin_port:
        reach_kratos.add(adm_port)
    if kratos_admin_host not in LOOPBACK:
        reach_kratos.add(kratos_admin_port)
    port = int(ann.get("prometheus.io/port", 0) or 0)
    if ann.get("prometheus.io/scrape") != "true" or ann.get("prometheus.io/path") != metrics_path or port not in reach_kratos:
        problem("kratos-metrics", "the Kratos pod's annotations (deployment.podMetadata.annotations merged over the "
                "chart's) %s do not scrape Kratos's metrics: %s on port %s" % (
                    {k: v for k, v in ann.items() if k.startswith("prometheus.io/")}, metrics_path,
                    " or ".join(str(p) for p in sorted(reach_kratos)) or "(none reachable)"))
    elif not admitted(policies, kratos_labels, port):
        problem("kratos-metrics", "no NetworkPolicy rule admits Prometheus to port %d of the Kratos pods" % port)
    else:
        print("ok   Kratos metrics: pod annotations scrape %s on port %d" % (metrics_path, port))
    _, ops_port = host_port(listen.get("ops", ":0"))
    scrapes = [("pod", ann)] + [("Service " + s["metadata"]["name"], s["metadata"].get("annotations") or {})
                                for s in services if labels_match({"matchLabels": s["spec"].get("selector") or {}}, kratos_labels)]
    gate_scrape = [w for w, an in scrapes if an.get("prometheus.io/scrape") == "true"
                   and an.get("prometheus.io/path", "/metrics") == "/metrics" and str(an.get("prometheus.io/port")) == str(ops_port)]
    if not gate_scrape:
        problem("gateway-metrics", "nothing scrapes the gateway's /metrics on its ops port %d" % ops_port)
    elif not admitted(policies, kratos_labels, ops_port):
        problem("gateway-metrics", "no NetworkPolicy rule admits port %d of the Kratos pods" % ops_port)
    else:
        print("ok   gateway metrics: %s annotations scrape /metrics on port %d" % (gate_scrape[0], ops_port))

    # --- shutdown: Kratos outlives the gateway's drain
    server = gw.get("server") or {}
    drain = duration_s(server.get("shutdown_delay", "0s")) + duration_s(server.get("shutdown_grace", "20s"))
    check_prestop("helm (deployment.lifecycle)", kratos.lifecycle.get(KRATOS_CONTAINER),
                  server, drain, dig(values, "deployment.terminationGracePeriodSeconds"))

    # --- the web hook, Helm layout
    kargs = ["serve", "all", "--config", "/etc/config/kratos.yaml"] + kratos.container_args.get(KRATOS_CONTAINER, [])
    dk = open(os.path.join(chart, "templates", "deployment-kratos.yaml")).read()
    assert "- /etc/config/kratos.yaml" in dk and "mountPath: /etc/config" in dk, "chart's config mount changed"
    cm = open(os.path.join(chart, "templates", "configmap-config.yaml")).read()
    assert "range $key, $value := .Values.kratos.identitySchemas" in cm, "chart's config map changed"
    files = {"/etc/config/kratos.yaml": (yaml.safe_dump(values["kratos"]["config"]), False)}
    for k, v in (values["kratos"].get("identitySchemas") or {}).items():
        files["/etc/config/" + k] = (v, False)
    kmounts = [m for c, m in kratos.mounts if c == KRATOS_CONTAINER]
    files.update(mounted_files(kmounts, kratos.volumes, helm_objs, secrets))
    gate_files = mounted_files(gate.get("volumeMounts") or [], kratos.volumes, helm_objs, secrets)
    hooks = check_hooks("helm", kratos_sources("helm Kratos", config_args(kargs), files, snippet), gw,
                        lambda g: gateway_secret_check(g, gate, gate_files)[:2],
                        service_reach(services, policies, kratos_labels, gate or None, kratos_labels), readme, jsonnet)
    same_secret("helm", hooks, gw, gate, secrets, gate_files)

    # --- kustomize sidecar
    sc = load_all(a["--sidecar-render"])
    check_sidecar(sc, secrets, snippet, readme, jsonnet)

    # --- kustomize standalone (its own hook Secret: the URL is the Service's)
    st_secret = a.get("--standalone-hook-secret")
    check_standalone(chart, load_all(a["--standalone-render"]),
                     os.path.join(dep, "kubernetes", "overlays", "standalone", "kratos-values-hook.yaml"),
                     load_all(st_secret) if st_secret and os.path.getsize(st_secret) else [], snippet, readme, jsonnet)

    # --- Compose
    check_compose(os.path.join(dep, "compose"), snippet, readme, jsonnet)

    check_readme_docs(readme)
    return finish(expect)


def check_chart_pods(label, pods, gate_volumes, own_objs):
    """No gateway (containers, volumes) in the chart's other pods where a field can keep it out;
    every mount names a volume of its pod; every volume's ConfigMap or Secret is created here."""
    for t, pod in pods.items():
        reads = "; ".join("%s <- %s" % (k, ", ".join(v) if isinstance(v, list) else v)
                          for k, v in sorted(pod.sources.items()))
        print("     %s %s reads: %s" % (label, t, reads or "nothing of ours"))
        for c in pod.containers:
            if c.get("name") == "kratos-gate" and t != "deployment-kratos.yaml":
                problem("courier-gateway", label + ": %s: runs a second gateway, from %s (set its own field: a "
                        "non-empty value, since the chart falls back on an empty one)" % (t, pod.sources["containers"]))
        for src in pod.sources.get("volumes", []):
            if "as " in src and gate_volumes & pod.volume_names():
                problem("courier-gateway", label + ": %s: gets the gateway's volumes %s from %s"
                        % (t, ", ".join(sorted(gate_volumes & pod.volume_names())), src))
        names = pod.volume_names()
        for container, m in pod.mounts:
            if m.get("name") not in names:
                problem("mounts-defined", label + ": %s: container %s mounts %s, which is not a volume of the pod (%s)"
                        % (t, container, m.get("name"), pod.sources.get("volumeMounts")))
        for v in pod.volumes:
            for kind, ref in [("configMap", (v.get("configMap") or {}).get("name")),
                              ("secret", (v.get("secret") or {}).get("secretName"))] + [
                    (k, (s.get(k) or {}).get("name")) for s in (v.get("projected") or {}).get("sources") or []
                    for k in ("configMap", "secret") if k in s]:
                if ref and not any(o.get("kind") == ("Secret" if kind == "secret" else "ConfigMap")
                                   and o["metadata"]["name"] == ref for o in own_objs):
                    problem("volume-source", label + ": %s: volume %s needs %s %s, which deploy/ does not create"
                            % (t, v.get("name"), kind, ref))
        if t != "deployment-kratos.yaml" and gate_volumes & names and not any("as " in x for x in pod.sources.get("volumes", [])):
            print("NOTE " + label + ": %s: has the gateway's volumes %s (unmounted) from %s: the template has no field of "
                  "its own for them; they exist before `helm install`" % (t, ", ".join(sorted(gate_volumes & names)),
                                                                          pod.sources.get("volumes")))


def check_standalone(chart, objs, values_path, secrets, snippet, readme, jsonnet):
    """The gateway in its own pods; Kratos from the chart with kratos-values-hook.yaml calls it
    through the Service kratos-gate-hooks."""
    gw = gateway_config(objs) or {}
    if not (gw.get("listen") or {}).get("hooks"):
        return  # the standalone layout does not offer the web hook
    dep = next((o for o in objs if o.get("kind") == "Deployment" and o["metadata"]["name"] == "kratos-gate"), None)
    spec = dep["spec"]["template"]["spec"]
    gate = next(c for c in spec["containers"] if c["name"] == "kratos-gate")
    gate_labels = dep["spec"]["template"]["metadata"].get("labels") or {}
    gate_files = mounted_files(gate.get("volumeMounts") or [], spec.get("volumes") or [], objs, secrets)
    if not os.path.exists(values_path):
        problem("hook-missing", "kustomize standalone: listen.hooks is set, but there are no chart values "
                "(%s) for Kratos to call it" % os.path.relpath(values_path))
        return
    values = coalesce(yaml.safe_load(open(os.path.join(chart, "values.yaml"))), yaml.safe_load(open(values_path)))
    pods = {t: Pod(t, template_sinks(os.path.join(chart, "templates", t), values)) for t in WORKLOADS}
    check_chart_pods("standalone chart values", pods, set(), objs + secrets)
    kratos = pods["deployment-kratos.yaml"]
    kargs = ["serve", "all", "--config", "/etc/config/kratos.yaml"] + kratos.container_args.get(KRATOS_CONTAINER, [])
    files = {"/etc/config/kratos.yaml": ("{}", False)}
    files.update(mounted_files([m for c, m in kratos.mounts if c == KRATOS_CONTAINER], kratos.volumes, objs, secrets))
    kratos_labels = pod_labels(chart, values, "kratos")
    services = [o for o in objs if o.get("kind") == "Service"]
    policies = [o for o in objs if o.get("kind") == "NetworkPolicy"]
    hooks = check_hooks("kustomize standalone", kratos_sources("standalone Kratos (chart)", config_args(kargs), files, snippet),
                        gw, lambda g: gateway_secret_check(g, gate, gate_files)[:2],
                        service_reach(services, policies, kratos_labels, None, gate_labels, gate), readme, jsonnet)
    same_secret("kustomize standalone", hooks, gw, gate, secrets, gate_files)


def same_secret(layout, hooks, gw, gate, secrets, gate_files):
    """Kratos's api_key value is the secret the gateway reads (both from one Secret)."""
    ok, _, ref = gateway_secret_check(gw, gate or {}, gate_files)
    if not ok or not ref:
        return
    want = secret_data(secrets, ref.get("name"), ref.get("key"))
    for src, where, cfg in hooks:
        got = (((cfg.get("auth") or {}).get("config")) or {}).get("value")
        if src.from_secret and want is not None and got != want:
            problem("hook-secret", "%s: %s: Kratos sends a different secret than the gateway reads (Secret %s key %s)"
                    % (layout, src.label, ref.get("name"), ref.get("key")))


def check_prestop(label, lifecycle, server, drain, grace_period):
    pre = (lifecycle or {}).get("preStop") or {}
    secs = (pre.get("sleep") or {}).get("seconds")
    if "exec" in pre:
        problem("kratos-prestop", "%s: Kratos's preStop runs a command; its distroless image has no shell or sleep: "
                "use the native `sleep` action (Kubernetes 1.30+)" % label)
    elif not isinstance(secs, int):
        problem("kratos-prestop", "%s: Kratos has no preStop sleep: it closes its listeners at once while the gateway "
                "still forwards for server.shutdown_delay (%s) + shutdown_grace (%s): 502s on every rollout"
                % (label, server.get("shutdown_delay", "0s"), server.get("shutdown_grace", "20s")))
    elif secs < drain or secs <= duration_s(server.get("shutdown_delay", "0s")):
        problem("kratos-prestop", "%s: Kratos's preStop sleep (%ds) is shorter than the gateway's drain "
                "(shutdown_delay + shutdown_grace = %gs)" % (label, secs, drain))
    elif not isinstance(grace_period, int) or grace_period <= secs:
        problem("kratos-prestop", "%s: terminationGracePeriodSeconds (%s) must exceed Kratos's preStop sleep (%ds)"
                % (label, grace_period, secs))
    else:
        print("ok   %s: Kratos's preStop sleep %ds >= the gateway's drain %gs, terminationGracePeriodSeconds %d"
              % (label, secs, drain, grace_period))


def check_sidecar(objs, secrets, snippet, readme, jsonnet):
    dep = next((o for o in objs if o.get("kind") == "Deployment" and o["metadata"]["name"] == "kratos"), None)
    if dep is None:
        problem("sidecar", "the sidecar overlay renders no Deployment kratos")
        return
    pod = dep["spec"]["template"]
    spec = pod["spec"]
    gate = next((c for c in spec["containers"] if c["name"] == "kratos-gate"), None)
    kr = next((c for c in spec["containers"] if c["name"] == "kratos"), None)
    gw = gateway_config(objs) or {}
    server = gw.get("server") or {}
    drain = duration_s(server.get("shutdown_delay", "0s")) + duration_s(server.get("shutdown_grace", "20s"))
    check_prestop("kustomize sidecar (Deployment kratos)", kr.get("lifecycle"), server, drain,
                  spec.get("terminationGracePeriodSeconds"))
    files = mounted_files(kr.get("volumeMounts") or [], spec.get("volumes") or [], objs, secrets)
    gate_files = mounted_files(gate.get("volumeMounts") or [], spec.get("volumes") or [], objs, secrets)
    services = [o for o in objs if o.get("kind") == "Service"]
    policies = [o for o in objs if o.get("kind") == "NetworkPolicy"]
    labels = pod["metadata"].get("labels") or {}
    hooks = check_hooks("kustomize sidecar", kratos_sources("sidecar Kratos", config_args(kr.get("args")), files, snippet),
                        gw, lambda g: gateway_secret_check(g, gate, gate_files)[:2],
                        service_reach(services, policies, labels, gate, labels), readme, jsonnet)
    same_secret("kustomize sidecar", hooks, gw, gate, secrets, gate_files)


def check_compose(cdir, snippet, readme, jsonnet):
    path = os.path.join(cdir, "docker-compose.yaml")
    raw = yaml.safe_load(open(path))
    env = {"KRATOS_GATE_HOOK_SECRET": "compose-check-secret"}
    compose = yaml.safe_load(compose_interpolate(open(path).read(), env))
    svcs = compose["services"]
    kr, gs = svcs["kratos"], svcs["kratos-gate"]

    def bind_files(service):
        files = {}
        for v in service.get("volumes") or []:
            src, _, rest = str(v).partition(":")
            target = rest.split(":")[0]
            local = os.path.normpath(os.path.join(cdir, src))
            if os.path.isdir(local):
                for f in os.listdir(local):
                    files[target.rstrip("/") + "/" + f] = (open(os.path.join(local, f)).read(), False)
        for c in service.get("configs") or []:
            name = c["source"] if isinstance(c, dict) else c
            target = c.get("target", "/" + name) if isinstance(c, dict) else "/" + name
            content = ((compose.get("configs") or {}).get(name) or {}).get("content")
            raw_content = ((raw.get("configs") or {}).get(name) or {}).get("content") or ""
            if content is not None:
                # From the environment when the secret is a ${…} of the compose file, not a literal.
                files[target] = (content, bool(re.search(r"value:\s*\$\{\w+", raw_content)))
        return files

    files = bind_files(kr)
    gfiles = bind_files(gs)
    gw = yaml.safe_load(gfiles.get("/etc/kratos-gate/gateway.yaml", ("{}", False))[0]) or {}
    command = kr.get("command") or []

    def secret_check(g):
        var = (g.get("hooks") or {}).get("secret_env")
        if not var:
            return False, "no hooks.secret_env (Compose passes the secret through the environment)"
        rawenv = (raw["services"]["kratos-gate"].get("environment") or {})
        v = rawenv.get(var) if isinstance(rawenv, dict) else None
        if not v or not str(v).startswith("${"):
            return False, "environment %s is not taken from the environment of `docker compose`" % var
        return True, "env %s" % var

    def reach(host, port, lh, lp):
        if host == "kratos-gate" and port == lp and lh in ANY:
            return True, "Compose service kratos-gate"
        return False, "calls %s:%d; the gateway is the Compose service kratos-gate, listen.hooks %s:%d" % (host, port, lh, lp)

    hooks = check_hooks("compose", kratos_sources("compose Kratos", config_args(command), files, snippet),
                        gw, secret_check, reach, readme, jsonnet)
    for src, where, cfg in hooks:
        got = (((cfg.get("auth") or {}).get("config")) or {}).get("value")
        if src.from_secret and got != env["KRATOS_GATE_HOOK_SECRET"]:
            problem("hook-secret", "compose: %s: Kratos's secret is not $KRATOS_GATE_HOOK_SECRET" % src.label)
    # The inline copy says what deploy/kratos-webhook/kratos-hooks.yaml says, but for the URL and
    # the secret's source.
    def shape(hook_list):
        out = []
        for where, cfg in hook_list:
            c = json.loads(json.dumps(cfg))
            c.pop("url", None)
            ((c.get("auth") or {}).get("config") or {}).pop("value", None)
            out.append((tuple(where), json.dumps(c, sort_keys=True)))
        return sorted(out)
    inline = [(where, cfg) for src, where, cfg in hooks if src.from_secret]
    if inline and shape(inline) != shape(hook_entries(snippet)):
        problem("hook-drift", "compose: the hooks in docker-compose.yaml (configs.kratos-hooks) differ from "
                "deploy/kratos-webhook/kratos-hooks.yaml beyond url and secret")


def finish(expect):
    if expect:
        missing = [e for e in expect if e not in PROBLEMS]
        print("self-test: %d problems reported on the old files; expected ids %s"
              % (len(PROBLEMS), ", ".join(expect)))
        if missing:
            print("ERROR self-test: the checks no longer catch: %s" % ", ".join(missing))
            return 1
        print("ok   self-test: every expected problem caught on the old files")
        return 0
    return len(PROBLEMS)


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
    elif cmd == "recipe":
        failed = cmd_recipe(argv[2:])
    else:
        raise SystemExit("unknown command " + cmd)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
