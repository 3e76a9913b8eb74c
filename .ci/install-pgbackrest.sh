#!/bin/sh
# The pgBackRest point-in-time tests need the real tool (Debian's package: pgBackRest 2.45,
# which covers PostgreSQL 9.0 to 15, not the bundled 18) and a PostgreSQL 15 server to back up
# (Debian's postgresql-15, under /usr/lib/postgresql/15/bin). Install whichever is missing;
# apt-get update only when the package lists do not know the packages yet.
set -e
want=""
command -v pgbackrest >/dev/null 2>&1 || want="$want pgbackrest"
[ -x /usr/lib/postgresql/15/bin/postgres ] || want="$want postgresql-15"
[ -n "$want" ] || exit 0

if [ "$(id -u)" = 0 ]; then
    as_root=""
elif command -v sudo >/dev/null 2>&1; then
    as_root="sudo"
else
    echo "pgbackrest and postgresql-15 are needed for the pgBackRest tests: install them" \
         "(apt-get install$want)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
known=1
for pkg in $want; do
    apt-cache show "$pkg" >/dev/null 2>&1 || known=0
done
[ "$known" = 1 ] || $as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
# postgresql-common would create and start a "15/main" cluster with the new server: not wanted
# (a drop-in, read by its createcluster.conf, so no conffile prompt either).
$as_root mkdir -p /etc/postgresql-common/createcluster.d
echo "create_main_cluster = false" \
    | $as_root tee /etc/postgresql-common/createcluster.d/rollback-console.conf >/dev/null
install_missing() {
    # shellcheck disable=SC2086
    $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        $want >/dev/null
}
# stale package lists (a 404 on download): refresh once and try again
install_missing || { $as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq && install_missing; }
command -v pgbackrest >/dev/null 2>&1 && [ -x /usr/lib/postgresql/15/bin/postgres ] || {
    echo "installing$want did not give pgbackrest and /usr/lib/postgresql/15/bin/postgres" >&2
    exit 1
}
