"""The benchmark's result document as a table people can read."""
from __future__ import annotations


def _n(value, suffix: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}{suffix}"
    return f"{int(value):,}{suffix}"


def render(results: dict) -> str:
    m = results["machine"]
    pg = m["postgresql"]
    lines = [
        f"machine: {m['cpu_count']} x {m['cpu_model']}, {m['memory_gib']} GiB; Python {m['python']}, "
        f"psycopg {m['psycopg']} ({m['psycopg_impl']}), confluent-kafka {m['confluent_kafka']} / "
        f"librdkafka {m['librdkafka']}, PostgreSQL {pg['server_version'].split()[0]}, {m['broker']}; "
        f"load average {m.get('load_average_at_start')} -> {m.get('load_average_at_end')}",
    ]
    if results.get("sink_settings_from_environment"):
        lines.append(f"sink settings from the environment: {results['sink_settings_from_environment']}")
    if results["options"].get("quick"):
        lines.append("QUICK RUN: tiny N, for correctness only; the figures mean nothing")
    lines += ["", f"{'section':<34}{'figure':>16}  notes", "-" * 90]

    def row(name: str, figure: str, note: str = "") -> None:
        lines.append(f"{name:<34}{figure:>16}  {note}")

    c = results["ceiling"]
    row("ceiling (binary COPY)", _n(c["rows_per_second"], " rows/s"),
        f"best of {c['rows_per_second_all_runs']}; {_n(c['rows'])} rows, {_n(c['rows_per_transaction'])}/txn")
    e = results["end_to_end"]
    row("sinkframe end to end", _n(e["msgs_per_second"], " msgs/s"),
        f"{_n(e['messages'])} msgs in {e['seconds_from_assignment']} s after assignment "
        f"(+{e['assignment_wait_seconds']} s Tansu assignment wait)")
    row("  from start / first-to-last", f"{_n(e['msgs_per_second_from_start'])}",
        f"first-to-last commit: {_n(e['msgs_per_second_first_to_last_commit'])} msgs/s")
    row("  ratio to ceiling", f"{e['msgs_per_second'] / c['rows_per_second']:.1%}", "")
    row("  peak RSS", _n(e["peak_rss_mb"], " MB"), f"rows counted {_n(e['rows_counted'])}, "
        f"distinct sources {_n(e['rows_with_distinct_source'])}")
    cpu = e["cpu_seconds"]
    row("  CPU seconds", _n(cpu["sink"]), f"sink threads {cpu['sink_threads']}; postgres {cpu['postgres']}; "
        f"broker {cpu['broker']}; wall {cpu['wall_seconds_from_assignment']}")
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
            f"{w['2']['partitions']} partitions); first-to-last {w['speedup_first_to_last_commit']}x")
    if "profile" in results:
        stages = results["profile"].get("stages_percent", {})
        lines += ["", "profile of the sink's connector thread (py-spy --idle, % of its wall time):"]
        lines += [f"  {pct:5.1f}%  {stage}" for stage, pct in stages.items()]
    lines += ["", "targets:"]
    for t in results["targets"]:
        lines.append(f"  [{'met' if t['met'] else 'MISSED'}] {t['target']} {t['goal']}: {t['measured']}")
    return "\n".join(lines)
