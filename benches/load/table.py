#!/usr/bin/env python3
"""Markdown tables from benches/load/run.sh results: OUT/<server>/{load,perfdhcp}.jsonl."""
import glob, json, os, statistics, sys

out = sys.argv[1]
def rows(path):
    if not os.path.exists(path):
        return []
    return [json.loads(l) for l in open(path) if l.strip().startswith("{")]
def med(rs, k):
    v = [r[k] for r in rs if r.get(k) is not None]
    return statistics.median(v) if v else float("nan")

print("| server | sustained DORA/s (< 1 % drop) | srv CPU % there | srv CPU µs/DORA there | DORA p99 ms there |"
      " DORA p50 / p99 ms @ 1,000/s | srv CPU µs/DORA @ 1,000/s | fixed rates: DORA/s, drop %, srv CPU µs/DORA |")
print("|---|---|---|---|---|---|---|---|")
for d in sorted(glob.glob(f"{out}/*/load.jsonl")):
    server = os.path.basename(os.path.dirname(d))
    rs = rows(d)
    sus = [r for r in rs if r["label"].endswith("/sustained")]
    lat = [r for r in rs if r["label"].endswith("/lat")]
    fixed = {}
    for r in rs:
        if r["label"].endswith("/fixed"):
            fixed.setdefault(r["rate"], []).append(r)
    s = sus[-1] if sus else None
    fx = "; ".join(f"{int(rate)}/s: {med(v, 'dora_per_s'):.0f}, {med(v, 'drop_pct'):.2f} %, {med(v, 'srv_cpu_us_per_dora'):.1f} µs"
                   for rate, v in sorted(fixed.items()))
    print(f"| {server} | {s['rate'] if s else '-'} | {s['median']['srv_cpu_pct'] if s else '-'} |"
          f" {s['median']['srv_cpu_us_per_dora'] if s else '-'} | {s['median']['dora_p99_ms'] if s else '-'} |"
          f" {med(lat, 'dora_p50_ms'):.3f} / {med(lat, 'dora_p99_ms'):.3f} | {med(lat, 'srv_cpu_us_per_dora'):.1f} | {fx} |")

print()
print("| server | rate | generator | DORA/s | drop % | DORA p50 / p99 ms | server CPU % |")
print("|---|---|---|---|---|---|---|")
for d in sorted(glob.glob(f"{out}/*/load.jsonl")):
    server = os.path.basename(os.path.dirname(d))
    ours = {r["rate"]: r for r in rows(d) if r["label"].endswith("/cmp")}
    perf = {r["rate"]: r for r in rows(os.path.join(os.path.dirname(d), "perfdhcp.jsonl"))}
    for rate in sorted(set(ours) | set(perf)):
        if rate in perf:
            p = perf[rate]
            print(f"| {server} | {int(rate)} | perfdhcp (legs summed) | {p['dora_per_s']} | {p['drop_pct']} |"
                  f" {p['dora_p50_ms']} / {p['dora_p99_ms']} | {p['srv_cpu_pct']} |")
        if rate in ours:
            o = ours[rate]
            print(f"| {server} | {int(rate)} | dhcp-load (paired) | {o['dora_per_s']} | {o['drop_pct']} |"
                  f" {o['dora_p50_ms']} / {o['dora_p99_ms']} | {o['srv_cpu_pct']} |")
