"""Every Redis key Turnout's outcome recording, feedback and reports use, in one place.

Experiment and variant names match ``experiments.NAME`` and request ids match ``app.REQUEST_ID``,
so neither can smuggle a separator, a wildcard or a brace into a key.

Redis Cluster runs a script only when all its keys hash to one slot. So every key of one
experiment carries the experiment's name as its hash tag (``{<e>}``: Redis hashes only what is
between the braces), a request's attribution lives under its experiment, and the one key found
from a request id alone, its locator, names that experiment. The operators' keys (flags, audit,
promotions) share the tag ``{ops}``. One instance, Sentinel and Cluster use the same layout;
``turnout migrate-keys`` moves data written before it (``router.storage.migrate``).

Layout (``<e>`` experiment, ``<v>`` variant, ``<cv>`` config_version, ``<rid>`` request id):

===========================================  ======  =========================================
key                                          type    holds
===========================================  ======  =========================================
``turnout:experiments``                      set     experiments that have recorded anything
``turnout:exp:{<e>}:variants``               set     variants with counters (configured or not)
``turnout:exp:{<e>}:variant:<v>``            hash    counters of one variant (``CounterField``)
``turnout:exp:{<e>}:assigned:<cv>``          hash    variant -> assignments under one config
``turnout:exp:{<e>}:events``                 stream  one entry per request (capped, ``MAXLEN ~``)
``turnout:exp:{<e>}:feedback``               stream  one entry per accepted feedback (capped)
``turnout:exp:{<e>}:req:<rid>``              hash    attribution of one request + write guard
``turnout:rid:<rid>``                        string  locator: the experiment of ``<rid>`` (TTL)
``turnout:exp:{<e>}:bandit``                 hash    bandit evidence: ``<v>:s``, ``:f``, ``:n``
``turnout:exp:{<e>}:bandit:sticky``          stream  first draws of sticky bandit users (capped)
``turnout:exp:{<e>}:shadow_pairs``           set     ``<primary>|<shadow>`` pairs compared
``turnout:exp:{<e>}:shadow:<p>:<s>``         hash    shadow-vs-primary counters (``SHADOW_*``)
``turnout:exp:{<e>}:shadow_events``          stream  one entry per mirrored request (capped)
``turnout:exp:{<e>}:disagreements``          stream  comparisons whose labels differ (capped)
``turnout:exp:{<e>}:req:<rid>:shadow:<s>``   hash    write guard of one mirrored call (TTL)
``turnout:{ops}:flags``                      hash    flag overrides, ``<e>/<flag>`` -> JSON value
``turnout:flags:changed``                    pubsub  channel: every flag change publishes
``turnout:{ops}:audit``                      stream  operators' changes: flags, promotions
``turnout:{ops}:promotions``                 hash    ``<e>`` -> the file before its promotion
``turnout:{ops}:epoch``                      string  this dataset's id (data-loss detection)
``turnout:exp:{<e>}:rollout``                hash    rollout and SRM state (``router.rollout``)
``turnout:exp:{<e>}:rollout:history``        stream  every rollout transition, with numbers
``turnout:exp:{<e>}:rollout:lease``          string  ``<owner>|<fencing token>`` (TTL)
``turnout:exp:{<e>}:rollout:fence``          string  the last fencing token handed out (INCR)
``turnout:exp:{<e>}:rollout:window:<w>``     hash    counters of one weights window
``turnout:exp:{<e>}:alerts``                 hash    Alertmanager alerts already acted on
``turnout:exp:{<e>}:rollout:looks``          stream  gate numbers of kept looks (capped)
``turnout:exp:{<e>}:history:<t>:<p>``        hash    history buckets of tier ``<t>``, period ``<p>``
``turnout:exp:{<e>}:drift``                  hash    the last drift check: ``<version>|<check>``
                                                     -> verdict (JSON), ``run`` -> its summary
===========================================  ======  =========================================

Counters live until the experiment is archived; streams are capped; request hashes and history
buckets expire.
"""

from __future__ import annotations

from typing import Final

PREFIX: Final = "turnout"

# Fields of a variant's counter hash. Assignment-side counters go to the variant the policy
# chose; answer-side ones to the variant that answered (the control after a fallback).
ASSIGNED: Final = "assigned"
"""Requests the policy sent to this variant."""
ERRORS: Final = "errors"
"""Assigned requests that nothing could answer (503)."""
FALLBACKS: Final = "fallbacks"
"""Assigned requests this variant failed that the control answered."""
FAILOVERS: Final = "failovers"
"""Assigned requests the control could not answer that a configured fallback variant did."""
LATENCY_SUM: Final = "latency_sum_ms"
"""Sum of gateway latency of assigned requests, in milliseconds."""
LATENCY_BUCKET: Final = "lat_le:"
"""Prefix of non-cumulative latency buckets: ``lat_le:<upper bound ms>`` (``+Inf`` last)."""
SERVED: Final = "served"
"""Requests this variant answered (any status, fallbacks taken over included)."""
REJECTED: Final = "rejected"
"""Answered requests whose input the worker refused (4xx)."""
PREDICTIONS: Final = "predictions"
"""Answered requests with a prediction (label or score)."""
LABELLED: Final = "labelled"
"""Predictions that carried a label."""
POSITIVE: Final = "positive"
"""Predictions whose label was 1 or true."""
LABEL: Final = "label:"
"""Prefix of per-label counts: ``label:<label as JSON>``."""
SCORED: Final = "scored"
SCORE_SUM: Final = "score_sum"
SCORE_SUMSQ: Final = "score_sumsq"
FEEDBACK_N: Final = "fb_n"
"""Feedback credited to this variant (the one that answered)."""
FEEDBACK_SUM: Final = "fb_sum"
FEEDBACK_SUMSQ: Final = "fb_sumsq"
FEEDBACK_BINARY: Final = "fb_binary"
"""Feedback whose reward was exactly 0 or 1 (all of them: the Wilson interval applies)."""
FEEDBACK_LABELLED: Final = "fb_labelled"
"""Feedback given as a true label."""
FEEDBACK_CORRECT: Final = "fb_correct"
"""Labelled feedback that matched the served label."""
FEEDBACK_CONFUSION: Final = "fb_cm:"
"""Prefix of the variant's confusion table from labelled feedback:
``fb_cm:<served label JSON>|<true label JSON>``."""
STICKY: Final = "sticky"
"""Assigned requests whose variant followed from the request key (or a bandit's sticky arm)."""
IPW_N: Final = "ipw_n"
"""Feedback on requests this variant was chosen for and answered (no fallback)."""
IPW_SUM: Final = "ipw_sum"
"""Sum of reward / propensity over those: the numerator of the inverse-propensity estimate."""
IPW_WEIGHT: Final = "ipw_w"
"""Sum of 1 / propensity over those: the denominator of the self-normalised estimate."""

# Fields of a bandit hash, per arm: fractional successes and failures (reward r adds r and
# 1 - r), and rewards counted. The posterior is Beta(prior_alpha + s, prior_beta + f), so the
# prior can change in the YAML without rewriting Redis.
BANDIT_SUCCESS: Final = "s"
BANDIT_FAILURE: Final = "f"
BANDIT_REWARDS: Final = "n"

# Fields of a request's attribution hash.
TOKEN: Final = "token"  # noqa: S105 (a field name, not a secret)
"""Which buffered event wrote this hash: a retried flush finds its own token and skips."""
FEEDBACK_REWARD: Final = "fb"
"""Present once feedback was accepted: the exactly-once marker."""
FEEDBACK_TOKEN: Final = "fb_token"  # noqa: S105 (a field name, not a secret)
"""Set with a deferred feedback: its retry after a lost reply finds it and knows it applied."""
FEEDBACK_LABEL: Final = "fb_label"
"""The true label of labelled feedback (JSON): a shadow answer recorded later is scored by it."""


# Fields of a shadow pair's counter hash (primary = the variant that answered the client).
SHADOW_PAIRS: Final = "pairs"
"""Mirrored requests whose shadow answered, so the two predictions were compared."""
SHADOW_AGREE: Final = "agree"
SHADOW_ERRORS: Final = "errors"
"""Mirror calls that failed (connection, timeout, 5xx, unreadable answer)."""
SHADOW_DROPPED: Final = "dropped"
"""Mirror calls not made (concurrency bound reached, shadow unhealthy)."""
SHADOW_CONFUSION: Final = "cm:"
"""Prefix of the confusion table: ``cm:<primary label JSON>|<shadow label JSON>``."""
SHADOW_DELTA_N: Final = "delta_n"
SHADOW_DELTA_SUM: Final = "delta_sum"
SHADOW_DELTA_SUMSQ: Final = "delta_sumsq"
SHADOW_DELTA_BUCKET: Final = "d_le:"
"""Prefix of non-cumulative score-delta buckets (shadow minus primary)."""
SHADOW_PRIMARY_LATENCY: Final = "lp_le:"
SHADOW_SHADOW_LATENCY: Final = "ls_le:"
"""Prefixes of non-cumulative latency buckets (ms) of both sides on the same requests."""
SHADOW_FEEDBACK_N: Final = "fb_n"
SHADOW_PRIMARY_CORRECT: Final = "fb_primary_correct"
SHADOW_SHADOW_CORRECT: Final = "fb_shadow_correct"
"""Labelled feedback on mirrored requests: both sides' accuracy on the same requests."""
SHADOW_LABEL: Final = "shadow_label:"
"""Prefix of a request hash field holding a shadow's label, for accuracy from feedback."""
SHADOW_SCORED: Final = "shadow_scored:"
"""Prefix of a request hash field set once a shadow was scored against the feedback's label:
whichever of the two arrives second scores, exactly once."""


def slot_tag(experiment: str) -> str:
    """The hash tag every key of ``experiment`` carries: one slot per experiment."""
    return "{" + experiment + "}"


def _exp(experiment: str) -> str:
    return f"{PREFIX}:exp:{slot_tag(experiment)}"


def experiments() -> str:
    return f"{PREFIX}:experiments"


def variants(experiment: str) -> str:
    return f"{_exp(experiment)}:variants"


def counters(experiment: str, variant: str) -> str:
    return f"{_exp(experiment)}:variant:{variant}"


def assigned(experiment: str, config_version: str) -> str:
    return f"{_exp(experiment)}:assigned:{config_version}"


def events(experiment: str) -> str:
    return f"{_exp(experiment)}:events"


def feedback(experiment: str) -> str:
    return f"{_exp(experiment)}:feedback"


def request(request_id: str) -> str:
    """The locator of a request: the one key found from its id alone. A string holding the
    experiment whose ``attribution`` hash holds the request (same TTL)."""
    return f"{PREFIX}:rid:{request_id}"


def attribution(experiment: str, request_id: str) -> str:
    """A request's attribution and write guard, in its experiment's slot."""
    return f"{_exp(experiment)}:req:{request_id}"


def bandit(experiment: str) -> str:
    return f"{_exp(experiment)}:bandit"


def bandit_field(arm: str, part: str) -> str:
    return f"{arm}:{part}"


def bandit_sticky(experiment: str) -> str:
    return f"{_exp(experiment)}:bandit:sticky"


def shadow_pairs(experiment: str) -> str:
    return f"{_exp(experiment)}:shadow_pairs"


def shadow_counters(experiment: str, primary: str, shadow: str) -> str:
    return f"{_exp(experiment)}:shadow:{primary}:{shadow}"


def shadow_events(experiment: str) -> str:
    return f"{_exp(experiment)}:shadow_events"


def disagreements(experiment: str) -> str:
    return f"{_exp(experiment)}:disagreements"


def shadow_request(experiment: str, request_id: str, shadow: str) -> str:
    return f"{attribution(experiment, request_id)}:shadow:{shadow}"


# Flags, the operators' audit trail and promotions (router.flags, router.admin): one slot, so
# a flag change and its audit entry are written by one script.
OPS_TAG: Final = "{ops}"
FLAGS: Final = f"{PREFIX}:{OPS_TAG}:flags"
"""Only overrides live here; defaults come from the flags file (config/flags.yaml)."""
FLAGS_CHANNEL: Final = f"{PREFIX}:flags:changed"


CONSOLE_SIGNED_OUT: Final = f"{PREFIX}:{OPS_TAG}:console:signed-out"
"""Console sessions signed out before their expiry: a sorted set, session id -> its expiry."""
CONSOLE_SIGNED_OUT_CHANNEL: Final = f"{PREFIX}:console:signed-out"


def flag_field(experiment: str, flag: str) -> str:
    """The field of one experiment's flag in the ``FLAGS`` hash (its value is JSON)."""
    return f"{experiment}/{flag}"


def epoch() -> str:
    """A random id set once per Redis dataset: gone or changed, Redis lost its data. In the
    operators' slot, so it is read with the flags in one round trip."""
    return f"{PREFIX}:{OPS_TAG}:epoch"


AUDIT: Final = f"{PREFIX}:{OPS_TAG}:audit"
PROMOTIONS: Final = f"{PREFIX}:{OPS_TAG}:promotions"


# Rollouts (router.rollout). A window is the span during which one set of rollout weights was in
# force; its counters are per variant, ``{v}|<field>``, and feedback is also per time slot of
# the *request* (``{v}|fb_n|{slot}``), so a gate can count only requests older than its label
# delay.
WINDOW_ASSIGNED: Final = "assigned"
"""Requests the policy sent to the variant under this window's weights (flags excluded)."""
WINDOW_FAILED: Final = "failed"
"""Of those, requests the variant failed (a fallback to the control, or no answer at all)."""
WINDOW_LATENCY: Final = "lat_le:"
"""Prefix of non-cumulative gateway-latency buckets (ms) of those requests."""
WINDOW_FB_N: Final = "fb_n"
WINDOW_FB_SUM: Final = "fb_sum"
WINDOW_FB_SUMSQ: Final = "fb_sumsq"
"""Feedback credited to the variant that answered, per time slot of the request."""


WINDOW_NOKEY: Final = "nokey"
"""Requests of a sticky experiment without a key: assigned at random, counted per request and
kept out of the per-user sums."""
WINDOW_ORPHAN_FEEDBACK: Final = "fb_orphan"
"""Feedbacks whose user has no request sums in the same key (they expired or Redis lost them):
counted here and kept out of the per-user sums."""
WINDOW_UNITS_FULL: Final = "units_full"
"""Set when a new user could not be added under the per-window bound: the sums are partial."""
WINDOW_USERS: Final = "u_"
"""Prefix of the per-user sums of requests and failures: ``u_k`` (users), ``u_n``, ``u_y``,
``u_nn``, ``u_yy``, ``u_ny`` (n_i requests, y_i failures of user i)."""
WINDOW_REWARD_USERS: Final = "r_"
"""Prefix of the per-user sums of feedback on requests in slots up to ``matured`` (n_i
feedbacks, y_i reward sum)."""
ACCURACY_USERS: Final = "a_"
"""Prefix of the per-user sums of labelled feedback (n_i) and correct answers (y_i)."""
SHADOW_UNITS_AGREE: Final = "s_"
"""Prefix of the per-user sums of shadow pairs (n_i) and agreements (y_i), variant ``pair``."""
SHADOW_UNITS_DELTA: Final = "d_"
"""Prefix of the per-user sums of scored shadow pairs (n_i) and score deltas (y_i)."""
WINDOW_MATURED: Final = "~|matured"
"""The last request slot whose feedback is folded into the per-user reward sums."""


def window_field(variant: str, field: str, slot: int | None = None) -> str:
    return f"{variant}|{field}" if slot is None else f"{variant}|{field}|{slot}"


def rollout(experiment: str) -> str:
    return f"{_exp(experiment)}:rollout"


def rollout_history(experiment: str) -> str:
    return f"{_exp(experiment)}:rollout:history"


def rollout_lease(experiment: str) -> str:
    return f"{_exp(experiment)}:rollout:lease"


def rollout_fence(experiment: str) -> str:
    return f"{_exp(experiment)}:rollout:fence"


def rollout_window(experiment: str, window: int) -> str:
    return f"{_exp(experiment)}:rollout:window:{window}"


def config_units(experiment: str, config_version: str) -> str:
    """Per-user state and sums of a sticky experiment under one configuration (the reports'
    per-user intervals and SRM on users): the same fields as ``rollout_units``, plus
    ``{v}|nokey`` (requests without a key)."""
    return f"{_exp(experiment)}:units:{config_version}"


def shadow_units(experiment: str, primary: str, shadow: str) -> str:
    """Per-user state and sums of one (primary, shadow) pair of a sticky experiment."""
    return f"{_exp(experiment)}:shadow:{primary}:{shadow}:units"


def rollout_units(experiment: str, window: int) -> str:
    """Per-user state of one window: ``{v}|{user}`` -> "n y" (requests, failures) and
    ``{v}|{user}|r`` -> "n y" (feedbacks, reward sum) on matured slots."""
    return f"{_exp(experiment)}:rollout:window:{window}:units"


def rollout_staged(experiment: str, window: int, slot: int) -> str:
    """Feedback per user on requests of one slot, held until the slot matures."""
    return f"{_exp(experiment)}:rollout:window:{window}:staged:{slot}"


def alerts_seen(experiment: str) -> str:
    return f"{_exp(experiment)}:alerts"


def rollout_looks(experiment: str) -> str:
    return f"{_exp(experiment)}:rollout:looks"


# History (the console's time series): per-minute and per-hour buckets, written by the recorder
# in the same batched script as every other counter. A tier's buckets are grouped into one hash
# per period (an hour of minutes, a day of hours), so a range costs one read per period; each
# hash expires its tier's retention after its last write. A field is ``<offset>|<series>|<c>``:
# ``offset`` the bucket within the period, ``series`` a variant or a shadow pair
# ``<primary>><shadow>`` (names cannot hold ``|`` or ``>``), ``c`` one of the counters below.
HISTORY_TIERS: Final = {"m": (60, 3600), "h": (3600, 86_400)}
"""Tier -> (bucket width, period of one hash), in seconds."""
HIST_ASSIGNED: Final = "a"
"""Requests the policy (or a flag) sent to the variant."""
HIST_ERRORS: Final = "e"
"""Of those, requests nothing could answer."""
HIST_FALLBACKS: Final = "f"
"""Of those, requests the variant failed that the control answered."""
HIST_LATENCY: Final = "l"
"""Sum of their gateway latency, in milliseconds."""
HIST_PAIRS: Final = "n"
"""Shadow comparisons of a pair (both answered)."""
HIST_AGREE: Final = "g"
"""Of those, comparisons whose labels agreed."""


def history(experiment: str, tier: str, period: int) -> str:
    return f"{_exp(experiment)}:history:{tier}:{period}"


def history_field(offset: int, series: str, counter: str) -> str:
    return f"{offset}|{series}|{counter}"


def shadow_series(primary: str, shadow: str) -> str:
    return f"{primary}>{shadow}"


# Drift (router.drift): the last check's verdicts, replaced whole by each run.
DRIFT_RUN: Final = "run"
"""Field of the drift hash holding the last run's summary; the others are ``<version>|<check>``."""


def drift(experiment: str) -> str:
    return f"{_exp(experiment)}:drift"


def drift_field(version: str, check: str) -> str:
    return f"{version}|{check}"
