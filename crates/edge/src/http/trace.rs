//! The request's trace id, from a W3C Trace Context `traceparent` header
//! (<https://www.w3.org/TR/trace-context/#traceparent-header>), validated
//! strictly: a header that is missing, repeated or invalid in any way is
//! ignored (never an error), and the request starts a new trace id.

use rand::RngCore;

/// A valid `traceparent`'s parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    /// 32 lowercase hex digits, not all zero.
    pub trace_id: String,
    /// 16 lowercase hex digits, not all zero.
    pub parent_id: String,
    pub flags: u8,
}

/// The length of a version-00 `traceparent`.
const LEN: usize = 55;

fn lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn all_zero(s: &str) -> bool {
    s.bytes().all(|b| b == b'0')
}

/// Parses a `traceparent` value as the specification says:
/// `version "-" trace-id "-" parent-id "-" trace-flags`, lowercase hex
/// only, version `ff` invalid, trace id and parent id not all zero. Version
/// `00` is exactly 55 characters; a higher version may carry more after a
/// `-` at the 56th (its first four fields are read as version 00's). The
/// optional whitespace HTTP allows around a field value is not part of it.
pub fn parse(value: &str) -> Option<TraceParent> {
    let value = value.trim_matches([' ', '\t']);
    if value.len() < LEN || !value.is_ascii() {
        return None;
    }
    let version = &value[0..2];
    if !lower_hex(version) || version == "ff" {
        return None;
    }
    if version == "00" && value.len() != LEN {
        return None;
    }
    if value.len() > LEN && value.as_bytes()[LEN] != b'-' {
        return None;
    }
    let bytes = value.as_bytes();
    if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
        return None;
    }
    let (trace_id, parent_id, flags) = (&value[3..35], &value[36..52], &value[53..55]);
    if !lower_hex(trace_id) || !lower_hex(parent_id) || !lower_hex(flags) {
        return None;
    }
    if all_zero(trace_id) || all_zero(parent_id) {
        return None;
    }
    Some(TraceParent {
        trace_id: trace_id.to_owned(),
        parent_id: parent_id.to_owned(),
        flags: u8::from_str_radix(flags, 16).ok()?,
    })
}

/// A new trace id: 16 random bytes, in lowercase hex.
pub fn new_trace_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    if bytes.iter().all(|b| *b == 0) {
        bytes[15] = 1;
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The request's trace id: its `traceparent`'s when it sends exactly one
/// valid one, else a new one.
pub(super) fn trace_id_of(headers: &[(String, Vec<u8>)]) -> String {
    let mut values = headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("traceparent"));
    let single = match (values.next(), values.next()) {
        (Some((_, value)), None) => std::str::from_utf8(value).ok(),
        _ => None,
    };
    single
        .and_then(parse)
        .map(|parent| parent.trace_id)
        .unwrap_or_else(new_trace_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_specifications_example_is_valid() {
        assert_eq!(
            parse(VALID),
            Some(TraceParent {
                trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
                parent_id: "00f067aa0ba902b7".into(),
                flags: 1,
            })
        );
        assert!(parse(&format!(" {VALID}\t")).is_some(), "HTTP's OWS");
        // A higher version may carry more, after a dash.
        let future = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-what-ever";
        assert_eq!(parse(future).unwrap().flags, 9);
        assert!(parse(&future[..LEN]).is_some());
    }

    #[test]
    fn anything_else_is_invalid() {
        for bad in [
            "",
            "00",
            &VALID[..54],
            &format!("{VALID}-"),
            &format!("{VALID}x"),
            &VALID.to_uppercase(),
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-701",
            "00-4bf92f3577b34da6a3ce929d0e0e47g6-00f067aa0ba902b7-01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-é1",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_request_without_one_valid_header_starts_a_new_trace() {
        let header = |v: &str| ("traceparent".to_string(), v.as_bytes().to_vec());
        assert_eq!(
            trace_id_of(&[header(VALID)]),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let upper = ("TraceParent".to_string(), VALID.as_bytes().to_vec());
        assert_eq!(trace_id_of(&[upper]), "4bf92f3577b34da6a3ce929d0e0e4736");
        for headers in [
            vec![],
            vec![header("garbage")],
            vec![header(VALID), header(VALID)],
            vec![("traceparent".to_string(), vec![0xff; 55])],
        ] {
            let id = trace_id_of(&headers);
            assert_ne!(id, "4bf92f3577b34da6a3ce929d0e0e4736");
            assert!(id.len() == 32 && lower_hex(&id) && !all_zero(&id), "{id}");
        }
        assert_ne!(new_trace_id(), new_trace_id());
    }
}
