//! Scalar element text → values, fault structs → `Fault`, and reference
//! resolution: the leaf conversions, each reporting where it failed.

use std::borrow::Cow;

use base64::Engine as _;

use super::tag::Tag;
use super::{clip, is_xml_space, is_xml_space_char};
use crate::xmlrpc::codec::CodecError;
use crate::xmlrpc::value::{Fault, Value};

/// The value of a scalar element from its text.
pub(super) fn scalar(tag: Tag, text: Cow<'_, str>, at: usize) -> Result<Value, CodecError> {
    let trimmed = || text.trim_matches(is_xml_space_char);
    let bad = |text: &str| CodecError::BadScalar {
        offset: at,
        tag: tag.name(),
        text: clip(text),
    };
    Ok(match tag {
        Tag::String => Value::String(text.into_owned()),
        Tag::Int | Tag::I4 => Value::Int(integer(trimmed(), "i4", tag, at)?),
        Tag::I8 => Value::I8(integer(trimmed(), "i8", tag, at)?),
        Tag::Boolean => match trimmed() {
            "0" => Value::Bool(false),
            "1" => Value::Bool(true),
            other => return Err(bad(other)),
        },
        Tag::Double => {
            let t = trimmed();
            // Rust also reads "nan", "inf", "-inf" (as Python writes them) and
            // "infinity", in any case; it refuses "", "1.2.3", "0x10".
            Value::Double(t.parse().map_err(|_| bad(t))?)
        }
        Tag::Base64 => Value::Base64(base64(&text, at)?),
        Tag::DateTime => Value::DateTime(trimmed().to_owned()),
        _ => unreachable!("scalar() is called only for scalar tags"),
    })
}

/// An integer of the width `T`: an optional sign and decimal digits.
fn integer<T>(text: &str, width: &'static str, tag: Tag, at: usize) -> Result<T, CodecError>
where
    T: std::str::FromStr<Err = std::num::ParseIntError>,
{
    text.parse().map_err(|e: std::num::ParseIntError| {
        use std::num::IntErrorKind;
        match e.kind() {
            IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => CodecError::IntOverflow {
                offset: at,
                width,
                text: clip(text),
            },
            _ => CodecError::BadScalar {
                offset: at,
                tag: tag.name(),
                text: clip(text),
            },
        }
    })
}

/// Standard base64 with padding; whitespace anywhere is skipped (Python's
/// `encodebytes` breaks lines every 76 characters and around the content).
fn base64(text: &str, at: usize) -> Result<Vec<u8>, CodecError> {
    let engine = &base64::engine::general_purpose::STANDARD;
    let result = if text.bytes().any(is_xml_space) {
        let compact: Vec<u8> = text.bytes().filter(|&b| !is_xml_space(b)).collect();
        engine.decode(compact)
    } else {
        engine.decode(text)
    };
    result.map_err(|e| CodecError::BadBase64 {
        offset: at,
        message: e.to_string(),
    })
}

/// The fault carried by the `<value>` of a `<fault>` at `at`.
pub(super) fn fault_from(value: Value, at: usize) -> Result<Fault, CodecError> {
    let bad = |message: String| CodecError::BadFault {
        offset: at,
        message,
    };
    let Value::Struct(mut members) = value else {
        return Err(bad(format!(
            "expected a struct, found {}",
            value.type_name()
        )));
    };
    let code = match members.get("faultCode") {
        Some(Value::Int(code)) => *code,
        Some(Value::I8(code)) => {
            i32::try_from(*code).map_err(|_| bad(format!("faultCode {code} does not fit in i4")))?
        }
        Some(other) => {
            return Err(bad(format!(
                "faultCode is a {}, not an int",
                other.type_name()
            )))
        }
        None => return Err(bad("no faultCode member".into())),
    };
    let message = match members.remove("faultString") {
        Some(Value::String(message)) => message,
        Some(other) => {
            return Err(bad(format!(
                "faultString is a {}, not a string",
                other.type_name()
            )))
        }
        None => return Err(bad("no faultString member".into())),
    };
    Ok(Fault { code, message })
}

/// Resolves the five predefined entities and character references.
pub(super) fn unescape(raw: Cow<'_, str>, at: usize) -> Result<Cow<'_, str>, CodecError> {
    if !raw.contains('&') {
        return Ok(raw);
    }
    match quick_xml::escape::unescape(&raw) {
        Ok(text) => Ok(Cow::Owned(text.into_owned())),
        Err(e) => {
            use quick_xml::escape::EscapeError;
            let (offset, message) = match &e {
                EscapeError::UnrecognizedEntity(range, name) => {
                    (at + range.start - 1, format!("unknown entity '&{name};'"))
                }
                EscapeError::UnterminatedEntity(range) => (
                    at + range.start,
                    "'&' starts a reference with no ';' (write &amp; for '&')".to_owned(),
                ),
                other => (at, other.to_string()),
            };
            Err(CodecError::BadReference { offset, message })
        }
    }
}
