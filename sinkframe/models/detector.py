"""The contact-health detector: each key's normal temperature for its load, and its phase balance. Pure numpy.

A model's features are `[response, load, load, ...]` (for a breaker: temperature,
then the three phase currents). Per key it learns, from history:

- the response given the load and the time of day. A breaker's temperature
  follows its heating (the current squared) with a thermal lag, so the loads are
  first filtered per key with a time constant `tau` (chosen per key from
  TAU_CHOICES at fit time, whichever explains the history best); then a least-
  squares fit of `response ~ 1 + lagged max(load)^2 + lagged mean(load) +
  sin/cos(time of day)` (the day's ambient cycle), and the spread of its
  residuals (SPREAD_QUANTILE);
- the phase balance, `(max(load) - min(load)) / mean(load)` under a real load:
  its median and spread.

A row departs by `hypot(z_response, z_balance)`, each z one-sided (hotter than its
load explains, phases further apart than usual: a cooler breaker is no fault),
each in units of what the key's history exceeded on one row in a hundred,
capped at CAP so that one odd reading (a motor start, a trip) moves the smoothing
by little. A row older than its key's newest (a late message) is not scored: its
reading and the lagged load are of different moments. The departure is smoothed per key over its rows in order
(EWMA, `alpha`) and squashed into a score in 0..1, `1 - exp(-ewma / scale)`. The
alarm threshold is chosen at fit time: the highest score the history reached on
any key, plus MARGIN.

Per key the state between batches is the lagged loads, the time of the newest
row and the smoothed departure (`KeyState`). Both recurrences run row after row
per key in the same float operations whatever the batch boundaries, so a replay
of the same rows from the same state gives bit-identical scores.
"""
from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

KIND = "contact_regression"
FORMAT = 1
ALPHA = 0.05  # EWMA weight of a new row: about the last 20 rows of a key count
CAP = 5.0  # no single row departs by more than this (in units of the key's SPREAD_QUANTILE residual)
SCALE = 2.0  # score = 1 - exp(-smoothed departure / SCALE)
MARGIN = 0.05  # the alarm threshold sits this far above the highest score of the history
MAX_THRESHOLD = 0.99
MIN_ROWS = 50  # a key with fewer usable rows in the history gets no baseline (and no score)
BUSY_SHARE = 0.5  # the balance is judged on rows with at least this share of the key's median load
RIDGE = 1e-6  # keeps a key with a constant load (a flat column) solvable
TAU_CHOICES = (300.0, 600.0, 900.0, 1800.0)  # thermal time constants tried per key, seconds
SETTLE_TAUS = 2.0  # after the breaker was open, its rows are scored again this many time constants later
MAX_GAP = 3600.0  # a longer gap between two rows counts as this long (the lag has settled anyway)
DAY_SECONDS = 86400.0
COEFFICIENTS = 5  # 1, lagged max(load)^2, lagged mean(load), sin, cos
SPREAD_QUANTILE = 0.99  # a departure of 1 is what a key's history exceeded on one row in a hundred
SIGMA_FLOOR = 0.05  # in the response's unit: noise below this is the sensor's resolution, not behaviour


@dataclass(frozen=True)
class Baseline:
    """One key's normal behaviour: the numbers a score needs."""

    coef: tuple[float, ...]  # COEFFICIENTS, in design-matrix order
    sigma: float  # the response's residual exceeded on one history row in a hundred (SPREAD_QUANTILE)
    tau: float  # thermal time constant the loads are lagged by, seconds
    balance: float  # median phase imbalance under load
    balance_sigma: float  # inf: the balance is not judged (one load, or never under load)
    load_median: float  # median mean load when on (what "under load" is measured against)


@dataclass(frozen=True)
class Detector:
    """A fitted model's parameters: the baselines by key and how to score against them."""

    baselines: Mapping[str, Baseline]
    threshold: float
    alpha: float = ALPHA
    cap: float = CAP
    scale: float = SCALE


@dataclass(frozen=True)
class KeyState:
    """What scoring a key's next rows needs from its rows before: saved with every batch."""

    peak2: float  # lagged max(load)^2
    mean: float  # lagged mean(load)
    time: float  # newest row's time, epoch s
    off: float  # time of its newest row without load (or its first row), epoch s
    smoothed: float  # EWMA of the departure


@dataclass
class Rows:
    """A model's rows in stream order as arrays: key, time (epoch s), response and loads (NaN: missing)."""

    keys: Sequence[str]
    times: np.ndarray
    response: np.ndarray
    loads: np.ndarray  # (rows, load features)

    def __len__(self) -> int:
        return len(self.keys)


@dataclass
class Scores:
    """Per row: score (NaN when the row cannot be scored) and alarm; the state of each key the rows touched."""

    score: np.ndarray
    alarm: np.ndarray
    states: dict[str, KeyState]


class _Steps:
    """The rows of each key in order, as vector steps: step k holds the k-th row of every key that has one."""

    def __init__(self, index: np.ndarray, live: np.ndarray):
        keys = index[live]
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]) if len(keys) else keys
        rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
        by_rank = np.argsort(rank, kind="stable")
        self.rows = live[order[by_rank]]
        self.bounds = np.searchsorted(rank[by_rank], np.arange(rank.max() + 2)) if len(keys) else np.zeros(1, int)

    def __iter__(self):
        rows, bounds = self.rows, self.bounds
        for step in range(len(bounds) - 1):
            yield rows[bounds[step]:bounds[step + 1]]


def _row_max(loads: np.ndarray) -> np.ndarray:
    """Per row, over a few load columns: column by column (numpy's reduce along a short axis is slow)."""
    return functools.reduce(np.maximum, loads.T) if loads.shape[1] else np.full(len(loads), np.nan)


def _row_min(loads: np.ndarray) -> np.ndarray:
    return functools.reduce(np.minimum, loads.T) if loads.shape[1] else np.full(len(loads), np.nan)


def _row_mean(loads: np.ndarray) -> np.ndarray:
    return functools.reduce(np.add, loads.T) / loads.shape[1] if loads.shape[1] else np.full(len(loads), np.nan)


def _lag_loads(index, times, loads, tau, peak2, mean, last, off, steps: _Steps) -> tuple[np.ndarray, np.ndarray]:
    """Loads lagged per key by its `tau` (first-order filter in event time), updating the state arrays in place.

    A key without state (NaN `last`) starts at its first row's loads. The lagged
    loads of a row are NaN, and the row is not scored, when it is older than the
    key's newest (a late message: a reading and a lag of different moments) or
    when the breaker is open or was open less than SETTLE_TAUS time constants
    ago (`off`: its last open row; a trip cools it in a way the lag does not follow),
    and likewise after a key's first row.
    """
    peak = _row_max(loads)
    row_peak2 = peak * peak
    row_mean = _row_mean(loads)
    is_off = ~(peak > 0)
    out_peak2, out_mean = np.full(len(index), np.nan), np.full(len(index), np.nan)
    for rows in steps:
        k = index[rows]
        t = times[rows]
        fresh = np.isnan(last[k])
        gap = np.clip(np.where(fresh, 0.0, t - last[k]), 0.0, MAX_GAP)
        keep = np.exp(-gap / tau[k])
        p = np.where(fresh, row_peak2[rows], keep * peak2[k] + (1.0 - keep) * row_peak2[rows])
        m = np.where(fresh, row_mean[rows], keep * mean[k] + (1.0 - keep) * row_mean[rows])
        stale = ~fresh & (t < last[k])
        peak2[k], mean[k] = np.where(stale, peak2[k], p), np.where(stale, mean[k], m)
        last[k] = np.where(fresh, t, np.fmax(last[k], t))
        # A key's first row starts its lag from a guess (steady state): it settles as after an opening.
        off[k] = np.where((is_off[rows] & ~stale) | fresh, t, off[k])
        settling = (t - off[k]) < SETTLE_TAUS * tau[k]  # NaN off (never open): False
        unscored = stale | settling
        out_peak2[rows] = np.where(unscored, np.nan, p)
        out_mean[rows] = np.where(unscored, np.nan, m)
    return out_peak2, out_mean


def _smooth(index, departure, smoothed, alpha: float, steps: _Steps) -> np.ndarray:
    """The EWMA of the departure after each row, per key, updating `smoothed` in place; NaN rows leave it be."""
    out = np.full(len(index), np.nan)
    keep = 1.0 - alpha
    for rows in steps:
        k = index[rows]
        x = departure[rows]
        value = np.where(np.isnan(x), smoothed[k], keep * smoothed[k] + alpha * x)
        smoothed[k] = value
        out[rows] = np.where(np.isnan(x), np.nan, value)
    return out


def _design(times: np.ndarray, peak2: np.ndarray, mean: np.ndarray) -> np.ndarray:
    phase = 2 * np.pi * times / DAY_SECONDS
    return np.column_stack([np.ones(len(times)), peak2, mean, np.sin(phase), np.cos(phase)])


def _balance(loads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Phase imbalance per row (NaN without load) and mean load."""
    mean = _row_mean(loads)
    spread = _row_max(loads) - _row_min(loads)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(mean > 0, spread / mean, np.nan), mean


def _spread(values: np.ndarray, floor: float) -> float:
    """How far above its median a value of the history went on one row in a hundred (at least `floor`)."""
    return max(float(np.quantile(values - np.median(values), SPREAD_QUANTILE)), floor)


def _usable(rows: Rows) -> np.ndarray:
    return np.isfinite(rows.response) & np.isfinite(_row_mean(rows.loads)) & np.isfinite(rows.times)


def fit(rows: Rows) -> tuple[Detector, dict]:
    """Fit every key of the history (rows in stream order), then choose the threshold by scoring it."""
    names = sorted(set(rows.keys))
    position = {name: i for i, name in enumerate(names)}
    index = np.fromiter((position[k] for k in rows.keys), dtype=np.int64, count=len(rows))
    usable = _usable(rows)
    steps = _Steps(index, np.flatnonzero(usable))
    lagged = {}
    for tau in TAU_CHOICES:
        state = [np.full(len(names), np.nan) for _ in range(4)]
        lagged[tau] = _lag_loads(index, rows.times, rows.loads, np.full(len(names), tau), *state, steps)
    # Late rows, open breakers and those settling after are not scored; with the longest lag (the
    # longest settling) the rows that are scored with every lag are fitted on.
    steady = np.isfinite(lagged[max(TAU_CHOICES)][0])
    on = usable & steady
    baselines = {}
    for i, name in enumerate(names):
        mine = np.flatnonzero(on & (index == i))
        if len(mine) >= MIN_ROWS:
            baselines[name] = _fit_key(rows, mine, {tau: (p[mine], m[mine]) for tau, (p, m) in lagged.items()})
    provisional = Detector(baselines, threshold=1.0)
    fitted = score(provisional, rows, {}).score
    finite = fitted[np.isfinite(fitted)]
    highest = float(finite.max()) if len(finite) else 0.0
    threshold = min(MAX_THRESHOLD, highest + MARGIN)
    sigmas = [b.sigma for b in baselines.values()]
    metrics = {"rows": len(rows), "keys": len(names), "keys_fitted": len(baselines), "rows_scored": int(len(finite)),
               "residual_sigma_median": float(np.median(sigmas)) if sigmas else None,
               "score_p99": float(np.quantile(finite, 0.99)) if len(finite) else None,
               "score_max": highest, "threshold": threshold}
    return Detector(baselines, threshold), metrics


def _fit_key(rows: Rows, mine: np.ndarray, lagged: Mapping[float, tuple[np.ndarray, np.ndarray]]) -> Baseline:
    times, response, loads = rows.times[mine], rows.response[mine], rows.loads[mine]
    best = None
    for tau, (peak2, mean) in lagged.items():
        design = _design(times, peak2, mean)
        coef = np.linalg.solve(design.T @ design + RIDGE * np.eye(COEFFICIENTS), design.T @ response)
        sigma = _spread(response - design @ coef, SIGMA_FLOOR)
        if best is None or sigma < best[0]:
            best = (sigma, tau, coef)
    sigma, tau, coef = best
    balance, mean_load = _balance(loads)
    load_median = float(np.median(mean_load))
    busy = mean_load >= BUSY_SHARE * load_median
    if loads.shape[1] < 2 or busy.sum() < MIN_ROWS:
        centre, spread = 0.0, float("inf")
    else:
        centre, spread = float(np.median(balance[busy])), _spread(balance[busy], 1e-3)
    return Baseline(tuple(float(c) for c in coef), sigma, tau, centre, spread, load_median)


def _table(detector: Detector, names: list[str]) -> tuple[np.ndarray, ...]:
    """The baselines as columns, cached on the (immutable) detector."""
    cached = detector.__dict__.get("_table")
    if cached is None:
        chosen = [detector.baselines[name] for name in names]
        cached = (np.array([b.coef for b in chosen], dtype=float).reshape(-1, COEFFICIENTS),
                  *(np.array([getattr(b, f) for b in chosen], dtype=float)
                    for f in ("sigma", "tau", "balance", "balance_sigma", "load_median")))
        object.__setattr__(detector, "_table", cached)
    return cached


def score(detector: Detector, rows: Rows, states: Mapping[str, KeyState]) -> Scores:
    """Score the rows in order, each key continuing from its state in `states` (a key not in it starts afresh)."""
    names = list(detector.baselines)
    position = {name: i for i, name in enumerate(names)}
    index = np.fromiter(map(position.get, rows.keys, itertools.repeat(-1)), dtype=np.int64, count=len(rows))
    live = np.flatnonzero((index >= 0) & _usable(rows))
    coef, sigma, tau, centre, spread, load_median = _table(detector, names)
    before = [states.get(name) for name in names]
    peak2, mean, last, off, smoothed = (
        np.array([np.nan if s is None else getattr(s, f) for s in before], dtype=float)
        for f in ("peak2", "mean", "time", "off", "smoothed"))
    smoothed = np.nan_to_num(smoothed, nan=0.0)
    steps = _Steps(index, live)
    lag_peak2, lag_mean = _lag_loads(index, rows.times, rows.loads, tau, peak2, mean, last, off, steps)
    safe = np.where(index >= 0, index, 0)
    expected = np.einsum("ij,ij->i", _design(rows.times, lag_peak2, lag_mean), coef[safe])
    balance, mean_load = _balance(rows.loads)
    with np.errstate(invalid="ignore"):
        z_response = np.maximum((rows.response - expected) / sigma[safe], 0.0)
        z_balance = np.where(mean_load >= BUSY_SHARE * load_median[safe],
                             np.maximum((balance - centre[safe]) / spread[safe], 0.0), 0.0)
    departure = np.minimum(np.hypot(z_response, np.nan_to_num(z_balance, nan=0.0)), detector.cap)
    departure[np.isnan(expected)] = np.nan  # late, open or settling
    ewma = _smooth(index, departure, smoothed, detector.alpha, steps)
    result = 1.0 - np.exp(-ewma / detector.scale)
    alarm = np.nan_to_num(result, nan=0.0) > detector.threshold
    touched = np.unique(index[live])
    return Scores(result, alarm, {names[i]: KeyState(float(peak2[i]), float(mean[i]), float(last[i]),
                                                     float(off[i]), float(smoothed[i])) for i in touched})
