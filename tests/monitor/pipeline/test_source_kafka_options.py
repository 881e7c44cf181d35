"""kafka.security_protocol / sasl_* / ssl_* map onto options kafka-python's clients accept.

The embedded broker cannot complete a SASL login (docs/reliability.md, "Security"), so the SASL
half is proven here and by the refusal test in tests/integration/test_security.py; TLS also runs
end to end there.
"""

from __future__ import annotations

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from monitor.config import ConfigError, config_from_dict, to_dict


def _options(tmp_path, **kafka):
    for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        if name in kafka:
            (tmp_path / kafka[name]).write_text("-----BEGIN PLACEHOLDER-----\n")
            kafka[name] = str(tmp_path / kafka[name])
    return config_from_dict({"kafka": kafka}).kafka.client_options()


@pytest.mark.parametrize(
    "kafka",
    [
        {},
        {"security_protocol": "SSL", "ssl_cafile": "ca.pem"},
        {
            "security_protocol": "SSL",
            "ssl_cafile": "ca.pem",
            "ssl_certfile": "c.pem",
            "ssl_keyfile": "k.pem",
            "ssl_check_hostname": False,
        },
        {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "PLAIN",
            "sasl_username": "u",
            "sasl_password": "p",
        },
        {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "u",
            "sasl_password": "p",
            "ssl_cafile": "ca.pem",
        },
        {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-256",
            "sasl_username": "u",
            "sasl_password": "p",
        },
    ],
)
def test_every_option_is_one_kafka_python_clients_know(tmp_path, kafka):
    opts = _options(tmp_path, **kafka)
    for client in (KafkaConsumer, KafkaProducer, KafkaAdminClient):
        unknown = set(opts) - set(client.DEFAULT_CONFIG)
        assert not unknown, f"{client.__name__} would refuse {unknown}"


def test_tls_and_sasl_settings_reach_the_client_options(tmp_path):
    opts = _options(
        tmp_path,
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="svc",
        sasl_password="s3cret",
        ssl_cafile="ca.pem",
        ssl_certfile="c.pem",
        ssl_keyfile="k.pem",
        ssl_check_hostname=False,
    )
    assert opts["security_protocol"] == "SASL_SSL"
    assert (opts["sasl_mechanism"], opts["sasl_plain_username"], opts["sasl_plain_password"]) == (
        "SCRAM-SHA-512",
        "svc",
        "s3cret",
    )
    assert opts["ssl_cafile"] == str(tmp_path / "ca.pem") and opts["ssl_certfile"] == str(
        tmp_path / "c.pem"
    )
    assert opts["ssl_keyfile"] == str(tmp_path / "k.pem") and opts["ssl_check_hostname"] is False


def test_plaintext_carries_no_tls_or_sasl_options(tmp_path):
    opts = _options(tmp_path)
    assert opts["security_protocol"] == "PLAINTEXT"
    assert not any(k.startswith(("ssl_", "sasl_")) for k in opts)


@pytest.mark.parametrize(
    "kafka, field",
    [
        ({"security_protocol": "SASL_SSL"}, "kafka.sasl_mechanism"),
        ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN"}, "kafka.sasl_username"),
        ({"security_protocol": "SSL", "ssl_cafile": "/nonexistent/ca.pem"}, "kafka.ssl_cafile"),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI", "sasl_username": "u"},
            "kafka.sasl_mechanism",
        ),
    ],
)
def test_incomplete_security_settings_fail_at_load(kafka, field):
    with pytest.raises(ConfigError, match=field):
        config_from_dict({"kafka": kafka})


def test_the_password_never_reaches_status():
    cfg = config_from_dict(
        {
            "kafka": {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "PLAIN",
                "sasl_username": "u",
                "sasl_password": "s3cret",
            }
        }
    )
    assert to_dict(cfg)["kafka"]["sasl_password"] == "***"
    assert "s3cret" not in repr(to_dict(cfg))
