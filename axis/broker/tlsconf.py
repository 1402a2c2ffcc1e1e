"""The RabbitMQ side of AMQPS with certificate-authenticated components (contract section 6).

:func:`rabbitmq_tls_conf` writes the ``rabbitmq.conf`` lines that make a broker accept the axis's components by
their certificates: a TLS listener (TLS 1.2 and 1.3 only) whose peers must present a certificate from the axis CA
(``verify_peer`` + ``fail_if_no_peer_cert``: no certificate, no handshake), SASL EXTERNAL as the only mechanism
(no password is accepted on it), the broker user taken from the certificate's CN (each component's certificate
names its own least-privilege user, :mod:`axis.broker.users`), and — unless asked otherwise — no plain AMQP
listener at all. The broker also needs the plugin: ``rabbitmq-plugins enable rabbitmq_auth_mechanism_ssl``.

``axis pki rabbitmq-conf`` prints these lines; the AMQPS tests start a private broker with exactly them.
"""

from __future__ import annotations

from pathlib import Path

#: The RabbitMQ plugin that provides SASL EXTERNAL from the TLS peer certificate.
EXTERNAL_AUTH_PLUGIN = "rabbitmq_auth_mechanism_ssl"


def rabbitmq_tls_conf(*, ca: Path, cert: Path, key: Path, port: int = 5671, host: str = "127.0.0.1",
                      plain_port: int | None = None) -> str:
    """``rabbitmq.conf`` lines for an AMQPS listener on ``host:port`` with the broker's ``cert``/``key`` (a
    server certificate of the axis CA, e.g. ``axis pki issue-server``), trusting client certificates of ``ca``.
    ``plain_port``: also keep a plain AMQP listener there (a migration step; None, the default, switches plain
    AMQP off)."""
    plain = f"listeners.tcp.default = {host}:{plain_port}" if plain_port else "listeners.tcp = none"
    return "\n".join([
        "# AMQPS for axis (contract section 6): components authenticate by their certificates from the axis CA",
        plain,
        f"listeners.ssl.default = {host}:{port}",
        f"ssl_options.cacertfile = {ca}",
        f"ssl_options.certfile = {cert}",
        f"ssl_options.keyfile = {key}",
        "ssl_options.verify = verify_peer",
        "ssl_options.fail_if_no_peer_cert = true",
        "ssl_options.versions.1 = tlsv1.3",
        "ssl_options.versions.2 = tlsv1.2",
        "ssl_options.honor_cipher_order = true",
        "auth_mechanisms.1 = EXTERNAL",
        "ssl_cert_login_from = common_name",
        "",
    ])
