#!/usr/bin/env python3
"""perfdhcp measurements against one running DHCPv4 server (called by run.sh).

    measure.py run   --label L --pid PID --out DIR [--cli-ns NS --cli-if IF --cli-cpu 0 ...]
    measure.py once  --label L --pid PID --out DIR --rate R --period S [--xt]
    measure.py table DIR

`run` finds the sustained rate and measures at it:
  1. search: PROBE-second probes doubling from --start (halving when that already fails),
     then bisection until the bounds are within --step percent;
  2. confirm: --repeats runs of --period seconds at the best probe rate; the rate holds when
     the MEDIAN run drops < --max-drop % and perfdhcp sent >= 97 % of what it was asked to;
     otherwise step down 10 % (at most 4 times);
  3. latency: --repeats short runs with `-x t` at --lat-rate and at the sustained rate
     (per-packet timestamps; long -x t runs slow perfdhcp down, so these stay short);
  4. common rates: --repeats x 10 s at each of --common (same load on every server).

Definitions:
  drop %    = 100 * (1 - ACKs received / DISCOVERs sent); replies later than 1 s are lost.
  DORA/s    = ACKs received / period.
  server CPU % = utime+stime of the server process (all threads) / wall time, 100 = one core,
              sampled from 0.5 s after perfdhcp starts to 0.5 s before its period ends.
  DORA p50/p99 = p50/p99 of DISCOVER->OFFER + p50/p99 of REQUEST->ACK (perfdhcp does not
              pair the legs of one client), median over the runs.
  other %   = busy time of the whole machine not spent in the server or perfdhcp (softirq,
              other jobs), 100 = one core: the noise indicator.
Every run first waits for a quiet machine (< --quiet % busy over 2 s, at most --quiet-wait s).
"""
import argparse
import csv
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

TICK = os.sysconf("SC_CLK_TCK")


def proc_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def machine_ticks():
    """(busy, idle) jiffies summed over all CPUs."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v[:8]) - idle, idle


def wait_quiet(pct, longest):
    started = time.monotonic()
    while True:
        b0, i0 = machine_ticks()
        time.sleep(2)
        b1, i1 = machine_ticks()
        busy = 100 * (b1 - b0) / max(1, (b1 - b0) + (i1 - i0))
        if busy < pct:
            return 0.0
        waited = time.monotonic() - started
        if waited >= longest:
            log(f"  machine still {busy:.0f}% busy after {waited:.0f} s: running anyway")
            return busy
        log(f"  waiting for a quiet machine ({busy:.0f}% busy)")
        time.sleep(8)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def percentile(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    k = (len(v) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def parse_perfdhcp(text):
    """Counters per leg ('DO', 'RA') and, with -x t, the per-packet delays in ms."""
    out = {"DO": {}, "RA": {}}
    delays = {"DO": [], "RA": []}
    legs = {"DISCOVER-OFFER": "DO", "REQUEST-ACK": "RA"}
    stats = stamps = None
    for line in text.splitlines():
        m = re.match(r"\*\*\*Statistics for: (\S+)\*\*\*", line)
        if m:
            stats, stamps = legs.get(m.group(1)), None
            continue
        m = re.match(r"\*\*\*Timestamps for packets: (\S+)\*\*\*", line)
        if m:
            stats, stamps = None, legs.get(m.group(1))
            continue
        if stamps:
            m = re.match(r"sent / received: ([\d.]+) / ([\d.]+)", line)
            if m:
                delays[stamps].append((float(m.group(2)) - float(m.group(1))) * 1000)
            continue
        if stats:
            m = re.match(r"(sent packets|received packets|drops|rejected leases|orphans): (\d+)", line)
            if m:
                out[stats][m.group(1).split()[0]] = int(m.group(2))
            m = re.match(r"avg delay: ([\d.]+) ms", line)
            if m:
                out[stats]["avg_ms"] = float(m.group(1))
    return out, delays


class Bench:
    def __init__(self, a):
        self.a = a
        self.dir = os.path.join(a.out, a.label)
        os.makedirs(os.path.join(self.dir, "raw"), exist_ok=True)
        self.csv = os.path.join(self.dir, "runs.csv")
        self.n = 0

    def perfdhcp(self, rate, period, xt):
        a = self.a
        cmd = ["ip", "netns", "exec", a.cli_ns]
        if a.cli_cpu:
            cmd += ["taskset", "-c", a.cli_cpu]
        cmd += ["perfdhcp", "-4", "-g", "single", "-l", a.cli_if, "-r", str(rate),
                "-R", str(a.clients), "-p", str(period), "-W", "1000000"]
        if xt:
            cmd += ["-x", "t"]
        return cmd

    def one(self, phase, rate, period, xt=False):
        """One perfdhcp run; appends a CSV row and returns it as a dict."""
        a = self.a
        noise_wait = wait_quiet(a.quiet, a.quiet_wait)
        self.n += 1
        raw = os.path.join(self.dir, "raw", f"{self.n:03d}-{phase}-r{rate}-p{period}.txt")
        cmd = self.perfdhcp(rate, period, xt)
        sample = {}

        def sampler(t0):
            # Steady state only: skip perfdhcp's start-up and its final wait for late replies.
            for key, at in (("start", 0.5), ("end", max(1.0, period - 0.5))):
                time.sleep(max(0.0, t0 + at - time.monotonic()))
                sample[key] = (time.monotonic(), proc_ticks(a.pid), machine_ticks())

        with open(raw, "w") as f:
            t0 = time.monotonic()
            proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
            th = threading.Thread(target=sampler, args=(t0,))
            th.start()
            _, _, usage = os.wait4(proc.pid, 0)
            proc.returncode = 0
            wall = time.monotonic() - t0
            th.join()
        (s0, c0, m0), (s1, c1, m1) = sample["start"], sample["end"]
        srv_cpu = 100 * (c1 - c0) / TICK / (s1 - s0)
        busy = 100 * (m1[0] - m0[0]) / max(1, (m1[0] - m0[0]) + (m1[1] - m0[1]))
        cli_cpu = 100 * (usage.ru_utime + usage.ru_stime) / wall
        with open(raw) as f:
            counters, delays = parse_perfdhcp(f.read())
        if xt:  # keep the raw file small once the timestamps are read
            with open(raw) as f:
                kept = [l for l in f if not l.startswith("sent / received:")]
            with open(raw, "w") as f:
                f.writelines(kept)
        sent = counters["DO"].get("sent", 0)
        acked = counters["RA"].get("received", 0)
        row = {
            "label": a.label, "phase": phase, "rate": rate, "period": period,
            "sent": sent, "acked": acked,
            "dora_per_s": round(acked / period, 1),
            "drop_pct": round(100 * (1 - acked / sent), 3) if sent else 100.0,
            "sent_ratio": round(sent / (rate * period), 3),
            "naks": counters["RA"].get("rejected", 0),
            "do_avg_ms": counters["DO"].get("avg_ms", float("nan")),
            "ra_avg_ms": counters["RA"].get("avg_ms", float("nan")),
            "do_p50_ms": round(percentile(delays["DO"], 50), 3),
            "do_p99_ms": round(percentile(delays["DO"], 99), 3),
            "ra_p50_ms": round(percentile(delays["RA"], 50), 3),
            "ra_p99_ms": round(percentile(delays["RA"], 99), 3),
            "srv_cpu_pct": round(srv_cpu, 1),
            "cli_cpu_pct": round(cli_cpu, 1),
            "other_cpu_pct": round(max(0.0, 2 * busy - srv_cpu - cli_cpu), 1),
            "busy_before_pct": round(noise_wait, 1),
            "srv_rss_kib": rss_kib(a.pid),
            "time": time.strftime("%H:%M:%S"),
        }
        row["dora_p50_ms"] = round(row["do_p50_ms"] + row["ra_p50_ms"], 3)
        row["dora_p99_ms"] = round(row["do_p99_ms"] + row["ra_p99_ms"], 3)
        new = not os.path.exists(self.csv)
        with open(self.csv, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)
        log(f"  {phase:8} rate={rate:>6} {period:>2}s: DORA/s={row['dora_per_s']:>8} "
            f"drop={row['drop_pct']:>7}% sent={row['sent_ratio']:.3f} srv_cpu={row['srv_cpu_pct']}% "
            f"cli_cpu={row['cli_cpu_pct']}% other={row['other_cpu_pct']}%"
            + (f" DORA p50/p99={row['dora_p50_ms']}/{row['dora_p99_ms']} ms" if xt else ""))
        return row

    def holds(self, row):
        return row["drop_pct"] < self.a.max_drop and row["sent_ratio"] >= 0.97

    def median(self, phase, rate, period, xt=False):
        rows = [self.one(phase, rate, period, xt) for _ in range(self.a.repeats)]
        keys = [k for k, v in rows[0].items() if isinstance(v, (int, float))]
        med = {k: statistics.median(r[k] for r in rows) for k in keys}
        med.update(label=self.a.label, phase=phase, rate=rate, period=period, runs=len(rows))
        return med

    def search(self):
        a = self.a
        lo = hi = 0
        limit = None
        rate = a.start
        while True:
            row = self.one("probe", rate, a.probe)
            if self.holds(row):
                lo = rate
                if hi:
                    break
                if rate * 2 > a.max_rate:
                    limit = f"search ceiling {a.max_rate}/s"
                    break
                rate *= 2
            else:
                hi, limit = rate, self.why(row)
                if lo:
                    break
                rate //= 2
                if rate < 25:
                    break
        while lo and hi and (hi - lo) * 100 > a.step * lo:
            rate = (lo + hi) // 2
            row = self.one("probe", rate, a.probe)
            if self.holds(row):
                lo = rate
            else:
                hi, limit = rate, self.why(row)
        return max(lo, 25), limit

    @staticmethod
    def why(row):
        if row["sent_ratio"] < 0.97:
            return f"perfdhcp could send only {row['sent_ratio'] * 100:.0f}% of {row['rate']}/s"
        return f"{row['drop_pct']}% drops at {row['rate']}/s"

    def run(self):
        a = self.a
        summary = {"label": a.label, "clients": a.clients}
        rate, limit = self.search()
        confirmed = None
        for _ in range(4):
            med = self.median("confirm", rate, a.period)
            if self.holds(med):
                confirmed = med
                break
            limit = self.why(med)
            rate = rate * 9 // 10
        summary["max"] = confirmed
        summary["limited_by"] = limit
        best = confirmed["rate"] if confirmed else rate
        summary["lat"] = self.median("lat", a.lat_rate, 5, xt=True)
        summary["latmax"] = self.median("latmax", best, 3, xt=True)
        summary["common"] = [self.median("common", r, 10) for r in a.common]
        with open(os.path.join(self.dir, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
        log(f"{a.label}: sustained {best}/s (next limit: {limit})")


def fmt(v, digits=0):
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    return f"{v:,.{digits}f}"


def table(out):
    rows = []
    for path in sorted(glob.glob(os.path.join(out, "*", "summary.json"))):
        with open(path) as f:
            rows.append(json.load(f))
    print("| server | sustained DORA/s (<1 % drop) | drop % | server CPU % | CPU µs/DORA | "
          "DORA p50 / p99 ms @ 1,000/s | DORA p50 / p99 ms @ sustained (3 s) | RSS | next limit |")
    print("|---|---|---|---|---|---|---|---|---|")
    for s in rows:
        m, lat, lm = s.get("max") or {}, s["lat"], s["latmax"]
        per = m["srv_cpu_pct"] * 10_000 / m["dora_per_s"] if m else None
        print(f"| {s['label']} | {fmt(m.get('dora_per_s'))} | {fmt(m.get('drop_pct'), 2)} | "
              f"{fmt(m.get('srv_cpu_pct'))} | {fmt(per)} | "
              f"{fmt(lat['dora_p50_ms'], 3)} / {fmt(lat['dora_p99_ms'], 3)} | "
              f"{fmt(lm['dora_p50_ms'], 3)} / {fmt(lm['dora_p99_ms'], 3)} | "
              f"{fmt(m.get('srv_rss_kib', 0) / 1024, 1)} MiB | {s.get('limited_by') or '-'} |")
    common = sorted({c["rate"] for s in rows for c in s.get("common", [])})
    for rate in common:
        print(f"\nSame offered load, {rate:,} DORA/s ({rows[0]['common'][0]['runs']} x 10 s, medians):\n")
        print("| server | DORA/s | drop % | server CPU % | CPU µs/DORA | other CPU % |")
        print("|---|---|---|---|---|---|")
        for s in rows:
            for c in s.get("common", []):
                if c["rate"] == rate:
                    per = c["srv_cpu_pct"] * 10_000 / c["dora_per_s"] if c["dora_per_s"] else None
                    print(f"| {s['label']} | {fmt(c['dora_per_s'])} | {fmt(c['drop_pct'], 2)} | "
                          f"{fmt(c['srv_cpu_pct'])} | {fmt(per)} | {fmt(c['other_cpu_pct'])} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=["run", "once", "table"])
    ap.add_argument("out_dir", nargs="?", help="results directory (table)")
    ap.add_argument("--label")
    ap.add_argument("--pid", type=int)
    ap.add_argument("--out")
    ap.add_argument("--cli-ns", default="vmdhcp-bench-cli")
    ap.add_argument("--cli-if", default="veth-cli")
    ap.add_argument("--cli-cpu", default="0", help="taskset list for perfdhcp ('' = unpinned)")
    ap.add_argument("--clients", type=int, default=10000)
    ap.add_argument("--start", type=int, default=1000)
    ap.add_argument("--max-rate", type=int, default=64000)
    ap.add_argument("--probe", type=int, default=10, help="probe length, s")
    ap.add_argument("--step", type=int, default=10, help="bisection resolution, %%")
    ap.add_argument("--period", type=int, default=30, help="confirm run length, s")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-drop", type=float, default=1.0)
    ap.add_argument("--lat-rate", type=int, default=1000)
    ap.add_argument("--common", type=lambda s: [int(x) for x in s.split()], default=[5000])
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--xt", action="store_true")
    ap.add_argument("--quiet", type=float, default=15)
    ap.add_argument("--quiet-wait", type=float, default=900)
    a = ap.parse_args()
    if a.mode == "table":
        table(a.out_dir or a.out)
        return
    bench = Bench(a)
    if a.mode == "once":
        print(json.dumps(bench.one("once", a.rate, a.period, a.xt)))
    else:
        bench.run()


if __name__ == "__main__":
    main()
