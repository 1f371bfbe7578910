//! An in-test DHCP client (dhcproto) and a server harness on loopback, unprivileged ports.

#![allow(dead_code)] // each test binary uses a different part

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use dhcp_server::{
    Config, ConfigHandle, DhcpSocket, Event, LeaseSource, Metrics, Server, SocketConfig,
};
use dhcproto::v4::{
    Decodable, Decoder, DhcpOption, Encodable, Encoder, Flags, Message, MessageType, OptionCode,
};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const SERVER_ID: Ipv4Addr = Ipv4Addr::LOCALHOST;
pub const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const LEASED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 50);
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// The standard loopback configuration: 127.0.0.1 serving 127.0.0.0/8.
pub fn config() -> dhcp_server::ConfigBuilder {
    Config::builder(SERVER_ID, "127.0.0.0/8".parse().unwrap())
        .routers([SERVER_ID])
        .dns([Ipv4Addr::new(127, 0, 0, 53)])
        .domain_name("loop.example")
}

/// A client socket on `0.0.0.0:<ephemeral>`: it receives unicasts and broadcasts.
pub struct Client {
    sock: UdpSocket,
    server: SocketAddr,
    pub mac: [u8; 6],
}

impl Client {
    /// Binds first: the server must know the client's port before it starts.
    pub async fn bind() -> Self {
        let sock = UdpSocket::bind("0.0.0.0:0").await.unwrap();
        Self {
            sock,
            server: SocketAddr::from(([127, 0, 0, 1], 9)),
            mac: MAC,
        }
    }

    pub fn to(mut self, server: SocketAddrV4) -> Self {
        self.server = SocketAddr::V4(server);
        self
    }

    pub fn port(&self) -> u16 {
        self.sock.local_addr().unwrap().port()
    }

    pub fn message(&self, kind: MessageType, xid: u32) -> Message {
        let z = Ipv4Addr::UNSPECIFIED;
        let mut m = Message::new_with_id(xid, z, z, z, z, &self.mac);
        m.opts_mut().insert(DhcpOption::MessageType(kind));
        m
    }

    pub fn discover(&self, xid: u32) -> Message {
        let mut m = self.message(MessageType::Discover, xid);
        m.set_flags(Flags::default().set_broadcast());
        m.opts_mut().insert(DhcpOption::ParameterRequestList(vec![
            OptionCode::SubnetMask,
            OptionCode::Router,
            OptionCode::DomainNameServer,
            OptionCode::DomainName,
        ]));
        m
    }

    pub fn request(&self, xid: u32, server: Ipv4Addr, addr: Ipv4Addr) -> Message {
        let mut m = self.message(MessageType::Request, xid);
        m.opts_mut().insert(DhcpOption::ServerIdentifier(server));
        m.opts_mut().insert(DhcpOption::RequestedIpAddress(addr));
        m
    }

    pub async fn send(&self, m: &Message) {
        let mut buf = Vec::new();
        m.encode(&mut Encoder::new(&mut buf)).unwrap();
        self.send_raw(&buf).await;
    }

    pub async fn send_raw(&self, bytes: &[u8]) {
        self.sock.send_to(bytes, self.server).await.unwrap();
    }

    /// The next reply with this xid, and where it came from; `None` after `wait`.
    pub async fn recv_within(
        &self,
        xid: u32,
        wait: Duration,
    ) -> Option<(Message, SocketAddr, usize)> {
        let mut buf = vec![0u8; 2048];
        tokio::time::timeout(wait, async {
            loop {
                let (n, from) = self.sock.recv_from(&mut buf).await.unwrap();
                let Ok(m) = Message::decode(&mut Decoder::new(&buf[..n])) else {
                    continue;
                };
                if m.xid() == xid {
                    return (m, from, n);
                }
            }
        })
        .await
        .ok()
    }

    pub async fn recv(&self, xid: u32) -> Message {
        self.recv_within(xid, TIMEOUT).await.expect("a reply").0
    }

    pub async fn exchange(&self, m: &Message) -> Message {
        self.send(m).await;
        self.recv(m.xid()).await
    }
}

pub fn msg_type(m: &Message) -> MessageType {
    m.opts().msg_type().expect("option 53")
}

/// A server on `127.0.0.1:<ephemeral>` that replies to `client_port`.
pub struct Harness<L> {
    pub addr: SocketAddrV4,
    pub config: ConfigHandle,
    pub events: mpsc::Receiver<Event>,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<Result<L, dhcp_server::Error>>,
}

impl<L: LeaseSource + Send + 'static> Harness<L> {
    pub fn start(config: Config, leases: L, client_port: u16) -> Self {
        Self::start_with(config, leases, client_port, 64, Metrics::new())
    }

    pub fn start_with(
        config: Config,
        leases: L,
        client_port: u16,
        capacity: usize,
        metrics: Metrics,
    ) -> Self {
        let socket = DhcpSocket::bind(
            &SocketConfig::new()
                .bind_addr("127.0.0.1:0".parse().unwrap())
                .client_port(client_port)
                .relay_port(client_port),
        )
        .unwrap();
        let addr = socket.local_addr();
        let config = ConfigHandle::new(config);
        let (tx, events) = mpsc::channel(capacity);
        let shutdown = CancellationToken::new();
        let server = Server::new(config.clone(), leases)
            .with_events(tx)
            .with_metrics(metrics);
        let task = tokio::spawn(server.run(socket, shutdown.clone()));
        Self {
            addr,
            config,
            events,
            shutdown,
            task,
        }
    }

    pub async fn event(&mut self) -> Event {
        tokio::time::timeout(TIMEOUT, self.events.recv())
            .await
            .expect("an event in time")
            .expect("channel open")
    }

    pub async fn stop(self) -> L {
        self.shutdown.cancel();
        tokio::time::timeout(TIMEOUT, self.task)
            .await
            .expect("stops promptly")
            .expect("task did not panic")
            .expect("run returned Ok")
    }
}

/// What the debugging metrics recorder's snapshot holds.
pub type Snapshot = Vec<(
    metrics_util::CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    metrics_util::debugging::DebugValue,
)>;

/// One counter of a snapshot (taking a snapshot resets the debugging recorder's counters, so
/// tests take one and read it several times).
pub fn counter(snapshot: &Snapshot, name: &str, label: Option<(&str, &str)>) -> u64 {
    let (.., value) = snapshot
        .iter()
        .find(|(key, ..)| {
            let key = key.key();
            key.name() == name
                && label.is_none_or(|(k, v)| key.labels().any(|l| l.key() == k && l.value() == v))
        })
        .unwrap_or_else(|| panic!("no series {name} {label:?}"));
    match value {
        metrics_util::debugging::DebugValue::Counter(c) => *c,
        other => panic!("{name} is not a counter: {other:?}"),
    }
}
