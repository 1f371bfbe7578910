//! A DHCPv4 load generator acting as a relay agent, like `perfdhcp -4`: it sends from the
//! relay address on port 67 with `giaddr` set and `hops` 1, so the server answers to it by
//! unicast. Every exchange is a full DORA (DISCOVER → OFFER → REQUEST with options 50 and 54
//! → ACK) of one of `--clients` distinct clients (perfdhcp's MAC pattern, taken in turn),
//! started at `--rate` per second whatever the server answers (open loop), for `--duration`
//! seconds. Latency is measured per exchange (both legs paired by xid): DORA, DISCOVER→OFFER
//! and REQUEST→ACK, exact percentiles from every sample.
//!
//! ```sh
//! cargo build --release -p vmdhcp-benches --bin dhcp-load
//! ip netns exec cli taskset -c 0 target/release/dhcp-load --relay 10.99.0.2 \
//!     --server 10.99.0.1 --rate 20000 --duration 10 --server-pid "$(pidof dhcp-bench-server)"
//! ```
//!
//! Options: `--relay IP` (local address; bound on port 67) `--server IP` (port 67)
//! `--rate N` DORAs started per second, `--duration S` (send phase), `--clients N` (default 10000),
//! `--count N` stop after N exchanges (warm-up: `--count 10000 --rate 5000`), `--timeout MS`
//! (default 1000; a reply later than this is lost, as perfdhcp's `-d 1`), `--server-pid PID`
//! (server CPU from /proc during the send phase), `--mac-base 00:0c:01:02:03:04`,
//! `--batch N` (default 64; most packets per sendmmsg/recvmmsg), `--label TEXT`.
//!
//! Output: one JSON line. `drop_pct` = 100 × (1 − ACKs / DISCOVERs sent); `sent_ratio` =
//! DISCOVERs sent / (rate × duration) (below 0.97 the generator could not offer the load);
//! `srv_cpu_us_per_dora` = server CPU time during the send phase / ACKs.
//!
//! The loop sends what is due as soon as it is due, in `sendmmsg` batches, and waits in
//! `ppoll` (woken by a reply, or when the next DISCOVER is due) when there is nothing to do.

use std::error::Error;
use std::io::{IoSlice, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, ppoll};
use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrIn, recvmmsg, sendmmsg};
use nix::sys::time::TimeSpec;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use vmdhcp_benches::perfdhcp;

const PKT: usize = 300;

#[derive(Debug)]
struct Args {
    relay: Ipv4Addr,
    server: Ipv4Addr,
    rate: f64,
    duration: f64,
    clients: u32,
    count: Option<u64>,
    timeout: Duration,
    server_pid: Option<u32>,
    mac_base: [u8; 6],
    batch: usize,
    label: String,
}

fn parse_mac(s: &str) -> Result<[u8; 6], Box<dyn Error>> {
    let v: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<Result<_, _>>()?;
    Ok(<[u8; 6]>::try_from(v).map_err(|_| format!("bad MAC {s}"))?)
}

fn parse_args() -> Result<Args, Box<dyn Error>> {
    let mut a = Args {
        relay: Ipv4Addr::new(10, 99, 0, 2),
        server: Ipv4Addr::new(10, 99, 0, 1),
        rate: 1000.0,
        duration: 10.0,
        clients: 10_000,
        count: None,
        timeout: Duration::from_millis(1000),
        server_pid: None,
        mac_base: perfdhcp::DEFAULT_BASE,
        batch: 64,
        label: String::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--relay" => a.relay = value.parse()?,
            "--server" => a.server = value.parse()?,
            "--rate" => a.rate = value.parse()?,
            "--duration" => a.duration = value.parse()?,
            "--clients" => a.clients = value.parse()?,
            "--count" => a.count = Some(value.parse()?),
            "--timeout" => a.timeout = Duration::from_millis(value.parse()?),
            "--server-pid" => a.server_pid = Some(value.parse()?),
            "--mac-base" => a.mac_base = parse_mac(&value)?,
            "--batch" => a.batch = value.parse::<usize>()?.clamp(1, 1024),
            "--label" => a.label = value,
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    if a.rate <= 0.0 || a.clients == 0 {
        return Err("--rate and --clients must be positive".into());
    }
    Ok(a)
}

/// One exchange in flight, found again by `xid & mask`.
#[derive(Clone, Copy, Default)]
struct Slot {
    xid: u32,
    client: u32,
    /// ns since start: DISCOVER sent, REQUEST sent.
    t_discover: u64,
    t_request: u64,
    /// 0 free/done, 1 waiting for the OFFER, 2 waiting for the ACK.
    state: u8,
}

/// A request as the relay forwards it: header, cookie, options.
fn packet(
    buf: &mut [u8; PKT],
    args: &Args,
    xid: u32,
    client: u32,
    kind: u8,
    offer: Option<(Ipv4Addr, Ipv4Addr)>,
) {
    buf.fill(0);
    buf[..4].copy_from_slice(&[1, 1, 6, 1]); // BOOTREQUEST, Ethernet, hlen 6, hops 1
    buf[4..8].copy_from_slice(&xid.to_be_bytes());
    buf[24..28].copy_from_slice(&args.relay.octets()); // giaddr
    let mac = perfdhcp::client_mac(args.mac_base, client);
    buf[28..34].copy_from_slice(&mac);
    buf[236..240].copy_from_slice(&[99, 130, 83, 99]);
    let mut o = 240;
    let mut put = |b: &[u8]| {
        buf[o..o + b.len()].copy_from_slice(b);
        o += b.len();
    };
    put(&[53, 1, kind]);
    if let Some((yiaddr, server_id)) = offer {
        put(&[50, 4]);
        put(&yiaddr.octets());
        put(&[54, 4]);
        put(&server_id.octets());
    }
    put(&[61, 7, 1]);
    put(&mac);
    put(&[55, 4, 1, 3, 6, 15, 255]);
}

/// (xid, message type, yiaddr, server id) of a reply.
fn parse(b: &[u8]) -> Option<(u32, u8, Ipv4Addr, Ipv4Addr)> {
    if b.len() < 240 || b[0] != 2 {
        return None;
    }
    let xid = u32::from_be_bytes(b[4..8].try_into().ok()?);
    let yiaddr = Ipv4Addr::from(<[u8; 4]>::try_from(&b[16..20]).ok()?);
    let (mut kind, mut sid) = (0, Ipv4Addr::UNSPECIFIED);
    let mut i = 240;
    while i + 1 < b.len() {
        match b[i] {
            0 => i += 1,
            255 => break,
            c => {
                let len = usize::from(b[i + 1]);
                let v = b.get(i + 2..i + 2 + len)?;
                match (c, len) {
                    (53, 1) => kind = v[0],
                    (54, 4) => sid = Ipv4Addr::from(<[u8; 4]>::try_from(v).ok()?),
                    _ => {}
                }
                i += 2 + len;
            }
        }
    }
    Some((xid, kind, yiaddr, sid))
}

fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn ticks_per_second() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |t| t as f64)
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let k = ((sorted.len() - 1) as f64 * p / 100.0).round() as usize;
    f64::from(sorted[k]) / 1000.0
}

/// Sends `pkts[..n]` to `to` in `sendmmsg` batches; returns how many went out.
fn send_all(
    fd: i32,
    hdrs: &mut MultiHeaders<SockaddrIn>,
    pkts: &[[u8; PKT]],
    to: SockaddrIn,
) -> usize {
    let mut sent = 0;
    let no_cmsgs: [ControlMessage<'_>; 0] = [];
    while sent < pkts.len() {
        let chunk = &pkts[sent..];
        let slices: Vec<[IoSlice<'_>; 1]> = chunk.iter().map(|p| [IoSlice::new(p)]).collect();
        let addrs = vec![Some(to); slices.len()];
        match sendmmsg(fd, hdrs, &slices, &addrs, no_cmsgs, MsgFlags::MSG_DONTWAIT) {
            Ok(r) => {
                let n = r.count();
                if n == 0 {
                    break;
                }
                sent += n;
            }
            Err(nix::errno::Errno::EAGAIN) => std::hint::spin_loop(),
            Err(_) => break,
        }
    }
    sent
}

#[allow(clippy::too_many_lines)] // one measurement loop, read top to bottom
fn main() -> Result<(), Box<dyn Error>> {
    let args = parse_args()?;
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    socket.set_recv_buffer_size(16 << 20)?;
    socket.set_send_buffer_size(16 << 20)?;
    socket.bind(&SockAddr::from(SocketAddrV4::new(args.relay, 67)))?;
    let fd = socket.as_raw_fd();
    let server = SockaddrIn::from(SocketAddrV4::new(args.server, 67));
    let batch = args.batch;
    let mut send_hdrs = MultiHeaders::<SockaddrIn>::preallocate(batch, None);
    let mut recv_hdrs = MultiHeaders::<SockaddrIn>::preallocate(batch, None);
    let mut rbufs = vec![[0u8; 1500]; batch];

    let in_flight = (args.rate * (args.timeout.as_secs_f64() + 1.0)).max(1024.0) as usize;
    let mask = in_flight.next_power_of_two() * 2 - 1;
    let mut slots = vec![Slot::default(); mask + 1];
    let timeout_ns = u64::try_from(args.timeout.as_nanos()).unwrap_or(u64::MAX);
    let send_ns = (args.duration * 1e9) as u64;
    let total = args.count.unwrap_or(u64::MAX);
    let mut dora: Vec<u32> = Vec::new();
    let mut do_lat: Vec<u32> = Vec::new();
    let mut ra_lat: Vec<u32> = Vec::new();
    let (mut discovers, mut offers, mut requests, mut acks, mut naks, mut late, mut stray) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let mut out: Vec<[u8; PKT]> = Vec::with_capacity(batch);
    let mut pkt = [0u8; PKT];
    let pid = args.server_pid.map(|p| p.to_string());
    let tck = ticks_per_second();
    let self_start = cpu_ticks("self");
    let srv_start = pid.as_deref().and_then(cpu_ticks);
    let mut srv_end = None;
    let mut self_end = None;
    let start = Instant::now();
    let mut send_end: Option<u64> = None;
    loop {
        let now = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let sending = now < send_ns && discovers < total;
        if !sending && send_end.is_none() {
            send_end = Some(now);
            srv_end = pid.as_deref().and_then(cpu_ticks);
            self_end = cpu_ticks("self");
        }
        // Everything answered, or nothing more can arrive in time: done.
        if let Some(end) = send_end
            && (acks + naks >= discovers || now > end + timeout_ns)
        {
            break;
        }
        // DISCOVERs due by now.
        if sending {
            let due = ((now as f64) * args.rate / 1e9) as u64 + 1;
            let due = due.min(total);
            out.clear();
            while discovers + (out.len() as u64) < due && out.len() < batch {
                let seq = discovers + out.len() as u64;
                let xid = u32::try_from(seq & 0xffff_ffff).unwrap_or(0);
                let client = u32::try_from(seq % u64::from(args.clients)).unwrap_or(0);
                // A slot still in use belongs to an exchange older than the timeout (the
                // table holds rate x (timeout + 1 s)): it is lost, and counted so at the end.
                slots[xid as usize & mask] = Slot {
                    xid,
                    client,
                    t_discover: now,
                    t_request: 0,
                    state: 1,
                };
                packet(&mut pkt, &args, xid, client, 1, None);
                out.push(pkt);
            }
            if !out.is_empty() {
                discovers += send_all(fd, &mut send_hdrs, &out, server) as u64;
            }
        }
        // Replies.
        let mut replies: Vec<(u32, u8, Ipv4Addr, Ipv4Addr)> = Vec::new();
        {
            let mut iovs: Vec<[IoSliceMut<'_>; 1]> =
                rbufs.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
            if let Ok(results) =
                recvmmsg(fd, &mut recv_hdrs, &mut iovs, MsgFlags::MSG_DONTWAIT, None)
            {
                for msg in results {
                    if let Some(data) = msg.iovs().next()
                        && let Some(r) = parse(&data[..msg.bytes.min(data.len())])
                    {
                        replies.push(r);
                    }
                }
            }
        }
        if replies.is_empty() {
            // Nothing arrived: wait for a reply or until the next DISCOVER is due (at most
            // 1 ms), instead of spinning. A reply wakes ppoll at once, so latencies stay
            // exact, and the generator leaves its core idle at low rates.
            let next_due = if sending {
                ((discovers + 1) as f64 * 1e9 / args.rate) as u64
            } else {
                now + 1_000_000
            };
            let wait = next_due.saturating_sub(now).min(1_000_000);
            if wait > 2_000 {
                let mut fds = [PollFd::new(socket.as_fd(), PollFlags::POLLIN)];
                let t = TimeSpec::from_duration(Duration::from_nanos(wait));
                let _ = ppoll(&mut fds, Some(t), None);
            }
            continue;
        }
        let now = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        out.clear();
        for (xid, kind, yiaddr, sid) in replies {
            let slot = &mut slots[xid as usize & mask];
            if slot.state == 0 || slot.xid != xid {
                stray += 1;
                continue;
            }
            if now - slot.t_discover > timeout_ns {
                late += 1;
                slot.state = 0;
                continue;
            }
            match (slot.state, kind) {
                (1, 2) => {
                    offers += 1;
                    do_lat.push(u32::try_from(now - slot.t_discover).unwrap_or(u32::MAX));
                    slot.state = 2;
                    slot.t_request = now;
                    packet(&mut pkt, &args, xid, slot.client, 3, Some((yiaddr, sid)));
                    out.push(pkt);
                    if out.len() == batch {
                        requests += send_all(fd, &mut send_hdrs, &out, server) as u64;
                        out.clear();
                    }
                }
                (2, 5) => {
                    acks += 1;
                    ra_lat.push(u32::try_from(now - slot.t_request).unwrap_or(u32::MAX));
                    dora.push(u32::try_from(now - slot.t_discover).unwrap_or(u32::MAX));
                    slot.state = 0;
                }
                (_, 6) => {
                    naks += 1;
                    slot.state = 0;
                }
                _ => stray += 1,
            }
        }
        if !out.is_empty() {
            requests += send_all(fd, &mut send_hdrs, &out, server) as u64;
        }
    }
    let wall = args.duration.min(start.elapsed().as_secs_f64());
    let period = if args.count.is_some() {
        start.elapsed().as_secs_f64()
    } else {
        wall
    };
    for v in [&mut dora, &mut do_lat, &mut ra_lat] {
        v.sort_unstable();
    }
    let srv_cpu_s = match (srv_start, srv_end) {
        (Some(a), Some(b)) => Some((b - a) as f64 / tck),
        _ => None,
    };
    let gen_cpu_s = match (self_start, self_end) {
        (Some(a), Some(b)) => (b - a) as f64 / tck,
        _ => f64::NAN,
    };
    let expected = if let Some(c) = args.count {
        c as f64
    } else {
        args.rate * args.duration
    };
    let lost = discovers.saturating_sub(acks + naks);
    let num = |x: f64| {
        if x.is_finite() {
            format!("{x:.3}")
        } else {
            "null".into()
        }
    };
    println!(
        "{{\"label\":\"{}\",\"rate\":{},\"duration\":{},\"clients\":{},\"discovers\":{discovers},\
         \"offers\":{offers},\"requests\":{requests},\"acks\":{acks},\"naks\":{naks},\"lost\":{lost},\
         \"late\":{late},\"stray\":{stray},\"dora_per_s\":{},\"drop_pct\":{},\"sent_ratio\":{},\
         \"dora_p50_ms\":{},\"dora_p90_ms\":{},\"dora_p99_ms\":{},\"dora_p999_ms\":{},\"dora_max_ms\":{},\
         \"do_p50_ms\":{},\"do_p99_ms\":{},\"ra_p50_ms\":{},\"ra_p99_ms\":{},\
         \"srv_cpu_pct\":{},\"srv_cpu_us_per_dora\":{},\"gen_cpu_pct\":{}}}",
        args.label,
        args.rate,
        args.duration,
        args.clients,
        num(acks as f64 / period),
        num(if discovers > 0 {
            100.0 * (1.0 - acks as f64 / discovers as f64)
        } else {
            100.0
        }),
        num(discovers as f64 / expected),
        num(pct(&dora, 50.0) / 1000.0),
        num(pct(&dora, 90.0) / 1000.0),
        num(pct(&dora, 99.0) / 1000.0),
        num(pct(&dora, 99.9) / 1000.0),
        num(pct(&dora, 100.0) / 1000.0),
        num(pct(&do_lat, 50.0) / 1000.0),
        num(pct(&do_lat, 99.0) / 1000.0),
        num(pct(&ra_lat, 50.0) / 1000.0),
        num(pct(&ra_lat, 99.0) / 1000.0),
        num(srv_cpu_s.map_or(f64::NAN, |c| 100.0 * c / wall)),
        num(srv_cpu_s.map_or(f64::NAN, |c| c * 1e6 / acks.max(1) as f64)),
        num(100.0 * gen_cpu_s / wall),
    );
    Ok(())
}
