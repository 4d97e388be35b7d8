"""Alert rules evaluated in the writer's transaction: what makes each transition exactly once.

`AlertRecorder` is a `TransactionPart` of the connector's BatchWriter: after a
batch's rows are written, and before its offsets advance, it loads the stored
states of the keys in the batch, runs the rules over the rows that were written
(not over records the database refused), and saves the transitions and changed
states with the same cursor. The alerts topic is sent to in `after_offsets`,
once the offsets' compare-and-set has succeeded. A retried or re-read batch starts again from the
states of the last commit, so a transition can neither be lost nor repeated.
"""
from __future__ import annotations

import time
from typing import Mapping, Sequence

from sinkframe.alerts import store
from sinkframe.alerts.engine import evaluate, keys_of
from sinkframe.alerts.publish import AlertPublisher
from sinkframe.alerts.rules import AlertRule
from sinkframe.pipeline.batch import Batch
from sinkframe.pipeline.route import split_role
from sinkframe.pipeline.write.writer import ResolvedTarget, WriteOutcome, committed_records


# How often a batch also prunes what is older than the retention (more often while there is a backlog).
PRUNE_EVERY_SECONDS = 60.0


class AlertRecorder:
    def __init__(self, connector: str, rules: Sequence[AlertRule], targets: Mapping[str, ResolvedTarget],
                 *, publisher: AlertPublisher | None = None, retention: str | None = None):
        self.connector = connector
        self.retention = retention  # an interval ("90 days"); None: keep every state and transition
        self._prune_transitions = False  # plain PostgreSQL: no retention policy deletes them
        self._pruned_at = float("-inf")
        self.rules = tuple(rules)
        self.by_role: dict[str, list[AlertRule]] = {}
        for rule in self.rules:
            self.by_role.setdefault(rule.role, []).append(rule)
        self.column_names = {role: targets[role].target.column_names for role in self.by_role}
        self.publisher = publisher

    def ensure_tables(self, conn) -> None:
        store.create_alert_tables(conn)
        self._prune_transitions = store.apply_retention(conn, self.retention)

    def firing_now(self, conn) -> dict[str, int]:
        """alert -> keys firing, as stored, its tenants' included (what the metrics start from)."""
        counts: dict[str, int] = {}
        for state in store.current_states(conn, self.connector, firing_only=True):
            counts[state.alert] = counts.get(state.alert, 0) + 1
        return counts

    def write(self, cur, batch: Batch, outcome: WriteOutcome) -> None:
        self._prune(cur)
        written = committed_records(batch, outcome)
        partial = bool(outcome.rejected or outcome.stopped_at)
        for role_key, columns in batch.roles.items():
            tenant, role = split_role(role_key)
            rules = self.by_role.get(role)
            if not rules:
                continue
            # A tenant's states and transitions are its own: keyed as connector/tenant.
            connector = self.connector if tenant is None else f"{self.connector}/{tenant}"
            if partial:
                keep = [k for k, i in enumerate(columns.record_index) if written(i)]
                columns = columns.take(keep) if keep else None
            if columns is None or not len(columns):
                continue
            names = self.column_names[role]
            keys = keys_of(rules, role, columns, names)
            if not keys:
                continue
            states = store.load_states(cur, connector, [r.name for r in rules], keys)
            transitions, changed = evaluate(rules, role, columns, names, batch.origin, batch.topic, states)
            store.save(cur, connector, transitions, states, changed)
            outcome.transitions.extend(transitions)

    def _prune(self, cur) -> None:
        """Now and then, in the batch's transaction: ok states and (plain PostgreSQL) transitions past the
        retention. Before the states are loaded: a pruned state is an ok one, as if never stored."""
        if self.retention is None or time.monotonic() - self._pruned_at < PRUNE_EVERY_SECONDS:
            return
        deleted = store.prune(cur, self.retention, transitions=self._prune_transitions)
        # A full delete means more is waiting: the next batch prunes again.
        self._pruned_at = float("-inf") if deleted >= store.PRUNE_LIMIT else time.monotonic()

    def after_offsets(self, outcome: WriteOutcome) -> None:
        """The transitions to the alerts topic: past the offsets' compare-and-set, before the commit.

        A fenced batch (another consumer advanced the offsets) never gets here, so a
        stale consumer publishes nothing; a crash between the flush and the commit
        publishes them again when the batch is re-read (at least once).
        """
        if outcome.transitions and self.publisher is not None:
            self.publisher.send(outcome.transitions)

    def close(self) -> None:
        if self.publisher is not None:
            self.publisher.close()
