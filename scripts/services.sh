#!/usr/bin/env bash
# Start (installing from Debian's packages if missing) the services axis uses: RabbitMQ (with the management
# plugin, for vhosts and queue depths) and PostgreSQL. Idempotent: does nothing for a service already running.
set -uo pipefail
log() { echo "[services] $*"; }
apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then apt-get update -qq >/dev/null 2>&1 || true; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1
}
port_open() { (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }

# RabbitMQ
if ! command -v rabbitmq-server >/dev/null 2>&1; then
  log "installing rabbitmq-server from Debian's packages"; apt_install rabbitmq-server || log "install failed"
fi
if ! port_open 5672; then
  log "starting RabbitMQ"; rabbitmq-server -detached >/dev/null 2>&1 || true
  for _ in $(seq 1 60); do port_open 5672 && break; sleep 1; done
fi
if command -v rabbitmqctl >/dev/null 2>&1; then
  rabbitmqctl await_startup >/dev/null 2>&1 || true
  if ! port_open 15672; then
    log "enabling rabbitmq_management"; rabbitmq-plugins enable rabbitmq_management >/dev/null 2>&1 || true
    for _ in $(seq 1 30); do port_open 15672 && break; sleep 1; done
  fi
fi
port_open 5672 && log "RabbitMQ up on 127.0.0.1:5672" || log "RabbitMQ NOT reachable"

# PostgreSQL
if ! port_open 5432; then
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    log "installing postgresql from Debian's packages"; apt_install postgresql || log "install failed"
  fi
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    log "starting PostgreSQL"
    ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)
    [ -n "$ver" ] && pg_ctlcluster --skip-systemctl-redirect "$ver" main start >/dev/null 2>&1 || true
    for _ in $(seq 1 30); do port_open 5432 && break; sleep 1; done
  fi
fi
port_open 5432 && log "PostgreSQL up on 127.0.0.1:5432" || log "PostgreSQL NOT reachable (its tests will skip)"
exit 0
