//! The XML-RPC codec: request and response bodies ⇄ [`Value`]s, hand-written on
//! quick-xml.
//!
//! What it promises:
//! - It reads everything Python's `xmlrpc.client` writes (`ServerProxy` requests,
//!   `SimpleXMLRPCServer` responses and faults) and everything it writes is read
//!   back by Python with the same types and content, `\r` included.
//! - Bad input is a [`CodecError`] that says what and where (byte offset, element),
//!   never a panic. Parsing is iterative with a nesting limit ([`Limits`]), takes
//!   no DOCTYPE (so no entity expansion), and uses memory linear in the body.
//! - Parsing borrows from the body: a text without escapes is copied once, into
//!   the `String` it becomes. Encoding appends to the caller's `Vec`.
//!
//! The encoding is compact and fixed, so wire tests can compare bytes:
//! `<?xml version="1.0"?>\n<methodResponse><params><param><value><boolean>1</boolean></value></param></params></methodResponse>`.
//! Strings are always typed (`<string>`), `&`, `<`, `>` and `\r` are escaped
//! (`\r` as `&#13;`: a raw one would reach an XML parser as `\n`), doubles use
//! the shortest text that reads back to the same bits (`nan`, `inf`, `-inf` as
//! Python writes them), base64 is standard with padding on one line.
//!
//! One deliberate departure from XML: raw `\r` in text is kept, not normalised
//! to `\n`. Python sends `\r` raw, so keeping it gives the client back exactly
//! the string it sent.

mod decode;
mod encode;
mod encoded;

use bytes::Bytes;

pub use encoded::EncodedValue;

use crate::xmlrpc::value::{Fault, Value};

/// A parsed `<methodCall>`.
#[derive(Clone, Debug, PartialEq)]
pub struct MethodCall {
    /// The `<methodName>` text exactly as sent (never empty or all whitespace).
    pub method: String,
    pub params: Vec<Value>,
}

/// Bounds on what a parse may build, beyond the body's own size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// How many arrays/structs may nest inside one another. A body nesting
    /// deeper is refused as soon as the parser reaches the extra level.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_depth: 256 }
    }
}

/// Why a body could not be decoded. Every message says what was wrong and where:
/// a byte offset into the body as given (BOM included) and, where it helps, the
/// element.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum CodecError {
    #[error("empty body")]
    Empty,
    #[error("invalid UTF-8 at byte {offset}")]
    InvalidUtf8 { offset: usize },
    /// The XML itself is broken: an unclosed tag, a mismatched end tag, an
    /// unterminated comment, a declaration out of place, ….
    #[error("malformed XML at byte {offset}: {message}")]
    Malformed { offset: usize, message: String },
    #[error("DOCTYPE is not allowed (at byte {offset})")]
    Doctype { offset: usize },
    /// An unknown entity (`&foo;`), an unterminated `&`, or a character
    /// reference to no character (`&#0;`, `&#xD800;`).
    #[error("bad reference at byte {offset}: {message}")]
    BadReference { offset: usize, message: String },
    #[error("unsupported encoding '{encoding}' declared at byte {offset} (only UTF-8 is read)")]
    UnsupportedEncoding { offset: usize, encoding: String },
    #[error("unexpected end of input at byte {offset}: expected {expected}")]
    Truncated { offset: usize, expected: String },
    #[error("expected {expected}, found {found} at byte {offset}")]
    Unexpected {
        offset: usize,
        expected: String,
        found: String,
    },
    #[error("nesting deeper than {max} levels at byte {offset}")]
    TooDeep { offset: usize, max: usize },
    #[error("int overflow: '{text}' does not fit in {width} (at byte {offset})")]
    IntOverflow {
        offset: usize,
        /// `i4` (for `<int>` and `<i4>`) or `i8`.
        width: &'static str,
        text: String,
    },
    /// A scalar whose text is not of its type: `<boolean>2</boolean>`,
    /// `<int>x</int>`, `<double>1.2.3</double>`.
    #[error("bad <{tag}> value '{text}' at byte {offset}")]
    BadScalar {
        offset: usize,
        tag: &'static str,
        text: String,
    },
    #[error("bad base64 at byte {offset}: {message}")]
    BadBase64 { offset: usize, message: String },
    #[error("unknown type <{tag}> at byte {offset}")]
    UnknownType { offset: usize, tag: String },
    /// More than one value where the grammar allows one: two type elements in
    /// a `<value>`, a `<value>` in a `<value>`, two `<value>`s in a `<param>`,
    /// a `<member>` or a `<fault>`, two `<param>`s in a response.
    #[error("more than one value inside <{parent}> at byte {offset}")]
    ExtraValue { offset: usize, parent: &'static str },
    /// A `<value>` holding both non-whitespace text and a type element.
    #[error("text mixed with a type element inside <value> at byte {offset}")]
    MixedContent { offset: usize },
    #[error("struct member at byte {offset} has no <{missing}>")]
    IncompleteMember {
        offset: usize,
        missing: &'static str,
    },
    #[error("struct member at byte {offset} has more than one <name>")]
    DuplicateName { offset: usize },
    #[error("<methodCall> at byte {offset} has no <methodName>")]
    MissingMethodName { offset: usize },
    #[error("empty <methodName> at byte {offset}")]
    EmptyMethodName { offset: usize },
    /// Text or an element after the root element closed.
    #[error("trailing content after the document at byte {offset}: {found}")]
    Trailing { offset: usize, found: String },
    /// A `<fault>` whose value is not `{faultCode: int, faultString: string}`.
    #[error("bad fault at byte {offset}: {message}")]
    BadFault { offset: usize, message: String },
}

/// Parses a `<methodCall>` body with the default [`Limits`].
pub fn parse_call(body: &[u8]) -> Result<MethodCall, CodecError> {
    parse_call_with(body, &Limits::default())
}

/// Parses a `<methodCall>` body. A missing or empty `<params>` means no params.
pub fn parse_call_with(body: &[u8], limits: &Limits) -> Result<MethodCall, CodecError> {
    decode::Decoder::new(body, limits)?.method_call()
}

/// Parses a `<methodResponse>` body: `Ok(Ok(value))` for `<params>` with one
/// `<param>`, `Ok(Err(fault))` for a `<fault>`.
pub fn parse_response(body: &[u8]) -> Result<Result<Value, Fault>, CodecError> {
    parse_response_with(body, &Limits::default())
}

/// [`parse_response`] with explicit limits.
pub fn parse_response_with(
    body: &[u8],
    limits: &Limits,
) -> Result<Result<Value, Fault>, CodecError> {
    decode::Decoder::new(body, limits)?.method_response()
}

/// Appends a `<methodCall>` body to `out`.
pub fn encode_call(method: &str, params: &[Value], out: &mut Vec<u8>) {
    encode::method_call(method, params, out);
}

/// Appends a `<methodResponse>` body carrying `value` to `out`.
pub fn encode_response(value: &Value, out: &mut Vec<u8>) {
    encode::method_response(value, out);
}

/// What a server answers a call that succeeded with: a [`Value`] to encode,
/// or a value already encoded (server-side only: the decoder never makes one).
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    Value(Value),
    Encoded(EncodedValue),
}

impl From<Value> for Reply {
    fn from(v: Value) -> Reply {
        Reply::Value(v)
    }
}

/// The `<methodResponse>` body carrying `reply`, in the parts it was
/// written in (one, unless a large value was written on several threads);
/// together the same bytes either way for the same value.
pub fn response_body(reply: Reply) -> Vec<Bytes> {
    match reply {
        Reply::Value(v) => {
            let mut out = Vec::with_capacity(256);
            encode::method_response(&v, &mut out);
            vec![Bytes::from(out)]
        }
        Reply::Encoded(e) => e.into_response_parts(),
    }
}

/// Appends a `<methodResponse><fault>` body to `out`.
pub fn encode_fault(fault: &Fault, out: &mut Vec<u8>) {
    encode::fault(fault, out);
}
