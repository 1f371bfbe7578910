#!/usr/bin/env python3
"""Give every client perfdhcp will simulate a lease before the measurement starts.

The rates in docs/performance.md are for known clients: each of the N MACs of `perfdhcp -R N`
already holds a lease, as on a running network. This script runs one full DORA per client,
speaking as a relay agent exactly like perfdhcp does (from RELAY:67, giaddr = RELAY, hops 1,
client-id 01+MAC), with WINDOW exchanges in flight. A NAK or a silent second restarts the
client from DISCOVER.

Each DISCOVER also asks for a distinct address (option 50: FIRST + index). Servers that pick
addresses by hashing the MAC (dnsmasq) otherwise offer one address to many of perfdhcp's
near-identical MACs at once and NAK all but one REQUEST; static-lease servers ignore the hint.

Run inside the client namespace:
    ip netns exec CLI python3 warmup.py --clients 10000 --server 10.99.0.1 --relay 10.99.0.2
Prints one JSON object: clients, leased, seconds, per_second, naks, timeouts.
"""
import argparse
import ipaddress
import json
import select
import socket
import struct
import sys
import time

BASE = bytes([0x00, 0x0C, 0x01, 0x02, 0x03, 0x04])
DISCOVER, OFFER, REQUEST, ACK, NAK = 1, 2, 3, 5, 6


def perfdhcp_mac(index, base=BASE):
    """perfdhcp's client MAC: the index added octet-wise from the end, without carry."""
    mac = bytearray(base)
    rest = index
    for pos in range(5, -1, -1):
        mac[pos] = (mac[pos] + rest) & 0xFF
        if rest < 256:
            break
        rest >>= 8
    return bytes(mac)


def message(kind, xid, mac, relay, want, server=None):
    header = bytearray(236)
    header[0:4] = bytes([1, 1, 6, 1])
    header[4:8] = struct.pack("!I", xid)
    header[24:28] = relay
    header[28:34] = mac
    opts = bytearray(b"\x63\x82\x53\x63")
    opts += bytes([53, 1, kind, 61, 7, 1]) + mac
    opts += bytes([55, 4, 1, 3, 6, 15])
    opts += bytes([50, 4]) + want
    if server is not None:
        opts += bytes([54, 4]) + server
    opts.append(255)
    return bytes(header + opts)


def parse(data):
    """(xid, message type, yiaddr, server id) of a reply, or None."""
    if len(data) < 240 or data[236:240] != b"\x63\x82\x53\x63":
        return None
    xid = struct.unpack("!I", data[4:8])[0]
    kind = server = None
    i = 240
    while i + 1 < len(data) and data[i] != 255:
        if data[i] == 0:
            i += 1
            continue
        code, length = data[i], data[i + 1]
        value = data[i + 2 : i + 2 + length]
        if code == 53 and length == 1:
            kind = value[0]
        elif code == 54 and length == 4:
            server = value
        i += 2 + length
    return xid, kind, data[16:20], server


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=10000)
    ap.add_argument("--server", default="10.99.0.1")
    ap.add_argument("--relay", default="10.99.0.2")
    ap.add_argument("--first", default="10.99.0.10", help="address hinted to client 0")
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--timeout", type=float, default=600, help="give up after this many seconds")
    a = ap.parse_args()

    relay = socket.inet_aton(a.relay)
    first = int(ipaddress.IPv4Address(a.first))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    sock.bind((a.relay, 67))
    sock.setblocking(False)
    dest = (a.server, 67)

    inflight = {}  # xid -> [client index, waiting for OFFER or ACK, sent at]
    next_client, leased, naks, timeouts = 0, 0, 0, 0
    xid = int(time.time() * 1000) & 0xFFFFFF

    def start(index):
        nonlocal xid
        xid = (xid + 1) & 0xFFFFFFFF
        inflight[xid] = [index, OFFER, time.monotonic()]
        want = ipaddress.IPv4Address(first + index).packed
        sock.sendto(message(DISCOVER, xid, perfdhcp_mac(index), relay, want), dest)

    began = time.monotonic()
    while leased < a.clients:
        while len(inflight) < a.window and next_client < a.clients:
            start(next_client)
            next_client += 1
        readable, _, _ = select.select([sock], [], [], 0.05)
        while readable:
            try:
                data = sock.recv(4096)
            except BlockingIOError:
                break
            reply = parse(data)
            if reply is None or reply[0] not in inflight:
                continue
            rxid, kind, yiaddr, server = reply
            index, waiting, _ = inflight[rxid]
            if kind == OFFER and waiting == OFFER:
                inflight[rxid] = [index, ACK, time.monotonic()]
                sock.sendto(message(REQUEST, rxid, perfdhcp_mac(index), relay, yiaddr, server), dest)
            elif kind == ACK and waiting == ACK:
                del inflight[rxid]
                leased += 1
            elif kind == NAK:
                del inflight[rxid]
                naks += 1
                start(index)
        now = time.monotonic()
        for stale in [x for x, (_, _, sent) in inflight.items() if now - sent > 1.0]:
            index = inflight.pop(stale)[0]
            timeouts += 1
            start(index)
        if now - began > a.timeout:
            print(f"warm-up gave up after {a.timeout:.0f} s", file=sys.stderr)
            break
    seconds = time.monotonic() - began
    print(json.dumps({"clients": a.clients, "leased": leased, "seconds": round(seconds, 1),
                      "per_second": round(leased / seconds), "naks": naks, "timeouts": timeouts}))
    sys.exit(0 if leased == a.clients else 1)


if __name__ == "__main__":
    main()
