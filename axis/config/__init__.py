"""The axis configuration: one YAML file, read once into frozen dataclasses.

```yaml
amqp_url: amqp://guest:guest@127.0.0.1/      # else env AXIS_AMQP_URL, else this default
stats_url: sqlite+aiosqlite:///stats.db       # else env AXIS_STATS_URL, else <work dir>/stats.db
pki: {ca: pki/ca.pem, crl: pki/crl.pem,       # the axis CA and its CRL; a CRL older than crl_max_age_hours
      crl_max_age_hours: 48}                  #   (or past its nextUpdate) is stale: signatures CERT_UNTRUSTED
tls: {cert: pki/tls/server/cert.pem,          # HTTPS on every endpoint and admin server (contract section 6); on
      key: pki/tls/server/key.pem}            #   when absent, with these paths beside pki.ca; `tls: off`: plain
                                              #   HTTP, development only (every server says so on its first line)
admin: {host: 127.0.0.1, port: 8700, token_sha256: <hex>}
limits: {max_envelope_bytes: 26214400,        # refused with TOO_LARGE above this
         auth_failures: 20, auth_window_seconds: 60}  # failed token checks per client address → 429
routers: 2                                    # router processes started by `axis up`
hosts: 2                                      # endpoint-host processes `axis up` spreads the servers over
broker:                                       # who connects to RabbitMQ as whom (docs/core.md, "Broker users")
  auth: users                                 # users: one least-privilege user per component (provisioned by
                                              #   `axis up` with the amqp_url account); shared: everyone uses
                                              #   amqp_url (development only). Default: shared when absent.
  users_file: broker-users.json               # passwords written by `axis up` (mode 0600, never in git)
  management_url: http://127.0.0.1:15672      # default: the amqp_url host, port 15672
  user_prefix: ""                             # default: "" on vhost "/", else "<vhost>." (users are per broker)
  tls: false                                  # true: AMQPS (amqps:// amqp_url), every component — the amqp_url
                                              #   account too — authenticated by its own certificate from the axis
                                              #   CA (SASL EXTERNAL, CN = broker user; issued by `axis up`); implies
                                              #   auth: users; the broker's side: `axis pki rabbitmq-conf`
  ca: pki/ca.cert.pem                         # the CA the broker's certificate is checked against (default pki.ca)
  certs_dir: pki/tls/broker                   # <certs_dir>/<broker user>/{cert,key}.pem (default beside the CA)
evidence:                                     # the evidence log (contract section 5; axis.evidence)
  url: sqlite:///evidence.sqlite3             # its store: SQLite (default <work dir>/evidence.sqlite3, else env
                                              #   AXIS_EVIDENCE_URL) or postgresql://…
  key: pki/log/key.pem                        # the log's signing key and its certificate (issued by the axis CA,
  cert: pki/log/cert.pem                      #   CN "axis transparency log"): the log writer signs tree heads
  sth_interval_seconds: 10                    # a new signed tree head at least this often while the log grows
servers:
  - {id: s1, kind: dedicated, host: 127.0.0.1, port: 8701, inbox_url: sqlite+aiosqlite:///inbox-s1.db,
     keys: [000.00.00.G22],                    # agencies whose signing key this server holds
     client_auth: required}                    # mutual TLS: required | optional | off (default; endpoints.mtls)
agencies:
  - {code: 000.00.00.G22, name: Government Office, server: s1, token_sha256: <hex>,
     key: pki/agencies/000.00.00.G22/key.pem, cert: pki/agencies/000.00.00.G22/cert.pem}
agencies_file: agencies.csv                   # optional, for very large directories (same columns)
```

Relative paths (and relative SQLite paths in URLs) are resolved against the config file's directory. Tokens are
stored only as SHA-256 hex digests; cleartext tokens exist only in ``connections.json``.
"""

from axis.config.loader import config_from_dict, load_config, resolve_db_url
from axis.config.model import (
    AGENCY_COLUMNS,
    BROKER_AUTH_SHARED,
    BROKER_AUTH_USERS,
    DEFAULT_ADMIN_PORT,
    DEFAULT_AMQP_URL,
    AdminConfig,
    AgencyConfig,
    BrokerConfig,
    Config,
    ConfigError,
    EvidenceConfig,
    Limits,
    PkiConfig,
    ServerConfig,
    hash_token,
    new_token,
)
from axis.config.moves import announce_move, move_agency
from axis.config.workdir import CSV_AGENCIES_ABOVE, connections_for, generate_workdir, write_connections

__all__ = [
    "AGENCY_COLUMNS", "BROKER_AUTH_SHARED", "BROKER_AUTH_USERS", "CSV_AGENCIES_ABOVE", "DEFAULT_ADMIN_PORT",
    "DEFAULT_AMQP_URL", "AdminConfig", "AgencyConfig", "BrokerConfig", "Config", "ConfigError", "EvidenceConfig",
    "Limits", "PkiConfig", "ServerConfig", "announce_move", "config_from_dict", "connections_for", "generate_workdir",
    "hash_token", "load_config", "move_agency", "new_token", "resolve_db_url", "write_connections",
]
