//! Serde support: a pool travels as its network, range, reservations and allocations, and is
//! rebuilt (and so validated) on the way in. The `NextFit` cursor is not part of the format.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::{Error, Pool};

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PoolWire {
    network: Ipv4Net,
    start: Ipv4Addr,
    end: Ipv4Addr,
    #[serde(default)]
    reserved: Vec<Ipv4Addr>,
    #[serde(default)]
    allocated: Vec<Ipv4Addr>,
}

impl TryFrom<PoolWire> for Pool {
    type Error = Error;

    fn try_from(wire: PoolWire) -> Result<Self, Error> {
        let mut pool = Pool::new(wire.network, wire.start, wire.end)?;
        for ip in wire.reserved {
            pool.reserve(ip)?;
        }
        pool.restore(wire.allocated)?;
        Ok(pool)
    }
}

impl Serialize for Pool {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        PoolWire {
            network: self.network(),
            start: self.start(),
            end: self.end(),
            reserved: self.reserved().collect(),
            allocated: self.allocated().collect(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Pool {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = PoolWire::deserialize(deserializer)?;
        Pool::try_from(wire).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use crate::{Pool, Strategy};

    #[test]
    fn round_trips_through_json() {
        let mut pool = Pool::whole("10.0.0.0/28".parse().unwrap()).unwrap();
        pool.reserve("10.0.0.1".parse().unwrap()).unwrap();
        pool.allocate(Strategy::LowestFree).unwrap();
        let json = serde_json::to_string(&pool).unwrap();
        assert_eq!(
            json,
            r#"{"network":"10.0.0.0/28","start":"10.0.0.1","end":"10.0.0.14","reserved":["10.0.0.1"],"allocated":["10.0.0.2"]}"#
        );
        let back: Pool = serde_json::from_str(&json).unwrap();
        assert_eq!(back, pool);
    }

    #[test]
    fn invalid_input_is_rejected_with_the_value() {
        let err = serde_json::from_str::<Pool>(
            r#"{"network":"10.0.0.0/28","start":"10.0.0.1","end":"10.0.0.14","allocated":["10.0.0.99"]}"#,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("10.0.0.99 is outside network 10.0.0.0/28"),
            "{err}"
        );
    }
}
