"""Settings (SPEC §1): every option as a flag and a PLP_* variable, parsing, secrets."""

from __future__ import annotations

import os
import stat

import pytest

from plp import config
from plp.cli import options_help, parse_options
from plp.config import (
    OPTIONS,
    SECRET_FILE_NAME,
    ConfigError,
    Settings,
    ensure_secret,
    from_env,
)

# option -> (raw value, parsed value); one valid, non-default value for every setting.
SAMPLES: dict[str, tuple[str, object]] = {
    "env": ("production", "production"),
    "host": ("0.0.0.0", "0.0.0.0"),
    "port": ("9001", 9001),
    "data-dir": ("/tmp/plp-data", "/tmp/plp-data"),
    "db": ("postgresql://plp@db.example/plp", "postgresql://plp@db.example/plp"),
    "session-idle-timeout": ("90", 90.0),
    "session-max-age": ("7200.5", 7200.5),
    "session-prune-interval": ("5", 5.0),
    "sessions-per-user": ("3", 3),
    "bcrypt-rounds": ("10", 10),
    "cors-origins": (
        "https://a.example, http://b.example:8080",
        ("https://a.example", "http://b.example:8080"),
    ),
    "trust-proxy": ("yes", True),
    "tls-cert": ("/etc/plp/cert.pem", "/etc/plp/cert.pem"),
    "tls-key": ("/etc/plp/key.pem", "/etc/plp/key.pem"),
    "session-backend": ("redis", "redis"),
    "redis-url": ("redis://cache.example:6380/2", "redis://cache.example:6380/2"),
    "metrics-port": ("9100", 9100),
    "login-failures-per-account": ("7", 7),
    "login-failures-per-address": ("40", 40),
    "registrations-per-address": ("50", 50),
    "sockets-per-user": ("2", 2),
    "sockets-per-address": ("20", 20),
    "chat-rate": ("10/2.5", (10, 2.5)),
    "log-format": ("json", "json"),
    "log-level": ("debug", "debug"),
    "audit-retention-days": ("30", 30),
    "reset-code-ttl": ("600", 600.0),
    "class-join-failures": ("3", 3),
    "rp-id": ("School.Example.org", "school.example.org"),
    "require-mfa": ("admin, Teacher,admin", ("admin", "teacher")),
    "reauth-window": ("300", 300.0),
}

DEFAULTS: dict[str, object] = {
    "env": "development",
    "host": "127.0.0.1",
    "port": 8888,
    "data_dir": "./data",
    "db": "",
    "session_idle_timeout": 1800.0,
    "session_max_age": 86400.0,
    "session_prune_interval": 60.0,
    "sessions_per_user": 10,
    "bcrypt_rounds": 12,
    "cors_origins": (),
    "trust_proxy": False,
    "tls_cert": "",
    "tls_key": "",
    "session_backend": "memory",
    "metrics_port": 0,
    "login_failures_per_account": 5,
    "login_failures_per_address": 30,
    "registrations_per_address": 30,
    "sockets_per_user": 5,
    "sockets_per_address": 1000,
    "chat_rate": (5, 5.0),
    "audit_retention_days": 180,
    "reset_code_ttl": 900.0,
    "class_join_failures": 10,
    "rp_id": "",
    "require_mfa": (),
    "reauth_window": 600.0,
}


def field_name(option: str) -> str:
    return option.replace("-", "_")


def env_name(option: str) -> str:
    return "PLP_" + option.upper().replace("-", "_")


def test_samples_cover_every_option():
    assert set(SAMPLES) == set(OPTIONS)


def test_defaults():
    settings = from_env({}, {})
    for name, value in DEFAULTS.items():
        assert getattr(settings, name) == value, name
    assert settings == Settings()
    assert settings.db_url == os.path.join("data", "plp.sqlite3")
    assert settings.cookie_name == "plp_session"
    assert not settings.production and not settings.tls
    assert settings.session_secret == "" and settings.session_secret_previous == ()


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_every_setting_as_flag(option):
    raw, parsed = SAMPLES[option]
    _parse, switch, _help = OPTIONS[option]
    argv = [f"--{option}"] if switch else [f"--{option}", raw]
    extra = ["--tls-key", "k"] if option == "tls-cert" else []
    extra += ["--tls-cert", "c"] if option == "tls-key" else []
    settings = from_env(parse_options(argv + extra), {})
    assert getattr(settings, field_name(option)) == parsed
    if not switch:  # --name=value form too
        settings = from_env(parse_options([f"--{option}={raw}", *extra]), {})
        assert getattr(settings, field_name(option)) == parsed


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_every_setting_as_variable(option):
    raw, parsed = SAMPLES[option]
    environ = {env_name(option): raw}
    if option == "tls-cert":
        environ["PLP_TLS_KEY"] = "k"
    if option == "tls-key":
        environ["PLP_TLS_CERT"] = "c"
    settings = from_env({}, environ)
    assert getattr(settings, field_name(option)) == parsed


def test_flag_wins_over_variable():
    environ = {"PLP_PORT": "7000", "PLP_HOST": "10.0.0.1", "PLP_ENV": "production"}
    settings = from_env(parse_options(["--port", "7001", "--env=development"]), environ)
    assert settings.port == 7001
    assert settings.env == "development"
    assert settings.host == "10.0.0.1"  # no flag: the variable applies


def test_switch_flag_wins_over_false_variable():
    settings = from_env(parse_options(["--trust-proxy"]), {"PLP_TRUST_PROXY": "no"})
    assert settings.trust_proxy is True


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("1", True),
        ("true", True),
        ("yes", True),
        ("YES", True),
        (" True ", True),
        ("0", False),
        ("false", False),
        ("no", False),
        ("No", False),
        ("", False),
    ],
)
def test_trust_proxy_variable(raw, expected):
    assert from_env({}, {"PLP_TRUST_PROXY": raw}).trust_proxy is expected


@pytest.mark.parametrize("raw", ["maybe", "2", "y e s", "enabled"])
def test_trust_proxy_bad_variable(raw):
    with pytest.raises(ConfigError, match="PLP_TRUST_PROXY"):
        from_env({}, {"PLP_TRUST_PROXY": raw})


def test_switch_takes_no_value():
    with pytest.raises(ConfigError, match="--trust-proxy"):
        parse_options(["--trust-proxy=yes"])
    # A following word is not swallowed as its value: it is an unexpected argument.
    with pytest.raises(ConfigError, match="'yes'"):
        parse_options(["--trust-proxy", "yes"])


def test_cors_origins_list():
    settings = from_env({}, {"PLP_CORS_ORIGINS": " https://A.example ,,http://[::1]:8080, "})
    assert settings.cors_origins == ("https://a.example", "http://[::1]:8080")
    assert from_env({}, {"PLP_CORS_ORIGINS": ""}).cors_origins == ()


@pytest.mark.parametrize(
    "raw",
    [
        "*",
        "https://a.example,*",
        "a.example",
        "ftp://a.example",
        "https://a.example/",
        "https://a.example/path",
        "https://user@a.example",
        "https://a.example:port",
        "https://a.example:123456",
        "https://a.example:99999",
        "https://a.example?x=1",
        "null",
        "https://",
    ],
)
def test_cors_origins_rejected(raw):
    with pytest.raises(ConfigError, match="--cors-origins"):
        from_env(parse_options(["--cors-origins", raw]), {})


@pytest.mark.parametrize(
    "option, raw",
    [
        ("port", "abc"),
        ("port", "70000"),
        ("port", "-1"),
        ("port", "1.5"),
        ("port", ""),
        ("metrics-port", "http"),
        ("sessions-per-user", "0"),
        ("sessions-per-user", "-3"),
        ("bcrypt-rounds", "3"),
        ("bcrypt-rounds", "32"),
        ("bcrypt-rounds", "twelve"),
        ("session-idle-timeout", "0"),
        ("session-idle-timeout", "-5"),
        ("session-idle-timeout", "nan"),
        ("session-idle-timeout", "inf"),
        ("session-max-age", "1e400"),
        ("session-max-age", "soon"),
        ("session-prune-interval", ""),
        # SPEC §1: durations run from 1 s to 10 years (1e12 s once made /api/sessions fail).
        ("session-idle-timeout", "1e12"),
        ("session-max-age", "315576001"),
        ("session-prune-interval", "0.5"),
        ("audit-retention-days", "0"),
        ("audit-retention-days", "3653"),
        ("reset-code-ttl", "0"),
        ("class-join-failures", "0"),
        ("rp-id", "https://school.example.org"),
        ("rp-id", "school.example.org:8443"),
        ("require-mfa", "root"),
        ("reauth-window", "nan"),
        ("audit-retention-days", "1.5"),
        ("env", "staging"),
        ("session-backend", "memcached"),
        ("log-format", "xml"),
        ("log-level", "loud"),
        ("chat-rate", "5"),
        ("chat-rate", "0/5"),
        ("chat-rate", "5/0"),
        ("chat-rate", "a/b"),
        ("db", "mysql://x/y"),
        ("db", "postgresql://"),
        ("redis-url", "http://cache"),
        ("login-failures-per-account", "0"),
        ("sockets-per-address", "many"),
        ("host", ""),
        ("host", "  "),
        ("host", "127.0.0.1 evil"),
        ("data-dir", ""),
    ],
)
def test_bad_values_name_the_flag_and_value(option, raw):
    with pytest.raises(ConfigError) as flag_error:
        from_env(parse_options([f"--{option}", raw] if raw else [f"--{option}="]), {})
    message = str(flag_error.value)
    assert f"--{option}" in message and repr(raw) in message
    assert "invalid literal" not in message and "could not convert" not in message
    with pytest.raises(ConfigError) as env_error:
        from_env({}, {env_name(option): raw})
    assert env_name(option) in str(env_error.value)


def test_bad_env_value_ignored_when_flag_given():
    settings = from_env(parse_options(["--port", "9000"]), {"PLP_PORT": "junk"})
    assert settings.port == 9000


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--nope", "1"], "--nope"),
        (["--port"], "--port needs a value"),
        (["--port", "--host", "x"], "--port needs a value"),
        (["stray"], "'stray'"),
        (["-p", "80"], "'-p'"),
        (["--"], "'--'"),
        (["--session-secret", "s" * 40], "SESSION_SECRET"),
        (["--session-secret=" + "s" * 40], "SESSION_SECRET"),
        (["--session-secret-previous", "old"], "SESSION_SECRET_PREVIOUS"),
    ],
)
def test_bad_arguments(argv, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("-", r"\-").replace("'", "'")):
        parse_options(argv)


def test_session_secret_flag_never_echoes_the_secret():
    with pytest.raises(ConfigError) as error:
        parse_options(["--session-secret", "hunter2-very-secret-value-xxxxxxxxxxxx"])
    assert "hunter2" not in str(error.value)


def test_tls_needs_both():
    with pytest.raises(ConfigError, match="--tls-cert and --tls-key"):
        from_env(parse_options(["--tls-cert", "c.pem"]), {})
    assert from_env({}, {"PLP_TLS_CERT": "c", "PLP_TLS_KEY": "k"}).tls


def test_secrets_from_environment_only():
    environ = {
        "SESSION_SECRET": "s" * 40,
        "SESSION_SECRET_PREVIOUS": " old-one , ,older ",
        "PLP_SESSION_SECRET": "ignored",
    }
    settings = from_env({}, environ)
    assert settings.session_secret == "s" * 40
    assert settings.session_secret_previous == ("old-one", "older")
    assert "s" * 40 not in repr(settings) and "old-one" not in repr(settings)


def test_db_url_and_cookie_name():
    settings = from_env({}, {"PLP_DATA_DIR": "/srv/plp", "PLP_ENV": "production"})
    assert settings.db_url == "/srv/plp/plp.sqlite3"
    assert settings.cookie_name == "__Host-plp_session"
    assert from_env({}, {"PLP_DB": "/x/y.db"}).db_url == "/x/y.db"


# --- secrets: production refusal, development file ---------------------------------------


def test_production_without_secret_refused(tmp_path):
    settings = Settings(env="production", data_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="SESSION_SECRET"):
        ensure_secret(settings)
    assert not (tmp_path / SECRET_FILE_NAME).exists()  # production never invents one


@pytest.mark.parametrize("length", [1, 16, 31])
def test_production_short_secret_refused(tmp_path, length):
    settings = Settings(env="production", data_dir=str(tmp_path), session_secret="s" * length)
    with pytest.raises(ConfigError, match="SESSION_SECRET"):
        ensure_secret(settings)


def test_production_good_secret_kept(tmp_path):
    settings = Settings(env="production", data_dir=str(tmp_path), session_secret="s" * 32)
    assert ensure_secret(settings).session_secret == "s" * 32


def test_development_generates_and_reuses_secret(tmp_path):
    data_dir = tmp_path / "fresh" / "data"
    settings = Settings(data_dir=str(data_dir))
    first = ensure_secret(settings).session_secret
    path = data_dir / SECRET_FILE_NAME
    assert len(first) >= config.MIN_SECRET_LENGTH
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == first
    assert ensure_secret(settings).session_secret == first


def test_development_secret_file_tightened_and_short_one_replaced(tmp_path):
    path = tmp_path / SECRET_FILE_NAME
    path.write_text("too-short\n")
    path.chmod(0o644)
    secret = ensure_secret(Settings(data_dir=str(tmp_path))).session_secret
    assert secret != "too-short" and len(secret) >= config.MIN_SECRET_LENGTH
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_development_with_secret_writes_nothing(tmp_path):
    settings = Settings(data_dir=str(tmp_path / "d"), session_secret="short is fine in dev")
    assert ensure_secret(settings).session_secret == "short is fine in dev"
    assert not (tmp_path / "d").exists()


def test_unusable_data_dir_is_a_config_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="--data-dir"):
        ensure_secret(Settings(data_dir=str(blocker)))


def test_help_lists_every_option():
    text = options_help()
    for name in OPTIONS:
        assert f"--{name}" in text
    assert "[5/5]" in text and "SESSION_SECRET" in text
