"""Settings read from the environment (no servers needed)."""

from __future__ import annotations

import re
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from flows import policy
from taxi.settings import Settings, memory_bytes, secret_value


def test_io_retry_delays(monkeypatch):
    monkeypatch.delenv("TAXI_IO_RETRY_DELAYS", raising=False)
    assert list(Settings.from_env().io_retry_delays) == [2, 10, 30]
    monkeypatch.setenv("TAXI_IO_RETRY_DELAYS", "1, 3")
    assert list(Settings.from_env().io_retry_delays) == [1, 3]
    for bad in ("fast", "1,-2"):
        monkeypatch.setenv("TAXI_IO_RETRY_DELAYS", bad)
        with pytest.raises(ValueError, match="TAXI_IO_RETRY_DELAYS"):
            list(Settings.from_env().io_retry_delays)


def test_signing_key_sources(monkeypatch):
    monkeypatch.delenv("TAXI_SIGNING_KEY", raising=False)
    monkeypatch.delenv("TAXI_SIGNING_KEY_BLOCK", raising=False)
    assert policy.signing_key() is None
    monkeypatch.setenv("TAXI_SIGNING_KEY", "x" * 20)
    assert policy.signing_key() == b"x" * 20
    monkeypatch.setenv("TAXI_SIGNING_KEY_BLOCK", "taxi-signing-key")
    with pytest.raises(ValueError, match="not both") as error:
        policy.signing_key()
    assert "x" * 20 not in str(error.value)


def test_settings_are_read_from_the_environment_each_time(monkeypatch):
    monkeypatch.setenv("TAXI_BUCKET", "first")
    assert Settings.from_env().bucket == "first"
    monkeypatch.setenv("TAXI_BUCKET", "second")
    assert Settings.from_env().bucket == "second"
    monkeypatch.setenv("TAXI_BUCKET", "")
    assert Settings.from_env().bucket == "taxi"


def test_settings_from_a_mapping_keep_secrets_out_of_their_repr():
    settings = Settings.from_env(
        {
            "TAXI_SIGNING_KEY": "signing-key-0123456789",
            "TAXI_SIGNING_KEY_BLOCK": " taxi-signing-key ",
            "TAXI_IO_RETRY_DELAYS": "1,2",
            "TAXI_WORK_POOL": "pool",
            "AWS_ACCESS_KEY_ID": "access-id-0123",
            "AWS_SECRET_ACCESS_KEY": "secret-0123456789",
        }
    )
    assert settings.signing_key.get_secret_value() == "signing-key-0123456789"
    assert settings.signing_key_block == "taxi-signing-key"
    assert (
        settings.io_retry_delays == (1, 2)
        and settings.work_pool == "pool"
        and settings.bucket == "taxi"
    )
    assert settings.aws_secret_access_key.get_secret_value() == "secret-0123456789"
    for secret in ("signing-key-0123456789", "access-id-0123", "secret-0123456789"):
        assert secret not in repr(settings)
    assert Settings.from_env({}) == Settings()


def test_tlc_source_is_read_from_the_environment_and_kept_out_of_the_repr():
    tlc = "https://d37ci6vzurychx.cloudfront.net/trip-data"
    assert Settings.from_env({}).tlc_base_url.get_secret_value() == tlc
    assert Settings.from_env({"TAXI_TLC_BASE_URL": " "}).tlc_base_url.get_secret_value() == tlc
    mirror = "https://user:mirror-secret@mirror.example/trip-data"
    settings = Settings.from_env({"TAXI_TLC_BASE_URL": f" {mirror} "})
    assert settings.tlc_base_url.get_secret_value() == mirror
    assert "mirror-secret" not in repr(settings)
    assert (
        Settings.from_env({"TAXI_TLC_BASE_URL": "/srv/tlc"}).tlc_base_url.get_secret_value()
        == "/srv/tlc"
    )


def test_only_the_settings_module_reads_the_environment():
    root = Path(__file__).resolve().parents[2]
    readers = [
        str(path.relative_to(root))
        for package in ("taxi", "flows")
        for path in sorted((root / package).rglob("*.py"))
        if re.search(r"\bos\.(environ|getenv)\b|\bgetenv\(", path.read_text())
        and path.name != "settings.py"
    ]
    assert readers == []
    assert "os.environ" in (root / "taxi" / "settings.py").read_text()


def test_importing_taxi_and_the_flows_leaves_the_allocator_alone():
    check = (
        "import pyarrow as pa; before = pa.default_memory_pool().backend_name; import taxi, flows.training, flows.inference; "
        "assert pa.default_memory_pool().backend_name == before, pa.default_memory_pool().backend_name; "
        "from taxi.memory import return_freed_memory_to_the_os; return_freed_memory_to_the_os(); "
        "print(before, pa.default_memory_pool().backend_name)"
    )
    before, after = subprocess.run(
        [sys.executable, "-c", check], check=True, capture_output=True, text=True
    ).stdout.split()
    if before == "system":
        pytest.skip("this pyarrow's default pool is already the system pool: nothing to tell apart")
    assert after == "system"


def test_monitoring_settings(monkeypatch):
    from taxi.monitoring import DEFAULT_THRESHOLD, drift_thresholds

    assert (
        Settings.from_env({}).drift_thresholds == {}
        and Settings.from_env({}).set_aside_after_failures == 3
    )
    one = Settings.from_env({"TAXI_DRIFT_THRESHOLDS": "0.2"}).drift_thresholds
    assert one == {"default": 0.2} and set(drift_thresholds(one).values()) == {0.2}
    named = Settings.from_env(
        {"TAXI_DRIFT_THRESHOLDS": " pickup_zone = 0.15 , default=0.12"}
    ).drift_thresholds
    limits = drift_thresholds(named)
    assert limits["pickup_zone"] == 0.15 and limits["pickup_hour"] == 0.12
    assert drift_thresholds({"pickup_zone": 0.3})["pickup_hour"] == DEFAULT_THRESHOLD
    for bad in ("high", "pickup_zone=0", "pickup_zone=1.5", "=0.1", "pickup_zone=0.1,"):
        with pytest.raises(ValueError, match="TAXI_DRIFT_THRESHOLDS"):
            Settings.from_env({"TAXI_DRIFT_THRESHOLDS": bad})
    with pytest.raises(ValueError, match="unknown drift statistic 'pickup_zon'"):
        drift_thresholds(
            Settings.from_env({"TAXI_DRIFT_THRESHOLDS": "pickup_zon=0.2"}).drift_thresholds
        )

    assert Settings.from_env({"TAXI_SET_ASIDE_AFTER_FAILURES": "5"}).set_aside_after_failures == 5
    for bad in ("0", "-1", "three"):
        with pytest.raises(ValueError, match="TAXI_SET_ASIDE_AFTER_FAILURES"):
            Settings.from_env({"TAXI_SET_ASIDE_AFTER_FAILURES": bad})

    url = "https://hooks.example.com/services/T000/B000/secret-token"
    settings = Settings.from_env({"TAXI_ALERT_WEBHOOK_URL": url})
    assert settings.alert_webhook_url.get_secret_value() == url and "secret-token" not in repr(
        settings
    )


def test_worker_and_pool_settings():
    settings = Settings.from_env({})
    assert (settings.keep_failed_containers_hours, settings.container_sweep_seconds) == (72.0, 60.0)
    assert settings.image is None and settings.flow_network is None
    settings = Settings.from_env(
        {
            "TAXI_KEEP_FAILED_CONTAINERS_HOURS": "0.5",
            "TAXI_CONTAINER_SWEEP_SECONDS": "2",
            "TAXI_IMAGE": "ghcr.io/o/taxi",
            "TAXI_FLOW_NETWORK": "taxi-net",
        }
    )
    assert (settings.keep_failed_containers_hours, settings.container_sweep_seconds) == (0.5, 2.0)
    assert (settings.image, settings.flow_network) == ("ghcr.io/o/taxi", "taxi-net")
    for bad in ("0", "-1", "a day", "inf"):
        with pytest.raises(
            ValueError, match="TAXI_KEEP_FAILED_CONTAINERS_HOURS must be a number greater than 0"
        ):
            Settings.from_env({"TAXI_KEEP_FAILED_CONTAINERS_HOURS": bad})

    # The worker's memory ceiling, in Docker's units.
    assert memory_bytes(Settings.from_env({}).mem_limit_max) == 8 * 1024**3
    sizes = {"512m": 512 * 1024**2, "16g": 16 * 1024**3, "1000": 1000, "64k": 65536}
    for size, size_bytes in sizes.items():
        assert memory_bytes(Settings.from_env({"TAXI_MEM_LIMIT_MAX": size}).mem_limit_max) == (
            size_bytes
        )
    for bad in ("0", "8G", "8gb", "-1g", "8 g", "lots"):
        with pytest.raises(
            ValueError, match="TAXI_MEM_LIMIT_MAX must be a Docker memory size"
        ) as e:
            Settings.from_env({"TAXI_MEM_LIMIT_MAX": bad})
        assert bad not in str(e.value)


def test_the_stack_name_is_a_compose_project_name():
    assert Settings.from_env({}).stack == "taxi-duration"
    assert Settings.from_env({"TAXI_STACK": " other-name_2 "}).stack == "other-name_2"
    # It becomes a label value that scripts/stack-down.sh filters on: compose's own rule.
    for bad in ("Other", "-x", "a b", "a/b", "a=b", "é"):
        with pytest.raises(ValueError, match="TAXI_STACK must be a compose project name") as error:
            Settings.from_env({"TAXI_STACK": bad})
        assert bad not in str(error.value)


SECRETS = {
    "TAXI_SIGNING_KEY": "signing-secret-0123456789",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-0123456789",
    "TAXI_S3_ROOT_PASSWORD": "root-secret-0123456789",
    "PREFECT_API_AUTH_STRING": "taxi:auth-secret-0123456789",
    "TAXI_ALERT_WEBHOOK_URL": "https://hooks.example.com/webhook-secret-0123456789",
    "TAXI_TLC_BASE_URL": "https://user:mirror-secret-0123456789@mirror.example/trip-data",
}
FIELD_OF = {field.alias: name for name, field in Settings.model_fields.items()}


def test_secrets_are_secret_strings_out_of_repr_and_str():
    ids = {"AWS_ACCESS_KEY_ID": "access-id-0123", "TAXI_S3_ROOT_USER": "root-7f3a"}
    settings = Settings.from_env({**SECRETS, **ids})
    for name, value in SECRETS.items():
        secret = getattr(settings, FIELD_OF[name])
        assert isinstance(secret, SecretStr) and secret.get_secret_value() == value
        assert secret_value(secret) == value
    for value in (*SECRETS.values(), *ids.values(), "mirror-secret"):
        assert value not in repr(settings) and value not in str(settings), value
    dumped = str(settings.model_dump())  # the key ids are not secrets, only kept out of the repr
    assert not any(value in dumped for value in SECRETS.values())
    assert (settings.aws_access_key_id, settings.s3_root_user) == tuple(ids.values())
    assert secret_value(Settings.from_env({}).s3_root_password) is None


def test_every_configuration_variable_of_the_readme_is_a_setting():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    named = {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row)}
    assert len(named) > 20 and named <= set(FIELD_OF), named - set(FIELD_OF)


def test_empty_or_blank_values_count_as_unset():
    defaults = Settings()
    for name in FIELD_OF:
        for blank in ("", "  ", "\t"):
            if name == "TAXI_SIGNING_KEY" and blank:
                continue
            assert Settings.from_env({name: blank}) == defaults, (name, blank)
    # A signing key is used as given, spaces included; only an empty one is unset.
    assert (
        Settings.from_env({"TAXI_SIGNING_KEY": " key "}).signing_key.get_secret_value() == " key "
    )
    assert Settings.from_env({"TAXI_SIGNING_KEY": ""}).signing_key is None
    assert Settings.from_env({"TAXI_BUCKET": " landing "}).bucket == "landing"


def test_settings_hold_the_defaults_and_read_the_environment_only_in_from_env(monkeypatch):
    monkeypatch.setenv("TAXI_BUCKET", "from-the-environment")
    assert Settings().bucket == "taxi" and Settings.from_env().bucket == "from-the-environment"
    assert Settings.from_env({"taxi_bucket": "lower-case"}).bucket == "taxi"
    settings = Settings.from_env({})
    with pytest.raises(ValidationError):
        settings.bucket = "other"  # frozen
    defaults = (
        settings.io_retry_delays,
        settings.download_max_bytes,
        settings.download_deadline_seconds,
    )
    assert defaults == ((2, 10, 30), 512 * 1024 * 1024, 900)
    assert (settings.allow_unsigned, settings.allow_local_sources, settings.source_buckets) == (
        False,
        False,
        (),
    )
    assert (settings.work_pool, settings.object_url_template, settings.signing_key) == (
        "taxi-docker",
        None,
        None,
    )


@pytest.mark.parametrize("name", ["TAXI_ALLOW_UNSIGNED", "TAXI_ALLOW_LOCAL_SOURCES"])
def test_flags_accept_one_zero_true_false_yes_no(name):
    field = FIELD_OF[name]
    for text, value in (
        ("1", True),
        ("TRUE", True),
        ("Yes", True),
        ("0", False),
        ("false", False),
        ("NO", False),
    ):
        assert getattr(Settings.from_env({name: text}), field) is value, text
    for bad in ("on", "off", "y", "2", "maybe"):
        with pytest.raises(ValueError, match=f"^{name} must be "):
            Settings.from_env({name: bad})


def test_documented_list_formats_are_not_read_as_json():
    settings = Settings.from_env(
        {"TAXI_IO_RETRY_DELAYS": "2,10,30", "TAXI_SOURCE_BUCKETS": " landing ,, archive, "}
    )
    assert settings.io_retry_delays == (2, 10, 30) and settings.source_buckets == (
        "landing",
        "archive",
    )
    assert Settings.from_env({"TAXI_IO_RETRY_DELAYS": "0"}).io_retry_delays == (0,)
    for bad in ("[1, 2]", "1,,2", "1,2,", "1.5", "2;10"):
        with pytest.raises(
            ValueError, match="TAXI_IO_RETRY_DELAYS must be comma-separated whole seconds"
        ):
            Settings.from_env({"TAXI_IO_RETRY_DELAYS": bad})
    with pytest.raises(ValueError, match="TAXI_DRIFT_THRESHOLDS must be"):
        Settings.from_env({"TAXI_DRIFT_THRESHOLDS": '{"pickup_zone": 0.2}'})
    assert Settings.from_env({"TAXI_DRIFT_THRESHOLDS": "1"}).drift_thresholds == {"default": 1.0}
    assert Settings.from_env({"TAXI_DRIFT_THRESHOLDS": "a=0.1,a=0.2"}).drift_thresholds == {
        "a": 0.2
    }


def test_numbers_are_read_as_whole_or_positive_numbers():
    whole = {
        "TAXI_SET_ASIDE_AFTER_FAILURES": 1,
        "TAXI_DOWNLOAD_MAX_BYTES": 1000,
        "TAXI_DOWNLOAD_DEADLINE_SECONDS": 5,
    }
    for name, number in whole.items():
        assert getattr(Settings.from_env({name: f" {number} "}), FIELD_OF[name]) == number
        for bad in ("0", "-3", "1.0", "1e3", "ten"):
            with pytest.raises(
                ValueError, match=f"^{name} must be a whole number of .*, at least 1$"
            ):
                Settings.from_env({name: bad})
    assert (
        Settings.from_env({"TAXI_CONTAINER_SWEEP_SECONDS": "1e-1"}).container_sweep_seconds == 0.1
    )
    for bad in ("0", "-0.5", "nan", "inf", "fast"):
        with pytest.raises(
            ValueError, match="^TAXI_CONTAINER_SWEEP_SECONDS must be a number greater than 0$"
        ):
            Settings.from_env({"TAXI_CONTAINER_SWEEP_SECONDS": bad})
    with pytest.raises(ValueError, match="TAXI_OBJECT_URL_TEMPLATE must be an http"):
        Settings.from_env({"TAXI_OBJECT_URL_TEMPLATE": "http://x/{key.name}"})


def test_errors_name_every_malformed_variable_and_show_no_value():
    environ = {
        **SECRETS,
        "TAXI_IO_RETRY_DELAYS": "1,-2777",
        "TAXI_DRIFT_THRESHOLDS": "pickup_zone=1.5777",
        "TAXI_DOWNLOAD_MAX_BYTES": "1GB777",
        "TAXI_ALLOW_UNSIGNED": "maybe777",
    }
    with pytest.raises(ValueError) as raised:
        Settings.from_env(environ)
    message = str(raised.value)
    assert message.count(" must be ") == 4, message
    for name in (
        "TAXI_IO_RETRY_DELAYS",
        "TAXI_DRIFT_THRESHOLDS",
        "TAXI_DOWNLOAD_MAX_BYTES",
        "TAXI_ALLOW_UNSIGNED",
    ):
        assert f"{name} must be " in message
    # Neither the message nor a printed traceback (no chained pydantic error) shows a value.
    printed = "".join(traceback.format_exception(raised.value))
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    for value in ("777", *SECRETS.values()):
        assert value not in printed, value
