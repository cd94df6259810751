"""Settings, read once from the environment and an optional ``.env`` file.

Only ``bots/`` reads the environment; core and adapters receive typed values. A bad
value fails with one line naming the variable. Secrets are ``SecretStr`` so they never
appear in logs or reprs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.admission import parse_rate
from core.connection import RedisOptions
from core.errors import ConfigError
from core.tickets import TicketConfig
from core.upkeep import UpkeepConfig


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # storage
    redis_url: str | None = Field(
        None,
        description="redis://, rediss://, unix://, redis+sentinel:// or redis+cluster:// URL; "
        "unset = embedded Redis",
    )
    data_dir: Path = Field(Path("var"), description="embedded Redis data (append-only file)")
    models_dir: Path = Field(Path("models"), description="where trained models live")
    namespace: str = Field("chatbot", alias="CHATBOT_NAMESPACE", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    redis_connect_timeout: float = Field(5.0, alias="CHATBOT_REDIS_CONNECT_TIMEOUT", gt=0)
    redis_socket_timeout: float = Field(15.0, alias="CHATBOT_REDIS_SOCKET_TIMEOUT", gt=0)
    redis_max_connections: int = Field(64, alias="CHATBOT_REDIS_MAX_CONNECTIONS", ge=2)
    redis_pool_timeout: float = Field(10.0, alias="CHATBOT_REDIS_POOL_TIMEOUT", gt=0)

    # engine
    default_bot: str = Field(
        "support", alias="CHATBOT_DEFAULT_BOT", description="also served at / and /slack/events"
    )
    bots_dir: Path | None = Field(None, alias="CHATBOT_BOTS_DIR", description="extra persona YAML files")
    history_max_turns: int = Field(200, alias="CHATBOT_HISTORY_MAX_TURNS", ge=1)
    history_ttl_days: float = Field(30, alias="CHATBOT_HISTORY_TTL_DAYS", gt=0)
    max_message_chars: int = Field(4000, alias="CHATBOT_MAX_MESSAGE_CHARS", ge=16)
    engine_batch_size: int = Field(16, alias="CHATBOT_ENGINE_BATCH", ge=1, le=256)
    generation: Literal["continuous", "waves"] = Field(
        "continuous",
        alias="CHATBOT_GENERATION",
        description="continuous: replies join a running batch and are committed as each ends; "
        "waves: one batch at a time, one generate call per wave",
    )
    engine_in_flight: int = Field(
        64,
        alias="CHATBOT_ENGINE_IN_FLIGHT",
        ge=1,
        le=4096,
        description="continuous: messages in hand at once",
    )
    partials_per_s: float = Field(
        150.0,
        alias="CHATBOT_PARTIALS_PER_S",
        ge=0,
        description="continuous: partial replies one engine publishes a second in all, at most "
        "(each reply's are spaced out when many are written at once); 0 = no cap",
    )
    lm_int8: bool = Field(
        False, alias="CHATBOT_LM_INT8", description="int8 dynamic quantisation of the reply model (CPU only)"
    )
    device: str | None = Field(None, alias="CHATBOT_DEVICE", description="cpu, cuda, cuda:1; unset = auto")
    torch_threads: str | None = Field(
        None,
        validation_alias=AliasChoices("CHATBOT_TORCH_THREADS", "OMP_NUM_THREADS"),
        description="torch CPU threads, N or N,M (intra-op, inter-op); unset = the usable cores",
    )

    # scale-out: roles, recovery, health (docs/scaling.md)
    shutdown_grace: float = Field(
        25.0, alias="CHATBOT_SHUTDOWN_GRACE", gt=0, description="seconds from SIGTERM to exit"
    )
    claim_idle: float = Field(
        60.0,
        alias="CHATBOT_CLAIM_IDLE",
        gt=0,
        description="seconds before a silent consumer's entries are taken",
    )
    upkeep_interval: float = Field(5.0, alias="CHATBOT_UPKEEP_INTERVAL", gt=0)
    reconcile_interval: float = Field(
        5.0,
        alias="CHATBOT_RECONCILE_INTERVAL",
        gt=0,
        description="seconds between checks of the bots' personas: adapters start and stop to match",
    )
    max_attempts: int = Field(
        3, alias="CHATBOT_MAX_ATTEMPTS", ge=1, description="failed attempts before an entry is dead-lettered"
    )
    ready_max_lag: int = Field(
        1000,
        alias="CHATBOT_READY_MAX_LAG",
        ge=0,
        description="intake backlog above which /readyz is 503; 0 = none",
    )
    # backpressure at intake (core/admission.py)
    intake_rate_limit: str = Field(
        "30/minute",
        alias="CHATBOT_INTAKE_RATE_LIMIT",
        description="messages per user (e.g. 30/minute); over it: the persona's slow_down text; empty = none",
    )
    busy_backlog: int = Field(
        2000,
        alias="CHATBOT_BUSY_BACKLOG",
        ge=0,
        description="intake backlog above which new messages get the persona's busy text; 0 = none",
    )

    @field_validator("intake_rate_limit")
    @classmethod
    def _rate(cls, value: str) -> str:
        try:
            parse_rate(value, "CHATBOT_INTAKE_RATE_LIMIT")
        except Exception:  # pydantic reports a ValueError in load_settings' one line
            raise ValueError("write e.g. 30/minute, or leave it empty") from None
        return value

    # support desk (tickets)
    ticket_reopen_minutes: float = Field(
        60, alias="CHATBOT_TICKET_REOPEN_MINUTES", gt=0, description="escalating again this soon reopens"
    )
    ticket_claim_timeout_minutes: float = Field(
        15, alias="CHATBOT_TICKET_CLAIM_TIMEOUT_MINUTES", gt=0, description="idle claim may be taken over"
    )
    ticket_reminder_minutes: float = Field(
        5, alias="CHATBOT_TICKET_REMINDER_MINUTES", gt=0, description="unclaimed: 'still waiting' interval"
    )

    # web app
    host: str = Field("127.0.0.1", alias="CHATBOT_HOST")
    port: int = Field(8080, alias="CHATBOT_PORT", ge=0, le=65535)
    secret_key: SecretStr | None = Field(
        None,
        alias="CHATBOT_SECRET_KEY",
        description="signs web-chat identities; unset = generated once and kept in DATA_DIR/secret_key",
    )
    cookie_secure: bool = Field(
        True, alias="CHATBOT_COOKIE_SECURE", description="false only for plain HTTP beyond localhost"
    )
    max_body_bytes: int = Field(64 * 1024, alias="CHATBOT_MAX_BODY_BYTES", ge=1024, le=16 * 1024 * 1024)

    # support desk
    desk_session_hours: float = Field(12, alias="CHATBOT_DESK_SESSION_HOURS", gt=0, le=24 * 30)
    login_limit_account: str = Field("5/minute", alias="CHATBOT_LOGIN_LIMIT_ACCOUNT")
    login_limit_address: str = Field("20/minute", alias="CHATBOT_LOGIN_LIMIT_ADDRESS")

    # Telegram
    telegram_bot_token: SecretStr | None = None
    telegram_webhook_url: str | None = None
    telegram_webhook_secret: SecretStr | None = None
    telegram_api_base_url: str = "https://api.telegram.org/bot"

    # Slack
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"

    # Discord
    discord_bot_token: SecretStr | None = None
    discord_api_base_url: str | None = None
    discord_gateway_url: str | None = None

    @property
    def redis_options(self) -> RedisOptions:
        return RedisOptions(
            connect_timeout_s=self.redis_connect_timeout,
            socket_timeout_s=self.redis_socket_timeout,
            max_connections=self.redis_max_connections,
            pool_timeout_s=self.redis_pool_timeout,
        )

    @property
    def upkeep(self) -> UpkeepConfig:
        return UpkeepConfig(interval_s=self.upkeep_interval, claim_idle_ms=int(self.claim_idle * 1000))

    @property
    def history_ttl_seconds(self) -> int:
        return max(1, int(self.history_ttl_days * 24 * 3600))

    @property
    def ticket_config(self) -> TicketConfig:
        return TicketConfig(
            reopen_window_s=self.ticket_reopen_minutes * 60,
            claim_timeout_s=self.ticket_claim_timeout_minutes * 60,
            reminder_interval_s=self.ticket_reminder_minutes * 60,
            ttl_seconds=self.history_ttl_seconds,
        )


def load_settings(**overrides: object) -> Settings:
    """Settings from env/.env, or one :class:`ConfigError` line naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        info = Settings.model_fields.get(field)
        env = (info.alias if info and info.alias else field).upper()
        raise ConfigError(f"invalid setting {env}: {first['msg']} (got {first.get('input')!r})") from None


def model_folder(name_or_path: str) -> Path:
    """A model folder given as a path, or a model name under ``MODELS_DIR``."""
    folder = Path(name_or_path)
    if folder.exists() or folder.is_absolute():
        return folder
    return load_settings().models_dir / name_or_path
