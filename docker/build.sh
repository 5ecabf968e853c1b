#!/usr/bin/env bash
# Build the medseg clinic image with no network access during the build.
#
# 1. Asks the base image which Python, glibc and machine it has (a throwaway container, --network none).
#    A base without python3 + venv (the CUDA runtime images) gets python3/python3-venv as .deb files,
#    downloaded by apt in a throwaway container, or taken from --debs DIR.
# 2. Prepares a wheelhouse on this host: the medseg wheel plus every dependency (extras `dicom`, `gateway`, and `cpu-fast` in the CPU image)
#    for that Python and platform (pip download --only-binary, using this host's pip configuration).
# 3. Copies the model packages to bake in (--models), then runs `docker build --network none`.
# Everything that needs a registry happens in steps 1-2, on the host; an air-gapped site runs the same
# script with a prepared wheelhouse (--wheelhouse DIR --reuse-wheelhouse) and a base image it loaded.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")

usage() {
  cat <<'EOF'
usage: docker/build.sh [options]
  --cuda                 build docker/Dockerfile.cuda (default: docker/Dockerfile, CPU)
  --base-image IMAGE     base image (default: the Dockerfile's ARG BASE_IMAGE)
  --models PATH          a model package folder, or a folder of them; repeat for more
  --model-names "A B"    which of those packages to bake in (default: all)
  --tag TAG              image tag (default: medseg:VERSION-cpu or medseg:VERSION-cuda)
  --torch SPEC           torch requirement (default: $TORCH_SPEC or torch==2.13.0). For a CPU image pip
                         must find a CPU build: a local wheel (pip's find-links) or --pip-arg
                         --extra-index-url=https://download.pytorch.org/whl/cpu
  --pip-arg ARG          extra argument for pip download (repeatable)
  --wheelhouse DIR       keep the wheelhouse in DIR (default: inside a temporary build context)
  --reuse-wheelhouse     use DIR as it is (air-gapped sites: prepare it elsewhere with --prepare-only)
  --debs DIR             .deb files of python3 + python3-venv for a base image without Python
  --prepare-only         prepare the wheelhouse (and debs) and stop; needs --python-version without docker
  --python-version X.Y   the image's Python (skips asking the base image); with --glibc and --machine
  --glibc X.Y            the image's glibc (default 2.36, Debian bookworm)
  --machine NAME         x86_64 or aarch64 (default: this host's)
  --docker-arg ARG       extra argument for docker build (repeatable)
EOF
}

dockerfile=$here/Dockerfile flavour=cpu base="" tag="" names="" wheelhouse="" reuse=0 debs="" prepare_only=0
pyver="" glibc="2.36" machine=$(uname -m)
torch_spec=${TORCH_SPEC:-torch==2.13.0}
models=() pip_args=() docker_args=()
while [ $# -gt 0 ]; do
  case $1 in
    --cuda) dockerfile=$here/Dockerfile.cuda flavour=cuda ;;
    --base-image) base=$2; shift ;;
    --models) models+=("$2"); shift ;;
    --model-names) names=$2; shift ;;
    --tag) tag=$2; shift ;;
    --torch) torch_spec=$2; shift ;;
    --pip-arg) pip_args+=("$2"); shift ;;
    --wheelhouse) wheelhouse=$2; shift ;;
    --reuse-wheelhouse) reuse=1 ;;
    --debs) debs=$2; shift ;;
    --prepare-only) prepare_only=1 ;;
    --python-version) pyver=$2; shift ;;
    --glibc) glibc=$2; shift ;;
    --machine) machine=$2; shift ;;
    --docker-arg) docker_args+=("$2"); shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "build.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

say() { echo "build.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

python=$repo/.venv/bin/python
[ -x "$python" ] || python=python3
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/pyproject.toml" | head -1)
[ -n "$base" ] || base=$(sed -n 's/^ARG BASE_IMAGE=//p' "$dockerfile" | head -1)
[ -n "$tag" ] || tag=medseg:$version-$flavour

context=$(mktemp -d "${TMPDIR:-/tmp}/medseg-docker.XXXXXX")
trap 'rm -rf "$context"' EXIT
mkdir -p "$context/models" "$context/debs"
[ -n "$wheelhouse" ] || wheelhouse=$context/wheelhouse
mkdir -p "$wheelhouse"
wheelhouse=$(cd "$wheelhouse" && pwd)

# --- 1. the base image's Python -----------------------------------------------------------------------
probe='import sys, platform, venv, ensurepip; print("%d.%d" % sys.version_info[:2], platform.libc_ver()[1] or "0.0", platform.machine())'
if [ -n "$debs" ]; then
  cp "$debs"/*.deb "$context/debs/" || die "no .deb files in $debs"
fi
if [ -z "$pyver" ]; then
  command -v docker >/dev/null || die "docker not found (give --python-version to only prepare a wheelhouse)"
  docker image inspect "$base" >/dev/null 2>&1 || docker pull "$base" >&2 || die "base image $base is not available"
  if ! info=$(docker run --rm --network none --entrypoint python3 "$base" -c "$probe" 2>/dev/null); then
    if ! ls "$context"/debs/*.deb >/dev/null 2>&1; then
      say "$base has no python3 with venv: fetching python3 + python3-venv .deb files (throwaway container)"
      docker run --rm -v "$context/debs:/out" --entrypoint sh "$base" -c \
        'export DEBIAN_FRONTEND=noninteractive; apt-get update -qq >/dev/null &&
         apt-get install -y -qq --download-only --no-install-recommends python3 python3-venv >/dev/null &&
         cp /var/cache/apt/archives/*.deb /out/ && chown -R '"$(id -u):$(id -g)"' /out' \
        || die "could not fetch python3 for $base; give --debs DIR"
    fi
    info=$(docker run --rm --network none -v "$context/debs:/debs:ro" --entrypoint sh "$base" -c \
      "dpkg -i /debs/*.deb >/dev/null 2>&1 && python3 -c '$probe'") || die "python3 from the .deb files does not run in $base"
  fi
  read -r pyver glibc machine <<<"$info"
fi
say "image Python $pyver, glibc $glibc, $machine"

# --- 2. the wheelhouse ------------------------------------------------------------------------------
if [ "$reuse" = 0 ]; then
  rm -f "$wheelhouse"/*.whl
  say "building the medseg wheel"
  "$python" -m pip wheel --no-deps --quiet -w "$wheelhouse" "$repo" >&2
  platforms=()
  glibc_minor=${glibc#*.}
  for minor in $(seq 17 "$glibc_minor"); do platforms+=(--platform "manylinux_2_${minor}_${machine}"); done
  platforms+=(--platform "manylinux2014_${machine}")
  [ "$machine" = x86_64 ] && platforms+=(--platform manylinux2010_x86_64 --platform manylinux1_x86_64)
  wheel=$(ls "$wheelhouse"/medseg-"$version"-*.whl)
  # the CPU image also gets OpenVINO (extra cpu-fast): `medseg predict --backend auto` runs it there
  extras=dicom,gateway
  [ "$flavour" = cpu ] && extras=dicom,gateway,cpu-fast
  say "downloading dependencies for Python $pyver ($torch_spec)"
  "$python" -m pip download --quiet --dest "$wheelhouse" --only-binary=:all: \
    --python-version "$pyver" --implementation cp "${platforms[@]}" \
    "$torch_spec" "$wheel[$extras]" "${pip_args[@]}" >&2
  printf 'medseg[%s]==%s\n%s\n' "$extras" "$version" "$torch_spec" >"$wheelhouse/REQUIREMENTS"
fi
[ -f "$wheelhouse/REQUIREMENTS" ] || die "$wheelhouse has no REQUIREMENTS file (prepare it with --prepare-only)"
torch_wheel=$(ls "$wheelhouse"/torch-*.whl 2>/dev/null | head -1)
[ -n "$torch_wheel" ] || die "no torch wheel in $wheelhouse"
if [ "$flavour" = cpu ] && ls "$wheelhouse"/nvidia_* >/dev/null 2>&1; then
  say "warning: $(basename "$torch_wheel") pulls CUDA libraries into a CPU image (several GB);" \
      "use a CPU build of torch (see --torch)"
fi
say "wheelhouse: $(ls "$wheelhouse"/*.whl | wc -l) wheels, $(du -sh "$wheelhouse" | cut -f1) ($wheelhouse)"
if [ "$prepare_only" = 1 ]; then
  [ "$wheelhouse" != "$context/wheelhouse" ] || die "--prepare-only needs --wheelhouse DIR to keep the result"
  ls "$context"/debs/*.deb >/dev/null 2>&1 && cp "$context"/debs/*.deb "$wheelhouse/"
  say "prepared $wheelhouse"
  exit 0
fi
[ "$wheelhouse" = "$context/wheelhouse" ] || cp -r "$wheelhouse" "$context/wheelhouse"

# --- 3. model packages and the build ----------------------------------------------------------------
for path in "${models[@]}"; do
  if [ -f "$path/medseg.json" ]; then
    cp -r "$path" "$context/models/$(basename "$path")"
  else
    found=0
    for package in "$path"/*/; do
      [ -f "$package/medseg.json" ] || continue
      cp -r "${package%/}" "$context/models/"
      found=1
    done
    [ "$found" = 1 ] || die "$path: neither a model package nor a folder of them"
  fi
done
for name in $names; do
  [ -f "$context/models/$name/medseg.json" ] || die "--model-names: no package '$name' among --models"
done
baked=${names:-$(ls "$context/models" | tr '\n' ' ')}
[ -n "${baked// /}" ] || say "warning: no model packages baked in; mount them at /models at run time"

say "docker build --network none -t $tag (base $base, models: ${baked:-none})"
docker build --network none -f "$dockerfile" --build-arg "BASE_IMAGE=$base" --build-arg "MODELS=$names" \
  -t "$tag" "${docker_args[@]}" "$context" >&2
# the build stage's image is left untagged (2.7 GB per build): remove it, keep everything else
docker image prune -f --filter label=medseg.stage=build >/dev/null 2>&1 || true
say "built $tag ($(docker image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1 / 1e6}'))"
say "air-gapped transfer: docker save $tag | gzip > medseg.tar.gz; then docker load < medseg.tar.gz"
echo "$tag"
