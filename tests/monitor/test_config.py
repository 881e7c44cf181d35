import subprocess
import sys

import pytest

from monitor.config import ConfigError, config_from_dict, load_config


def write(tmp_path, text):
    p = tmp_path / "config.yaml"
    p.write_text(text)
    return p


def test_defaults_are_valid():
    cfg = load_config(None, env={})
    assert cfg.kafka.topics == ("frames",)
    assert cfg.window.size == 200 and cfg.tests.vote == ("shift", "emb_shift", "view")
    assert cfg.active_tests == (
        "shift",
        "emb_shift",
        "view",
        "ks",
        "psi",
        "wasserstein",
        "mmd",
        "ks_dims",
        "pred_class",
        "confidence",
        "probs_ks",
    )
    assert cfg.hysteresis_k_m == (5, 6)  # two disjoint windows of 200 frames every 50
    assert cfg.source.max_fps_per_stream == 0  # every frame (docs/configuration.md says why)


def test_embedding_tests_drop_out_without_embeddings():
    cfg = config_from_dict({"embedding": {"enabled": False}})
    assert cfg.active_tests == (
        "shift",
        "view",
        "ks",
        "psi",
        "wasserstein",
        "pred_class",
        "confidence",
        "probs_ks",
    )
    assert cfg.voting_tests == ("shift", "view")
    with pytest.raises(ConfigError, match=r"^tests\.vote"):
        config_from_dict({"embedding": {"enabled": False}, "tests": {"vote": ["mmd"]}})


def test_yaml_values_are_read(tmp_path):
    cfg = load_config(
        write(tmp_path, "kafka:\n  topics: [a, b]\n  max_poll_records: 7\nwindow:\n  size: 50\n"),
        env={},
    )
    assert cfg.kafka.topics == ("a", "b")
    assert cfg.kafka.max_poll_records == 7
    assert cfg.window.size == 50


@pytest.mark.parametrize(
    "text, field",
    [
        ("kafka:\n  bootstrp_servers: [x:1]\n", "kafka.bootstrp_servers"),
        ("kafka:\n  max_poll_records: 0\n", "kafka.max_poll_records"),
        ("kafka:\n  max_poll_records: many\n", "kafka.max_poll_records"),
        ("kafka:\n  bootstrap_servers: [nohostport]\n", "kafka.bootstrap_servers"),
        ("kafka:\n  security_protocol: SASL_SSL\n", "kafka.sasl_mechanism"),
        ("kafka:\n  auto_offset_reset: middle\n", "kafka.auto_offset_reset"),
        ("window:\n  size: 100\n  evaluate_every: 500\n", "window.evaluate_every"),
        ("window:\n  mode: hopping\n", "window.mode"),
        ("tests:\n  alpha: 1.5\n", "tests.alpha"),
        ("tests:\n  vote: [psi]\n  enabled: [ks]\n", "tests.vote"),
        ("tests:\n  features: [brightness_mean, moonlight]\n", "tests.features"),
        ("hysteresis:\n  k: 4\n  m: 3\n", "hysteresis.k"),
        ("source:\n  stream_key: '{camera}'\n", "source.stream_key"),
        ("source:\n  allowed_roots: [relative/dir]\n", "source.allowed_roots"),
        ("source:\n  max_fps_per_stream: -1\n", "source.max_fps_per_stream"),
        ("source:\n  max_fps_per_stream: .nan\n", "source.max_fps_per_stream"),
        ("source:\n  max_fps_per_stream: fast\n", "source.max_fps_per_stream"),
        ("source:\n  max_fps_per_stream: .inf\n", "source.max_fps_per_stream"),
        ("http:\n  port: 70000\n", "http.port"),
        ("decode:\n  max_pixels: 2000000000\n", "decode.max_pixels"),
        ("embedding:\n  kind: torchscript\n", "embedding.path"),
        ("embedding:\n  kind: torchscript\n  path: /no/model.pt\n", "embedding.path"),
        ("embedding:\n  device: tpu\n", "embedding.device"),
        ("embedding:\n  mmd_permutations: 5\n", "embedding.mmd_permutations"),
        ("tests:\n  enabled: [ks, chi2]\n", "tests.enabled[1]"),
        ("metrics: 5\n", "metrics"),
        ("surprise: {}\n", "surprise"),
        ("log_level: LOUD\n", "log_level"),
    ],
)
def test_invalid_values_name_the_field(tmp_path, text, field):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text), env={})
    assert str(e.value).startswith(field), str(e.value)


def test_the_analysis_rate_is_read_from_yaml_and_the_environment(tmp_path):
    path = write(tmp_path, "source:\n  max_fps_per_stream: 2\n")
    assert load_config(path, env={}).source.max_fps_per_stream == 2.0
    env = {"DRIFTMON_SOURCE__MAX_FPS_PER_STREAM": "0.5"}
    assert load_config(path, env=env).source.max_fps_per_stream == 0.5


def test_env_overrides_nested_fields_and_lists(tmp_path):
    env = {
        "DRIFTMON_KAFKA__BOOTSTRAP_SERVERS": "a:1,b:2",
        "DRIFTMON_WINDOW__SIZE": "40",
        "DRIFTMON_METRICS__PER_FEATURE": "false",
        "OTHER": "ignored",
    }
    cfg = load_config(write(tmp_path, "window:\n  size: 100\n  evaluate_every: 10\n"), env=env)
    assert cfg.kafka.bootstrap_servers == ("a:1", "b:2")
    assert cfg.window.size == 40
    assert cfg.metrics.per_feature is False


def test_env_override_is_validated():
    with pytest.raises(ConfigError, match=r"^window\.size"):
        load_config(None, env={"DRIFTMON_WINDOW__SIZE": "3"})


def test_not_yaml_and_not_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "kafka: [unclosed\n"), env={})
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path, "- a\n- b\n"), env={})


def test_sasl_options_are_passed_through():
    cfg = config_from_dict(
        {
            "kafka": {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "PLAIN",
                "sasl_username": "u",
                "sasl_password": "p",
            }
        }
    )
    opts = cfg.kafka.client_options()
    assert opts["security_protocol"] == "SASL_PLAINTEXT"
    assert (opts["sasl_mechanism"], opts["sasl_plain_username"], opts["sasl_plain_password"]) == (
        "PLAIN",
        "u",
        "p",
    )


def test_config_check_cli(tmp_path):
    good = write(tmp_path, "window:\n  size: 50\n  evaluate_every: 10\n")
    ok = subprocess.run(
        [sys.executable, "-m", "monitor.service.cli", "config", "check", str(good)],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("kafka:\n  max_poll_records: -1\n")
    res = subprocess.run(
        [sys.executable, "-m", "monitor.service.cli", "config", "check", str(bad)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2
    assert "kafka.max_poll_records" in res.stderr


def test_every_field_is_documented():
    import dataclasses
    from pathlib import Path

    from monitor.config import Config

    doc = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    for section in dataclasses.fields(Config):
        if dataclasses.is_dataclass(section.type) or isinstance(section.default_factory, type):
            for f in dataclasses.fields(section.default_factory):
                assert f"  {f.name}:" in doc, (
                    f"{section.name}.{f.name} missing from docs/configuration.md"
                )
        else:
            assert f"{section.name}:" in doc


def test_a_missing_reference_is_refused_to_run_not_to_build(tmp_path):
    """One config file serves `reference build --config` (which writes reference.path) and `run`."""
    config = load_config(write(tmp_path, f"reference:\n  path: {tmp_path / 'store'}\n"), env={})
    with pytest.raises(
        ConfigError, match=r"^reference\.path: does not exist: .*driftmon reference build --out"
    ):
        config.reference.require()
    (tmp_path / "store").mkdir()
    config.reference.require()
    with pytest.raises(ConfigError, match=r"^reference\.path: required to run"):
        load_config(None, env={}).reference.require()
