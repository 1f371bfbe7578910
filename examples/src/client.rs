//! DHCP clients for the veth examples: busybox `udhcpc` when installed, else a minimal
//! client built on dhcproto. Both report the lease as a [`Got`]. The built-in client can also
//! decline what it got ([`builtin_decline`]), which udhcpc cannot be made to do.

use std::fs;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};

use crate::netns::{CLIENT_IF, CLIENT_MAC, Result, Topology};

/// What a client reported about its lease.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Got {
    /// The leased address.
    pub address: String,
    /// Subnet mask.
    pub mask: String,
    /// Routers, space-separated.
    pub router: String,
    /// DNS servers, space-separated.
    pub dns: String,
    /// Domain name.
    pub domain: String,
    /// Lease time in seconds.
    pub lease_secs: String,
    /// Server identifier.
    pub server: String,
}

impl std::fmt::Display for Got {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "address {} mask {} router {} dns {} domain {} lease time {} s server {}",
            self.address,
            self.mask,
            self.router,
            self.dns,
            self.domain,
            self.lease_secs,
            self.server
        )
    }
}

/// udhcpc runs its script with the lease in the environment; this one only prints it, one
/// `<event>|<ip>|<mask>|<router>|<dns>|<domain>|<lease>|<server>` line per `bound` or `renew`
/// (the interface stays unconfigured).
const UDHCPC_SCRIPT: &str = "#!/bin/sh\ncase \"$1\" in bound|renew) echo \"$1|$ip|$subnet|$router|$dns|$domain|$lease|$serverid\";; esac\nexit 0\n";

/// Writes the printing script into `dir` and returns its path.
///
/// # Errors
/// When the file cannot be written.
pub fn udhcpc_script(dir: &Path) -> Result<PathBuf> {
    let script = dir.join("udhcpc.sh");
    fs::write(&script, UDHCPC_SCRIPT)?;
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755))?;
    Ok(script)
}

/// Parses a line the script printed: `(event, lease)`, or `None` for any other line.
pub fn parse_script_line(line: &str) -> Option<(&str, Got)> {
    let (event, rest) = line.split_once('|')?;
    if !matches!(event, "bound" | "renew") {
        return None;
    }
    let f: Vec<&str> = rest.split('|').collect();
    let get = |i: usize| f.get(i).copied().unwrap_or_default().to_owned();
    Some((
        event,
        Got {
            address: get(0),
            mask: get(1),
            router: get(2),
            dns: get(3),
            domain: get(4),
            lease_secs: get(5),
            server: get(6),
        },
    ))
}

/// Runs `udhcpc` once in the client namespace: foreground, quits once bound, gives up after
/// 5 one-second tries.
///
/// # Errors
/// When udhcpc cannot run or gets no lease (with its output).
pub async fn udhcpc_once(t: &Topology, udhcpc: &Path) -> Result<Got> {
    let script = udhcpc_script(&t.scratch)?;
    let out = tokio::process::Command::new("ip")
        .args(["netns", "exec", &t.client])
        .arg(udhcpc)
        .args([
            "-f", "-q", "-n", "-t", "5", "-T", "1", "-i", CLIENT_IF, "-s",
        ])
        .arg(&script)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(parse_script_line)
        .map(|(_, got)| got)
        .ok_or_else(|| {
            format!(
                "udhcpc got no lease ({}):\n{}{}",
                out.status,
                stdout,
                String::from_utf8_lossy(&out.stderr)
            )
            .into()
        })
}

/// Gets a lease in the client namespace with udhcpc when installed (and `builtin` is false),
/// else with [`builtin_client`]; says which on stdout.
///
/// # Errors
/// When the client gets no lease.
pub async fn get_lease(t: &Topology, builtin: bool) -> Result<Got> {
    match (!builtin).then(|| crate::netns::find("udhcpc")).flatten() {
        Some(udhcpc) => {
            println!("client: {} in {}", udhcpc.display(), t.client);
            udhcpc_once(t, &udhcpc).await
        }
        None => {
            println!("client: built-in (dhcproto over UDP) in {}", t.client);
            builtin_client(t).await
        }
    }
}

/// A minimal DHCP client: DISCOVER, OFFER, REQUEST, ACK over a UDP socket on port 68 bound
/// to the client's interface. The interface has no address yet, so requests leave from
/// 0.0.0.0 to 255.255.255.255, with the broadcast flag set so the reply comes back broadcast.
///
/// # Errors
/// When the socket cannot be opened or no ACK comes after 4 tries of each step.
pub async fn builtin_client(t: &Topology) -> Result<Got> {
    let sock = client_socket(t)?;
    let server = SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);
    let xid = std::process::id();

    let mut discover = client_message(xid, MessageType::Discover);
    discover
        .opts_mut()
        .insert(DhcpOption::ParameterRequestList(vec![
            OptionCode::SubnetMask,
            OptionCode::Router,
            OptionCode::DomainNameServer,
            OptionCode::DomainName,
        ]));
    let offer = exchange(&sock, server, &discover, MessageType::Offer).await?;
    let server_id = match offer.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(id)) => *id,
        _ => return Err("the OFFER has no server identifier".into()),
    };
    let mut request = client_message(xid, MessageType::Request);
    request
        .opts_mut()
        .insert(DhcpOption::RequestedIpAddress(offer.yiaddr()));
    request
        .opts_mut()
        .insert(DhcpOption::ServerIdentifier(server_id));
    if let Some(prl) = discover.opts().get(OptionCode::ParameterRequestList) {
        request.opts_mut().insert(prl.clone());
    }
    let ack = exchange(&sock, server, &request, MessageType::Ack).await?;

    let addrs = |code| match ack.opts().get(code) {
        Some(DhcpOption::Router(a) | DhcpOption::DomainNameServer(a)) => a
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    };
    let mut got = Got {
        address: ack.yiaddr().to_string(),
        router: addrs(OptionCode::Router),
        dns: addrs(OptionCode::DomainNameServer),
        server: server_id.to_string(),
        ..Got::default()
    };
    for opt in ack.opts().iter().map(|(_, o)| o) {
        match opt {
            DhcpOption::SubnetMask(m) => got.mask = m.to_string(),
            DhcpOption::DomainName(d) => got.domain.clone_from(d),
            DhcpOption::AddressLeaseTime(s) => got.lease_secs = s.to_string(),
            _ => {}
        }
    }
    Ok(got)
}

/// Declines `got.address` to `got.server` (RFC 2131 §4.4.1: the client found the address in
/// use, e.g. by an ARP probe): a DHCPDECLINE from 0.0.0.0 with the address in option 50 and
/// the server in option 54. No reply is expected.
///
/// # Errors
/// When the socket cannot be opened or the datagram not sent, or `got` does not hold two
/// IPv4 addresses.
pub async fn builtin_decline(t: &Topology, got: &Got) -> Result<()> {
    let address: Ipv4Addr = got
        .address
        .parse()
        .map_err(|e| format!("declined address {:?}: {e}", got.address))?;
    let server_id: Ipv4Addr = got
        .server
        .parse()
        .map_err(|e| format!("server identifier {:?}: {e}", got.server))?;
    let sock = client_socket(t)?;
    let mut decline = client_message(std::process::id().wrapping_add(1), MessageType::Decline);
    // RFC 2131 Table 5: no broadcast flag, ciaddr 0, option 50 and 54 required.
    decline.set_flags(Flags::default());
    decline
        .opts_mut()
        .insert(DhcpOption::RequestedIpAddress(address));
    decline
        .opts_mut()
        .insert(DhcpOption::ServerIdentifier(server_id));
    sock.send_to(
        &decline.to_vec()?,
        SocketAddrV4::new(Ipv4Addr::BROADCAST, 67),
    )
    .await?;
    Ok(())
}

/// The client's UDP socket: port 68 on the client's interface, broadcast allowed.
fn client_socket(t: &Topology) -> Result<tokio::net::UdpSocket> {
    let sock = t.in_client(|| {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
        s.bind_device(Some(CLIENT_IF.as_bytes()))?;
        s.set_broadcast(true)?;
        s.set_nonblocking(true)?;
        s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68).into())?;
        Ok(std::net::UdpSocket::from(s))
    })?;
    Ok(tokio::net::UdpSocket::from_std(sock)?)
}

fn client_message(xid: u32, kind: MessageType) -> Message {
    let z = Ipv4Addr::UNSPECIFIED;
    let mut m = Message::new_with_id(xid, z, z, z, z, &CLIENT_MAC);
    m.set_flags(Flags::default().set_broadcast());
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    m
}

/// Sends `m` up to 4 times, a second apart, until a reply of type `want` with its xid comes.
async fn exchange(
    sock: &tokio::net::UdpSocket,
    to: SocketAddrV4,
    m: &Message,
    want: MessageType,
) -> Result<Message> {
    let bytes = m.to_vec()?;
    let mut buf = vec![0u8; 1500];
    for _ in 0..4 {
        sock.send_to(&bytes, to).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while let Ok(received) = tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
            let Ok(reply) = Message::decode(&mut Decoder::new(&buf[..received?])) else {
                continue;
            };
            if reply.xid() == m.xid() && reply.opts().msg_type() == Some(want) {
                return Ok(reply);
            }
        }
    }
    Err(format!("no {want:?} after 4 tries").into())
}
