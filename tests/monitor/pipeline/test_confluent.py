"""``kafka.client: confluent``: the frames consumer on librdkafka gets the settings kafka-python's
gets, under librdkafka's names. Its behaviour with a real broker (drift, dead letters, commits,
the analysis rate, a handover between replicas, a broker outage) is tested end to end in
tests/integration (test_pipeline, test_state, test_faults), for both clients."""

from __future__ import annotations

import sys

import confluent_kafka
import pytest

from monitor.config import ConfigError, config_from_dict
from monitor.pipeline.confluent import ConfluentConsumer, client_config
from monitor.pipeline.source import make_frames_consumer


def _kafka(**kafka):
    return config_from_dict({"kafka": {"client": "confluent"} | kafka}).kafka


@pytest.mark.parametrize(
    "kafka",
    [
        {},
        {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "SCRAM-SHA-256",
            "sasl_username": "u",
            "sasl_password": "p",
        },
    ],
)
def test_librdkafka_accepts_every_setting(kafka):
    # librdkafka refuses an unknown property or a bad value when the client is made (no
    # connection is attempted before the first poll)
    consumer = confluent_kafka.Consumer(client_config(_kafka(**kafka)))
    consumer.close()


def test_the_settings_are_the_kafka_python_consumers(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN PLACEHOLDER-----\n")
    conf = client_config(
        _kafka(
            bootstrap_servers=["a:9092", "b:9093"],
            group_id="fleet",
            fetch_max_wait_ms=20,
            max_partition_fetch_bytes=4 << 20,
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
            security_protocol="SSL",
            ssl_cafile=str(ca),
            ssl_check_hostname=False,
        )
    )
    assert conf["bootstrap.servers"] == "a:9092,b:9093"
    assert conf["group.id"] == "fleet"
    assert conf["enable.auto.commit"] is False
    assert conf["fetch.wait.max.ms"] == 20
    assert conf["max.partition.fetch.bytes"] == 4 << 20
    assert (conf["session.timeout.ms"], conf["heartbeat.interval.ms"]) == (6000, 1000)
    assert conf["security.protocol"] == "SSL"
    assert conf["ssl.ca.location"] == str(ca)
    assert conf["ssl.endpoint.identification.algorithm"] == "none"


def test_the_daemon_gets_the_librdkafka_consumer_when_asked():
    consumer = make_frames_consumer(_kafka(bootstrap_servers=["127.0.0.1:1"]))
    try:
        assert isinstance(consumer, ConfluentConsumer)
        assert not consumer.connected()  # no assignment yet
        assert consumer.assignment() == set()
    finally:
        consumer.close()


def test_without_the_package_the_error_names_the_field(monkeypatch):
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)  # import fails
    with pytest.raises(ConfigError, match=r"kafka\.client.*driftmon\[confluent\]"):
        ConfluentConsumer(_kafka())


def test_an_unknown_client_is_refused_at_start():
    with pytest.raises(ConfigError, match=r"kafka\.client"):
        config_from_dict({"kafka": {"client": "librdkafka"}})
