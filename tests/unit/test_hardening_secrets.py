"""Issue 16: credentials. The Kafka JAAS configuration is built, not formatted (a quote in the
password broke it), with the right login module per mechanism and client certificates as a
PEM keystore; camera URLs with passwords never reach a log line or an error."""
from __future__ import annotations

import re

import pytest

from camflow.config.kafka_security import (OAUTHBEARER_MODULE, PLAIN_MODULE, SCRAM_MODULE,
                                         KafkaSecurityError, jaas_config, jaas_quote,
                                         java_client_properties, librdkafka_properties,
                                         redacted, settings_of)


def parse_jaas(text: str) -> tuple[str, str, dict[str, str]]:
    """A reader with the rules of Kafka's JaasConfig (java.io.StreamTokenizer, quoteChar '"')."""
    match = re.match(r'\s*(\S+)\s+(\S+)\s+(.*);\s*$', text, re.S)
    module, flag, rest = match.groups()
    options, pos = {}, 0
    while pos < len(rest):
        if rest[pos].isspace():
            pos += 1
            continue
        key_end = rest.index("=", pos)
        key = rest[pos:key_end]
        assert rest[key_end + 1] == '"'
        value, pos = [], key_end + 2
        while rest[pos] != '"':
            assert rest[pos] not in "\r\n", "a raw line break ends a StreamTokenizer string"
            if rest[pos] == "\\":
                nxt = rest[pos + 1]
                if nxt in "01234567":
                    digits = re.match(r"[0-7]{1,3}", rest[pos + 1:]).group()
                    value.append(chr(int(digits, 8)))
                    pos += 1 + len(digits)
                    continue
                value.append({"n": "\n", "t": "\t", "r": "\r"}.get(nxt, nxt))
                pos += 2
                continue
            value.append(rest[pos])
            pos += 1
        options[key] = "".join(value)
        pos += 1
    return module, flag, options


@pytest.mark.parametrize("password", ['pa"ss', 'back\\slash', 'x" username="admin', "line\nbreak",
                                      "ünïcode € pass", "", "a;b=c"])
def test_jaas_round_trips_any_password(password):
    props = java_client_properties("SASL_SSL", "SCRAM-SHA-512", "camflow-job", password)
    module, flag, options = parse_jaas(props["sasl.jaas.config"])
    assert (module, flag) == (SCRAM_MODULE, "required")
    assert options == {"username": "camflow-job", "password": password}


def test_each_mechanism_gets_its_login_module():
    plain = java_client_properties("SASL_PLAINTEXT", "PLAIN", "u", "p")
    assert plain["sasl.jaas.config"].startswith(PLAIN_MODULE + " required")
    oauth = java_client_properties("SASL_SSL", "OAUTHBEARER", "client-id", "client-secret",
                                   oauth_token_endpoint_url="https://idp/token", oauth_scope="kafka")
    module, _, options = parse_jaas(oauth["sasl.jaas.config"])
    assert module == OAUTHBEARER_MODULE and "Scram" not in oauth["sasl.jaas.config"]
    assert options == {"clientId": "client-id", "clientSecret": "client-secret", "scope": "kafka"}
    assert oauth["sasl.oauthbearer.token.endpoint.url"] == "https://idp/token"
    assert oauth["sasl.login.callback.handler.class"].endswith("OAuthBearerLoginCallbackHandler")
    with pytest.raises(KafkaSecurityError, match="token endpoint"):
        java_client_properties("SASL_SSL", "OAUTHBEARER", "id", "secret")
    rdkafka = librdkafka_properties("SASL_SSL", "OAUTHBEARER", "id", "secret",
                                    oauth_token_endpoint_url="https://idp/token")
    assert rdkafka["sasl.oauthbearer.method"] == "oidc" and "sasl.password" not in rdkafka


def test_client_certificates_become_a_pem_keystore(tmp_path):
    cert = tmp_path / "client.pem"
    key = tmp_path / "client.key"
    ca = tmp_path / "ca.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    key.write_text("-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n")
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n")
    props = java_client_properties("SSL", ssl_ca_location=ca, ssl_certificate_location=cert,
                                   ssl_key_location=key)
    assert props["ssl.keystore.type"] == "PEM" and props["ssl.truststore.type"] == "PEM"
    assert props["ssl.keystore.certificate.chain"].startswith("-----BEGIN CERTIFICATE-----")
    assert props["ssl.keystore.key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert redacted(props)["ssl.keystore.key"] == "***"
    rsa = tmp_path / "rsa.key"
    rsa.write_text("-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n")
    with pytest.raises(KafkaSecurityError, match="PKCS#8"):
        java_client_properties("SSL", ssl_certificate_location=cert, ssl_key_location=rsa)
    with pytest.raises(KafkaSecurityError, match="both"):
        java_client_properties("SSL", ssl_certificate_location=cert)


def test_inconsistent_settings_are_refused_before_connecting():
    with pytest.raises(KafkaSecurityError):
        java_client_properties("SASL_SSL")  # no mechanism
    with pytest.raises(KafkaSecurityError):
        java_client_properties("SSL", "PLAIN", "u", "p")  # mechanism without SASL
    with pytest.raises(KafkaSecurityError):
        java_client_properties("SASL_SSL", "SCRAM-SHA-256", None, "p")
    assert jaas_quote('a"b') == '"a\\"b"'
    with pytest.raises(KafkaSecurityError):
        jaas_config(PLAIN_MODULE, {"user name": "x"})


def test_settings_of_a_config_security_section():
    from camflow.config.kafka import KafkaSecurity

    security = KafkaSecurity(protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-256", username="u")
    props = java_client_properties(**settings_of(security, password='q"uote'))
    assert parse_jaas(props["sasl.jaas.config"])[2]["password"] == 'q"uote'
    assert "q\"uote" not in str(redacted(props))


# --- sampler: camera credentials never printed -----------------------------------------------
def test_camera_password_is_not_in_source_errors_or_reconnect_lines(capsys):
    from camflow.services.sampler import SourceError, open_capture, sample_stream

    source = "rtsp://admin:Cam3ra-s3cret@127.0.0.1:1/stream"
    with pytest.raises(SourceError) as excinfo:
        open_capture(source)
    assert "Cam3ra-s3cret" not in str(excinfo.value) and "admin:***@127.0.0.1" in str(excinfo.value)
    with pytest.raises(SourceError):
        next(sample_stream(source, fps=1, give_up_after_s=0.0, max_backoff_s=0.01))
    captured = capsys.readouterr()
    assert "Cam3ra-s3cret" not in captured.err + captured.out
    assert "p4ss" not in str(SourceError("rtsp://u:p4ss@cam/stream stopped delivering frames"))
