use super::*;

const DAY: i64 = 24 * 3600;

fn t0() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

fn at(days: i64) -> Timestamp {
    Timestamp::from_second(t0().as_second() + days * DAY).unwrap()
}

fn sans() -> Vec<String> {
    vec![
        "vmdhcp-webhook.kube-system.svc".to_owned(),
        "127.0.0.1".to_owned(),
    ]
}

fn pair() -> (CertPem, CertPem) {
    let ca = generate_ca("vmdhcp-webhook-ca", t0(), CA_LIFETIME).unwrap();
    let serving = issue_serving(&ca, &sans(), t0(), SERVING_LIFETIME).unwrap();
    (ca, serving)
}

#[test]
fn generated_ca_is_a_ca_and_fresh() {
    let (ca, _) = pair();
    let info = check_ca(&ca, t0()).unwrap();
    assert!(info.is_ca);
    assert_eq!(info.subject, "CN=vmdhcp-webhook-ca, O=vmdhcp");
    assert_eq!(info.not_before.as_second(), t0().as_second() - 3600);
    assert_eq!(info.not_after.as_second(), at(3650).as_second());
}

#[test]
fn serving_cert_has_the_names_and_chains_to_the_ca() {
    let (ca, serving) = pair();
    let info = check_serving(&serving, &ca, &sans(), t0()).unwrap();
    assert!(!info.is_ca);
    assert_eq!(info.dns_names, ["vmdhcp-webhook.kube-system.svc"]);
    assert_eq!(info.ip_addresses, ["127.0.0.1".parse::<IpAddr>().unwrap()]);
    assert_eq!(info.subject, "CN=vmdhcp-webhook.kube-system.svc");
    assert_eq!(info.not_after.as_second(), at(365).as_second());
}

#[test]
fn serials_differ_between_certificates() {
    let (ca, a) = pair();
    let b = issue_serving(&ca, &sans(), t0(), SERVING_LIFETIME).unwrap();
    assert_ne!(
        inspect(&a.cert).unwrap().serial,
        inspect(&b.cert).unwrap().serial
    );
}

#[test]
fn renewal_is_due_with_a_third_of_the_lifetime_left() {
    let (ca, serving) = pair();
    let info = inspect(&serving.cert).unwrap();
    let due = renew_at(&info);
    // 365 days + 1 h backdate: a third is left a little over 121 days before the end.
    assert!(due > at(243) && due < at(244), "{due}");
    assert!(check_serving(&serving, &ca, &sans(), at(243)).is_ok());
    assert_eq!(
        check_serving(&serving, &ca, &sans(), at(244)),
        Err(Stale::Expiring(due))
    );
    assert!(matches!(
        check_serving(&serving, &ca, &sans(), at(400)),
        Err(Stale::Expiring(_))
    ));
    assert!(check_ca(&ca, at(2400)).is_ok());
    assert!(matches!(check_ca(&ca, at(2500)), Err(Stale::Expiring(_))));
}

#[test]
fn not_yet_valid_is_stale() {
    let (ca, _) = pair();
    assert!(matches!(check_ca(&ca, at(-1)), Err(Stale::NotYetValid(_))));
}

#[test]
fn another_cas_certificate_is_refused() {
    let (_, serving) = pair();
    let other = generate_ca("vmdhcp-webhook-ca", t0(), CA_LIFETIME).unwrap();
    match check_serving(&serving, &other, &sans(), t0()) {
        Err(Stale::NotIssuedByCa(why)) => assert!(!why.is_empty()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn changed_names_are_stale() {
    let (ca, serving) = pair();
    let want = vec![
        "vmdhcp-webhook.kube-system.svc".to_owned(),
        "10.0.0.1".to_owned(),
    ];
    assert_eq!(
        check_serving(&serving, &ca, &want, t0()),
        Err(Stale::SansChanged {
            have: vec!["127.0.0.1".into(), "vmdhcp-webhook.kube-system.svc".into()],
            want: vec!["10.0.0.1".into(), "vmdhcp-webhook.kube-system.svc".into()],
        })
    );
}

#[test]
fn a_key_from_elsewhere_is_stale() {
    let (ca, serving) = pair();
    let swapped = CertPem {
        cert: serving.cert.clone(),
        key: ca.key.clone(),
    };
    assert_eq!(
        check_serving(&swapped, &ca, &sans(), t0()),
        Err(Stale::KeyMismatch)
    );
}

#[test]
fn garbage_is_unreadable() {
    let (ca, serving) = pair();
    let garbage = CertPem {
        cert: "nope".into(),
        key: serving.key.clone(),
    };
    assert!(matches!(
        check_serving(&garbage, &ca, &sans(), t0()),
        Err(Stale::Unreadable(_))
    ));
    let bad_key = CertPem {
        cert: serving.cert.clone(),
        key: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into(),
    };
    assert!(matches!(
        check_serving(&bad_key, &ca, &sans(), t0()),
        Err(Stale::Unreadable(_))
    ));
    assert!(issue_serving(&garbage, &sans(), t0(), SERVING_LIFETIME).is_err());
}

#[test]
fn a_serving_certificate_is_not_a_ca() {
    let (_, serving) = pair();
    assert_eq!(check_ca(&serving, t0()), Err(Stale::NotCa));
}

#[test]
fn debug_never_prints_the_key() {
    let (ca, _) = pair();
    let shown = format!("{ca:?}");
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    assert!(shown.contains("serial"), "{shown}");
}
