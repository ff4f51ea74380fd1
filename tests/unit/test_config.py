"""Configuration: YAML plus environment overrides, validated with errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.kernel.config import ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return path


def test_packaged_defaults_are_valid():
    config = load_config(environ={})
    assert config.server.port == 50051 and config.auth.enabled
    assert config.database.url is None and config.rate_limits.redis_url is None
    assert "sim-chat" in config.models


def test_environment_overrides_nested_keys_and_conventional_urls():
    config = load_config(environ={"LLMGW_SERVER__PORT": "6000", "LLMGW_AUTH__ENABLED": "false",
                                  "DATABASE_URL": "postgresql://db/x",
                                  "REDIS_URL": "redis://r:6379/0"})
    assert config.server.port == 6000 and config.auth.enabled is False
    assert config.database.url == "postgresql://db/x"
    assert config.rate_limits.redis_url == "redis://r:6379/0"


def test_errors_name_every_bad_key(tmp_path):
    path = write(tmp_path, "server:\n  port: high\n  prot: 1\nproviders:\n  x: {kind: nope}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    text = str(caught.value)
    assert "server.port" in text and "server.prot" in text and "providers.x.kind" in text


def test_model_targets_must_name_configured_providers(tmp_path):
    path = write(tmp_path, "models:\n  m:\n    targets: [{provider: ghost, model: x}]\n")
    with pytest.raises(ConfigError, match=r"models\.m\.targets\[0\]\.provider"):
        load_config(path, environ={})


def test_unreadable_and_malformed_files_are_reported(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml", environ={})
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "server: [unclosed"), environ={})


def test_api_keys_come_from_env_or_file_and_never_print(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("sk-from-file\n")
    path = write(tmp_path, f"""
providers:
  a: {{kind: openai, api_key_env: A_KEY}}
  b: {{kind: openai, api_key_file: {key_file}}}
""")
    config = load_config(path, environ={})
    a = config.provider_api_key("a", {"A_KEY": "sk-secret-env"})
    b = config.provider_api_key("b", {})
    assert a is not None and a.get_secret_value() == "sk-secret-env"
    assert b is not None and b.get_secret_value() == "sk-from-file"
    assert "sk-secret-env" not in repr(a) and "sk-from-file" not in str(b)
    assert "sk-" not in repr(config)


def test_top_level_data_dir_override_and_unrelated_variables_ignored():
    config = load_config(environ={"LLMGW_DATA_DIR": "/srv/gw", "LLMGW_JWT_SECRET": "x" * 40,
                                  "LLMGW_CONFIG": ""})
    assert config.data_dir == Path("/srv/gw")


def test_stream_batching_is_an_openai_direct_setting(tmp_path):
    config = load_config(write(tmp_path, """
providers:
  fast: {kind: openai, base_url: "http://127.0.0.1:1/v1"}
  slow: {kind: openai, base_url: "http://127.0.0.1:1/v1", stream_batch_ms: 0}
  claude: {kind: anthropic}
"""), environ={})
    assert config.providers["fast"].stream_batch_ms == 20.0  # the default
    assert config.providers["slow"].stream_batch_ms == 0.0
    for bad in ("{kind: anthropic, stream_batch_ms: 10}",  # not an OpenAI-kind vendor
                "{kind: openai, transport: sdk, stream_batch_ms: 10}",  # the SDK reads
                "{kind: openai, stream_batch_ms: 500}"):  # longer than 100 ms
        with pytest.raises(ConfigError, match=r"providers\.p"):
            load_config(write(tmp_path, f"providers:\n  p: {bad}\n"), environ={})
