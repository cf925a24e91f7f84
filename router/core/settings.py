"""Every setting of every Turnout process, read from ``TURNOUT_*`` environment variables."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    """One settings class for the gateway, the workers, training and the CLI."""

    model_config = SettingsConfigDict(env_prefix="TURNOUT_", extra="ignore", frozen=True)

    # --- data and registry -------------------------------------------------------------
    dataset: Path = PROJECT_ROOT.parent / "shared" / "data" / "davidson2017" / "labeled_data.csv"
    """Davidson et al. 2017 labelled tweets (CSV) used by the training recipes."""
    models_dir: Path = PROJECT_ROOT / "models"
    """Model registry root: ``<models_dir>/<model>/<version>/{model.joblib,card.json}``."""
    experiments_dir: Path = PROJECT_ROOT / "experiments"
    """Folder of experiment YAML files, one experiment per file."""
    state_dir: Path = PROJECT_ROOT / ".turnout"
    """The state folder (``router.core.state``): the local stack's Redis data and URL, its
    user-hash salt, the last good version of each experiment file, the last known flags and
    the processes' logs."""

    # --- input limits (shared by gateway and workers) ----------------------------------
    max_text_chars: int = Field(10_000, gt=0)
    """Longest accepted ``text``, in characters."""
    max_body_bytes: int = Field(1_048_576, gt=0)
    """Largest accepted request body, in bytes; larger bodies get 413 before being read whole."""
    max_batch: int = Field(64, gt=0)
    """Most texts accepted by one ``POST /predict/batch``."""

    # --- network -----------------------------------------------------------------------
    host: str = "127.0.0.1"
    """Interface the gateway (and ``turnout up``'s processes) bind to."""
    port: int = Field(8000, ge=0, le=65535)
    """Gateway port."""
    worker_base_port: int = Field(8101, ge=1, le=65535)
    """First worker port of ``turnout up``; versions take consecutive ports in version order."""
    allowed_hosts: list[str] = ["127.0.0.1", "localhost", "::1"]
    """Hosts that experiment upstream URLs may point at (anything else is refused at load)."""
    trusted_hosts: list[str] = ["localhost", "127.0.0.1", "::1"]
    """Names (the ``Host`` header, port ignored) the console (``/ui``) and admin API
    (``/admin``) answer to; others get 400. It stops a DNS-rebinding page from reading a
    loopback console. Add the name the gateway is reached by (a compose service, an ingress
    host); ``*`` accepts any name, behind a proxy that checks ``Host`` itself. Not
    ``TURNOUT_ALLOWED_HOSTS``, which is about the upstream URLs experiments may call."""
    redis_url: str | None = None
    """Redis to use. Unset: ``turnout up`` starts an embedded redis-server, and ``turnout
    gateway`` joins the running local stack's (from the state folder) or refuses to start."""
    no_redis: bool = False
    """Run a gateway without Redis on purpose: nothing recorded, flags from the flags file only,
    feedback and reports answer 503. Without it, a gateway with no Redis refuses to start."""
    redis_port: int = Field(6399, ge=1, le=65535)
    """Port of the embedded redis-server that ``turnout up`` starts when no Redis is set."""

    # --- Redis topology: one instance (redis_url), Sentinel, or Cluster ----------------
    redis_sentinels: list[str] = []
    """Sentinels of a Sentinel-managed Redis, as a JSON list of ``"host:port"``; every client
    asks them for the primary of ``redis_sentinel_master`` (instead of ``redis_url``)."""
    redis_sentinel_master: str | None = None
    """Name of the primary the sentinels monitor (``sentinel monitor NAME ...``)."""
    redis_sentinel_password: SecretStr | None = None
    """Password of the sentinels themselves, when their config sets ``requirepass``."""
    redis_cluster_nodes: list[str] = []
    """Start-up nodes of a Redis Cluster, as a JSON list of ``"host:port"`` (some or all of
    them; the client discovers the rest). Instead of ``redis_url``."""
    redis_username: str | None = None
    """ACL user of the Redis data nodes (Sentinel, Cluster, or a URL that names none)."""
    redis_password: SecretStr | None = None
    """Password of the Redis data nodes (Sentinel, Cluster, or a URL that carries none)."""
    redis_db: int = Field(0, ge=0)
    """Database number on a Sentinel-managed primary (a Cluster only has database 0)."""

    # --- client connections (every HTTP server: gateway and workers) -------------------
    http_header_timeout: float = Field(10.0, gt=0)
    """Seconds a request head may take to arrive whole; slower gets 408 and the connection
    closes (slow-header clients cannot hold sockets)."""
    http_body_timeout: float = Field(10.0, gt=0)
    """Seconds a request body may take to arrive whole after its head; slower gets 408 and the
    connection closes."""
    http_keep_alive_timeout: int = Field(75, ge=1)
    """Seconds a connection may stay idle, before its first request or between requests.
    Longer than the gateway's own client keep-alive (30 s), so the gateway always closes an
    idle connection to a worker first and never reuses one the worker is closing."""
    http_max_connections: int = Field(1000, ge=1)
    """Most open client connections per process; a new one past it gets 503 and is closed."""

    # --- the local stack (turnout up) --------------------------------------------------
    stack_restart_backoff: float = Field(0.5, gt=0)
    """Seconds before ``turnout up`` restarts a child that exited (doubling each time)."""
    stack_restart_limit: int = Field(5, ge=0)
    """Restarts of one child within ``stack_restart_window`` after which ``turnout up`` stops
    everything and says which child kept exiting."""
    stack_restart_window: float = Field(60.0, gt=0)
    """Seconds over which a child's exits are counted against ``stack_restart_limit``."""
    stack_reconcile_interval: float = Field(2.0, gt=0)
    """Seconds between two reads of the experiments by ``turnout up``: it starts a worker for a
    local Turnout variant added while it runs and stops one whose variant was removed."""

    # --- upstream calls ----------------------------------------------------------------
    upstream_connect_timeout: float = Field(0.5, gt=0)
    """Seconds allowed to open a connection to a worker."""
    upstream_timeout: float = Field(5.0, gt=0)
    """Seconds allowed for a whole worker call (connect, send, answer)."""
    upstream_pool_size: int = Field(64, gt=0)
    """Most open connections per upstream."""
    breaker_failures: int = Field(5, gt=0)
    """Consecutive failures that open an upstream's circuit breaker."""
    breaker_reset_seconds: float = Field(5.0, gt=0)
    """Seconds an open breaker waits before letting one half-open probe through."""
    health_interval: float = Field(2.0, gt=0)
    """Seconds between active ``/readyz`` checks of every upstream."""
    health_misses: int = Field(2, ge=1)
    """Failed ``/readyz`` checks in a row that mark an upstream unhealthy (one slow answer on a
    busy machine must not take a healthy control out of service)."""
    upstream_slow_call_seconds: float = Field(1.0, gt=0)
    """Slow-call limit: a call to a variant that has somewhere else to go (the control, or a
    configured fallback) is abandoned after this many seconds and counts as a breaker failure,
    so a slow upstream holds a request this long at most, never the whole upstream timeout."""

    # --- model server protocols ------------------------------------------------------
    upstream_max_answer_bytes: int = Field(1_048_576, gt=0)
    """Largest model server answer read, in bytes; a larger one is a bad answer (``too_large``)
    and falls back to the control."""
    up_ready_timeout: float = Field(30.0, gt=0)
    """Seconds ``turnout up`` waits for model servers it does not start (non-``turnout``
    protocols) to become ready before saying which are not, and carrying on."""

    # --- shadow mirroring --------------------------------------------------------------
    shadow_timeout: float = Field(2.0, gt=0)
    """Seconds allowed for one mirror call; a slower shadow counts as an error."""
    shadow_max_in_flight: int = Field(64, gt=0)
    """Most mirror calls running at once per gateway; past it, mirrors are dropped and counted."""

    # --- experiments -------------------------------------------------------------------
    reload_poll_interval: float = Field(1.0, gt=0)
    """Seconds between polls of the experiments folder when file watching is unavailable."""
    watch_files: bool = True
    """Use filesystem notifications (watchfiles) for hot reload; polling is the fallback."""
    experiment_max_bytes: int = Field(1_048_576, gt=0)
    """Largest experiment file read; a larger one is refused before it is read whole."""
    experiment_delete_grace: float = Field(10.0, ge=0)
    """Seconds an experiment keeps serving after its file disappears (a deploy that removes
    then copies files); a file back within it continues seamlessly."""
    experiment_read_timeout: float = Field(60.0, gt=0)
    """Seconds the child process that reads the experiments folder may take; past it the
    reload is abandoned and the experiments in force keep serving."""

    # --- worker ------------------------------------------------------------------------
    worker_fault_delay_ms: float = Field(0.0, ge=0)
    """Fault injection for drills and tests: extra delay added to every worker prediction."""
    worker_fault_status: int | None = Field(None, ge=500, le=599)
    """Fault injection for drills and tests: answer every prediction with this 5xx status."""

    # --- privacy and randomness ------------------------------------------------------
    user_hash_salt: str = "turnout"
    """Salt of the user-key hash stored in events (set a secret one per deployment; ``turnout
    up`` makes a random one and keeps it in the state folder). The default is public: a
    gateway using it warns, and refuses to start when ``environment`` is production."""
    environment: Literal["development", "production"] = "development"
    """``production`` makes unsafe defaults fatal at start-up (the public user-hash salt)."""
    seed: int | None = None
    """Seed of the gateway's random number generator (unset: seeded from the OS)."""

    # --- logging -----------------------------------------------------------------------
    log_level: str = "INFO"
    """Level of the structured JSON logs (DEBUG, INFO, WARNING, ERROR)."""
    access_log: bool = True
    """Write one JSON log line per request."""

    # --- outcome recording, feedback and reports ---------------------------------------
    redis_socket_timeout: float = Field(1.0, gt=0)
    """Seconds one Redis command may take before it counts as failed (recording retries)."""
    redis_connect_timeout: float = Field(0.5, gt=0)
    """Seconds allowed to open a connection to Redis."""
    recording_buffer_size: int = Field(100_000, ge=1)
    """Most outcome events a replica holds while Redis is slow or down. When full, the oldest
    event not being written is dropped and counted in ``turnout_events_dropped_total{reason=
    "buffer_full"}``."""
    recording_batch_size: int = Field(500, ge=1, le=5000)
    """Most events written by one Redis call (one Lua script per batch)."""
    recording_flush_interval: float = Field(0.1, gt=0)
    """Seconds between background flushes (a full batch is flushed at once)."""
    recording_retry_max: float = Field(2.0, gt=0)
    """Longest wait, in seconds, between attempts to write to a Redis that failed."""
    recording_shutdown_timeout: float = Field(5.0, gt=0)
    """Seconds the final flush may take at shutdown; events still buffered then are dropped
    (reason ``shutdown``)."""
    drain_timeout: int = Field(20, ge=1)
    """Seconds a gateway told to stop (SIGTERM) lets its in-flight requests finish, before the
    final flush (``recording_shutdown_timeout``). Kubernetes' grace period must exceed both."""
    recording_stream_maxlen: int = Field(100_000, ge=1)
    """Approximate cap (``XADD MAXLEN ~``) of each experiment's event and feedback streams."""
    attribution_ttl: int = Field(86_400, ge=1)
    """Seconds a request's attribution is kept for ``POST /feedback`` (later feedback: 404)."""
    feedback_flush_timeout: float = Field(2.0, gt=0)
    """Seconds ``POST /feedback`` may wait to write the request's still-buffered outcome."""
    feedback_secret: SecretStr | None = None
    """Key of the feedback tokens of experiments with ``feedback.auth: signed`` (the same on
    every replica; ``turnout up`` makes one). Without it such an experiment is refused."""
    feedback_token_ttl: int = Field(86_400, ge=1)
    """Seconds a signed feedback token is valid after its response (then 401 ``expired``)."""
    feedback_tokens: dict[str, SecretStr] = {}
    """Label sources' credentials as a JSON object, name -> token, for experiments with
    ``feedback.auth: token``; sent as ``Authorization: Bearer``. Feedback scope only: they do
    no admin action, and an admin token is refused (403) on ``POST /feedback``."""
    feedback_hold_wait: float = Field(0.5, ge=0)
    """Seconds ``POST /feedback`` waits for a request no replica has recorded yet (its outcome
    may wait in another replica's buffer) before holding the feedback and answering 202."""
    feedback_hold_seconds: float = Field(30.0, gt=0)
    """How long held feedback waits for its request to be recorded, from the request's time
    (UUIDv7 request ids carry it) or else from the feedback's arrival; a UUIDv7 id older than
    this that no replica recorded is unknown (404 at once)."""
    feedback_clock_skew: float = Field(5.0, ge=0)
    """Seconds a UUIDv7 request id's time may lie ahead of this replica's clock (replicas' and
    clients' clocks differ a little). Feedback for an id no replica recorded whose time lies
    further ahead is refused (404 ``unknown_request``), never held."""
    feedback_hold_check_max: float = Field(2.0, gt=0)
    """Longest wait, in seconds, between two Redis checks of one held feedback's request: it is
    checked after ``recording_flush_interval``, then at doubling intervals up to this (and
    once more at its deadline), so a held request id costs Redis at most one command per this
    many seconds."""
    feedback_hold_max: int = Field(10_000, ge=1)
    """Most feedbacks a replica holds for requests not recorded yet; past it, 503
    ``feedback_hold_full``."""
    feedback_queue_size: int = Field(10_000, ge=1)
    """Most feedbacks a replica holds while Redis is unreachable (answered 202 ``queued``, then
    applied exactly once, in order, when Redis is back). Past it ``POST /feedback`` answers 503
    ``feedback_queue_full``; nothing accepted is dropped except what is still queued when the
    shutdown drain (``recording_shutdown_timeout``) ends, counted in
    ``turnout_feedback_deferred_total{result="shutdown"}``."""

    feedback_wait_replicas: int | None = Field(None, ge=0)
    """Replicas that must acknowledge a feedback write (Redis ``WAIT``) before ``POST /feedback``
    answers. Unset: 1 behind Sentinel, 0 otherwise (one instance has no replica; on a Cluster
    the client cannot wait on the connection that wrote). Replication is asynchronous, so
    without it a feedback answered 200 just before the primary dies can be lost."""
    feedback_wait_timeout: float = Field(0.1, gt=0)
    """Seconds one feedback waits for its replicas; past it the answer is still 200 (the write
    is on the primary) and ``turnout_feedback_unreplicated_total`` counts it."""

    # --- bandit ------------------------------------------------------------------------
    bandit_prior: tuple[float, float] = (1.0, 1.0)
    """Beta(alpha, beta) prior of every arm whose experiment names none (JSON, e.g. [1, 1])."""
    bandit_refresh_interval: float = Field(1.0, gt=0)
    """Seconds between refreshes of a replica's cached posteriors (and sticky arms) from Redis:
    the bound on how stale the posterior a decision samples from is while Redis answers."""
    bandit_sticky_ttl: float = Field(86_400.0, gt=0)
    """Seconds a user stays on the arm first drawn for them (experiments with ``sticky``)."""
    bandit_sticky_max: int = Field(1_000_000, ge=1)
    """Most sticky users a replica keeps in memory; past it the oldest assignments go first."""

    @field_validator("redis_sentinels", "redis_cluster_nodes")
    @classmethod
    def _check_addresses(cls, addresses: list[str]) -> list[str]:
        for address in addresses:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{address!r} is not host:port")
        return addresses

    @model_validator(mode="after")
    def _one_redis_topology(self) -> Settings:
        given = [
            name
            for name, value in (
                ("TURNOUT_REDIS_URL", self.redis_url),
                ("TURNOUT_REDIS_SENTINELS", self.redis_sentinels),
                ("TURNOUT_REDIS_CLUSTER_NODES", self.redis_cluster_nodes),
            )
            if value
        ]
        if len(given) > 1:
            raise ValueError(
                f"{' and '.join(given)} are {'both' if len(given) == 2 else 'all'} set: give "
                "one Redis topology (a URL for one instance, sentinels for a Sentinel-managed "
                "primary, or cluster nodes)"
            )
        if self.redis_url and self.redis_password and urlsplit(self.redis_url).password:
            raise ValueError(
                "TURNOUT_REDIS_URL carries a password and TURNOUT_REDIS_PASSWORD is set: give one"
            )
        if self.redis_sentinels and not self.redis_sentinel_master:
            raise ValueError("TURNOUT_REDIS_SENTINELS needs TURNOUT_REDIS_SENTINEL_MASTER")
        if self.redis_sentinel_master and not self.redis_sentinels:
            raise ValueError("TURNOUT_REDIS_SENTINEL_MASTER needs TURNOUT_REDIS_SENTINELS")
        if self.redis_cluster_nodes and self.redis_db:
            raise ValueError("a Redis Cluster has database 0 only: unset TURNOUT_REDIS_DB")
        return self

    @field_validator("bandit_prior")
    @classmethod
    def _check_prior(cls, prior: tuple[float, float]) -> tuple[float, float]:
        if not all(math.isfinite(x) and x > 0 for x in prior):
            raise ValueError("bandit_prior alpha and beta must both be finite and > 0")
        return prior

    # --- rollouts and sample-ratio checks ----------------------------------------------
    rollout_check_interval: float = Field(2.0, gt=0)
    """Seconds between two looks of the rollout driver (the replica holding the lease)."""
    rollout_refresh_interval: float = Field(1.0, gt=0)
    """Seconds between rereads of every rollout's state by each replica (the weights in force)."""
    rollout_lease_ttl: float = Field(10.0, gt=0)
    """Seconds a driver's lease lasts without renewal; another replica takes over after it."""
    rollout_slot_seconds: float = Field(10.0, gt=0)
    """Width of the time slots feedback is counted in, for gates with a label delay."""
    rollout_users_max: int = Field(1_000_000, ge=1)
    """Most users a rollout window keeps per-user sums for (sticky experiments). Past it the
    sums are partial and the per-user gates wait, saying why: they never decide on them."""
    rollout_units_ttl: int = Field(7 * 86_400, ge=60)
    """Seconds a window's per-user state lives after its last write."""
    rollout_history_maxlen: int = Field(1_000, ge=1)
    """Most transitions kept per rollout in its Redis history stream."""
    rollout_look_interval: float = Field(30.0, gt=0)
    """Seconds between two gate looks kept for the console's rollout timeline (the driver looks
    more often; transitions are always kept)."""
    rollout_looks_maxlen: int = Field(10_000, ge=1)
    """Most gate looks kept per rollout (at one per 30 s, about three and a half days)."""
    alertmanager_memory: int = Field(7 * 86_400, ge=1)
    """Seconds an acted-on Alertmanager alert is remembered, so its repeats change nothing."""

    @model_validator(mode="after")
    def _check_lease(self) -> Settings:
        if self.rollout_lease_ttl <= 2 * self.rollout_check_interval:
            raise ValueError(
                "rollout_lease_ttl must exceed twice rollout_check_interval, or the lease lapses "
                "between two looks of its own driver"
            )
        if self.rollout_units_ttl < self.attribution_ttl:
            raise ValueError(
                f"rollout_units_ttl ({self.rollout_units_ttl} s) must be at least attribution_ttl "
                f"({self.attribution_ttl} s): feedback is accepted while a request's attribution "
                "lives, and its user's per-user sums must still be there to take it"
            )
        return self

    # --- data capture (experiments opt in with a ``capture`` block) ----------------------
    capture_dir: Path | None = None
    """Folder of capture files, one subfolder per experiment (unset: ``<state_dir>/capture``)."""
    capture_queue_size: int = Field(10_000, ge=1)
    """Most captured records a replica holds for its writer thread; past it they are dropped and
    counted (``turnout_capture_dropped_total{reason="queue_full"}``), never waited for."""
    capture_flush_interval: float = Field(0.5, gt=0)
    """Seconds between two writes of the capture thread."""
    capture_file_max_bytes: int = Field(64 * 2**20, ge=4096)
    """A capture file is closed and a new one started past this size (or an eighth of the
    experiment's ``max_bytes``, whichever is smaller)."""
    capture_rotate_interval: float = Field(3600.0, gt=0)
    """Seconds a capture file stays open at most (or a 24th of the retention, if smaller), so
    retention deletes data at most this late."""
    capture_retry_max: float = Field(60.0, gt=0)
    """Longest wait, in seconds, before the capture thread writes again after a failed write
    (a full disk): the wait doubles from twice the flush interval; records arriving meanwhile
    wait in the queue (``capture_queue_size``)."""

    def capture_root(self) -> Path:
        return self.capture_dir or self.state_dir / "capture"

    # --- drift checks (turnout drift) ----------------------------------------------------
    drift_alpha: float = Field(0.05, gt=0.0, lt=1.0)
    """Bound on the probability that a scheduled check series (one version, one check) raises a
    false alarm within ``drift_horizon`` (Bonferroni over the checks made at its cadence)."""
    drift_horizon: float = Field(365 * 86_400.0, gt=0)
    """Seconds over which ``drift_alpha`` holds (a year)."""
    drift_psi_min: float = Field(0.1, gt=0)
    """PSI that counts as a change worth an alarm (prediction checks), on top of the test's
    significance; so does ``drift_distance_min``."""
    drift_distance_min: float = Field(0.02, gt=0)
    """Wasserstein distance, in score units, that counts as a change worth an alarm: of a
    version's scores (prediction) or of two versions' score deltas (paired)."""
    drift_min_samples: int = Field(100, ge=10)
    """Fewest scores (or pairs) in a window before a check may say drift or no drift."""
    drift_input_rows: int = Field(1_000, ge=50)
    """Most captured inputs per side handed to Evidently (a seeded sample beyond it)."""
    drift_refresh_interval: float = Field(30.0, gt=0)
    """Seconds between a gateway's rereads of the drift verdicts (its ``turnout_drift`` gauges)."""
    drift_input_auc_min: float = Field(0.6, gt=0.5, lt=1.0)
    """Least domain-classifier ROC AUC that counts as text drift, on top of its significance."""

    # --- flags and admin ---------------------------------------------------------------
    flags_file: Path = PROJECT_ROOT / "config" / "flags.yaml"
    """Flag defaults (YAML); Redis holds the overrides set through the admin API."""
    flags_refresh_interval: float = Field(5.0, gt=0)
    """Seconds between full refreshes of a replica's flag cache (changes also arrive by pub/sub)."""
    audit_maxlen: int = Field(10_000, gt=0)
    """Most audit events (flag changes, rollbacks, promotions) kept in the Redis stream."""
    admin_tokens: dict[str, SecretStr] = {}
    """Admin tokens as a JSON object, name -> token; with none at all the admin API is off."""
    admin_tokens_file: Path | None = None
    """YAML or JSON file of admin tokens (name -> token), merged with TURNOUT_ADMIN_TOKENS."""
    admin_url: str | None = None
    """Gateway every ``turnout`` command talks to (unset: http://TURNOUT_HOST:TURNOUT_PORT)."""
    admin_token: SecretStr | None = None
    """Token the CLI sends as ``Authorization: Bearer`` (or pass ``--token``)."""

    # --- history and the console --------------------------------------------------------
    history: bool = True
    """Write per-minute and per-hour history buckets (the console's time series) with every
    recorded batch."""
    history_minute_retention: int = Field(7 * 86_400, ge=3600)
    """Seconds per-minute history buckets are kept after their last write."""
    history_hour_retention: int = Field(90 * 86_400, ge=86_400)
    """Seconds per-hour history buckets are kept after their last write (the longest range the
    console can show)."""
    ui: Literal["open", "token", "off"] | None = None
    """The console at ``/ui``: ``open`` (read-only views without a token), ``token`` (every
    view needs the admin token) or ``off`` (no console). Unset: open on a gateway bound to a
    loopback address, token anywhere else. Actions always need the token."""
    ui_refresh_interval: float = Field(5.0, gt=0)
    """Seconds between the console's live refreshes of a page's data."""
    ui_session_ttl: int = Field(8 * 3600, ge=60)
    """Seconds a console session (the admin token entered once) lasts."""
    ui_signout_refresh_interval: float = Field(5.0, gt=0)
    """Seconds between a replica's full reads of the console's signed-out sessions (a sign-out
    also arrives by pub/sub at once): the longest another replica may still accept a
    signed-out cookie if the pub/sub message is lost."""

    @field_validator("feedback_secret")
    @classmethod
    def _check_feedback_secret(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is not None and len(secret.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (use a random one)")
        return secret

    @model_validator(mode="after")
    def _check_history(self) -> Settings:
        if self.history_hour_retention < self.history_minute_retention:
            raise ValueError(
                "history_hour_retention must be at least history_minute_retention: hourly "
                "buckets are what long ranges read"
            )
        return self
