#!/usr/bin/env bash
# Builds the real control plane for the cluster test tier from the Go module proxy:
#   kubernetes-<v>/{kube-apiserver,kube-controller-manager,kube-scheduler,kubectl}
#   etcd-<v>/etcd   kwok-<v>/kwok   helm-<v>/helm   actionlint-<v>/actionlint (lints the CI workflows)
# into ${OSMF_TOOLS_DIR:-$HOME/.cache/osmf/tools}, keyed by version (versions: hack/control-plane-versions.env).
# Idempotent: a component whose folder exists is reused (seconds on a warm machine).
# Each component is built in a temporary folder and moved into place only when complete.
# Exit 0 and one "component: path" line per component when all are there; otherwise exit 1, print
# the error and write it to $TOOLS/build-error.txt, which the cluster tests show as their skip reason.
# Options: --check (build nothing; exit 1 if a component is missing), --print-env (print KEY=path lines).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=control-plane-versions.env
source "$HERE/control-plane-versions.env"

TOOLS="${OSMF_TOOLS_DIR:-$HOME/.cache/osmf/tools}"
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"
MODE=build
case "${1:-}" in
  "") ;;
  --check) MODE=check ;;
  --print-env) MODE=env ;;
  --step) MODE=step ;;  # internal: runs one build function in its own process (so errexit holds)
  *) echo "usage: $0 [--check|--print-env]" >&2; exit 2 ;;
esac

K8S_DIR="$TOOLS/kubernetes-$KUBERNETES_VERSION"
ETCD_DIR="$TOOLS/etcd-$ETCD_VERSION"
KWOK_DIR="$TOOLS/kwok-$KWOK_VERSION"
HELM_DIR="$TOOLS/helm-$HELM_VERSION"
ACTIONLINT_DIR="$TOOLS/actionlint-$ACTIONLINT_VERSION"
ERROR_FILE="$TOOLS/build-error.txt"

print_env() {
  echo "OSMF_KUBE_APISERVER=$K8S_DIR/kube-apiserver"
  echo "OSMF_KUBE_CONTROLLER_MANAGER=$K8S_DIR/kube-controller-manager"
  echo "OSMF_KUBE_SCHEDULER=$K8S_DIR/kube-scheduler"
  echo "OSMF_KUBECTL=$K8S_DIR/kubectl"
  echo "OSMF_ETCD=$ETCD_DIR/etcd"
  echo "OSMF_KWOK=$KWOK_DIR/kwok"
  echo "OSMF_HELM=$HELM_DIR/helm"
  echo "OSMF_ACTIONLINT=$ACTIONLINT_DIR/actionlint"
}

have() { local d=$1; shift; local b; for b in "$@"; do [[ -x "$d/$b" ]] || return 1; done; }

if [[ $MODE == env ]]; then print_env; exit 0; fi
if [[ $MODE == check ]]; then
  missing=0
  have "$K8S_DIR" kube-apiserver kube-controller-manager kube-scheduler kubectl || { echo "missing: $K8S_DIR"; missing=1; }
  have "$ETCD_DIR" etcd || { echo "missing: $ETCD_DIR"; missing=1; }
  have "$KWOK_DIR" kwok || { echo "missing: $KWOK_DIR"; missing=1; }
  have "$HELM_DIR" helm || { echo "missing: $HELM_DIR"; missing=1; }
  have "$ACTIONLINT_DIR" actionlint || { echo "missing: $ACTIONLINT_DIR"; missing=1; }
  exit $missing
fi

command -v go >/dev/null || { mkdir -p "$TOOLS"; echo "go not found on PATH: cannot build the control plane" | tee "$ERROR_FILE" >&2; exit 1; }

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false -mod=mod"
FAILED=()

log() { echo "[build-control-plane $(date +%H:%M:%S)] $*" >&2; }

# run_step NAME FUNCTION ARGS...: runs FUNCTION in a fresh bash (errexit is ignored inside an `if`
# or `||` in the same shell) with its output in $WORK/NAME.log; on failure records the tail.
run_step() {
  local name=$1; shift
  local start=$SECONDS
  log "building $name"
  if bash "$SELF" --step "$@" >"$WORK/$name.log" 2>&1; then
    log "$name built in $((SECONDS - start)) s"
    return 0
  fi
  log "$name FAILED after $((SECONDS - start)) s; last lines:"
  tail -n 25 "$WORK/$name.log" >&2
  FAILED+=("$name: $(grep -v '^\s*$' "$WORK/$name.log" | tail -n 3 | tr '\n' ' ' | cut -c1-400)")
  return 1
}

# gomod_of MODULE@VERSION: path of that module's go.mod in the module cache.
gomod_of() {
  go mod download -json "$1" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p'
}

build_kubernetes() {
  local v=$KUBERNETES_VERSION minor staging gomod out="$WORK/kubernetes-out"
  staging="v0.${v#v1.}"            # v1.36.3 -> v0.36.3 (the staging modules' tag)
  minor="${v#v1.}"; minor="${minor%%.*}"
  gomod="$(gomod_of "k8s.io/kubernetes@$v")"
  [[ -f $gomod ]] || { echo "no go.mod for k8s.io/kubernetes@$v"; return 1; }
  mkdir -p "$WORK/k8s" "$out" && cd "$WORK/k8s"
  go mod init osmf.dev/controlplane-kubernetes
  go mod edit -require="k8s.io/kubernetes@$v"
  # Every staging module k8s.io/kubernetes requires at v0.0.0 (local replace upstream) is pinned
  # to its published tag; the list comes from that version's own go.mod, never by hand.
  local mods
  mods="$(awk '/^require[[:space:]]*\(/{r=1;next} r&&/^\)/{r=0} {l=$0; sub(/^require[[:space:]]+/,"",l)} (r||/^require /)&&l ~ /^[[:space:]]*k8s\.io\/[^[:space:]]+[[:space:]]+v0\.0\.0([[:space:]]|$)/{split(l,a," "); print a[1]}' "$gomod" | sort -u)"
  [[ -n $mods ]] || { echo "no k8s.io/* v0.0.0 requirements found in $gomod"; return 1; }
  local m
  for m in $mods; do go mod edit -replace="$m=$m@$staging"; done
  echo "pinned $(wc -w <<<"$mods") staging modules to $staging"
  local pkgs=(k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
              k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
  go get "${pkgs[@]/%/@$v}"   # pinned: a bare package path would resolve k8s.io/kubernetes@latest
  local x ld="-s -w"
  for x in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $x.gitVersion=$v -X $x.gitMajor=1 -X $x.gitMinor=$minor -X $x.gitTreeState=clean"
    ld+=" -X $x.buildDate=1970-01-01T00:00:00Z"
  done
  go build -ldflags="$ld" -o "$out/" "${pkgs[@]}"
  "$out/kube-apiserver" --version
  mv "$out" "$K8S_DIR.tmp" && mv "$K8S_DIR.tmp" "$K8S_DIR"
}

build_etcd() {
  local v=$ETCD_VERSION out="$WORK/etcd-out"
  mkdir -p "$WORK/etcd" "$out" && cd "$WORK/etcd"
  go mod init osmf.dev/controlplane-etcd
  cat >main.go <<'EOF'
// etcd built from the module proxy: the server's own main is just this call.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
  go get "go.etcd.io/etcd/server/v3@$v"
  go mod tidy
  go build -ldflags="-s -w" -o "$out/etcd" .
  "$out/etcd" --version
  mv "$out" "$ETCD_DIR.tmp" && mv "$ETCD_DIR.tmp" "$ETCD_DIR"
}

build_go_install() {  # DEST MODULE/cmd/x@VERSION BINARY [EXTRA_LDFLAGS]
  local dest=$1 pkg=$2 bin=$3 ldflags="-s -w ${4:-}"
  local out="$WORK/$bin-out"  # a separate `local`: words of one are expanded before any is set
  mkdir -p "$out" && cd "$WORK"
  GOFLAGS="-trimpath -buildvcs=false" GOBIN="$out" go install -ldflags="$ldflags" "$pkg"
  "$out/$bin" --help >/dev/null
  mv "$out" "$dest.tmp" && mv "$dest.tmp" "$dest"
}

if [[ $MODE == step ]]; then
  "${@:2}"
  exit 0
fi

mkdir -p "$TOOLS"
# One build at a time per tools folder (a developer and CI may share the machine).
exec 9>"$TOOLS/.build.lock"
flock 9
WORK="$(mktemp -d "$TOOLS/.work.XXXXXX")"
export WORK
trap 'rm -rf "$WORK"' EXIT
total_start=$SECONDS
rm -f "$ERROR_FILE"
# Killed from outside (e.g. CI's `timeout`): leave the reason for the cluster tier's skip message.
trap 'echo "control plane build interrupted by a signal after $((SECONDS - total_start)) s (hack/build-control-plane.sh)" | tee "$ERROR_FILE" >&2; exit 1' TERM INT
rm -rf "$K8S_DIR.tmp" "$ETCD_DIR.tmp" "$KWOK_DIR.tmp" "$HELM_DIR.tmp" "$ACTIONLINT_DIR.tmp"
have "$K8S_DIR" kube-apiserver kube-controller-manager kube-scheduler kubectl || run_step "kubernetes-$KUBERNETES_VERSION" build_kubernetes || true
have "$ETCD_DIR" etcd || run_step "etcd-$ETCD_VERSION" build_etcd || true
have "$KWOK_DIR" kwok || run_step "kwok-$KWOK_VERSION" build_go_install "$KWOK_DIR" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" kwok || true
# As Helm's Makefile does: its version, and the Kubernetes version `helm template` assumes (ours).
k8s_minor="${KUBERNETES_VERSION#v1.}"; k8s_minor="${k8s_minor%%.*}"
helm_ldflags="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for x in pkg/chartutil pkg/lint/rules; do
  helm_ldflags+=" -X helm.sh/helm/v3/$x.k8sVersionMajor=1 -X helm.sh/helm/v3/$x.k8sVersionMinor=$k8s_minor"
done
have "$HELM_DIR" helm || run_step "helm-$HELM_VERSION" build_go_install "$HELM_DIR" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" helm "$helm_ldflags" || true
have "$ACTIONLINT_DIR" actionlint || run_step "actionlint-$ACTIONLINT_VERSION" build_go_install "$ACTIONLINT_DIR" "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION" actionlint "-X github.com/rhysd/actionlint.version=$ACTIONLINT_VERSION" || true

if ((${#FAILED[@]})); then
  {
    echo "control plane build failed (hack/build-control-plane.sh, versions in hack/control-plane-versions.env):"
    printf '  %s\n' "${FAILED[@]}"
  } | tee "$ERROR_FILE" >&2
  exit 1
fi
log "control plane ready in $((SECONDS - total_start)) s under $TOOLS"
print_env
