use super::*;
use crate::testutil::{DISCOVER, MAC_A, Packet, REQUEST};

#[test]
fn header_fields_are_read_from_their_offsets() {
    let bytes = Packet::new(REQUEST)
        .hops(2)
        .secs(7)
        .broadcast_flag()
        .ciaddr([10, 0, 0, 9].into())
        .giaddr([10, 0, 0, 254].into())
        .bytes();
    let req = Request::parse(&bytes).unwrap();
    assert_eq!(req.op(), BOOTREQUEST);
    assert_eq!((req.htype(), req.hlen(), req.hops()), (1, 6, 2));
    assert_eq!((req.xid(), req.secs()), (0x1234, 7));
    assert!(req.broadcast_flag());
    assert_eq!(req.flags(), 0x8000);
    assert_eq!(req.ciaddr(), Ipv4Addr::new(10, 0, 0, 9));
    assert_eq!(req.giaddr(), Ipv4Addr::new(10, 0, 0, 254));
    assert_eq!(req.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(req.siaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(req.chaddr(), &MAC_A);
    assert_eq!(req.chaddr_field().len(), 16);
    assert_eq!(req.mac(), Some(MacAddr::new(MAC_A)));
    assert_eq!(req.message_type(), Some(MessageType::Request));
}

#[test]
fn known_options_are_typed() {
    let bytes = Packet::new(REQUEST)
        .server_id([10, 0, 0, 1].into())
        .requested([10, 0, 0, 50].into())
        .opt(51, &600u32.to_be_bytes())
        .max_size(1500)
        .prl(&[1, 3, 6])
        .opt(61, &[1, 2, 3])
        .opt(82, &[1, 2, 9, 9])
        .opt(12, b"vm1")
        .bytes();
    let req = Request::parse(&bytes).unwrap();
    assert_eq!(req.server_id(), Some(Ipv4Addr::new(10, 0, 0, 1)));
    assert_eq!(req.requested_addr(), Some(Ipv4Addr::new(10, 0, 0, 50)));
    assert_eq!(req.requested_lease_time(), Some(600));
    assert_eq!(req.max_message_size(), Some(1500));
    assert_eq!(req.parameter_request_list(), &[1, 3, 6]);
    assert!(req.has_parameter_request_list());
    assert_eq!(req.client_id(), Some(&[1, 2, 3][..]));
    assert_eq!(req.relay_agent_info(), Some(&[1, 2, 9, 9][..]));
    assert_eq!(req.hostname(), Some(&b"vm1"[..]));
    assert_eq!(req.overload(), 0);
}

#[test]
fn too_short_and_bad_hlen_are_errors() {
    assert_eq!(
        Request::parse(&[0; 235]).unwrap_err(),
        ParseError::TooShort { len: 235 }
    );
    let bytes = Packet::new(DISCOVER).htype(1, 17).bytes();
    assert_eq!(
        Request::parse(&bytes).unwrap_err(),
        ParseError::BadHardwareLength { hlen: 17 }
    );
}

#[test]
fn without_cookie_it_is_bootp_without_options() {
    let mut bytes = Packet::new(DISCOVER).bytes();
    bytes[236] = 0;
    let req = Request::parse(&bytes).unwrap();
    assert_eq!(req.message_type(), None);
    // A bare 236-byte header parses too.
    assert!(
        Request::parse(&bytes[..236])
            .unwrap()
            .message_type()
            .is_none()
    );
}

#[test]
fn a_truncated_message_type_or_client_id_is_an_error() {
    let mut bytes = Packet::new(DISCOVER).no_end().bytes();
    bytes.extend([61, 10, 1, 2]);
    assert_eq!(
        Request::parse(&bytes).unwrap_err(),
        ParseError::TruncatedOption {
            code: 61,
            area: Area::Options
        }
    );
    // A code with no length byte at all.
    let mut bytes = Packet::new(DISCOVER).no_end().bytes();
    bytes.push(61);
    assert!(matches!(
        Request::parse(&bytes),
        Err(ParseError::TruncatedOption { code: 61, .. })
    ));
    let mut bytes = Packet::bootp().no_end().bytes();
    bytes.extend([53, 1]);
    assert!(matches!(
        Request::parse(&bytes),
        Err(ParseError::TruncatedOption { code: 53, .. })
    ));
}

#[test]
fn other_truncated_options_are_skipped_and_counted() {
    for code in [12u8, 50, 54, 55, 82, 60] {
        let mut bytes = Packet::new(DISCOVER).opt(61, &[1, 2]).no_end().bytes();
        bytes.extend([code, 30, 1, 2, 3]);
        let req = Request::parse(&bytes).unwrap();
        assert_eq!(req.message_type(), Some(MessageType::Discover), "{code}");
        assert_eq!(req.client_id(), Some(&[1, 2][..]));
        assert_eq!(req.skips().count(Skip::Truncated), 1, "{code}");
        assert_eq!(
            req.skips().count(Skip::NoEnd),
            0,
            "truncation is not also a missing End"
        );
        assert_eq!(req.skips().first_code(), Some(code));
        assert_eq!(req.option(code), None);
        assert_eq!(req.requested_addr(), None);
        assert_eq!(req.server_id(), None);
        assert_eq!(req.relay_agent_info(), None);
    }
}

#[test]
fn a_missing_end_is_accepted_and_counted_trailing_garbage_is_not_read() {
    let bytes = Packet::new(DISCOVER).no_end().bytes();
    let req = Request::parse(&bytes).unwrap();
    assert_eq!(req.message_type(), Some(MessageType::Discover));
    assert_eq!(req.skips().count(Skip::NoEnd), 1);
    assert_eq!(req.skips().first_code(), None);
    let mut bytes = Packet::new(DISCOVER).bytes();
    bytes.extend([61, 200, 1]); // after End: ignored
    let req = Request::parse(&bytes).unwrap();
    assert!(req.client_id().is_none());
    assert!(req.skips().is_empty());
}

#[test]
fn a_message_type_of_the_wrong_length_is_an_error() {
    let bytes = Packet::bootp().opt(53, &[1, 1]).bytes();
    assert_eq!(
        Request::parse(&bytes).unwrap_err(),
        ParseError::BadOptionLength { code: 53, len: 2 }
    );
    // Split in two instances, it is still two bytes (RFC 3396).
    let bytes = Packet::bootp().opt(53, &[1]).opt(53, &[3]).bytes();
    assert!(matches!(
        Request::parse(&bytes),
        Err(ParseError::BadOptionLength { code: 53, len: 2 })
    ));
}

#[test]
fn other_fixed_size_options_of_the_wrong_length_are_absent() {
    for (code, value) in [
        (54u8, &[1u8, 2, 3][..]),
        (50, &[1]),
        (51, &[0; 5]),
        (57, &[2]),
        (52, &[1, 1]),
        (54, &[]),
    ] {
        let bytes = Packet::new(REQUEST)
            .opt(code, value)
            .requested([10, 0, 0, 7].into())
            .bytes();
        let req = Request::parse(&bytes).unwrap();
        assert_eq!(req.skips().count(Skip::BadLength), 1, "option {code}");
        assert_eq!(req.skips().first_code(), Some(code));
        match code {
            54 => assert_eq!(req.server_id(), None),
            // The malformed first instance and the good second one concatenate: 5 bytes.
            50 => assert_eq!(req.requested_addr(), None),
            51 => assert_eq!(req.requested_lease_time(), None),
            57 => assert_eq!(req.max_message_size(), None),
            _ => assert_eq!(req.overload(), 0),
        }
    }
}

#[test]
fn pad_options_are_skipped() {
    let bytes = Packet::bootp().opt(0, &[]).bytes();
    // `opt(0, ..)` wrote [0, 0]: two pads; then 255.
    assert!(Request::parse(&bytes).unwrap().message_type().is_none());
    let mut bytes = Packet::bootp().no_end().bytes();
    bytes.extend([0, 0, 0, 53, 1, 1, 0, 255]);
    assert_eq!(
        Request::parse(&bytes).unwrap().message_type(),
        Some(MessageType::Discover)
    );
}

#[test]
fn split_options_are_concatenated_rfc3396() {
    let bytes = Packet::new(DISCOVER)
        .opt(61, &[1, 2])
        .prl(&[1, 3])
        .opt(61, &[3, 4])
        .prl(&[6])
        .bytes();
    let req = Request::parse(&bytes).unwrap();
    assert_eq!(req.client_id(), Some(&[1, 2, 3, 4][..]));
    assert_eq!(req.parameter_request_list(), &[1, 3, 6]);
    assert_eq!(req.option(61).as_deref(), Some(&[1, 2, 3, 4][..]));
}

#[test]
fn overload_reads_file_then_sname() {
    // Option 53 in the options field, 61 split between file and sname, 55 in sname.
    let file = [61, 2, 0xaa, 0xbb, 255];
    let sname = [61, 1, 0xcc, 55, 2, 1, 3, 255];
    let bytes = Packet::new(DISCOVER)
        .opt(52, &[3])
        .file(&file)
        .sname(&sname)
        .bytes();
    let req = Request::parse(&bytes).unwrap();
    assert_eq!(req.overload(), 3);
    assert_eq!(req.client_id(), Some(&[0xaa, 0xbb, 0xcc][..]));
    assert_eq!(req.parameter_request_list(), &[1, 3]);
    assert_eq!(req.option(55).as_deref(), Some(&[1, 3][..]));

    // Overload 1: only `file` is read.
    let bytes = Packet::new(DISCOVER)
        .opt(52, &[1])
        .file(&file)
        .sname(&sname)
        .bytes();
    let req = Request::parse(&bytes).unwrap();
    assert_eq!(req.client_id(), Some(&[0xaa, 0xbb][..]));
    assert!(req.parameter_request_list().is_empty());

    // Message type only in `file`.
    let bytes = Packet::bootp().opt(52, &[1]).file(&[53, 1, 3, 255]).bytes();
    assert_eq!(
        Request::parse(&bytes).unwrap().message_type(),
        Some(MessageType::Request)
    );

    // Without option 52, what looks like options in `file` is a file name.
    let bytes = Packet::bootp().file(&[53, 1, 3, 255]).bytes();
    assert_eq!(Request::parse(&bytes).unwrap().message_type(), None);
}

#[test]
fn a_bad_overload_value_is_skipped_and_a_truncated_client_id_in_file_is_an_error() {
    let bytes = Packet::new(DISCOVER)
        .opt(52, &[4])
        .file(&[61, 2, 0xaa, 0xbb, 255])
        .bytes();
    let req = Request::parse(&bytes).unwrap();
    assert_eq!(req.overload(), 0);
    assert_eq!(
        req.client_id(),
        None,
        "file is not read without a valid overload"
    );
    assert_eq!(req.skips().count(Skip::BadOverload), 1);
    assert_eq!(req.skips().first_code(), Some(52));

    let bytes = Packet::new(DISCOVER).opt(52, &[1]).file(&[61, 200]).bytes();
    assert_eq!(
        Request::parse(&bytes).unwrap_err(),
        ParseError::TruncatedOption {
            code: 61,
            area: Area::File
        }
    );
    // A truncated host name in `sname` is only skipped.
    let bytes = Packet::new(DISCOVER)
        .opt(52, &[2])
        .sname(&[12, 200, 1])
        .bytes();
    let req = Request::parse(&bytes).unwrap();
    assert_eq!(req.skips().count(Skip::Truncated), 1);
}

#[test]
fn message_type_round_trips() {
    for v in 0..=u8::MAX {
        assert_eq!(u8::from(MessageType::from(v)), v);
    }
}

#[test]
fn parses_what_dhcproto_encodes() {
    use dhcproto::v4::{DhcpOption, Encodable, Encoder, Message, MessageType as T, OptionCode};
    let mut msg = Message::new(
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &MAC_A,
    );
    msg.set_xid(99);
    msg.opts_mut().insert(DhcpOption::MessageType(T::Discover));
    msg.opts_mut().insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
    ]));
    msg.opts_mut()
        .insert(DhcpOption::ClientIdentifier(vec![0xff; 300]));
    let mut bytes = Vec::new();
    msg.encode(&mut Encoder::new(&mut bytes)).unwrap();
    let req = Request::parse(&bytes).unwrap();
    assert_eq!(req.xid(), 99);
    assert_eq!(req.message_type(), Some(MessageType::Discover));
    assert_eq!(req.parameter_request_list(), &[1, 3]);
    assert_eq!(req.client_id().map(<[u8]>::len), Some(300));
}
