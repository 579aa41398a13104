#!/usr/bin/env bash
# A Docker engine for the compose test (tests/compose/): where none answers, install Debian's
# docker.io (and mmdebstrap, which builds the offline stand-in base image) and start dockerd.
# For CI and throwaway test machines: it needs root and apt-get. On a workstation, install Docker
# your usual way instead; the test only needs `docker info` to answer.
# Exit 0 with an engine answering; 1 (and why, on stderr) otherwise.
set -euo pipefail

if docker info >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "docker-engine: no engine answers, and installing one needs root and apt-get" >&2
  exit 1
fi
if ! command -v dockerd >/dev/null || ! command -v mmdebstrap >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io mmdebstrap >/dev/null
fi
log=/var/log/dcgan-dockerd.log
setsid dockerd >"$log" 2>&1 </dev/null &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    exit 0
  fi
  sleep 1
done
echo "docker-engine: dockerd did not answer within 60 s; its log: $log" >&2
tail -5 "$log" >&2 || true
exit 1
