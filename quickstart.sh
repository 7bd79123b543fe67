#!/usr/bin/env bash
# One command, on a fresh Debian 12 as root: install what is needed, then show
# the agent turning a crashed guest into a notification stored by Masakari.
set -euo pipefail
cd "$(dirname "$0")"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    libvirt-dev libsystemd-dev pkg-config gcc python3-venv libvirt-daemon \
    libvirt-daemon-driver-qemu qemu-system-x86 libvirt-clients nbdkit systemd >/dev/null
[ -d .venv ] || python3 -m venv .venv
. .venv/bin/activate
pip install -q -e '.[test]'
python -m tests.quickstart
