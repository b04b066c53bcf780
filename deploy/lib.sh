# Shared by deploy/run and deploy/test: make sure the toolchain, PostgreSQL and
# RabbitMQ are there and running. On a bare Debian machine the services and build
# packages are installed from Debian's packages.
# shellcheck shell=bash

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root for: $*"; return 1; fi
}

apt_install() {
  command -v apt-get >/dev/null || { log "missing $*; install it with your package manager"; return 1; }
  log "installing $* from Debian's packages"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_toolchain() {
  [ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
  if ! command -v cc >/dev/null || ! command -v pkg-config >/dev/null; then
    apt_install build-essential pkg-config ca-certificates curl
  fi
  if ! command -v cargo >/dev/null; then
    log "no Rust toolchain: install one with rustup (https://rustup.rs), then re-run"
    return 1
  fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port name seconds
  local i
  for ((i = 0; i < $3 * 5; i++)); do port_open "$1" && return 0; sleep 0.2; done
  log "$2 did not come up on port $1"; return 1
}

ensure_postgres() {
  if ! command -v pg_ctlcluster >/dev/null && ! port_open 5432; then
    apt_install postgresql
    # A fresh cluster: let local TCP connections in without a password, as the
    # default DATABASE_URL (postgres://postgres@127.0.0.1) expects.
    local hba
    hba=$(ls /etc/postgresql/*/main/pg_hba.conf | head -n1)
    as_root sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$hba"
    as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main restart || true
  fi
  if ! port_open 5432; then
    log "starting PostgreSQL"
    as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  wait_port 5432 PostgreSQL 60
  local i
  for ((i = 0; i < 100; i++)); do
    psql_admin -c 'SELECT 1' >/dev/null 2>&1 && return 0; sleep 0.2
  done
  log "PostgreSQL does not accept connections"; return 1
}

psql_admin() { psql -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt "$@"; }

ensure_database() { # name
  if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$1'")" != 1 ]; then
    log "creating database $1"
    psql_admin -c "CREATE DATABASE $1"
  fi
}

ensure_rabbitmq() {
  if ! command -v rabbitmq-server >/dev/null && ! port_open 5672; then
    apt_install rabbitmq-server
  fi
  if ! port_open 5672; then
    log "starting RabbitMQ"
    as_root rabbitmq-server -detached || true
  fi
  wait_port 5672 RabbitMQ 120
  if ! port_open 15672; then
    log "enabling the RabbitMQ management dashboard"
    as_root rabbitmq-plugins enable rabbitmq_management >/dev/null || true
    wait_port 15672 "RabbitMQ management" 60
  fi
}

ensure_services() {
  ensure_postgres
  ensure_rabbitmq
}

# Headless Chromium and its WebDriver for the console's end-to-end tests.
ensure_browser() {
  if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    apt_install chromium chromium-driver
  fi
}
