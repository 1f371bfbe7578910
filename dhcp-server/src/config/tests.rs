use super::*;

fn net() -> Ipv4Net {
    "10.0.0.0/24".parse().unwrap()
}
fn base() -> ConfigBuilder {
    Config::builder(Ipv4Addr::new(10, 0, 0, 1), net())
}

#[test]
fn domain_search_uses_rfc3397_compression() {
    // The example of RFC 3397 §2.
    let c = base()
        .domain_search(["eng.apple.com.", "marketing.apple.com"])
        .build()
        .unwrap();
    let mut expected = vec![119, 27, 3];
    expected.extend(b"eng");
    expected.push(5);
    expected.extend(b"apple");
    expected.push(3);
    expected.extend(b"com");
    expected.extend([0, 9]);
    expected.extend(b"marketing");
    expected.extend([0xc0, 0x04]);
    assert_eq!(
        c.encoded_option(code::DOMAIN_SEARCH).unwrap(),
        &expected[..]
    );
}

#[test]
fn long_search_lists_are_split_rfc3396() {
    let names: Vec<String> = (0..30)
        .map(|i| format!("zone{i:02}.long-domain-name.example"))
        .collect();
    let c = base().domain_search(names).build().unwrap();
    let wire = c.encoded_option(code::DOMAIN_SEARCH).unwrap();
    assert!(wire.len() > 257);
    assert_eq!(&wire[..2], &[119, 255]);
    assert_eq!(wire[257], 119);
}

#[test]
fn classless_routes_encode_significant_octets_and_get_a_default_route() {
    let c = base()
        .routers([Ipv4Addr::new(10, 0, 0, 254)])
        .classless_routes([
            Route::new("10.0.0.0/8".parse().unwrap(), Ipv4Addr::new(10, 0, 0, 1)),
            Route::new("172.16.0.0/12".parse().unwrap(), Ipv4Addr::new(10, 0, 0, 2)),
            Route::new(
                "192.168.1.7/32".parse().unwrap(),
                Ipv4Addr::new(10, 0, 0, 3),
            ),
        ])
        .build()
        .unwrap();
    let expected = [
        121, 27, // code, length
        8, 10, 10, 0, 0, 1, // 10/8 via 10.0.0.1
        12, 172, 16, 10, 0, 0, 2, // 172.16/12 via 10.0.0.2
        32, 192, 168, 1, 7, 10, 0, 0, 3, // host route
        0, 10, 0, 0, 254, // default route via the first router, appended
    ];
    assert_eq!(
        c.encoded_option(code::CLASSLESS_ROUTES).unwrap(),
        &expected[..]
    );
    assert_eq!(c.classless_routes().len(), 4);
}

#[test]
fn an_explicit_default_route_is_not_duplicated_and_no_routes_means_no_121() {
    let c = base()
        .routers([Ipv4Addr::new(10, 0, 0, 254)])
        .classless_routes([Route::new(Ipv4Net::default(), Ipv4Addr::new(10, 0, 0, 9))])
        .build()
        .unwrap();
    assert_eq!(
        c.encoded_option(code::CLASSLESS_ROUTES).unwrap(),
        &[121, 5, 0, 10, 0, 0, 9]
    );
    let c = base()
        .routers([Ipv4Addr::new(10, 0, 0, 254)])
        .build()
        .unwrap();
    assert_eq!(c.encoded_option(code::CLASSLESS_ROUTES), None);
}

#[test]
fn unconfigured_options_are_absent_never_zero_length() {
    let c = base().build().unwrap();
    for code in [3, 6, 15, 26, 42, 119, 121] {
        assert_eq!(c.encoded_option(code), None, "option {code}");
    }
    // Only the mask and broadcast address are always there.
    assert_eq!(c.encoded_option(1), Some(&[1, 4, 255, 255, 255, 0][..]));
    assert_eq!(c.encoded_option(28), Some(&[28, 4, 10, 0, 0, 255][..]));
    // Empty lists set explicitly behave the same.
    let c = base()
        .routers([])
        .dns([])
        .ntp([])
        .domain_search(Vec::<String>::new())
        .build()
        .unwrap();
    for code in [3, 6, 42, 119] {
        assert_eq!(c.encoded_option(code), None, "option {code}");
    }
}

#[test]
fn every_configured_option_is_encoded() {
    let c = base()
        .routers([Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)])
        .dns([Ipv4Addr::new(10, 0, 0, 53)])
        .domain_name("vm.example.")
        .ntp([Ipv4Addr::new(10, 0, 0, 123)])
        .mtu(1450)
        .broadcast_addr(Ipv4Addr::new(10, 0, 0, 255))
        .build()
        .unwrap();
    assert_eq!(
        c.encoded_option(3).unwrap(),
        &[3, 8, 10, 0, 0, 1, 10, 0, 0, 2]
    );
    assert_eq!(c.encoded_option(6).unwrap(), &[6, 4, 10, 0, 0, 53]);
    let mut domain = vec![15, 10];
    domain.extend(b"vm.example");
    assert_eq!(c.encoded_option(15).unwrap(), &domain[..]);
    assert_eq!(c.encoded_option(42).unwrap(), &[42, 4, 10, 0, 0, 123]);
    assert_eq!(c.encoded_option(26).unwrap(), &[26, 2, 0x05, 0xaa]);
}

#[test]
fn small_prefixes_have_no_broadcast_option() {
    let c = Config::builder(Ipv4Addr::new(10, 0, 0, 1), "10.0.0.0/31".parse().unwrap())
        .build()
        .unwrap();
    assert_eq!(c.encoded_option(28), None);
}

#[test]
fn validation_errors_name_the_values() {
    let err = base().mtu(67).build().unwrap_err();
    assert_eq!(
        err.to_string(),
        "interface MTU 67 is below the minimum of 68"
    );
    assert!(base().mtu(68).build().is_ok());

    assert!(matches!(
        base().lease_time(LeaseTime::from_secs(0)).build(),
        Err(Error::ZeroLeaseTime)
    ));
    for (t1, t2) in [(0, 500), (500, 500), (900, 875), (500, 1000)] {
        let err = base().timers_permille(t1, t2).build().unwrap_err();
        assert!(
            matches!(err, Error::InvalidTimers { t1_permille, t2_permille } if (t1_permille, t2_permille) == (t1, t2)),
            "{t1}/{t2}"
        );
    }
    for bad in [
        "",
        ".",
        "a..b",
        "spaces here",
        "ünïcode.example",
        &"x".repeat(64),
    ] {
        let err = base().domain_name(bad).build().unwrap_err();
        assert!(
            matches!(err, Error::InvalidDomainName { ref name, .. } if name == bad),
            "{bad}: {err}"
        );
    }
    let err = base()
        .domain_search(["ok.example", "bad..example"])
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("bad..example"), "{err}");
}

#[test]
fn timers_are_fractions_of_the_lease() {
    assert_eq!(LeaseTime::from_secs(3600).fraction(500), 1800);
    assert_eq!(LeaseTime::from_secs(3600).fraction(875), 3150);
    assert_eq!(
        LeaseTime::from_secs(u32::MAX - 1).fraction(999),
        4_290_672_326
    );
}

#[test]
fn handle_swaps_for_every_clone() {
    let handle = ConfigHandle::new(base().build().unwrap());
    let other = handle.clone();
    handle.store(base().lease_time(LeaseTime::from_secs(60)).build().unwrap());
    assert_eq!(other.load().lease_time().as_secs(), 60);
    assert_eq!(other.current().lease_time().as_secs(), 60);
}
