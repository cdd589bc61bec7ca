//! Encoding: [`Value`]s → XML-RPC bodies, appended to the caller's buffer with
//! no intermediate strings. The exact shape is described in the parent module.

use std::io::Write as _;

use base64::Engine as _;

use crate::xmlrpc::value::{Fault, Value};

const HEADER: &[u8] = b"<?xml version=\"1.0\"?>\n";

pub(super) fn method_call(method: &str, params: &[Value], out: &mut Vec<u8>) {
    out.extend_from_slice(HEADER);
    out.extend_from_slice(b"<methodCall><methodName>");
    escape(method, out);
    out.extend_from_slice(b"</methodName><params>");
    for param in params {
        out.extend_from_slice(b"<param>");
        value(param, out);
        out.extend_from_slice(b"</param>");
    }
    out.extend_from_slice(b"</params></methodCall>");
}

pub(super) fn method_response(v: &Value, out: &mut Vec<u8>) {
    out.extend_from_slice(RESPONSE_OPEN);
    value(v, out);
    out.extend_from_slice(RESPONSE_CLOSE);
}

pub(super) fn fault(f: &Fault, out: &mut Vec<u8>) {
    out.extend_from_slice(HEADER);
    out.extend_from_slice(
        b"<methodResponse><fault><value><struct>\
          <member><name>faultCode</name><value><int>",
    );
    integer(i64::from(f.code), out);
    out.extend_from_slice(
        b"</int></value></member>\
          <member><name>faultString</name><value><string>",
    );
    escape(&f.message, out);
    out.extend_from_slice(
        b"</string></value></member>\
          </struct></value></fault></methodResponse>",
    );
}

/// Writes one `<value>…</value>`. Recursive: a `Value` built in memory is as deep
/// as its builder made it, and one parsed here is bounded by `Limits::max_depth`.
/// The pieces are the functions below, which [`super::EncodedValue`] writes
/// with too, so a value written either way is the same bytes.
pub(super) fn value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Int(i) => int_value(*i, out),
        Value::I8(i) => i8_value(*i, out),
        Value::Bool(b) => out.extend_from_slice(if *b {
            b"<value><boolean>1</boolean></value>"
        } else {
            b"<value><boolean>0</boolean></value>"
        }),
        Value::String(s) => string_value(s, out),
        Value::Double(d) => {
            out.extend_from_slice(b"<value><double>");
            double(*d, out);
            out.extend_from_slice(b"</double></value>");
        }
        Value::Base64(bytes) => base64_value(bytes, out),
        Value::DateTime(text) => {
            out.extend_from_slice(b"<value><dateTime.iso8601>");
            escape(text, out);
            out.extend_from_slice(b"</dateTime.iso8601></value>");
        }
        Value::Array(items) => {
            out.extend_from_slice(ARRAY_OPEN);
            for item in items {
                value(item, out);
            }
            out.extend_from_slice(ARRAY_CLOSE);
        }
        Value::Struct(members) => {
            out.extend_from_slice(STRUCT_OPEN);
            for (name, member) in members {
                member_open(name, out);
                value(member, out);
                out.extend_from_slice(MEMBER_CLOSE);
            }
            out.extend_from_slice(STRUCT_CLOSE);
        }
        Value::Nil => out.extend_from_slice(b"<value><nil/></value>"),
    }
}

pub(super) const ARRAY_OPEN: &[u8] = b"<value><array><data>";
pub(super) const ARRAY_CLOSE: &[u8] = b"</data></array></value>";
pub(super) const STRUCT_OPEN: &[u8] = b"<value><struct>";
pub(super) const STRUCT_CLOSE: &[u8] = b"</struct></value>";
pub(super) const MEMBER_CLOSE: &[u8] = b"</member>";
/// What `method_response` writes before the value and after it.
pub(super) const RESPONSE_OPEN: &[u8] = b"<?xml version=\"1.0\"?>\n<methodResponse><params><param>";
pub(super) const RESPONSE_CLOSE: &[u8] = b"</param></params></methodResponse>";

/// `<member><name>NAME</name>`: what comes before a member's value.
pub(super) fn member_open(name: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"<member><name>");
    escape(name, out);
    out.extend_from_slice(b"</name>");
}

pub(super) fn int_value(i: i32, out: &mut Vec<u8>) {
    out.extend_from_slice(b"<value><int>");
    integer(i64::from(i), out);
    out.extend_from_slice(b"</int></value>");
}

pub(super) fn i8_value(i: i64, out: &mut Vec<u8>) {
    out.extend_from_slice(b"<value><i8>");
    integer(i, out);
    out.extend_from_slice(b"</i8></value>");
}

pub(super) fn string_value(s: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"<value><string>");
    escape(s, out);
    out.extend_from_slice(b"</string></value>");
}

/// The string of `bytes` in lower-case hex digits (which need no escaping),
/// written without building it first.
pub(super) fn hex_string_value(bytes: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(b"<value><string>");
    for chunk in bytes.chunks(32) {
        let mut digits = [0u8; 64];
        for (pair, b) in digits.chunks_exact_mut(2).zip(chunk) {
            pair[0] = HEX[(b >> 4) as usize];
            pair[1] = HEX[(b & 15) as usize];
        }
        out.extend_from_slice(&digits[..2 * chunk.len()]);
    }
    out.extend_from_slice(b"</string></value>");
}

pub(super) fn base64_value(bytes: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"<value><base64>");
    base64(bytes, out);
    out.extend_from_slice(b"</base64></value>");
}

/// Which bytes `escape` replaces. Everything else, control characters included,
/// goes out as it is (XML 1.0 has no way to carry U+0001…U+0008 at all; Python
/// sends them raw too).
const NEEDS_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    table[b'&' as usize] = true;
    table[b'<' as usize] = true;
    table[b'>' as usize] = true;
    table[b'\r' as usize] = true;
    table
};

/// Appends `s` as XML character data. Runs without special bytes are copied in
/// one piece, so text with nothing to escape costs one scan and one copy.
pub(super) fn escape(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    let mut copied = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !NEEDS_ESCAPE[b as usize] {
            continue;
        }
        out.extend_from_slice(&bytes[copied..i]);
        out.extend_from_slice(match b {
            b'&' => b"&amp;",
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            _ => b"&#13;",
        });
        copied = i + 1;
    }
    out.extend_from_slice(&bytes[copied..]);
}

/// Appends the decimal form of `n` without going through `fmt`.
fn integer(n: i64, out: &mut Vec<u8>) {
    let mut buf = [0u8; 20];
    let mut pos = buf.len();
    let mut rest = n.unsigned_abs();
    loop {
        pos -= 1;
        buf[pos] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[pos..]);
}

/// Appends the shortest text that parses back to the same `f64` (Rust's `{:?}`,
/// which switches to exponent form far from 1, as Python's `repr` does).
fn double(d: f64, out: &mut Vec<u8>) {
    if d.is_nan() {
        out.extend_from_slice(b"nan");
    } else {
        // `inf` and `-inf` already print as Python writes them.
        write!(out, "{d:?}").expect("writing to a Vec cannot fail");
    }
}

fn base64(bytes: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    let len = base64::encoded_len(bytes.len(), true).expect("base64 length overflows usize");
    out.resize(start + len, 0);
    base64::engine::general_purpose::STANDARD
        .encode_slice(bytes, &mut out[start..])
        .expect("buffer sized by encoded_len");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(s: &str) -> String {
        let mut out = Vec::new();
        escape(s, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escape_replaces_only_markup_and_cr() {
        assert_eq!(escaped("plain"), "plain");
        assert_eq!(escaped(""), "");
        assert_eq!(escaped("a<b>&c\r\n\"'"), "a&lt;b&gt;&amp;c&#13;\n\"'");
        assert_eq!(escaped("&&"), "&amp;&amp;");
        assert_eq!(escaped("ü😀<"), "ü😀&lt;");
    }

    #[test]
    fn integers_print_like_display() {
        for n in [
            0,
            1,
            -1,
            9,
            10,
            -10,
            42,
            i64::from(i32::MAX),
            i64::MIN,
            i64::MAX,
        ] {
            let mut out = Vec::new();
            integer(n, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), n.to_string());
        }
    }

    #[test]
    fn doubles_print_like_python_repr_where_it_matters() {
        let cases = [
            (1.5, "1.5"),
            (1.0, "1.0"),
            (-0.0, "-0.0"),
            (1e100, "1e100"),
            (f64::NAN, "nan"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
        ];
        for (d, text) in cases {
            let mut out = Vec::new();
            double(d, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), text);
        }
    }
}
