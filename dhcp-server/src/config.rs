//! [`Config`]: the validated options of a served subnet, pre-encoded once; [`ConfigHandle`]:
//! the swappable snapshot the server reads on every packet.

use std::fmt;
use std::net::Ipv4Addr;
use std::ops::Range;
use std::sync::Arc;

use arc_swap::ArcSwap;
use dhcproto::Name;
use dhcproto::v4::{DhcpOption, Encodable};
use ipnet::Ipv4Net;

use crate::error::Error;
use crate::options::code;

/// A lease duration in seconds; [`LeaseTime::INFINITE`] is the RFC 2131 `0xffffffff`.
///
/// ```
/// use dhcp_server::LeaseTime;
///
/// assert_eq!(LeaseTime::from_secs(3600).as_secs(), 3600);
/// assert!(LeaseTime::INFINITE.is_infinite());
/// assert!(!LeaseTime::from_secs(60).is_infinite());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseTime(u32);

impl LeaseTime {
    /// A lease that never expires (no T1/T2 are sent).
    ///
    /// ```
    /// use dhcp_server::{Config, Lease, LeaseTime};
    ///
    /// // For the whole subnet...
    /// let config = Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?)
    ///     .lease_time(LeaseTime::INFINITE)
    ///     .build()?;
    /// assert_eq!(config.lease_time().duration(), None);
    /// // ...or for one lease.
    /// let lease = Lease::new("10.0.0.5".parse()?).with_lease_time(LeaseTime::INFINITE);
    /// assert!(lease.lease_time().is_some_and(LeaseTime::is_infinite));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub const INFINITE: Self = Self(u32::MAX);

    /// A lease of `secs` seconds; `u32::MAX` is infinite.
    ///
    /// ```
    /// assert_eq!(dhcp_server::LeaseTime::from_secs(u32::MAX), dhcp_server::LeaseTime::INFINITE);
    /// ```
    pub const fn from_secs(secs: u32) -> Self {
        Self(secs)
    }

    /// The value of option 51.
    ///
    /// ```
    /// assert_eq!(dhcp_server::LeaseTime::INFINITE.as_secs(), 0xffff_ffff);
    /// ```
    pub const fn as_secs(self) -> u32 {
        self.0
    }

    /// Whether this is the infinite lease.
    ///
    /// ```
    /// assert!(dhcp_server::LeaseTime::INFINITE.is_infinite());
    /// ```
    pub const fn is_infinite(self) -> bool {
        self.0 == u32::MAX
    }

    /// The lease as a [`std::time::Duration`], `None` when infinite.
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(dhcp_server::LeaseTime::from_secs(5).duration(), Some(Duration::from_secs(5)));
    /// assert_eq!(dhcp_server::LeaseTime::INFINITE.duration(), None);
    /// ```
    pub fn duration(self) -> Option<std::time::Duration> {
        (!self.is_infinite()).then(|| std::time::Duration::from_secs(u64::from(self.0)))
    }

    /// `permille` thousandths of this lease, in seconds.
    pub(crate) fn fraction(self, permille: u16) -> u32 {
        let v = u64::from(self.0) * u64::from(permille) / 1000;
        u32::try_from(v).expect("a fraction below 1 of a u32")
    }
}

/// A classless static route (option 121): a destination prefix and the router to reach it.
///
/// ```
/// use dhcp_server::Route;
///
/// let r = Route::new("10.20.30.40/16".parse()?, "192.168.1.1".parse()?);
/// assert_eq!(r.destination().to_string(), "10.20.0.0/16"); // host bits cleared
/// assert_eq!(r.gateway().to_string(), "192.168.1.1");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Route {
    destination: Ipv4Net,
    gateway: Ipv4Addr,
}

impl Route {
    /// A route to `destination` (host bits are cleared) via `gateway`.
    ///
    /// ```
    /// let default = dhcp_server::Route::new("0.0.0.0/0".parse()?, "10.0.0.1".parse()?);
    /// assert_eq!(default.destination().prefix_len(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(destination: Ipv4Net, gateway: Ipv4Addr) -> Self {
        Self {
            destination: destination.trunc(),
            gateway,
        }
    }
    /// The destination prefix.
    ///
    /// ```
    /// let r = dhcp_server::Route::new("10.0.0.0/8".parse()?, "10.0.0.1".parse()?);
    /// assert_eq!(r.destination().to_string(), "10.0.0.0/8");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn destination(&self) -> Ipv4Net {
        self.destination
    }
    /// The router.
    ///
    /// ```
    /// let r = dhcp_server::Route::new("10.0.0.0/8".parse()?, "10.0.0.1".parse()?);
    /// assert_eq!(r.gateway().to_string(), "10.0.0.1");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }
}

/// Whether replies carry option 12 (host name). The default, [`Omit`](Self::Omit), leaves the
/// guest's own name alone.
///
/// ```
/// use std::time::Instant;
/// use dhcp_server::{decide, Config, Context, HostnamePolicy, Lease, Request, StaticLeases};
///
/// let config = Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?)
///     .hostname_policy(HostnamePolicy::FromLease)
///     .build()?;
/// let mut leases: StaticLeases = [(
///     "02:00:00:00:00:01".parse()?,
///     Lease::new("10.0.0.50".parse()?).with_hostname("vm-1"),
/// )]
/// .into_iter()
/// .collect();
/// # let mut discover = vec![0u8; 236];
/// # discover[..3].copy_from_slice(&[1, 1, 6]);
/// # discover[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
/// # discover.extend([99, 130, 83, 99, 53, 1, 1, 255]);
/// let request = Request::parse(&discover)?; // a DISCOVER from 02:00:00:00:00:01
/// let ctx = Context::new(2, "0.0.0.0:68".parse()?, [255; 4].into());
/// let decision = decide(&request, &ctx, &config, &mut leases, Instant::now());
/// let offer = decision.reply().expect("an offer").to_vec()?;
/// assert!(offer.windows(6).any(|o| o == [12, 4, b'v', b'm', b'-', b'1'])); // option 12
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum HostnamePolicy {
    /// Never send option 12.
    #[default]
    Omit,
    /// Send the host name of the lease ([`Lease::with_hostname`](crate::Lease::with_hostname))
    /// when it has one.
    FromLease,
}

/// The validated configuration of one served subnet: server identity, options and policy.
/// Built with [`Config::builder`]; immutable, so a running server swaps whole snapshots
/// through a [`ConfigHandle`]. Option values are encoded once here, so replies only copy bytes.
///
/// ```
/// use dhcp_server::{Config, LeaseTime};
///
/// let config = Config::builder("192.168.48.1".parse()?, "192.168.48.0/24".parse()?)
///     .routers(["192.168.48.1".parse()?])
///     .dns(["192.168.48.1".parse()?, "1.1.1.1".parse()?])
///     .domain_name("vm.example")
///     .domain_search(["vm.example", "example"])
///     .ntp(["192.168.48.1".parse()?])
///     .lease_time(LeaseTime::from_secs(86400))
///     .mtu(1450)
///     .build()?;
/// assert_eq!(config.server_id().to_string(), "192.168.48.1");
/// assert_eq!(config.lease_time().as_secs(), 86400);
/// // Option 6 as it goes on the wire: code, length, two addresses.
/// assert_eq!(config.encoded_option(6), Some(&[6, 8, 192, 168, 48, 1, 1, 1, 1, 1][..]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    server_id: Ipv4Addr,
    subnet: Ipv4Net,
    routers: Vec<Ipv4Addr>,
    dns: Vec<Ipv4Addr>,
    domain_name: Option<String>,
    domain_search: Vec<String>,
    ntp: Vec<Ipv4Addr>,
    lease_time: LeaseTime,
    t1_permille: u16,
    t2_permille: u16,
    mtu: Option<u16>,
    broadcast: Option<Ipv4Addr>,
    routes: Vec<Route>,
    hostname_policy: HostnamePolicy,
    authoritative: bool,
    /// TLVs of every configured option, back to back.
    wire: Vec<u8>,
    /// Where each option's TLVs sit in `wire`, by code.
    index: Vec<(u8, Range<usize>)>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("server_id", &self.server_id)
            .field("subnet", &self.subnet)
            .field("routers", &self.routers)
            .field("dns", &self.dns)
            .field("domain_name", &self.domain_name)
            .field("domain_search", &self.domain_search)
            .field("ntp", &self.ntp)
            .field("lease_time", &self.lease_time)
            .field("t1_permille", &self.t1_permille)
            .field("t2_permille", &self.t2_permille)
            .field("mtu", &self.mtu)
            .field("broadcast", &self.broadcast)
            .field("routes", &self.routes)
            .field("hostname_policy", &self.hostname_policy)
            .field("authoritative", &self.authoritative)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Config`]. Every setter replaces the previous value.
///
/// ```
/// let builder = dhcp_server::Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?);
/// let config = builder.dns(["10.0.0.53".parse()?]).authoritative(true).build()?;
/// assert!(config.authoritative());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ConfigBuilder {
    c: Config,
}

impl Config {
    /// Starts a configuration for the server `server_id` serving `subnet` (which must contain
    /// it). Defaults: one-hour leases, T1/T2 at 500‰/875‰, broadcast address of the subnet,
    /// no other options, not authoritative.
    ///
    /// ```
    /// let c = dhcp_server::Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?).build()?;
    /// assert_eq!(c.lease_time().as_secs(), 3600);
    /// assert!(!c.authoritative());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder(server_id: Ipv4Addr, subnet: Ipv4Net) -> ConfigBuilder {
        ConfigBuilder {
            c: Config {
                server_id,
                subnet: subnet.trunc(),
                routers: Vec::new(),
                dns: Vec::new(),
                domain_name: None,
                domain_search: Vec::new(),
                ntp: Vec::new(),
                lease_time: LeaseTime::from_secs(3600),
                t1_permille: 500,
                t2_permille: 875,
                mtu: None,
                broadcast: None,
                routes: Vec::new(),
                hostname_policy: HostnamePolicy::Omit,
                authoritative: false,
                wire: Vec::new(),
                index: Vec::new(),
            },
        }
    }

    /// The server identifier (option 54), also the source address of replies.
    ///
    /// ```
    /// # let c = dhcp_server::Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?).build()?;
    /// assert_eq!(c.server_id().to_string(), "10.0.0.1");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn server_id(&self) -> Ipv4Addr {
        self.server_id
    }
    /// The served subnet (its mask is option 1).
    ///
    /// ```
    /// # let c = dhcp_server::Config::builder("10.0.0.1".parse()?, "10.0.0.9/24".parse()?).build()?;
    /// assert_eq!(c.subnet().to_string(), "10.0.0.0/24");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn subnet(&self) -> Ipv4Net {
        self.subnet
    }
    /// The default lease time (option 51), unless a lease sets its own.
    ///
    /// ```
    /// # let c = dhcp_server::Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?).build()?;
    /// assert_eq!(c.lease_time(), dhcp_server::LeaseTime::from_secs(3600));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn lease_time(&self) -> LeaseTime {
        self.lease_time
    }
    /// T1 and T2 in thousandths of the lease time.
    ///
    /// ```
    /// # let c = dhcp_server::Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?).build()?;
    /// assert_eq!(c.timers_permille(), (500, 875));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn timers_permille(&self) -> (u16, u16) {
        (self.t1_permille, self.t2_permille)
    }
    /// The interface MTU (option 26), which also bounds reply sizes.
    ///
    /// ```
    /// # let c = dhcp_server::Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?).mtu(9000).build()?;
    /// assert_eq!(c.mtu(), Some(9000));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn mtu(&self) -> Option<u16> {
        self.mtu
    }
    /// Whether the server NAKs requests it has no record of (INIT-REBOOT, RENEWING,
    /// REBINDING) instead of staying silent.
    ///
    /// ```
    /// # let c = dhcp_server::Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?).authoritative(true).build()?;
    /// assert!(c.authoritative());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn authoritative(&self) -> bool {
        self.authoritative
    }
    /// Whether replies carry option 12.
    ///
    /// ```
    /// # let c = dhcp_server::Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?).build()?;
    /// assert_eq!(c.hostname_policy(), dhcp_server::HostnamePolicy::Omit);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn hostname_policy(&self) -> HostnamePolicy {
        self.hostname_policy
    }
    /// The routers (option 3).
    ///
    /// ```
    /// # let c = dhcp_server::Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?).build()?;
    /// assert!(c.routers().is_empty()); // and then no option 3 at all
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn routers(&self) -> &[Ipv4Addr] {
        &self.routers
    }
    /// The classless static routes (option 121) as sent, including the default route added
    /// for the first router.
    ///
    /// ```
    /// use dhcp_server::{Config, Route};
    /// let c = Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?)
    ///     .routers(["10.0.0.254".parse()?])
    ///     .classless_routes([Route::new("172.16.0.0/12".parse()?, "10.0.0.2".parse()?)])
    ///     .build()?;
    /// assert_eq!(c.classless_routes().len(), 2);
    /// assert_eq!(c.classless_routes()[1].destination().prefix_len(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn classless_routes(&self) -> &[Route] {
        &self.routes
    }

    /// An option exactly as replies carry it: code, length and value, repeated when the value
    /// is longer than 255 bytes (RFC 3396). `None` when not configured. Covers the options
    /// that come from the configuration: 1, 3, 6, 15, 26, 28, 42, 119, 121.
    ///
    /// ```
    /// let c = dhcp_server::Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?).build()?;
    /// assert_eq!(c.encoded_option(1), Some(&[1, 4, 255, 255, 255, 0][..]));
    /// assert_eq!(c.encoded_option(3), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn encoded_option(&self, code: u8) -> Option<&[u8]> {
        self.index
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, r)| &self.wire[r.clone()])
    }
}

fn domain(name: &str) -> Result<Name, Error> {
    let invalid = |reason: String| Error::InvalidDomainName {
        name: name.to_owned(),
        reason,
    };
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() || trimmed.len() > 253 {
        return Err(invalid("must be 1 to 253 characters".into()));
    }
    if trimmed.split('.').any(|l| l.is_empty() || l.len() > 63) {
        return Err(invalid("every label must be 1 to 63 characters".into()));
    }
    if !trimmed
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err(invalid(
            "only letters, digits, '-', '_' and '.' are allowed".into(),
        ));
    }
    Name::from_ascii(trimmed).map_err(|e| invalid(e.to_string()))
}

impl ConfigBuilder {
    /// Routers (option 3), in order of preference. An empty list sends no option 3.
    ///
    /// ```
    /// # use std::net::Ipv4Addr;
    /// let b = dhcp_server::Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?);
    /// let c = b.routers([Ipv4Addr::new(10, 0, 0, 1)]).build()?;
    /// assert_eq!(c.encoded_option(3), Some(&[3, 4, 10, 0, 0, 1][..]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn routers(mut self, routers: impl IntoIterator<Item = Ipv4Addr>) -> Self {
        self.c.routers = routers.into_iter().collect();
        self
    }
    /// DNS servers (option 6), in order of preference.
    ///
    /// ```
    /// # use std::net::Ipv4Addr;
    /// let b = dhcp_server::Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?);
    /// let c = b.dns([Ipv4Addr::new(10, 0, 0, 53)]).build()?;
    /// assert_eq!(c.encoded_option(6), Some(&[6, 4, 10, 0, 0, 53][..]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn dns(mut self, servers: impl IntoIterator<Item = Ipv4Addr>) -> Self {
        self.c.dns = servers.into_iter().collect();
        self
    }
    /// The domain name (option 15).
    ///
    /// ```
    /// # use std::net::Ipv4Addr;
    /// let b = dhcp_server::Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?);
    /// let c = b.domain_name("vm.example").build()?;
    /// assert_eq!(c.encoded_option(15).unwrap()[2..], *b"vm.example");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn domain_name(mut self, name: impl Into<String>) -> Self {
        self.c.domain_name = Some(name.into());
        self
    }
    /// The domain search list (option 119, RFC 3397, compressed).
    ///
    /// ```
    /// # use std::net::Ipv4Addr;
    /// let b = dhcp_server::Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?);
    /// let c = b.domain_search(["a.example", "b.example"]).build()?;
    /// // "b.example" ends with a pointer to "example" in the first name.
    /// assert_eq!(c.encoded_option(119).unwrap().len(), 2 + 11 + 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn domain_search<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.c.domain_search = names.into_iter().map(Into::into).collect();
        self
    }
    /// NTP servers (option 42), already resolved to addresses.
    ///
    /// ```
    /// # use std::net::Ipv4Addr;
    /// let b = dhcp_server::Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?);
    /// let c = b.ntp([Ipv4Addr::new(10, 0, 0, 123)]).build()?;
    /// assert_eq!(c.encoded_option(42), Some(&[42, 4, 10, 0, 0, 123][..]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ntp(mut self, servers: impl IntoIterator<Item = Ipv4Addr>) -> Self {
        self.c.ntp = servers.into_iter().collect();
        self
    }
    /// The default lease time (option 51).
    ///
    /// ```
    /// # use std::net::Ipv4Addr;
    /// let b = dhcp_server::Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?);
    /// let c = b.lease_time(dhcp_server::LeaseTime::INFINITE).build()?;
    /// assert!(c.lease_time().is_infinite());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn lease_time(mut self, lease: LeaseTime) -> Self {
        self.c.lease_time = lease;
        self
    }
    /// T1 (option 58) and T2 (option 59) in thousandths of the lease time; RFC 2131 §4.4.5
    /// suggests 500 and 875, the defaults.
    ///
    /// ```
    /// # use std::net::Ipv4Addr;
    /// let b = dhcp_server::Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?);
    /// let c = b.timers_permille(250, 500).build()?;
    /// assert_eq!(c.timers_permille(), (250, 500));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn timers_permille(mut self, t1: u16, t2: u16) -> Self {
        self.c.t1_permille = t1;
        self.c.t2_permille = t2;
        self
    }
    /// The interface MTU (option 26, at least 68). Replies never exceed it either.
    ///
    /// ```
    /// # use std::net::Ipv4Addr;
    /// let b = dhcp_server::Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?);
    /// let c = b.mtu(1450).build()?;
    /// assert_eq!(c.encoded_option(26), Some(&[26, 2, 5, 170][..]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn mtu(mut self, mtu: u16) -> Self {
        self.c.mtu = Some(mtu);
        self
    }
    /// The broadcast address (option 28); the default is the subnet's broadcast address.
    ///
    /// ```
    /// # use std::net::Ipv4Addr;
    /// let b = dhcp_server::Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?);
    /// let c = b.clone().build()?;
    /// assert_eq!(c.encoded_option(28), Some(&[28, 4, 10, 0, 0, 255][..]));
    /// let c = b.broadcast_addr(Ipv4Addr::BROADCAST).build()?;
    /// assert_eq!(c.encoded_option(28), Some(&[28, 4, 255, 255, 255, 255][..]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn broadcast_addr(mut self, addr: Ipv4Addr) -> Self {
        self.c.broadcast = Some(addr);
        self
    }
    /// Classless static routes (option 121). When routers are configured and these routes
    /// have no default route, a default route via the first router is appended: a client
    /// that receives option 121 ignores option 3 (RFC 3442).
    ///
    /// ```
    /// # use std::net::Ipv4Addr;
    /// let b = dhcp_server::Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?);
    /// use dhcp_server::Route;
    /// let c = b.classless_routes([Route::new("172.16.0.0/12".parse()?, Ipv4Addr::new(10, 0, 0, 2))]).build()?;
    /// assert_eq!(c.encoded_option(121), Some(&[121, 7, 12, 172, 16, 10, 0, 0, 2][..]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn classless_routes(mut self, routes: impl IntoIterator<Item = Route>) -> Self {
        self.c.routes = routes.into_iter().collect();
        self
    }
    /// Whether to send option 12; see [`HostnamePolicy`].
    ///
    /// ```
    /// # use std::net::Ipv4Addr;
    /// let b = dhcp_server::Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?);
    /// let c = b.hostname_policy(dhcp_server::HostnamePolicy::FromLease).build()?;
    /// assert_eq!(c.hostname_policy(), dhcp_server::HostnamePolicy::FromLease);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn hostname_policy(mut self, policy: HostnamePolicy) -> Self {
        self.c.hostname_policy = policy;
        self
    }
    /// NAK requests from clients the server has no record of instead of staying silent
    /// (Kea's `authoritative`, dnsmasq's `--dhcp-authoritative`). Use it only when this is the
    /// one server of the link.
    ///
    /// ```
    /// # use std::net::Ipv4Addr;
    /// let b = dhcp_server::Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?);
    /// let c = b.authoritative(true).build()?;
    /// assert!(c.authoritative());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn authoritative(mut self, yes: bool) -> Self {
        self.c.authoritative = yes;
        self
    }

    /// Validates the values and encodes the options.
    ///
    /// # Errors
    /// [`Error::ServerOutsideSubnet`], [`Error::MtuTooSmall`], [`Error::InvalidDomainName`],
    /// [`Error::ZeroLeaseTime`], [`Error::InvalidTimers`].
    ///
    /// ```
    /// use dhcp_server::{Config, Error};
    /// let b = Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?);
    /// assert!(matches!(b.clone().mtu(60).build(), Err(Error::MtuTooSmall { mtu: 60 })));
    /// assert!(matches!(b.clone().domain_name("bad..name").build(), Err(Error::InvalidDomainName { .. })));
    /// assert!(b.build().is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn build(self) -> Result<Config, Error> {
        let mut c = self.c;
        if !c.subnet.contains(&c.server_id) {
            return Err(Error::ServerOutsideSubnet {
                server_id: c.server_id,
                subnet: c.subnet,
            });
        }
        if let Some(mtu) = c.mtu.filter(|m| *m < 68) {
            return Err(Error::MtuTooSmall { mtu });
        }
        if c.lease_time.as_secs() == 0 {
            return Err(Error::ZeroLeaseTime);
        }
        if !(0 < c.t1_permille && c.t1_permille < c.t2_permille && c.t2_permille < 1000) {
            return Err(Error::InvalidTimers {
                t1_permille: c.t1_permille,
                t2_permille: c.t2_permille,
            });
        }
        if let (Some(&router), false) = (c.routers.first(), c.routes.is_empty())
            && !c.routes.iter().any(|r| r.destination.prefix_len() == 0)
        {
            c.routes.push(Route::new(Ipv4Net::default(), router));
        }
        let domain_name = c.domain_name.as_deref().map(domain).transpose()?;
        let search = c
            .domain_search
            .iter()
            .map(|s| domain(s))
            .collect::<Result<Vec<_>, _>>()?;
        let broadcast = c
            .broadcast
            .or_else(|| (c.subnet.prefix_len() < 31).then(|| c.subnet.broadcast()));

        let mut opts = vec![DhcpOption::SubnetMask(c.subnet.netmask())];
        if !c.routers.is_empty() {
            opts.push(DhcpOption::Router(c.routers.clone()));
        }
        if !c.dns.is_empty() {
            opts.push(DhcpOption::DomainNameServer(c.dns.clone()));
        }
        if let Some(name) = domain_name {
            // Option 15 is text: keep it as written, minus a trailing dot.
            opts.push(DhcpOption::DomainName(
                name.to_ascii().trim_end_matches('.').into(),
            ));
        }
        if let Some(mtu) = c.mtu {
            opts.push(DhcpOption::InterfaceMtu(mtu));
        }
        if let Some(b) = broadcast {
            opts.push(DhcpOption::BroadcastAddr(b));
        }
        if !c.ntp.is_empty() {
            opts.push(DhcpOption::NtpServers(c.ntp.clone()));
        }
        if !search.is_empty() {
            opts.push(DhcpOption::DomainSearch(search));
        }
        if !c.routes.is_empty() {
            let routes = c
                .routes
                .iter()
                .map(|r| (r.destination, r.gateway))
                .collect();
            opts.push(DhcpOption::ClasslessStaticRoute(routes));
        }
        for opt in &opts {
            // dhcproto's `Encoder` writes from the start of its buffer: one buffer per option.
            let tlvs = opt.to_vec().map_err(|e| Error::InvalidDomainName {
                name: format!("{opt:?}"),
                reason: e.to_string(),
            })?;
            let start = c.wire.len();
            c.wire.extend_from_slice(&tlvs);
            let first = tlvs.first().copied().unwrap_or(code::PAD);
            c.index.push((first, start..c.wire.len()));
        }
        // Never a zero-length option: an encoder that wrote an empty value is a bug here.
        debug_assert!(c.index.iter().all(|(_, r)| r.len() > 2));
        Ok(c)
    }
}

/// The current [`Config`] of a running server, replaceable at any time from any thread. The
/// server reads it once per packet (lock-free), so the next reply after
/// [`store`](Self::store) uses the new values.
///
/// ```
/// use dhcp_server::{Config, ConfigHandle};
///
/// let net = "10.0.0.0/24".parse()?;
/// let handle = ConfigHandle::new(Config::builder("10.0.0.1".parse()?, net).build()?);
/// let for_server = handle.clone();
/// handle.store(Config::builder("10.0.0.1".parse()?, net).dns(["10.0.0.53".parse()?]).build()?);
/// assert_eq!(for_server.current().encoded_option(6), Some(&[6, 4, 10, 0, 0, 53][..]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct ConfigHandle(Arc<ArcSwap<Config>>);

impl ConfigHandle {
    /// A handle holding `config`.
    ///
    /// ```
    /// # let c = dhcp_server::Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?).build()?;
    /// let handle = dhcp_server::ConfigHandle::new(c);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(config: Config) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(config)))
    }

    /// Replaces the configuration; every clone of this handle sees the new one.
    ///
    /// ```
    /// # let c = dhcp_server::Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?).build()?;
    /// let handle = dhcp_server::ConfigHandle::new(c.clone());
    /// handle.store(c);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn store(&self, config: Config) {
        self.0.store(Arc::new(config));
    }

    /// The configuration now in force.
    ///
    /// ```
    /// # let c = dhcp_server::Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?).build()?;
    /// let handle = dhcp_server::ConfigHandle::new(c);
    /// assert_eq!(handle.current().server_id().to_string(), "10.0.0.1");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn current(&self) -> Arc<Config> {
        self.0.load_full()
    }

    /// A cheap, lock-free read for the packet path.
    pub(crate) fn load(&self) -> arc_swap::Guard<Arc<Config>> {
        self.0.load()
    }
}

#[cfg(test)]
mod tests;
