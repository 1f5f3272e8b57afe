#!/usr/bin/env bash
# Installs what the container tier needs on a Debian 12 machine, as root, and nothing else:
# Debian's docker.io (dockerd, containerd, runc, the docker CLI) and mmdebstrap from the
# machine's own apt sources, and Compose v2 as Debian 13's docker-compose package.
#
# Compose v2: Debian 12 only has docker-compose 1.29, which rejects our compose file
# (top-level `name`). Debian 13 ("trixie") packages Compose v2 (2.26.1-4, a Go binary whose
# only dependency is libc6 >= 2.34; Debian 12 has 2.36). It is fetched by apt from the same
# Debian mirror, with its own source list and state under the cache folder, so the machine's
# apt sources are left alone: apt checks the trixie Release file against the Debian archive
# key shipped by debian-archive-keyring (/usr/share/keyrings/debian-archive-trixie-stable.gpg)
# and the .deb against the SHA-256 of the signed Packages index; the script checks that
# SHA-256 once more against the one below. Only the CLI plugin is unpacked, into the cache.
set -euo pipefail

CACHE="${ONC_PIPELINE_CI_CACHE:-/var/cache/onc-pipeline-ci}"
COMPOSE_VERSION="2.26.1-4"
COMPOSE_SHA256="47681197cb2b1ab88206b42a1a92fc75f50d9530a6322d03494a473eed0408ea"

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
[ -x /usr/bin/docker ] || missing+=(docker.io)
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq
  # This machine's /usr/sbin/policy-rc.d keeps the package from starting a machine-wide
  # dockerd: the tier starts its own.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    "${missing[@]}" iptables ca-certificates >/dev/null
fi

plugin="$CACHE/compose-$COMPOSE_VERSION/docker-compose"
if [ ! -x "$plugin" ]; then
  apt_dir="$CACHE/apt-trixie"
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-trixie-stable.gpg]" \
    "http://deb.debian.org/debian trixie main" >"$apt_dir/sources.list"
  opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
        -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache::Archives=$apt_dir/archives"
        -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache=")
  apt-get -qq "${opts[@]}" update
  (cd "$apt_dir" && apt-get -qq "${opts[@]}" download "docker-compose=$COMPOSE_VERSION" 2>/dev/null)
  deb="$apt_dir/docker-compose_${COMPOSE_VERSION}_amd64.deb"
  echo "$COMPOSE_SHA256  $deb" | sha256sum --check --quiet
  unpacked="$(mktemp -d)"
  dpkg-deb -x "$deb" "$unpacked"
  mkdir -p "$(dirname "$plugin")"
  install -m 0755 "$unpacked/usr/libexec/docker/cli-plugins/docker-compose" "$plugin"
  rm -rf "$unpacked" "$deb"
fi
echo "container tier: $(dockerd --version), $(mmdebstrap --version), compose $("$plugin" version --short)"
