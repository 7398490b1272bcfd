#!/bin/sh
# Prints the Secret kratos-gate-hook for the Kubernetes layouts (Helm and kustomize sidecar):
#   secret             the web hook's shared secret (the gateway: hooks.secret_env from it)
#   kratos-hooks.yaml  kratos-hooks.yaml with that secret filled in (Kratos: a second --config)
# Both keys come from one random value, so the two sides always agree. Apply it once:
#
#   deploy/kratos-webhook/create-secret.sh | kubectl apply -n auth --server-side -f -
#
# Running it again makes a new secret: apply it, then `kubectl rollout restart deployment/kratos`
# (both containers read it at start). Options: --url URL (default: the gateway in the same pod,
# http://127.0.0.1:4457/hooks/kratos). Env: KRATOS_GATE_HOOK_SECRET (use this value instead of
# a random one), KUBECTL (default kubectl; only its offline --dry-run=client is used).
set -eu
dir=$(cd "$(dirname "$0")" && pwd)
url=
while [ $# -gt 0 ]; do
  case $1 in
    --url) url=$2; shift 2 ;;
    *) echo "usage: $0 [--url URL]" >&2; exit 2 ;;
  esac
done
secret=${KRATOS_GATE_HOOK_SECRET:-$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')}
case $secret in *[!A-Za-z0-9._~-]*) echo "KRATOS_GATE_HOOK_SECRET: use letters, digits and ._~- only" >&2; exit 2 ;; esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed -e "s|value: \${KRATOS_GATE_HOOK_SECRET}$|value: $secret|" \
    ${url:+-e "s|url: http://127.0.0.1:4457/hooks/kratos|url: $url|"} \
    "$dir/kratos-hooks.yaml" >"$tmp/kratos-hooks.yaml"
printf %s "$secret" >"$tmp/secret"
"${KUBECTL:-kubectl}" create secret generic kratos-gate-hook \
  --from-file=secret="$tmp/secret" --from-file=kratos-hooks.yaml="$tmp/kratos-hooks.yaml" \
  --dry-run=client -o yaml
