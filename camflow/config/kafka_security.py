"""Kafka client security settings, built correctly for both client families camflow uses:
Flink's Java connector (``java_client_properties``: ``sasl.jaas.config`` and keystores) and
librdkafka (``librdkafka_properties``: sampler, sink, tools).

Why a module of its own: a JAAS configuration is a small language, not a format string.
``Module required username="..." password="...";`` breaks on a password with a quote or a
backslash (or worse, lets the password add options), each SASL mechanism has its own login
module (OAUTHBEARER is not SCRAM), and a client certificate is a keystore on the Java side.

Pure functions of plain values: no Kafka client is imported, nothing is read from the
environment except the certificate and key files named.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

PLAIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"
SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"
OAUTHBEARER_MODULE = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule"
# Kafka >= 3.4 (the Flink connector's kafka-clients): the OIDC client-credentials login.
OAUTHBEARER_LOGIN_HANDLER = ("org.apache.kafka.common.security.oauthbearer."
                             "OAuthBearerLoginCallbackHandler")
LOGIN_MODULES = {"PLAIN": PLAIN_MODULE, "SCRAM-SHA-256": SCRAM_MODULE,
                 "SCRAM-SHA-512": SCRAM_MODULE, "OAUTHBEARER": OAUTHBEARER_MODULE}
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
# Property values that hold secrets: masked by ``redacted``.
SECRET_KEYS = ("sasl.jaas.config", "sasl.password", "ssl.keystore.key", "ssl.key.password",
               "sasl.oauthbearer.client.secret", "ssl.key.pem", "ssl_key_password")


class KafkaSecurityError(ValueError):
    """Security settings that cannot make a working client (said before any connection)."""


def jaas_quote(value: str) -> str:
    """``value`` as a JAAS option value: in double quotes, with ``\\`` and ``"`` escaped and
    control characters as octal escapes (Kafka parses the value with Java's
    ``StreamTokenizer``, where a bare line break would end the string)."""
    if not isinstance(value, str):
        raise KafkaSecurityError(f"JAAS option value must be text, got {type(value).__name__}")
    out = []
    for ch in value:
        if ch in ('\\', '"'):
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ch == "\x7f":
            out.append(f"\\{ord(ch):03o}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def jaas_config(module: str, options: dict[str, str | None], flag: str = "required") -> str:
    """``module flag key="value" ...;`` with every value quoted by ``jaas_quote``; options
    whose value is None are left out. Option names must be plain identifiers."""
    parts = [module, flag]
    for key, value in options.items():
        if value is None:
            continue
        if not key.replace(".", "").replace("_", "").isalnum():
            raise KafkaSecurityError(f"JAAS option name {key!r} is not an identifier")
        parts.append(f"{key}={jaas_quote(value)}")
    return " ".join(parts) + ";"


def _check(protocol: str, mechanism: str | None) -> None:
    if protocol not in PROTOCOLS:
        raise KafkaSecurityError(f"security protocol {protocol!r}: use one of {PROTOCOLS}")
    sasl = protocol.startswith("SASL_")
    if sasl and not mechanism:
        raise KafkaSecurityError(f"{protocol} needs a sasl_mechanism ({sorted(LOGIN_MODULES)})")
    if mechanism and not sasl:
        raise KafkaSecurityError(f"sasl_mechanism {mechanism} needs protocol SASL_SSL or "
                                 f"SASL_PLAINTEXT, not {protocol}")
    if mechanism and mechanism not in LOGIN_MODULES:
        raise KafkaSecurityError(f"sasl_mechanism {mechanism!r}: use one of {sorted(LOGIN_MODULES)}")


def _read_pem(path: str | Path, what: str) -> str:
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise KafkaSecurityError(f"cannot read the {what} {path}: {exc}") from None
    if "-----BEGIN " not in text:
        raise KafkaSecurityError(f"{what} {path} is not PEM")
    return text.strip()


@dataclass(frozen=True)
class Security:
    """What both builders take: protocol, SASL mechanism and credentials, TLS files, and the
    OIDC token endpoint for OAUTHBEARER (``username`` = client id, ``password`` = secret)."""

    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    username: str | None = None
    password: str | None = None
    ssl_ca_location: str | Path | None = None
    ssl_certificate_location: str | Path | None = None
    ssl_key_location: str | Path | None = None
    ssl_key_password: str | None = None
    oauth_token_endpoint_url: str | None = None
    oauth_scope: str | None = None

    def checked(self) -> "Security":
        """The checks both client libraries need, with errors that say what is missing."""
        _check(self.protocol, self.mechanism)
        if self.mechanism == "OAUTHBEARER":
            if not (self.username and self.password and self.oauth_token_endpoint_url):
                raise KafkaSecurityError("OAUTHBEARER needs a client id (username), a client "
                                         "secret (password) and a token endpoint URL")
        elif self.mechanism and (not self.username or self.password is None):
            raise KafkaSecurityError(f"{self.mechanism} needs a username and a password")
        if bool(self.ssl_certificate_location) != bool(self.ssl_key_location):
            raise KafkaSecurityError("a client certificate needs both ssl_certificate_location "
                                     "and ssl_key_location")
        return self


def java_client_properties(*args, **kwargs) -> dict[str, str]:
    """Kafka Java client properties (Flink's Kafka source and sink), from ``Security``'s fields.

    PLAIN/SCRAM: the mechanism's login module with ``username`` and ``password``.
    OAUTHBEARER: OIDC client credentials from ``oauth_token_endpoint_url``, with Kafka's login
    callback handler. A CA file becomes a PEM truststore; a client certificate and key (mutual
    TLS) a PEM keystore given inline (``ssl.keystore.certificate.chain`` /
    ``ssl.keystore.key``), so the files need not exist on every TaskManager. Kafka's PEM
    keystore reads PKCS#8 keys only.
    """
    s = Security(*args, **kwargs).checked()
    props = {"security.protocol": s.protocol}
    if s.mechanism == "OAUTHBEARER":
        props["sasl.mechanism"] = s.mechanism
        props["sasl.login.callback.handler.class"] = OAUTHBEARER_LOGIN_HANDLER
        props["sasl.oauthbearer.token.endpoint.url"] = s.oauth_token_endpoint_url
        props["sasl.jaas.config"] = jaas_config(OAUTHBEARER_MODULE, {
            "clientId": s.username, "clientSecret": s.password, "scope": s.oauth_scope})
    elif s.mechanism:
        props["sasl.mechanism"] = s.mechanism
        props["sasl.jaas.config"] = jaas_config(LOGIN_MODULES[s.mechanism],
                                                {"username": s.username, "password": s.password})
    if s.ssl_ca_location:
        props["ssl.truststore.type"] = "PEM"
        props["ssl.truststore.location"] = str(s.ssl_ca_location)
    if s.ssl_certificate_location:
        if s.protocol not in ("SSL", "SASL_SSL"):
            raise KafkaSecurityError(f"a client certificate needs protocol SSL or SASL_SSL, "
                                     f"not {s.protocol}")
        key = _read_pem(s.ssl_key_location, "client key")
        if "BEGIN PRIVATE KEY" not in key and "BEGIN ENCRYPTED PRIVATE KEY" not in key:
            raise KafkaSecurityError(
                f"client key {s.ssl_key_location} is not PKCS#8, which Kafka's PEM keystore "
                "needs: convert it with `openssl pkcs8 -topk8 -in KEY -out KEY.pk8 -nocrypt`")
        if "BEGIN ENCRYPTED PRIVATE KEY" in key and not s.ssl_key_password:
            raise KafkaSecurityError(f"client key {s.ssl_key_location} is encrypted: give its "
                                     "password")
        props["ssl.keystore.type"] = "PEM"
        props["ssl.keystore.certificate.chain"] = _read_pem(s.ssl_certificate_location,
                                                            "client certificate")
        props["ssl.keystore.key"] = key
        if s.ssl_key_password:
            props["ssl.key.password"] = s.ssl_key_password
    return props


def librdkafka_properties(*args, **kwargs) -> dict[str, str]:
    """The same settings (``Security``'s fields) for librdkafka (confluent-kafka): it takes the
    password as a plain property (no JAAS), OAUTHBEARER as its built-in OIDC method,
    certificates as file paths."""
    s = Security(*args, **kwargs).checked()
    conf = {"security.protocol": s.protocol}
    if s.mechanism == "OAUTHBEARER":
        conf.update({"sasl.mechanism": s.mechanism, "sasl.oauthbearer.method": "oidc",
                     "sasl.oauthbearer.client.id": s.username,
                     "sasl.oauthbearer.client.secret": s.password,
                     "sasl.oauthbearer.token.endpoint.url": s.oauth_token_endpoint_url})
        if s.oauth_scope:
            conf["sasl.oauthbearer.scope"] = s.oauth_scope
    elif s.mechanism:
        conf.update({"sasl.mechanism": s.mechanism, "sasl.username": s.username,
                     "sasl.password": s.password})
    for key, value in (("ssl.ca.location", s.ssl_ca_location),
                       ("ssl.certificate.location", s.ssl_certificate_location),
                       ("ssl.key.location", s.ssl_key_location),
                       ("ssl.key.password", s.ssl_key_password)):
        if value:
            conf[key] = str(value)
    return conf


def settings_of(security: Any, password: str | None = None, **extra) -> dict[str, Any]:
    """Keyword arguments for the two builders from a config ``KafkaSecurity`` (duck-typed:
    ``protocol``, ``sasl_mechanism``, ``username``, ``ssl_*_location``; the password is passed
    in, read by the config from its environment variable or file)."""
    kwargs = {
        "protocol": security.protocol, "mechanism": security.sasl_mechanism,
        "username": security.username, "password": password,
        "ssl_ca_location": getattr(security, "ssl_ca_location", None),
        "ssl_certificate_location": getattr(security, "ssl_certificate_location", None),
        "ssl_key_location": getattr(security, "ssl_key_location", None),
    }
    for name in ("ssl_key_password", "oauth_token_endpoint_url", "oauth_scope"):
        value = getattr(security, name, None)
        value = value() if callable(value) else value
        if value is not None:
            kwargs[name] = value
    kwargs.update(extra)
    return kwargs


def redacted(props: dict[str, Any]) -> dict[str, Any]:
    """A copy fit for logs: secret-bearing values replaced by ``***``."""
    return {k: ("***" if k in SECRET_KEYS and v else v) for k, v in props.items()}
