# scripts/lib.sh - shared by run.sh, test.sh and bench/: packages, build,
# the private PostgreSQL cluster, TLS material and the generated config.
# Source it; every function is prefixed al_.

AL_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

AL_BUILD_PACKAGES="gcc make autoconf automake pkg-config libevent-dev libssl-dev openssl
 libpq-dev libsodium-dev libjansson-dev libcurl4-openssl-dev libconfig-dev check libsubunit-dev
 postgresql ca-certificates"
AL_TEST_PACKAGES="python3 python3-pytest python3-requests python3-matrix-nio python3-nacl
 python3-signedjson python3-psycopg2 curl"

al_say() { printf '==> %s\n' "$*" >&2; }
al_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Install the Debian packages that are missing (as root; otherwise say which).
al_install_packages() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		al_die "missing packages: ${missing[*]} (run: sudo apt-get install ${missing[*]})"
	fi
	al_say "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 || {
		apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null
	} || al_die "apt-get install ${missing[*]} failed"
}

# al_build DIR [configure args...]: bootstrap once, configure once per DIR, make.
al_build() {
	local dir=$1; shift
	if [ ! -x "$AL_ROOT/configure" ] || [ "$AL_ROOT/configure.ac" -nt "$AL_ROOT/configure" ]; then
		al_say "autoreconf"
		(cd "$AL_ROOT" && autoreconf -fi >/dev/null 2>&1) || (cd "$AL_ROOT" && autoreconf -fi)
	fi
	mkdir -p "$dir"
	if [ ! -f "$dir/Makefile" ]; then
		al_say "configure $*"
		(cd "$dir" && "$AL_ROOT/configure" -q "$@") || al_die "configure failed"
	fi
	al_say "make in $dir"
	make -s -C "$dir" -j"$(nproc)" >/dev/null || make -C "$dir" || al_die "build failed"
}

al_pg_bin() {
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
	[ -n "$d" ] || al_die "PostgreSQL server binaries not found (apt-get install postgresql)"
	echo "$d"
}

# Run a PostgreSQL command as its owner: the postgres user when we are root.
al_pg_run() {
	if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

# The cluster lives in STATE/pg. When root runs from a directory that the
# postgres user cannot enter (a checkout under /root), the cluster goes to a
# directory of its own under /var/tmp and STATE/pg links to it.
al_pg_dir() {
	local state=$1
	if [ -e "$state/pg" ]; then readlink -f "$state/pg"; return; fi
	if [ "$(id -u)" -eq 0 ] && ! al_pg_run test -w "$state" 2>/dev/null; then
		if al_pg_run test -x "$state" 2>/dev/null; then
			mkdir -p "$state/pg" && chown postgres: "$state/pg"
		else
			local h
			h=$(printf '%s' "$state" | sha256sum | cut -c1-16)
			mkdir -p "/var/tmp/auralink-pg/$h"
			chown postgres: "/var/tmp/auralink-pg/$h"
			chmod 711 /var/tmp/auralink-pg
			ln -s "/var/tmp/auralink-pg/$h" "$state/pg"
		fi
	else
		mkdir -p "$state/pg"
		[ "$(id -u)" -eq 0 ] && chown postgres: "$state/pg"
	fi
	readlink -f "$state/pg"
}

# al_pg_start STATE: initdb on first use, start when not running; prints
# the socket directory. The cluster listens on its Unix socket only.
al_pg_start() {
	local state=$1 bin dir
	bin=$(al_pg_bin)
	dir=$(al_pg_dir "$state")
	if [ ! -f "$dir/data/PG_VERSION" ]; then
		al_pg_run "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 ||
			al_die "initdb failed: see $dir/initdb.log"
	fi
	if ! al_pg_run "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
		al_pg_run "$bin/pg_ctl" -D "$dir/data" -w -t 60 -l "$dir/postgres.log" \
			-o "-k $dir -c listen_addresses='' -c fsync=${AL_PG_FSYNC:-on}" start >/dev/null ||
			al_die "PostgreSQL did not start: see $dir/postgres.log"
	fi
	echo "$dir"
}

al_pg_stop() {
	local dir
	dir=$(readlink -f "$1/pg" 2>/dev/null) || return 0
	[ -f "$dir/data/PG_VERSION" ] || return 0
	al_pg_run "$(al_pg_bin)/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}

# al_pg_createdb SOCKDIR NAME: create the database if it does not exist.
al_pg_createdb() {
	local sock=$1 name=$2
	psql -h "$sock" -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$name'" |
		grep -q 1 || createdb -h "$sock" -U postgres "$name"
}

# al_ca_ensure DIR: a development CA (ca.crt, ca.key) shared by instances.
al_ca_ensure() {
	local ca=$1
	mkdir -p "$ca"
	[ -f "$ca/ca.crt" ] && return 0
	openssl req -x509 -newkey ed25519 -nodes -days 3650 -subj "/CN=auralink development CA" \
		-keyout "$ca/ca.key" -out "$ca/ca.crt" -addext basicConstraints=critical,CA:TRUE \
		-addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null || al_die "cannot create CA in $ca"
	chmod 600 "$ca/ca.key"
}

# al_tls_cert OUTDIR HOST [CA_DIR]: tls.crt/tls.key for HOST (also valid for
# localhost and 127.0.0.1); self-signed without CA_DIR.
al_tls_cert() {
	local out=$1 host=$2 ca=${3:-} san
	[ -f "$out/tls.crt" ] && return 0
	san="subjectAltName=DNS:$host,DNS:localhost,IP:127.0.0.1,IP:::1"
	case $host in *[!0-9.]*) ;; *) san="subjectAltName=IP:$host,DNS:localhost,IP:127.0.0.1";; esac
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$out/tls.key" 2>/dev/null
	chmod 600 "$out/tls.key"
	if [ -z "$ca" ]; then
		openssl req -x509 -key "$out/tls.key" -days 825 -subj "/CN=$host" -addext "$san" \
			-out "$out/tls.crt" 2>/dev/null || al_die "cannot create TLS certificate"
	else
		openssl req -new -key "$out/tls.key" -subj "/CN=$host" -out "$out/tls.csr" 2>/dev/null &&
			openssl x509 -req -in "$out/tls.csr" -CA "$ca/ca.crt" -CAkey "$ca/ca.key" -CAcreateserial \
				-days 825 -extfile <(printf '%s\nextendedKeyUsage=serverAuth\n' "$san") \
				-out "$out/tls.crt" 2>/dev/null || al_die "cannot sign TLS certificate with $ca"
		rm -f "$out/tls.csr"
	fi
}

# al_write_config FILE: the development config, from variables
# SERVER_NAME CLIENT_PORT FED_PORT STATE SOCK CA_FILE MIGRATIONS.
al_write_config() {
	local file=$1
	cat >"$file" <<CONF
# auralinkd.conf - generated by run.sh for development. Every setting is
# described in man/auralinkd.conf.5; production defaults are stricter
# (closed registration, slower rate limits, no loopback federation).

# The domain this server serves; user IDs are @name:$SERVER_NAME.
server_name = "$SERVER_NAME";
public_baseurl = "http://localhost:$CLIENT_PORT";

listeners = {
  # Client API: plain HTTP on loopback (put a TLS proxy in front in production).
  client = { bind = "127.0.0.1"; port = $CLIENT_PORT; };
  # Federation API: HTTPS.
  federation = {
    bind = "127.0.0.1";
    port = $FED_PORT;
    tls_certificate = "$STATE/tls.crt";
    tls_private_key = "$STATE/tls.key";
  };
};

database = {
  # The private cluster under $STATE/pg (DATABASE_URL overrides this).
  conninfo = "host=$SOCK dbname=auralink user=postgres";
  migrations_dir = "$MIGRATIONS";
};

signing_key_path = "$STATE/signing.key";
worker_threads = 2;
log_level = "info";

# Development: anyone may register (production default: false).
registration = { enabled = true; };

limits = {
  max_body_bytes = 65536;
  max_json_depth = 32;
  # Generous for development and test suites (production default: 1/s, burst 10).
  rate_per_second = 1000.0;
  rate_burst = 2000;
};

federation = {
  verify_tls = true;
  # CA that signed the other development servers' certificates ("" = system CAs only).
  ca_file = "$CA_FILE";
  # Development servers federate over loopback (production default: false).
  allow_loopback = true;
};

# User IDs allowed to use /_auralink/admin/v1.
admins = [];

# Logs AuraID verification codes instead of sending them (never in production).
verification = { dev_verifier = true; };
CONF
}
