#!/usr/bin/env python3
"""Resident memory of the release `vmdhcp-agent` binary with N leases loaded.

For each lease count: writes a /16 IPPool with N allocations, starts the agent (standalone:
`--ippool-file`; kube: `--ippool-ref` against a kube-test-server), waits until the table is
loaded, has busybox udhcpc take a lease for a few of the allocated MACs (each must get its
address), waits a moment and reads VmRSS (and the peak, VmHWM) from /proc/<pid>/status.

Everything runs in two network namespaces joined by a veth pair (agent side: 10.231.0.1/16), so
no address of the host is touched. In kube mode the script starts its own kube-test-server
inside the agent's namespace (so the agent reaches it on that namespace's loopback) and stores
the pool with kubectl: the spec with `create`, the allocations with a merge patch of the status
subresource, as the controller writes them. The agent authenticates as in a Pod (the default,
`--auth in-cluster`): a ServiceAccount token and the CA in
/var/run/secrets/kubernetes.io/serviceaccount (a tmpfs over /run in the agent's own mount
namespace, so the host's /run is untouched) and KUBERNETES_SERVICE_HOST/PORT, with no
`--kubeconfig`; `--auth kubeconfig` passes the admin kubeconfig instead.

Resident file-backed pages (the binary's code) depend on what of the binary is in the page
cache: a fault maps the neighbouring pages that are cached too. Before each start the script
therefore reads the whole binary into the page cache (`--cache warm`, the default: the state
right after an image pull) or drops it from there (`--cache cold`). On the project's machine
both give the same numbers within 0.2 MiB: readahead brings the neighbours in either way.

`--edit` also changes the pool's DNS option once the agent is serving and waits until the new
version is applied, so the measurement includes a watch event carrying the whole object (in
production the status changes with every VM added).

Needs root, iproute2, udhcpc; kube mode also scripts/kube-test-server/build.sh's binary and
kubectl (the one build.sh puts next to it, else PATH's). Run from the workspace root after
`cargo build --release -p vmdhcp-agent`:

    sudo vmdhcp-agent/scripts/measure-rss.py standalone 0 10000 50000
    sudo vmdhcp-agent/scripts/measure-rss.py kube 0 10000 30000 \\
        --kube-test-server "$(scripts/kube-test-server/build.sh)"

Prints one line per run and a Markdown table at the end: per lease count the median and the
range (min–max) over `--repeat` runs, in MiB (kB / 1024, as /proc reports them).
"""

import argparse
import base64
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SUBNET = "10.231"
SERVER_IP = f"{SUBNET}.0.1"
SRV_IF = "agmem-srv"
CLI_IF = "agmem-cli"


def sh(*args, check=True, **kw):
    return subprocess.run(list(args), check=check, **kw)


def ip_of(i):
    # The pool starts at .0.10; i-th allocation.
    n = 10 + i
    return f"{SUBNET}.{n // 256}.{n % 256}"


def mac_of(i):
    return "02:00:%02x:%02x:%02x:%02x" % (
        (i >> 24) & 255,
        (i >> 16) & 255,
        (i >> 8) & 255,
        i & 255,
    )


def spec():
    return {
        "networkName": "default/net-mem",
        "ipv4Config": {
            "cidr": f"{SUBNET}.0.0/16",
            "serverIP": SERVER_IP,
            "router": SERVER_IP,
            "dns": ["10.231.255.253"],
            "domainName": "mem.internal",
            "leaseTime": 3600,
            "pool": {
                "start": f"{SUBNET}.0.10",
                "end": f"{SUBNET}.255.250",
                "exclude": [f"{SUBNET}.0.10"],
            },
        },
    }


def allocated(n):
    # .0.10 is excluded (a mark, as the controller writes it); leases start at index 1.
    out = {ip_of(0): "EXCLUDED"}
    for i in range(1, n + 1):
        out[ip_of(i)] = mac_of(i)
    return out


def status(n):
    capacity = (250 + 255 * 256) - 10 + 1 - 1  # range minus the exclusion
    return {"ipv4": {"allocated": allocated(n), "used": n, "available": capacity - n}}


def pool_yaml(n):
    # JSON is YAML: the agent's parser reads it as the one IPPool document.
    doc = {
        "apiVersion": "network.harvesterhci.io/v1alpha1",
        "kind": "IPPool",
        "metadata": {"name": "net-mem", "namespace": "default"},
        "spec": spec(),
        "status": status(n),
    }
    # Block style, one allocation per line, as `kubectl get -o yaml` would write it.
    lines = [
        "apiVersion: network.harvesterhci.io/v1alpha1",
        "kind: IPPool",
        "metadata:",
        "  name: net-mem",
        "  namespace: default",
        "spec: " + json.dumps(doc["spec"]),
        "status:",
        "  ipv4:",
        f"    used: {n}",
        f"    available: {doc['status']['ipv4']['available']}",
        "    allocated:",
    ]
    for k, v in doc["status"]["ipv4"]["allocated"].items():
        lines.append(f"      {k}: {v}")
    return "\n".join(lines) + "\n"


class Topology:
    def __init__(self):
        tag = f"agmem{os.getpid()}"
        self.srv = f"{tag}-srv"
        self.cli = f"{tag}-cli"
        sh("ip", "netns", "add", self.srv)
        sh("ip", "netns", "add", self.cli)
        sh("ip", "link", "add", SRV_IF, "netns", self.srv, "type", "veth", "peer", "name",
           CLI_IF, "netns", self.cli)
        sh("ip", "-n", self.srv, "addr", "add", f"{SERVER_IP}/16", "dev", SRV_IF)
        for ns, dev in [(self.srv, SRV_IF), (self.cli, CLI_IF), (self.srv, "lo"), (self.cli, "lo")]:
            sh("ip", "-n", ns, "link", "set", dev, "up")

    def close(self):
        for ns in (self.srv, self.cli):
            sh("ip", "netns", "del", ns, check=False, stderr=subprocess.DEVNULL)


class Lines:
    """Lines of a child's output, collected on a thread."""

    def __init__(self, stream):
        self.lines = []
        self.cv = threading.Condition()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream):
        for line in stream:
            with self.cv:
                self.lines.append(line.rstrip("\n"))
                self.cv.notify_all()

    def wait_for(self, pattern, timeout):
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        seen = 0
        with self.cv:
            while True:
                for line in self.lines[seen:]:
                    if rx.search(line):
                        return line
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no line matching {pattern!r} in {timeout} s:\n"
                                       + "\n".join(self.lines[-30:]))
                self.cv.wait(left)


def prepare_cache(binary, how):
    """Puts the whole binary in the page cache, or none of it (see the module docs)."""
    with open(binary, "rb") as f:
        # Dropped first either way, so both binaries of a comparison start from the same
        # state (how a file came into the cache, written or read, changes how it is mapped).
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        if how == "warm":
            while f.read(1 << 20):
                pass


def start_agent(t, binary, args, incluster=None):
    # As in a Pod: no RUST_LOG (the default level, info, logs what the script waits for).
    env = dict(os.environ, NO_COLOR="1")
    for var in ("KUBECONFIG", "RUST_LOG"):
        env.pop(var, None)
    line = [binary, "--nic", SRV_IF, "--http-bind", "127.0.0.1:18080", *args]
    if incluster:
        # `ip netns exec` gives the command its own mount namespace (mounts do not propagate
        # back), so the tmpfs over /run stays private; `exec` keeps the shell's pid.
        sa = "/run/secrets/kubernetes.io/serviceaccount"
        env.update(KUBERNETES_SERVICE_HOST=incluster["host"],
                   KUBERNETES_SERVICE_PORT=incluster["port"])
        script = (f"mount -t tmpfs agmem /run && mkdir -p {sa} && "
                  f"cp {incluster['dir']}/token {incluster['dir']}/ca.crt "
                  f"{incluster['dir']}/namespace {sa}/ && exec \"$@\"")
        line = ["sh", "-c", script, "sh", *line]
    proc = subprocess.Popen(["ip", "netns", "exec", t.srv, *line],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    return proc, Lines(proc.stdout)


def agent_pid(proc):
    # `ip netns exec` execs the program, so the child's pid is the agent's.
    return proc.pid


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0])  # kB
    return out


def dhcp_requests(t, scratch, n, count, dns=None):
    """udhcpc takes a lease for `count` allocated MACs spread over the table (and the reply
    must carry `dns`, when given)."""
    if n == 0:
        return 0
    script = os.path.join(scratch, "udhcpc.sh")
    with open(script, "w") as f:
        f.write('#!/bin/sh\n[ "$1" = bound ] && echo "bound $ip dns=$dns"\nexit 0\n')
    os.chmod(script, 0o755)
    picks = sorted({1, max(1, n // 2), n} | {1 + (n * k) // count for k in range(count)})[:count]
    for i in picks:
        sh("ip", "-n", t.cli, "link", "set", CLI_IF, "address", mac_of(i))
        out = subprocess.run(
            ["ip", "netns", "exec", t.cli, "udhcpc", "-f", "-q", "-n", "-t", "5", "-T", "1",
             "-i", CLI_IF, "-s", script],
            capture_output=True, text=True, timeout=30).stdout
        want = f"bound {ip_of(i)} dns={dns}" if dns else f"bound {ip_of(i)} "
        if want not in out:
            raise RuntimeError(f"udhcpc with {mac_of(i)} did not get {want!r}: {out!r}")
    return len(picks)


def kubectl_for(server):
    """The kubectl that scripts/kube-test-server/build.sh puts next to the server, else PATH's."""
    beside = os.path.join(os.path.dirname(os.path.abspath(server)), "kubectl")
    return beside if os.access(beside, os.X_OK) else shutil.which("kubectl")


class KubeServer:
    def __init__(self, t, binary, scratch):
        self.dir = os.path.join(scratch, "kts")
        self.t = t
        self.kubectl_bin = kubectl_for(binary)
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", t.srv, binary, "--dir", self.dir],
            stdout=subprocess.PIPE, stderr=open(os.path.join(scratch, "kts.err"), "w"), text=True)
        line = Lines(self.proc.stdout).wait_for(r"kube-test-server ready:", 120)
        self.kubeconfig = re.search(r"kubeconfig=(\S+)", line).group(1)
        self.kubectl("apply", "--server-side", "-f", os.path.join(ROOT, "deploy", "crds"))
        self.kubectl("wait", "--for=condition=Established", "crd/ippools.network.harvesterhci.io")

    def kubectl(self, *args, stdout=subprocess.DEVNULL, **kw):
        return sh("ip", "netns", "exec", self.t.srv, self.kubectl_bin, "--kubeconfig",
                  self.kubeconfig, *args, stdout=stdout, **kw)

    def incluster(self, ns, scratch):
        """A ServiceAccount that may read IPPools in `ns`, and the files a Pod would get."""
        self.kubectl("-n", ns, "create", "serviceaccount", "agent")
        self.kubectl("-n", ns, "create", "role", "agent", "--verb=get,list,watch",
                     "--resource=ippools.network.harvesterhci.io")
        self.kubectl("-n", ns, "create", "rolebinding", "agent", "--role=agent",
                     f"--serviceaccount={ns}:agent")
        d = os.path.join(scratch, f"sa-{ns}")
        os.makedirs(d, exist_ok=True)
        token = self.kubectl("-n", ns, "create", "token", "agent", "--duration=1h",
                             stdout=subprocess.PIPE, text=True).stdout.strip()
        cfg = json.loads(self.kubectl("config", "view", "--raw", "-o", "json",
                                      stdout=subprocess.PIPE, text=True).stdout)
        cluster = cfg["clusters"][0]["cluster"]
        with open(os.path.join(d, "token"), "w") as f:
            f.write(token)
        with open(os.path.join(d, "ca.crt"), "wb") as f:
            f.write(base64.b64decode(cluster["certificate-authority-data"]))
        with open(os.path.join(d, "namespace"), "w") as f:
            f.write(ns)
        host, port = re.match(r"https://([^:/]+):(\d+)", cluster["server"]).groups()
        return {"dir": d, "host": host, "port": port}

    def put_pool(self, ns, n, scratch):
        self.kubectl("create", "namespace", ns)
        obj = {"apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPool",
               "metadata": {"name": "net-mem", "namespace": ns}, "spec": spec()}
        path = os.path.join(scratch, "pool.json")
        with open(path, "w") as f:
            json.dump(obj, f)
        self.kubectl("create", "-f", path)
        patch = os.path.join(scratch, "status.json")
        with open(patch, "w") as f:
            json.dump({"status": status(n)}, f, separators=(",", ":"))
        self.kubectl("-n", ns, "patch", "ippool", "net-mem", "--subresource=status",
                     "--type=merge", "--patch-file", patch)

    def close(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def edit(mode, kube, where, n):
    """Changes the pool's DNS server: a new version of the whole pool reaches the agent."""
    if mode == "kube":
        kube.kubectl("-n", where, "patch", "ippool", "net-mem", "--type=merge", "-p",
                     '{"spec":{"ipv4Config":{"dns":["10.231.255.254"]}}}')
    else:
        with open(where + ".tmp", "w") as f:
            f.write(pool_yaml(n).replace("10.231.255.253", "10.231.255.254"))
        os.replace(where + ".tmp", where)


def measure(mode, n, args, t, scratch, kube):
    if mode == "standalone":
        path = os.path.join(scratch, f"pool-{n}.yaml")
        with open(path, "w") as f:
            f.write(pool_yaml(n))
        agent_args = ["--ippool-file", path]
        loaded = r"\bloaded\b.*leases=(\d+)"
    else:
        ns = f"mem-{n}-{int(time.time() * 1000) % 100000}"
        kube.put_pool(ns, n, scratch)
        agent_args = ["--ippool-ref", f"{ns}/net-mem"]
        incluster = None
        if args.auth == "kubeconfig":
            agent_args += ["--kubeconfig", kube.kubeconfig]
        else:
            incluster = kube.incluster(ns, scratch)
        loaded = r"first sync complete.*leases=(\d+)"
    prepare_cache(args.bin, args.cache)
    proc, log = start_agent(t, args.bin, agent_args,
                            incluster if mode == "kube" else None)
    try:
        line = log.wait_for(loaded, 120)
        got = int(re.search(loaded, line).group(1))
        if got != n:
            raise RuntimeError(f"agent loaded {got} leases, expected {n}")
        log.wait_for(r"serving DHCP", 30)
        served = dhcp_requests(t, scratch, n, args.requests)
        if args.edit:
            edit(mode, kube, ns if mode == "kube" else path, n)
            deadline = time.monotonic() + 60
            while n > 0:
                try:
                    served += dhcp_requests(t, scratch, n, 1, dns="10.231.255.254")
                    break
                except RuntimeError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
            if n == 0:
                time.sleep(3)  # no lease to check the new option with
            served += dhcp_requests(t, scratch, n, args.requests, dns="10.231.255.254")
        time.sleep(args.settle)
        st = proc_status(agent_pid(proc))
        if proc.poll() is not None:
            raise RuntimeError("agent exited")
    except Exception:
        lines = [line for line in log.lines if "lease added" not in line]
        print("agent log (without `lease added`):\n" + "\n".join(lines[-30:]), file=sys.stderr)
        raise
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    if mode == "kube":
        kube.kubectl("delete", "namespace", ns, "--wait=false")
    return st, served


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=["standalone", "kube"])
    p.add_argument("leases", nargs="+", type=int)
    p.add_argument("--bin", default="target/release/vmdhcp-agent")
    p.add_argument("--kube-test-server", help="kube-test-server binary (kube mode)")
    p.add_argument("--requests", type=int, default=3, help="DHCP leases taken before measuring")
    p.add_argument("--settle", type=float, default=2.0, help="seconds to wait before reading")
    p.add_argument("--repeat", type=int, default=3,
                   help="runs per lease count (median, min and max reported)")
    p.add_argument("--auth", choices=["in-cluster", "kubeconfig"], default="in-cluster",
                   help="kube mode: how the agent authenticates (default: as in a Pod)")
    p.add_argument("--cache", choices=["warm", "cold"], default="warm",
                   help="the binary fully in the page cache before each start, or not at all")
    p.add_argument("--edit", action="store_true",
                   help="change the pool once while serving (a watch event / a file reload)")
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("measure-rss: needs root (network namespaces)")
    for tool in ["ip", "udhcpc"]:
        if shutil.which(tool) is None:
            sys.exit(f"measure-rss: {tool} is not installed")
    if args.mode == "kube" and not args.kube_test_server:
        sys.exit("measure-rss: kube mode needs --kube-test-server BIN")
    if args.mode == "kube" and kubectl_for(args.kube_test_server) is None:
        sys.exit("measure-rss: no kubectl next to the server or on PATH")
    if max(args.leases) > 65000:
        sys.exit("measure-rss: a /16 holds at most 65,000 leases here")
    args.bin = os.path.abspath(args.bin)
    # Other work on the machine changes nothing in the agent's memory, but say what it was.
    print(f"load average at the start: {loadavg()}", flush=True)
    scratch = tempfile.mkdtemp(prefix="agmem-")
    t = Topology()
    kube = None
    rows = []
    try:
        if args.mode == "kube":
            kube = KubeServer(t, args.kube_test_server, scratch)
        for n in args.leases:
            runs = []
            for r in range(args.repeat):
                st, served = measure(args.mode, n, args, t, scratch, kube)
                runs.append(st)
                print(f"{args.mode} leases={n} run={r + 1} VmRSS={st['VmRSS']} kB "
                      f"VmHWM={st['VmHWM']} kB RssAnon={st['RssAnon']} kB "
                      f"RssFile={st['RssFile']} kB dhcp_leases_taken={served}", flush=True)
            rows.append((n, runs))
    finally:
        if kube:
            kube.close()
        t.close()
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"load average at the end: {loadavg()}")
    print()

    def spread(runs, key):
        vals = [r[key] / 1024 for r in runs]
        return f"{statistics.median(vals):.1f} ({min(vals):.1f}–{max(vals):.1f})"

    print(f"| {args.mode} leases | runs | VmRSS MiB, median (min–max) "
          "| VmHWM (peak) MiB, median (min–max) | RssAnon MiB | RssFile MiB |")
    print("|---|---|---|---|---|---|")
    for n, runs in rows:
        print(f"| {n:,} | {len(runs)} | {spread(runs, 'VmRSS')} | {spread(runs, 'VmHWM')} "
              f"| {spread(runs, 'RssAnon')} | {spread(runs, 'RssFile')} |")


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


if __name__ == "__main__":
    main()
