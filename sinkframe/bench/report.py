"""The benchmark's result document as a table people can read."""
from __future__ import annotations

from typing import Callable


def _n(value, suffix: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}{suffix}"
    return f"{int(value):,}{suffix}"


def tables_line(tables: dict, data_table: str) -> str:
    data = tables[data_table]
    return (f"tables: {tables['mode']}; {data_table}: {len(data['indexes'])} index(es)"
            f"{', hypertable' if data['hypertable'] else ''}; sink batch.max_rows {_n(tables['batch_max_rows'])}")


def render(results: dict) -> str:
    m = results["machine"]
    pg = m["postgresql"]
    lines = [
        f"machine: {m['cpu_count']} x {m['cpu_model']}, {m['memory_gib']} GiB; Python {m['python']}, "
        f"psycopg {m['psycopg']} ({m['psycopg_impl']}), confluent-kafka {m['confluent_kafka']} / "
        f"librdkafka {m['librdkafka']}, PostgreSQL {pg['server_version'].split()[0]}, {m['broker']}; "
        f"load average {m.get('load_average_at_start')} -> {m.get('load_average_at_end')}",
        tables_line(results["tables"], results["ceiling"]["table"]),
    ]
    if results.get("sink_settings_from_environment"):
        lines.append(f"sink settings from the environment: {results['sink_settings_from_environment']}")
    if results["options"].get("quick"):
        lines.append("QUICK RUN: tiny N, for correctness only; the figures mean nothing")
    data = results["tables"][results["ceiling"]["table"]]
    lines += ["", f"PostgreSQL {pg['server_version'].split()[0]} ({'hypertables' if data['hypertable'] else 'plain tables'}):"]
    lines += section_lines(results)
    tsdb = results.get("timescaledb")
    if tsdb is not None:
        lines += ["", f"TimescaleDB (hypertables): {tsdb.get('server') or 'skipped: ' + tsdb['skipped']}"]
        if "skipped" not in tsdb:
            lines.append(tables_line(tsdb["tables"], tsdb["ceiling"]["table"]))
            lines += section_lines(tsdb)
    return "\n".join(lines)


def section_lines(results: dict) -> list[str]:
    """The measured sections of one database: the ceilings, end to end, Quix, naive, latency, workers,
    the profile and the targets."""
    lines = [f"{'section':<34}{'figure':>16}  notes", "-" * 90]

    def row(name: str, figure: str, note: str = "") -> None:
        lines.append(f"{name:<34}{figure:>16}  {note}")

    c, bare = results["ceiling"], results["ceiling_index_free"]
    row("ceiling (binary COPY)", _n(c["rows_per_second"], " rows/s"),
        f"into {c['table']} as the schema makes it; {_n(c['rows_per_transaction'])} rows/txn (the sink's "
        f"batch.max_rows); best of {c['rows_per_second_all_runs']}")
    row("  secondary: index-free table", _n(bare["rows_per_second"], " rows/s"),
        f"NOT what users run: a table made without indexes, {_n(bare['rows_per_transaction'])} rows/txn "
        f"(the old ceiling); best of {bare['rows_per_second_all_runs']}")
    e = results["end_to_end"]
    row("sinkframe end to end", _n(e["msgs_per_second"], " msgs/s"),
        f"{_n(e['messages'])} msgs in {e['seconds_from_assignment']} s after assignment "
        f"(+{e['assignment_wait_seconds']} s Tansu assignment wait)")
    row("  from start / first-to-last", f"{_n(e['msgs_per_second_from_start'])}",
        f"first-to-last commit: {_n(e['msgs_per_second_first_to_last_commit'])} msgs/s")
    row("  ratio to ceiling", f"{e['msgs_per_second'] / c['rows_per_second']:.1%}",
        f"to the index-free line: {e['msgs_per_second'] / bare['rows_per_second']:.1%}")
    row("  peak RSS", _n(e["peak_rss_mb"], " MB"), f"rows counted {_n(e['rows_counted'])}, "
        f"distinct sources {_n(e['rows_with_distinct_source'])}")
    fallbacks = e.get("fast_path_fallbacks")
    row("  fast-path fallbacks", "not read" if fallbacks is None else _n(sum(fallbacks.values())),
        "records the mapper sent per record, by reason: "
        + (", ".join(f"{reason} {_n(n)}" for reason, n in sorted(fallbacks.items())) if fallbacks else "none"))
    cpu = e["cpu_seconds"]
    row("  CPU seconds", _n(cpu["sink"]), f"sink threads {cpu['sink_threads']}; postgres {cpu['postgres']}; "
        f"broker {cpu['broker']}; wall {cpu['wall_seconds_from_assignment']}")
    q = results["quix"]
    if "skipped" in q:
        row("Quix Streams PostgreSQLSink", "skipped", q["skipped"])
    else:
        v = q["versions"]
        row("Quix Streams PostgreSQLSink", _n(q["msgs_per_second"], " msgs/s"),
            f"{_n(q['messages'])} msgs in {q['seconds_from_first_message']} s from its first message "
            f"(+{q['startup_seconds']} s start-up); quixstreams {v['quixstreams']}, librdkafka {v['librdkafka']}")
        row("  from start / first-to-last", f"{_n(q['msgs_per_second_from_start'])}",
            f"first-to-last commit: {_n(q['msgs_per_second_first_to_last_commit'])} msgs/s; {q['writes']} writes; "
            f"rows counted {_n(q['rows_counted'])}; peak RSS {_n(q['peak_rss_mb'])} MB; CPU {q['cpu_seconds']}")
        row("  sinkframe / Quix", f"{e['msgs_per_second'] / q['msgs_per_second']:.1f}x", "")
    n = results["naive"]
    row("naive baseline", _n(n["msgs_per_second"], " msgs/s"), f"{_n(n['messages'])} msgs")
    row("  sinkframe / naive", f"{e['msgs_per_second'] / n['msgs_per_second']:.1f}x", "")
    lat = results["latency"]
    vis, txn = lat["visible"], lat["transaction_start"]
    row("latency p50 / p99 (visible)", f"{_n(vis.get('p50_ms'))} / {_n(vis.get('p99_ms'))} ms",
        f"offered {_n(lat['offered_rate'])}/s, achieved {_n(lat['achieved_rate'])}/s for {lat['seconds']} s; "
        f"max {_n(vis.get('max_ms'))} ms")
    row("  lower bound (txn start)", f"{_n(txn.get('p50_ms'))} / {_n(txn.get('p99_ms'))} ms", "")
    w = results["workers"]
    if "skipped" in w:
        row("workers 1 vs 2", "skipped", w["skipped"])
    else:
        row("workers 1 vs 2", f"{w['speedup']}x",
            f"{_n(w['1']['msgs_per_second'])} -> {_n(w['2']['msgs_per_second'])} msgs/s ({w['2']['mode']}, "
            f"{w['2']['partitions']} partitions); first-to-last {_n(w['speedup_first_to_last_commit'])}x")
        row("  --workers 2 / ceiling", f"{w['2']['msgs_per_second'] / c['rows_per_second']:.1%}", "")
    scoring_rows(results["scoring"], row)
    for thread, summary in results.get("profile", {}).items():
        stages = summary.get("stages_percent", {})
        lines += ["", f"profile of the sink's {thread} thread (py-spy --idle, % of its wall time):"]
        lines += [f"  {pct:5.1f}%  {stage}" for stage, pct in stages.items()]
    lines += ["", "targets:"]
    for t in results["targets"]:
        verdict = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
        note = f"; {t['note']}" if t.get("note") else ""
        lines.append(f"  [{verdict}] {t['label']}: {_n(t['measured'])} (goal {t['goal']}){note}")
    return lines


def _percent(value) -> str:
    return "-" if value is None else f"{value:.1%}"


def scoring_rows(s: dict, row: Callable[..., None]) -> None:
    """The scoring section, through section_lines' `row`."""
    if "skipped" in s:
        row("scoring on (contact_health)", "skipped", s["skipped"])
        return
    fit, off = s["fit"], s["scoring_off"]
    raised = f" (raised from {_n(s['messages_requested'])}: the fit needs hours per device)" \
        if s["messages"] != s["messages_requested"] else ""
    row("scoring on (contact_health)", _n(s["msgs_per_second"], " msgs/s"),
        f"{_n(s['messages'])} msgs{raised}, a device's rows {s['row_interval_seconds']} s apart; "
        f"model version {fit['version']} fitted on {_n(fit['rows'])} rows, {fit['keys_fitted']}/{fit['keys']} keys, "
        f"in {fit['seconds']} s")
    row("  / scoring off, same msgs", _percent(s["ratio_to_scoring_off"]),
        f"scoring off: {_n(off['msgs_per_second'])} msgs/s; / end to end above: {_percent(s['ratio_to_end_to_end'])}")
    verdict = "as the detector's warm-up predicts" if s["scored_as_expected"] else \
        f"EXPECTED {_n(s['rows_scored_expected'])}"
    row("  rows scored", _n(s["rows_scored"]),
        f"of {_n(s['rows_written'])} written; {_n(s['rows_not_scored'])} not scored (each key's first two time "
        f"constants), {verdict}; {_n(s['score_rows'])} rows in sinkframe_scores (key, minute)")
    row("  extra sink CPU", _n(s["sink_cpu_seconds_extra"], " s"),
        f"{_n(s['sink_cpu_us_extra_per_row_scored'])} us per row scored (sink CPU on minus off; noisy)")
