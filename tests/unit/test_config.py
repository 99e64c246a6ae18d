"""Settings from `UNIBUS_*`, in process: each named in its error, overrides win, and the
defaults are the ground floor's names."""

from __future__ import annotations

import pytest

from unibus.config import AuthMode, Config, parse_listen
from unibus.wire import names


def test_defaults_are_the_protocol_names() -> None:
    config = Config()
    assert (config.api_prefix, config.service_name, config.queue_group, config.room_subject_prefix) == (
        names.CONTROL_PREFIX,
        names.SERVICE_NAME,
        names.QUEUE_GROUP,
        names.ROOM_SUBJECT_PREFIX,
    )


def test_variables_are_coerced_and_overrides_win() -> None:
    env = {
        "UNIBUS_REPLICAS": "3",
        "UNIBUS_CLOCK_SKEW_S": "30.5",
        "UNIBUS_USE_JETSTREAM": "off",
        "UNIBUS_AUTH_MODE": "dev",
        "UNIBUS_API_PREFIX": "",  # empty is unset
        "NOT_OURS": "x",
    }
    config = Config.from_env(env, replicas=5, nats_url=None)
    assert config.replicas == 5 and config.clock_skew_s == 30.5 and config.use_jetstream is False
    assert config.auth_mode is AuthMode.DEV and config.api_prefix == names.CONTROL_PREFIX


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"UNIBUS_REPLICAS": "three"}, "UNIBUS_REPLICAS: 'three' is not a number"),
        ({"UNIBUS_AUTH_MODE": "devv"}, "UNIBUS_AUTH_MODE (--auth): 'devv' is not one of enforce, dev, off"),
    ],
)
def test_a_bad_setting_is_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        Config.from_env(env)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("value", "parsed"),
    [("127.0.0.1:8080", ("127.0.0.1", 8080)), ("[::1]:9000", ("::1", 9000)), (":9000", ("0.0.0.0", 9000))],
)
def test_listen_addresses(value: str, parsed: tuple[str, int]) -> None:
    assert parse_listen(value) == parsed


@pytest.mark.parametrize("value", ["8080", "host:", "host:99999", "host:port"])
def test_bad_listen_addresses(value: str) -> None:
    with pytest.raises(ValueError, match="is not host:port"):
        parse_listen(value)
