"""Models scoring the stream inside the writer's transaction: what makes each score exactly once.

`ModelScorer` is a `TransactionPart` of the connector's BatchWriter. After a
batch's rows are written and before its offsets advance, it

1. asks for the newest version of each model (one indexed query per batch) and,
   when it changed, loads it (parameters as data only, `params`) and logs it;
2. loads the state of the batch's keys (lagged loads, smoothing), scores the
   rows the database took (not those it refused), vectorised;
3. saves the keys' new states and upserts the per-minute scores, on the same
   cursor.

A batch retried, re-read after a crash or by a partition's new owner starts
from the states of the last commit, so its scores are the same ones, once.

`ScoredAlerts` hands the connector's alert recorder the batch with each model's
score as one more column of its role, so `when: contact_health > 0.8` is
evaluated in the same transaction, after the scores.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Mapping, Sequence

import numpy as np

from sinkframe.errors import ModelError
from sinkframe.mapping.batch import RoleColumns
from sinkframe.models import store
from sinkframe.models.detector import Detector, Rows, Scores, score
from sinkframe.models.params import detector_from_json
from sinkframe.models.spec import ModelSpec
from sinkframe.pipeline.batch import Batch
from sinkframe.pipeline.route import split_role
from sinkframe.pipeline.write.writer import ResolvedTarget, WriteOutcome, committed_records

log = logging.getLogger(__name__)

BUCKET_SECONDS = 60.0


@dataclass(frozen=True)
class _Loaded:
    version: int
    detector: Detector


class ModelScorer:
    def __init__(self, connector: str, models: Sequence[ModelSpec], targets: Mapping[str, ResolvedTarget], *,
                 method: str = "copy"):
        self.connector = connector
        self.copy = method == "copy"  # the writer's method: a server without COPY gets the scores as arrays
        self.copy_stages = (store.SCORES_STAGE,) if self.copy else ()  # created once per connection
        self.models = tuple(models)
        self.by_role: dict[str, list[ModelSpec]] = {}
        for model in self.models:
            self.by_role.setdefault(model.role, []).append(model)
        self.positions = {role: {name: i for i, name in enumerate(targets[role].target.column_names)}
                          for role in self.by_role}
        self.loaded: dict[str, _Loaded] = {}
        self.refused: set[tuple[str, int]] = set()  # (model, version) whose parameters were refused
        self.rows_scored = 0
        self._scored: tuple[Batch, Batch] | None = None  # (batch, the batch with score columns)

    def ensure_tables(self, conn) -> None:
        store.create_model_tables(conn)

    def after_offsets(self, outcome: WriteOutcome) -> None:
        """Scores have no side effect outside the transaction."""

    def close(self) -> None:
        pass

    def scored(self, batch: Batch) -> Batch:
        """`batch` with each model's score column appended to its role (None for rows not scored)."""
        if self._scored is not None and self._scored[0] is batch:
            return self._scored[1]
        return batch

    def write(self, cur, batch: Batch, outcome: WriteOutcome) -> None:
        self._refresh(cur)
        written = committed_records(batch, outcome)
        partial = bool(outcome.rejected or outcome.stopped_at)
        roles = dict(batch.roles)
        for role_key, columns in batch.roles.items():
            tenant, role = split_role(role_key)
            models = self.by_role.get(role)
            if not models or not len(columns):
                continue
            connector = self.connector if tenant is None else f"{self.connector}/{tenant}"
            keep = np.array([written(i) for i in columns.record_index]) if partial else None
            extra = [self._score_role(cur, connector, model, columns, keep) for model in models]
            roles[role_key] = RoleColumns(columns.columns + extra, columns.record_index)
        view = copy.copy(batch)
        view.roles = roles
        self._scored = (batch, view)

    def _score_role(self, cur, connector: str, model: ModelSpec, columns: RoleColumns,
                    keep: np.ndarray | None) -> list:
        """Score one model over one role's rows; the score column (None where not scored)."""
        loaded = self.loaded.get(model.name)
        if loaded is None:  # not fitted yet (or only refused versions)
            return [None] * len(columns)
        rows = self._rows(model, columns)
        if keep is not None:  # rows the database refused are no readings
            rows.response = np.where(keep, rows.response, np.nan)
        keys = sorted(set(rows.keys) & set(loaded.detector.baselines))
        states = store.load_states(cur, connector, model.name, loaded.version, keys)
        result = score(loaded.detector, rows, states)
        store.save_states(cur, connector, model.name, loaded.version, result.states)
        self._save_scores(cur, connector, model, loaded.version, rows, result)
        self.rows_scored += int(np.isfinite(result.score).sum())
        return [None if value != value else value for value in result.score.tolist()]

    def _rows(self, model: ModelSpec, columns: RoleColumns) -> Rows:
        position = self.positions[model.role]
        keys = columns.columns[position[model.key]]
        if keys and type(keys[0]) is not str:
            keys = [None if k is None else str(k) for k in keys]
        times = columns.columns[position[model.time_column]]
        try:
            epoch = np.fromiter(map(datetime.timestamp, times), dtype=float, count=len(times))
        except TypeError:  # a NULL time among them: that row is not scored
            epoch = np.array([np.nan if t is None else t.timestamp() for t in times], dtype=float)
        features = [np.array(columns.columns[position[f]], dtype=float) for f in model.features]
        return Rows(keys, epoch, features[0], np.column_stack(features[1:]))

    def _save_scores(self, cur, connector: str, model: ModelSpec, version: int, rows: Rows, result: Scores) -> None:
        """Per (key, minute): the highest score, any alarm, the rows scored."""
        scored = np.flatnonzero(np.isfinite(result.score))
        if not len(scored):
            return
        keys = np.asarray(rows.keys, dtype=object)[scored]
        buckets = np.floor(rows.times[scored] / BUCKET_SECONDS) * BUCKET_SECONDS
        order = np.lexsort((buckets, keys))
        keys, buckets = keys[order], buckets[order]
        values, alarms = result.score[scored][order], result.alarm[scored][order]
        starts = np.flatnonzero(np.r_[True, (keys[1:] != keys[:-1]) | (buckets[1:] != buckets[:-1])])
        store.upsert_scores(cur, connector, model.name, version, keys[starts].tolist(), buckets[starts].tolist(),
                            np.maximum.reduceat(values, starts).tolist(),
                            np.logical_or.reduceat(alarms, starts).tolist(),
                            np.diff(np.r_[starts, len(keys)]).tolist(), copy=self.copy)

    def _refresh(self, cur) -> None:
        """Use each model's newest stored version that loads; log a switch, and a refused version once."""
        newest = store.latest_versions(cur, self.connector, [m.name for m in self.models])
        for name, version in newest.items():
            current = self.loaded.get(name)
            if (current is not None and current.version == version) or (name, version) in self.refused:
                continue
            chosen = self._load(cur, name, version)
            if chosen is None:  # refused: the newest older version that loads (the one in use, if any)
                for older in store.versions_before(cur, self.connector, name, version):
                    if current is not None and older == current.version:
                        break
                    chosen = self._load(cur, name, older)
                    if chosen is not None:
                        break
            if chosen is None:
                continue
            log.info("connector %s: model %s: scoring with version %d%s (%d keys, threshold %.3f)",
                     self.connector, name, chosen.version, f" (was {current.version})" if current else "",
                     len(chosen.detector.baselines), chosen.detector.threshold)
            self.loaded[name] = chosen

    def _load(self, cur, name: str, version: int) -> _Loaded | None:
        """The version's detector; None (logged once) when its parameters are refused."""
        if (name, version) in self.refused:
            return None
        parameters = store.version_parameters(cur, self.connector, name, version)
        try:
            return _Loaded(version, detector_from_json(parameters, model=f"{self.connector}/{name} version {version}"))
        except ModelError as err:
            self.refused.add((name, version))  # said once, not at every batch
            current = self.loaded.get(name)
            log.error("connector %s: %s; it is not used (in use: %s)", self.connector, err,
                      f"version {current.version}" if current else "the newest older version that loads, if any")
            return None


class ScoredAlerts:
    """The connector's alert recorder, run on the batch with the models' score columns."""

    def __init__(self, alerts, scorer: ModelScorer):
        self.alerts = alerts
        self.scorer = scorer
        self.rules = alerts.rules

    def ensure_tables(self, conn) -> None:
        self.alerts.ensure_tables(conn)

    def firing_now(self, conn) -> dict[str, int]:
        return self.alerts.firing_now(conn)

    def write(self, cur, batch: Batch, outcome: WriteOutcome) -> None:
        self.alerts.write(cur, self.scorer.scored(batch), outcome)

    def after_offsets(self, outcome: WriteOutcome) -> None:
        self.alerts.after_offsets(outcome)  # the alerts topic, once the offsets' compare-and-set held

    def close(self) -> None:
        self.alerts.close()
