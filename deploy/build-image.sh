#!/usr/bin/env bash
# Build driftmon's container image with podman (from any directory; the context is the repository).
#
#   deploy/build-image.sh                       # on the public python:3.11-slim base
#   deploy/build-image.sh --debian-base         # on a Debian base made here with debootstrap
#   deploy/build-image.sh --wheels /opt/wheels  # pip also takes wheels (a local torch) from there
#   deploy/build-image.sh --cert /etc/ssl/certs/ca-certificates.crt   # pip verifies TLS with it
#
# Options: --tag NAME (default driftmon:<version in pyproject.toml>), --torch-index URL (where
# torch comes from; the Dockerfile's default is PyTorch's CPU index), --base-tarball FILE (with
# --debian-base: the debootstrapped root filesystem is kept there, and imported from there when
# the base image is gone, e.g. on a fresh CI machine with a cached directory). Anything after
# `--` goes to `podman build`. Docker users: `docker build -f deploy/Dockerfile -t driftmon:0.1.0 .`
#
# --debian-base needs root and debootstrap, and no container registry: the base is Debian
# bookworm (Python 3.11) from a Debian mirror (DEBIAN_MIRROR), imported as
# localhost/driftmon-base:bookworm and reused while that image exists (`podman rmi` it, and delete
# the --base-tarball, to refresh it).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: $0 [--debian-base [--base-tarball FILE]] [--tag NAME] [--torch-index URL]" \
    "[--wheels DIR] [--cert FILE] [-- podman build args]" >&2
  exit 2
}

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml)
tag="driftmon:${version}"
debian_base=0
base_tarball=""
build_args=()
volumes=()
while [ $# -gt 0 ]; do
  case "$1" in
    --debian-base) debian_base=1 ;;
    --base-tarball) [ $# -ge 2 ] || usage; base_tarball="$2"; shift ;;
    --tag) [ $# -ge 2 ] || usage; tag="$2"; shift ;;
    --torch-index) [ $# -ge 2 ] || usage; build_args+=(--build-arg "TORCH_INDEX_URL=$2"); shift ;;
    --wheels)
      [ $# -ge 2 ] || usage
      volumes+=(--volume "$(realpath "$2"):/wheels:ro")
      build_args+=(--build-arg PIP_FIND_LINKS=/wheels); shift ;;
    --cert)
      [ $# -ge 2 ] || usage
      volumes+=(--volume "$(realpath "$2"):/pip-ca.crt:ro")
      build_args+=(--build-arg PIP_CERT=/pip-ca.crt); shift ;;
    --) shift; break ;;
    *) usage ;;
  esac
  shift
done

if [ "$debian_base" = 1 ]; then
  base=localhost/driftmon-base:bookworm
  if ! podman image exists "$base"; then
    if [ -z "$base_tarball" ] || [ ! -s "$base_tarball" ]; then
      if [ "$(id -u)" != 0 ] || ! command -v debootstrap >/dev/null; then
        echo "$0: --debian-base needs root and debootstrap to make $base" >&2
        exit 1
      fi
      root=$(mktemp -d /var/tmp/driftmon-base.XXXXXX)
      trap 'rm -rf "$root"' EXIT
      # minbase: apt, dpkg and the essential packages only. python3-venv: the build stage's
      # virtualenv (with pip). python-is-python3: the Dockerfile calls `python`, as on the python
      # images. ca-certificates: pip's and the daemon's TLS connections (Kafka SASL_SSL, webhooks).
      debootstrap --variant=minbase \
        --include=python3,python3-venv,python-is-python3,ca-certificates \
        bookworm "$root" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
      rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
        "$root"/var/cache/apt/archives/*.deb "$root"/usr/share/doc/* "$root"/usr/share/man/*
      if [ -n "$base_tarball" ]; then
        mkdir -p "$(dirname "$base_tarball")"
        tar -C "$root" --numeric-owner -cf "$base_tarball.partial" .
        mv "$base_tarball.partial" "$base_tarball"
      fi
    fi
    import=(podman import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]')
    if [ -n "$base_tarball" ]; then
      "${import[@]}" "$base_tarball" "$base"
    else
      tar -C "$root" --numeric-owner -c . | "${import[@]}" - "$base"
    fi
  fi
  build_args+=(--build-arg "PYTHON_IMAGE=$base")
fi

# --network=host: pip downloads during the build, without needing a container network set up.
podman build --network=host --ignorefile deploy/Dockerfile.dockerignore -f deploy/Dockerfile \
  "${volumes[@]}" "${build_args[@]}" --tag "$tag" "$@" .
