"""merge_keyed_rows: several messages of one device in a batch -> at most one row per key per upsert."""
from __future__ import annotations

from sinkframe.mapping import Column, Target, Upsert
from sinkframe.pipeline.write.writer import merge_keyed_rows

TARGET = Target("t", (Column("id", "text"), Column("firmware", "text"), Column("location", "text"),
                      Column("first_seen", "integer"), Column("last_seen", "integer")),
                Upsert(key=("id",), version_column="last_seen", min_columns=("first_seen",)))


def test_single_rows_pass_through():
    rows = [("a", "1.0", "x", 5, 5), ("b", "2.0", None, 6, 6)]
    assert merge_keyed_rows(TARGET, rows) == ([], rows)


def test_newest_row_wins_and_first_seen_is_the_smallest():
    rows = [("a", "1.0", "hall", 1, 1), ("a", "3.0", "lab", 3, 3), ("a", "2.0", "yard", 2, 2)]
    fillers, newest = merge_keyed_rows(TARGET, rows)
    assert newest == [("a", "3.0", "lab", 1, 3)]
    assert fillers == []  # the newest row has every column: nothing to fill


def test_older_rows_fill_only_what_the_newest_lacks():
    rows = [("a", "1.0", "hall", 1, 1), ("a", None, "lab", 3, 3), ("a", "2.0", None, 2, 2)]
    fillers, newest = merge_keyed_rows(TARGET, rows)
    assert newest == [("a", None, "lab", 1, 3)]
    # newest non-null value of each column among the older rows, under their newest version
    assert fillers == [("a", "2.0", "hall", 1, 2)]
