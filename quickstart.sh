#!/usr/bin/env bash
# One command, on a fresh Debian 12 as root: install everything the agent and
# the README's test command need, then show the agent turning a crashed guest
# into a notification stored by Masakari. --install-only stops after the
# installation (CI uses it).
set -euo pipefail
cd "$(dirname "$0")"
export DEBIAN_FRONTEND=noninteractive
# Packages must not start their services (rabbitmq-server would): the tests
# start private instances of their own.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -qq
# The last three lines are for the tests only: a systemd container for the
# unit (systemd-container, debootstrap), and what builds virtqemud from
# Debian's libvirt source (Debian 12 does not ship the modular daemons).
apt-get install -y -qq --no-install-recommends \
    libvirt-dev libsystemd-dev pkg-config gcc python3-venv libvirt-daemon \
    libvirt-daemon-driver-qemu qemu-system-x86 libvirt-clients nbdkit systemd \
    rabbitmq-server prometheus systemd-container debootstrap \
    dpkg-dev meson ninja-build libxml2-dev libxml2-utils libglib2.0-dev \
    libgnutls28-dev libtirpc-dev libyajl-dev python3-docutils xsltproc >/dev/null
[ -d .venv ] || python3 -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip
pip install -q -e '.[test]'
[ "${1:-}" = --install-only ] && exit 0
python -m tests.quickstart
