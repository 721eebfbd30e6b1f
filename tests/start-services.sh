#!/bin/sh
# Start the local PostgreSQL the tests use (127.0.0.1:5432) when it is installed but not running,
# as CI must. Nothing to do when it answers; without PostgreSQL (or as a normal user) it only says
# so, and the tests that need it say why they skip (outside CI) or fail (in CI).
set -eu
ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
command -v pg_isready >/dev/null 2>&1 || { echo "PostgreSQL client tools not installed" >&2; exit 0; }
ready && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "PostgreSQL is not running on 127.0.0.1:5432 (start it as root: pg_ctlcluster)" >&2
    exit 0
fi
for version in $(ls /etc/postgresql 2>/dev/null); do
    echo "starting PostgreSQL $version" >&2
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
done
for _ in $(seq 50); do ready && exit 0; sleep 0.2; done
echo "PostgreSQL did not come up on 127.0.0.1:5432" >&2
