"""The config checks every platform config runs on itself."""

from __future__ import annotations

import pytest

from adapters.config import host, is_url, require, require_url
from core.errors import ConfigError


def test_require_raises_the_problem_as_one_line() -> None:
    require(True, "never shown")
    with pytest.raises(ConfigError, match=r"^SOME_SETTING is empty$"):
        require(False, "SOME_SETTING is empty")


def test_is_url_wants_a_scheme_a_host_and_a_path_when_asked() -> None:
    assert is_url("https://api.example.com")
    assert not is_url("api.example.com") and not is_url(None) and not is_url("ftp://example.com")
    assert is_url("wss://gw.example.com", schemes=("ws", "wss"))
    assert not is_url("https://bot.example.com/", path=True)
    assert is_url("https://bot.example.com/hook", path=True)


def test_require_url_names_the_setting_the_shape_and_what_was_given() -> None:
    require_url("https://api.example.com", "API_URL")
    require_url(None, "API_URL", optional=True)
    with pytest.raises(ConfigError) as caught:
        require_url("api.example.com", "API_URL", example="https://api.example.com/v1")
    assert str(caught.value) == (
        "API_URL must be a full http(s) URL such as https://api.example.com/v1 (got 'api.example.com')"
    )
    with pytest.raises(ConfigError, match=r"^GATEWAY must be a full ws\(s\) URL \(got None\)$"):
        require_url(None, "GATEWAY", schemes=("ws", "wss"))
    with pytest.raises(ConfigError, match=r"^HOOK must be a full http/ftp URL with a path "):
        require_url("https://bot.example.com", "HOOK", schemes=("http", "ftp"), path=True)


def test_host_keeps_the_path_out_of_error_lines() -> None:
    assert host("https://api.telegram.org/bot123:SECRET/getMe") == "api.telegram.org"
    assert host("http://127.0.0.1:8081/bot") == "127.0.0.1:8081"
