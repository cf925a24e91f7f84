"""The gateway's Prometheus metrics, on a registry of its own (never the global one)."""

from __future__ import annotations

from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

M = TypeVar("M", bound=MetricWrapperBase)

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)


SCORE_DELTA_BUCKETS = (
    -1.0,
    -0.5,
    -0.3,
    -0.2,
    -0.1,
    -0.05,
    -0.02,
    -0.01,
    -0.005,
    0.0,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.3,
    0.5,
    1.0,
)
"""Upper bounds of score-delta buckets (shadow minus primary), shared by /metrics and Redis."""


DEFERRED_RESULTS = (
    "queued",
    "applied",
    "duplicate",
    "unknown",
    "invalid",
    "error",
    "shutdown",
    "refused_full",
)
"""Values of ``turnout_feedback_deferred_total{result}``."""


HELD_RESULTS = (
    "held",
    "applied",
    "duplicate",
    "invalid",
    "unknown",
    "expired",
    "error",
    "shutdown",
    "refused_full",
)
"""Values of ``turnout_feedback_held_total{result}``."""


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        self._bound: dict[tuple[int, tuple[str, ...]], MetricWrapperBase] = {}
        self.requests = Counter(
            "turnout_requests",
            "Predictions by experiment, chosen variant, served version and outcome.",
            ["experiment", "variant", "version", "outcome"],
            registry=r,
        )
        self.in_flight = Gauge(
            "turnout_in_flight_requests",
            "Predictions this replica is handling right now (the autoscaler's custom metric).",
            registry=r,
        )
        self.request_seconds = Histogram(
            "turnout_request_seconds",
            "Gateway latency of POST /predict, by experiment and chosen variant.",
            ["experiment", "variant"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_seconds = Histogram(
            "turnout_upstream_seconds",
            "Worker call latency as the gateway sees it.",
            ["experiment", "variant"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.fallbacks = Counter(
            "turnout_fallbacks",
            "Requests answered by the control after the chosen variant failed.",
            ["experiment", "variant", "reason"],
            registry=r,
        )
        self.upstream_failures = Counter(
            "turnout_upstream_failures",
            "Worker calls made that failed (timeout, slow call, connection, 5xx, bad answer).",
            ["experiment", "variant"],
            registry=r,
        )
        self.breaker_state = Gauge(
            "turnout_breaker_state",
            "Circuit breaker per upstream: 0 closed, 1 open, 2 half-open.",
            ["experiment", "variant"],
            registry=r,
        )
        self.upstream_healthy = Gauge(
            "turnout_upstream_healthy",
            "1 when the upstream's /readyz answered 200 at the last active check.",
            ["experiment", "variant"],
            registry=r,
        )
        self.configured_weight = Gauge(
            "turnout_configured_weight",
            "Configured traffic share per variant, in percent.",
            ["experiment", "variant"],
            registry=r,
        )
        self.config_reloads = Counter(
            "turnout_config_reloads",
            "Experiment reloads by result (applied or refused).",
            ["result"],
            registry=r,
        )
        self.config_refused_files = Gauge(
            "turnout_config_refused_files",
            "Experiment files refused right now (each serves its last good version, if any).",
            registry=r,
        )
        self.config_info = Gauge(
            "turnout_config_info",
            "Loaded experiment configuration (value 1); unit is what its statistics count "
            "(user when assignment is sticky, else request).",
            ["experiment", "model", "policy", "config_version", "unit"],
            registry=r,
        )
        self.rejected = Counter(
            "turnout_rejected_requests",
            "Requests refused with a 4xx before routing, by error code.",
            ["code"],
            registry=r,
        )
        # --- reliability: skips, failovers, data loss, disconnects (issue 14) ---
        self.upstream_skipped = Counter(
            "turnout_upstream_skipped",
            "Worker calls not made because the upstream was known to be down, by reason "
            "(unhealthy, breaker_open); not failures.",
            ["experiment", "variant", "reason"],
            registry=r,
        )
        self.failovers = Counter(
            "turnout_failovers",
            "Requests answered by one of the experiment's fallback variants because the "
            "control could not answer, by the variant that answered and the control's reason.",
            ["experiment", "variant", "reason"],
            registry=r,
        )
        self.redis_data_loss = Counter(
            "turnout_redis_data_loss",
            "Times this replica found Redis without its data (epoch gone or changed); flag "
            "overrides are restored, everything else recorded before is gone.",
            registry=r,
        )
        self.feedback_held = Counter(
            "turnout_feedback_held",
            "Feedback for requests no replica had recorded yet, by result: held (answered 202), "
            "then applied, duplicate, invalid, unknown, expired (never recorded), error or "
            "shutdown; refused_full when the hold was full (answered 503). held = the settled "
            "results + turnout_feedback_holding.",
            ["result"],
            registry=r,
        )
        for result in HELD_RESULTS:
            self.feedback_held.labels(result)
        self.feedback_holding = Gauge(
            "turnout_feedback_holding",
            "Feedback waiting for its request to be recorded by some replica.",
            registry=r,
        )
        self.feedback_hold_redis_commands = Counter(
            "turnout_feedback_hold_redis_commands",
            "Redis commands the feedback hold sent to learn whether held requests were "
            "recorded; its rate over turnout_feedback_holding is the cost per held id.",
            registry=r,
        )
        self.client_disconnects = Counter(
            "turnout_client_disconnects",
            "Requests whose client went away before its body was read whole.",
            registry=r,
        )
        # --- recording (outcomes to Redis) ---
        self.events_produced = Counter(
            "turnout_events_produced", "Outcome events accepted into the buffer.", registry=r
        )
        self.events_written = Counter(
            "turnout_events_written", "Outcome events written to Redis.", registry=r
        )
        self.events_dropped = Counter(
            "turnout_events_dropped",
            "Outcome events dropped, by reason (the buffer bound was hit, ...).",
            ["reason"],
            registry=r,
        )
        self.events_buffered = Gauge(
            "turnout_events_buffered", "Outcome events waiting in the buffer.", registry=r
        )
        self.redis_up = Gauge(
            "turnout_redis_up", "1 when the last Redis write or read succeeded.", registry=r
        )
        self.flush_seconds = Histogram(
            "turnout_flush_seconds",
            "Duration of one pipelined flush of the buffer to Redis.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.feedback = Counter(
            "turnout_feedback",
            "Feedback accepted, by experiment and the version credited.",
            ["experiment", "version"],
            registry=r,
        )
        self.feedback_untrusted = Counter(
            "turnout_feedback_untrusted",
            "Feedback refused at once (401/403) for lacking the proof its experiment's "
            "feedback.auth demands, by reason: a missing, malformed, invalid or expired signed "
            "token, a missing or unknown label-source credential, an admin token.",
            ["reason"],
            registry=r,
        )
        self.feedback_deferred = Counter(
            "turnout_feedback_deferred",
            "Feedback deferred while Redis was unreachable, by result: queued (answered 202), then "
            "applied, duplicate, unknown, invalid, error, or shutdown (still queued at exit); "
            "refused_full when the queue was full (answered 503). queued = the settled results "
            "+ turnout_feedback_queued.",
            ["result"],
            registry=r,
        )
        for result in DEFERRED_RESULTS:
            self.feedback_deferred.labels(result)
        self.feedback_unreplicated = Counter(
            "turnout_feedback_unreplicated",
            "Feedback applied whose WAIT for a replica timed out (TURNOUT_FEEDBACK_WAIT_REPLICAS): "
            "a failover right then could lose it.",
            registry=r,
        )
        self.feedback_queued = Gauge(
            "turnout_feedback_queued",
            "Feedback waiting in the deferred queue for Redis to come back.",
            registry=r,
        )
        # --- shadow mirroring ---
        self.shadow_comparisons = Counter(
            "turnout_shadow_comparisons",
            "Shadow answers compared with the primary's, by agreement of labels.",
            ["experiment", "primary", "shadow", "agree"],
            registry=r,
        )
        self.shadow_score_delta = Histogram(
            "turnout_shadow_score_delta",
            "Shadow score minus primary score on the same request.",
            ["experiment", "primary", "shadow"],
            buckets=SCORE_DELTA_BUCKETS,
            registry=r,
        )
        self.shadow_dropped = Counter(
            "turnout_shadow_dropped",
            "Mirror calls not made or not compared, by reason.",
            ["reason"],
            registry=r,
        )
        self.shadow_errors = Counter(
            "turnout_shadow_errors",
            "Mirror calls that failed, by experiment and shadow variant.",
            ["experiment", "shadow"],
            registry=r,
        )
        # --- bandit ---
        self.bandit_posterior_mean = Gauge(
            "turnout_bandit_posterior_mean",
            "Posterior mean reward per arm (from the cached posterior).",
            ["experiment", "arm"],
            registry=r,
        )
        self.bandit_traffic_share = Gauge(
            "turnout_bandit_traffic_share",
            "Probability that the bandit picks each arm now (Thompson, with floors).",
            ["experiment", "arm"],
            registry=r,
        )
        self.bandit_posterior_age = Gauge(
            "turnout_bandit_posterior_age_seconds",
            "Seconds since the cached posterior was refreshed from Redis.",
            ["experiment"],
            registry=r,
        )
        # --- flags and admin ---
        self.flag_changes = Counter(
            "turnout_flag_changes",
            "Flag changes seen, by experiment and flag.",
            ["experiment", "flag"],
            registry=r,
        )
        self.admin_denied = Counter(
            "turnout_admin_denied",
            "Admin calls refused for a missing or wrong token.",
            registry=r,
        )
        # --- rollouts and sample-ratio checks ---
        self.rollout_step = Gauge(
            "turnout_rollout_step",
            "Current rollout step, 1-based (0: the entry gate, before the first step).",
            ["experiment"],
            registry=r,
        )
        self.rollout_state = Gauge(
            "turnout_rollout_state",
            "1 for the rollout's current state (running, paused, halted, rolled_back, aborted, "
            "promoted, completed), 0 for the others.",
            ["experiment", "state"],
            registry=r,
        )
        self.rollout_gate = Gauge(
            "turnout_rollout_gate",
            "1 for each rollout gate's latest verdict (pass, fail, inconclusive, waiting).",
            ["experiment", "gate", "verdict"],
            registry=r,
        )
        self.rollout_transitions = Counter(
            "turnout_rollout_transitions",
            "Rollout transitions written by this replica's driver, by action.",
            ["experiment", "action"],
            registry=r,
        )
        self.label_arrival = Gauge(
            "turnout_rollout_label_arrival_mismatch",
            "1 while a rollout's reward gate is held because labels reach the arms unevenly "
            "(the sequential test on users with a label), else 0; rollouts with a reward gate.",
            ["experiment"],
            registry=r,
        )
        self.srm_mismatch = Gauge(
            "turnout_srm_mismatch",
            "1 once the sequential sample-ratio test found a mismatch, by configured action.",
            ["experiment", "action"],
            registry=r,
        )
        self.forced_ignored = Counter(
            "turnout_forced_variant_ignored",
            "X-Turnout-Variant headers ignored for lack of a valid admin token.",
            registry=r,
        )
        # --- data capture (opt-in, router.capture) ---
        self.capture_offered = Counter(
            "turnout_capture_offered",
            "Sampled records handed to the capture writer (outcomes and shadow comparisons).",
            ["experiment"],
            registry=r,
        )
        self.capture_written = Counter(
            "turnout_capture_written",
            "Records written to capture files.",
            ["experiment"],
            registry=r,
        )
        self.capture_dropped = Counter(
            "turnout_capture_dropped",
            "Sampled records not written, by reason: queue_full (the hand-off bound), "
            "write_error, unencodable, shutdown.",
            ["experiment", "reason"],
            registry=r,
        )
        self.capture_queued = Gauge(
            "turnout_capture_queued", "Records waiting for the capture writer.", registry=r
        )
        self.capture_bytes = Gauge(
            "turnout_capture_bytes",
            "Bytes of capture files on disk per experiment (every replica's files).",
            ["experiment"],
            registry=r,
        )
        self.capture_evicted = Counter(
            "turnout_capture_evicted",
            "Written records deleted with the oldest files to keep under max_bytes.",
            ["experiment"],
            registry=r,
        )
        self.capture_files_deleted = Counter(
            "turnout_capture_files_deleted",
            "Capture files deleted, by reason (retention, max_bytes).",
            ["experiment", "reason"],
            registry=r,
        )
        # --- drift verdicts (written by turnout drift, read from Redis) ---
        self.drift = Gauge(
            "turnout_drift",
            "1 when the last drift check found drift, 0 when it found none (checks: prediction, "
            "paired, input).",
            ["experiment", "version", "check"],
            registry=r,
        )
        self.drift_checked = Gauge(
            "turnout_drift_checked_timestamp_seconds",
            "Unix time of the last drift check of an experiment.",
            ["experiment"],
            registry=r,
        )

    def bound(self, metric: M, *labels: str) -> M:
        """``metric.labels(*labels)``, looked up once: the request path's children stay bound
        (``labels()`` checks, converts and locks on every call). Only for metrics whose
        children are never removed."""
        key = (id(metric), labels)
        child = self._bound.get(key)
        if child is None:
            child = self._bound[key] = metric.labels(*labels)
        return child  # type: ignore[return-value]
