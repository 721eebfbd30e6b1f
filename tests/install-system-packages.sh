#!/bin/sh
# Install the Debian packages listed in $1 that are missing. As root (CI, a fresh machine) it runs
# apt-get; otherwise it only says what is missing, and the tests that need it say why they skip.
set -eu
list=$1
missing=""
for pkg in $(grep -v '^\s*#' "$list" | tr -s ' \n' ' '); do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages (run as root to install):$missing" >&2
    exit 0
fi
echo "installing Debian packages:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
