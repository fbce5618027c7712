#!/usr/bin/env bash
# Builds the three images (images/<name>/Dockerfile, from the repository root) and tags them
# ${IMAGE_PREFIX:-osmf}/<name>:<appVersion of charts/osmf/Chart.yaml>: the names the chart's defaults,
# the operator's settings and the release workflow (.github/workflows/release.yml) use.
# The builder is the first that works here: docker with a running engine, podman, buildah
# (OCI_BUILDER=docker|podman|buildah picks one). With none, it says what it found and exits 1.
# Usage: hack/build-images.sh [operator|trainer|predictor ...]   (default: all three)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VERSION="$(sed -n 's/^appVersion:[[:space:]]*"\{0,1\}\([^"]*\)"\{0,1\}[[:space:]]*$/\1/p' charts/osmf/Chart.yaml)"
[[ -n $VERSION ]] || { echo "build-images: no appVersion in charts/osmf/Chart.yaml" >&2; exit 2; }
PREFIX="${IMAGE_PREFIX:-osmf}"
NAMES=("$@")
((${#NAMES[@]})) || NAMES=(operator trainer predictor)
for name in "${NAMES[@]}"; do
  [[ -f images/$name/Dockerfile ]] || { echo "build-images: no images/$name/Dockerfile" >&2; exit 2; }
done

# works BUILDER: whether BUILDER can build here; why not goes to the REASONS list.
REASONS=()
works() {
  local builder=$1 probe out
  case $builder in
    docker) probe=(docker info) ;;        # the client alone is not enough: it needs an engine
    podman) probe=(podman info) ;;
    buildah) probe=(buildah info) ;;
    *) REASONS+=("$builder: not a builder this script knows (docker, podman, buildah)"); return 1 ;;
  esac
  if ! command -v "$builder" >/dev/null; then
    REASONS+=("$builder: not installed")
    return 1
  fi
  if ! out="$("${probe[@]}" 2>&1)"; then
    REASONS+=("$builder: installed, but \`${probe[*]}\` failed: $(grep -v '^\s*$' <<<"$out" | tail -n 1)")
    return 1
  fi
}

BUILDER=""
for candidate in ${OCI_BUILDER:-docker podman buildah}; do
  if works "$candidate"; then BUILDER=$candidate; break; fi
done
if [[ -z $BUILDER ]]; then
  {
    echo "build-images: no OCI image builder works on this machine:"
    printf '  %s\n' "${REASONS[@]}"
    echo "Start a Docker engine, or install podman or buildah (rootless works), then run make images again."
  } >&2
  exit 1
fi

for name in "${NAMES[@]}"; do
  tag="$PREFIX/$name:$VERSION"
  echo "build-images: $BUILDER builds $tag from images/$name/Dockerfile" >&2
  case $BUILDER in
    buildah) buildah build --layers -f "images/$name/Dockerfile" -t "$tag" . ;;
    *) "$BUILDER" build -f "images/$name/Dockerfile" -t "$tag" . ;;
  esac
done
