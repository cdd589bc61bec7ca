//! A value encoded ahead of the response that carries it: a server-side
//! answer too large to build as a [`Value`] tree first (the whole
//! `getfileinfomap` map) is written piece by piece into one buffer, with the
//! same functions and so the same bytes as [`super::encode_response`] would
//! write for the equivalent tree, and the response is then written around
//! it without copying it.

use bytes::Bytes;

use super::encode;
use crate::xmlrpc::value::Value;

/// One `<value>…</value>` element, built by appending pieces. The builder
/// does not check the nesting: every `begin_*` needs its `end_*` (and every
/// [`EncodedValue::member`] its [`EncodedValue::end_member`]) before
/// [`EncodedValue::into_response`], or the body is not well-formed XML.
///
/// Room for the response's opening (`<?xml …?><methodResponse>…<param>`) is
/// kept free before the element, so `into_response` fills it in place.
///
/// A value may be written in parts on several threads: each part is a
/// [`EncodedValue::fragment`], joined in order by [`EncodedValue::append`]
/// without copying; the response is then those parts, in order
/// ([`EncodedValue::into_response_parts`]).
#[derive(Clone, PartialEq, Eq)]
pub struct EncodedValue {
    /// The parts before `buf`, in order, each complete.
    done: Vec<Vec<u8>>,
    /// The part being written. The first part (`done[0]`, or `buf` while
    /// `done` is empty) of a value from `with_capacity` starts with ROOM
    /// bytes of room for the opening; the element follows it.
    buf: Vec<u8>,
    /// Whether the first part has the room (a fragment has none).
    room: bool,
}

/// The bytes kept free before the element.
const ROOM: usize = encode::RESPONSE_OPEN.len();

impl EncodedValue {
    /// An empty builder whose buffer holds `bytes` of element without growing.
    pub fn with_capacity(bytes: usize) -> EncodedValue {
        let mut buf = Vec::with_capacity(
            ROOM.saturating_add(bytes)
                .saturating_add(encode::RESPONSE_CLOSE.len()),
        );
        buf.resize(ROOM, 0);
        EncodedValue {
            done: Vec::new(),
            buf,
            room: true,
        }
    }

    /// A piece of an element, to be [`EncodedValue::append`]ed to the value
    /// it belongs in (which writes the response's opening): holds `bytes`
    /// without growing.
    pub fn fragment(bytes: usize) -> EncodedValue {
        EncodedValue {
            done: Vec::new(),
            buf: Vec::with_capacity(bytes),
            room: false,
        }
    }

    /// Appends `piece` (a [`EncodedValue::fragment`]) as is, without copying
    /// its bytes: what is written next follows it.
    pub fn append(&mut self, piece: EncodedValue) {
        debug_assert!(!piece.room, "only a fragment can be appended");
        let EncodedValue { done, buf, .. } = piece;
        // Empty parts are dropped; the first part never is empty (it holds
        // the room), so it stays first.
        let parts = std::iter::once(std::mem::replace(&mut self.buf, buf)).chain(done);
        self.done.extend(parts.filter(|p| !p.is_empty()));
    }

    /// `<value><struct>`.
    pub fn begin_struct(&mut self) {
        self.buf.extend_from_slice(encode::STRUCT_OPEN);
    }

    /// `</struct></value>`.
    pub fn end_struct(&mut self) {
        self.buf.extend_from_slice(encode::STRUCT_CLOSE);
    }

    /// `<member><name>NAME</name>`: a member's value comes next, then
    /// [`EncodedValue::end_member`].
    pub fn member(&mut self, name: &str) {
        encode::member_open(name, &mut self.buf);
    }

    /// `</member>`.
    pub fn end_member(&mut self) {
        self.buf.extend_from_slice(encode::MEMBER_CLOSE);
    }

    /// `<value><array><data>`.
    pub fn begin_array(&mut self) {
        self.buf.extend_from_slice(encode::ARRAY_OPEN);
    }

    /// `</data></array></value>`.
    pub fn end_array(&mut self) {
        self.buf.extend_from_slice(encode::ARRAY_CLOSE);
    }

    /// As `Value::Int(i)`.
    pub fn int(&mut self, i: i32) {
        encode::int_value(i, &mut self.buf);
    }

    /// As `Value::I8(i)`.
    pub fn i8(&mut self, i: i64) {
        encode::i8_value(i, &mut self.buf);
    }

    /// As `Value::String(s)`.
    pub fn string(&mut self, s: &str) {
        encode::string_value(s, &mut self.buf);
    }

    /// As `Value::String` of `bytes` in lower-case hex, without building the
    /// string.
    pub fn hex_string(&mut self, bytes: &[u8]) {
        encode::hex_string_value(bytes, &mut self.buf);
    }

    /// As `Value::Base64(bytes)`.
    pub fn base64(&mut self, bytes: &[u8]) {
        encode::base64_value(bytes, &mut self.buf);
    }

    /// Any value, as the encoder writes it.
    pub fn value(&mut self, v: &Value) {
        encode::value(v, &mut self.buf);
    }

    /// The element written so far (copied together when in several parts).
    pub fn as_bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        let skip = if self.room { ROOM } else { 0 };
        if self.done.is_empty() {
            return std::borrow::Cow::Borrowed(&self.buf[skip..]);
        }
        let mut all = self.done.concat();
        all.extend_from_slice(&self.buf);
        std::borrow::Cow::Owned(all.split_off(skip))
    }

    /// The `<methodResponse>` body carrying this value, in the parts it was
    /// written in: together the same bytes `encode_response` writes for the
    /// equivalent `Value`, the element not copied.
    pub fn into_response_parts(mut self) -> Vec<Bytes> {
        assert!(self.room, "a fragment is not a response");
        let first = self.done.first_mut().unwrap_or(&mut self.buf);
        first[..ROOM].copy_from_slice(encode::RESPONSE_OPEN);
        self.buf.extend_from_slice(encode::RESPONSE_CLOSE);
        let mut parts: Vec<Bytes> = self.done.into_iter().map(Bytes::from).collect();
        parts.push(Bytes::from(self.buf));
        parts
    }

    /// The response as one buffer (copied together when written in parts).
    pub fn into_response(self) -> Bytes {
        let mut parts = self.into_response_parts();
        if parts.len() == 1 {
            return parts.pop().expect("one part");
        }
        Bytes::from(parts.concat())
    }
}

impl std::fmt::Debug for EncodedValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bytes = self.as_bytes();
        let shown = &bytes[..bytes.len().min(200)];
        write!(
            f,
            "EncodedValue({} bytes: {:?}…)",
            bytes.len(),
            String::from_utf8_lossy(shown)
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::xmlrpc::codec::encode_response;

    fn response(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode_response(v, &mut out);
        out
    }

    #[test]
    fn pieces_write_what_the_encoder_writes_for_the_tree() {
        let awkward = "<&>\"' \r\n ünï 😀";
        let digest: Vec<u8> = (0u8..32).map(|b| b.wrapping_mul(37)).collect();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let mut tree = BTreeMap::new();
        tree.insert(
            awkward.to_owned(),
            Value::Array(vec![
                Value::Int(-7),
                Value::Array(vec![
                    Value::String(hex),
                    Value::String(awkward.into()),
                    Value::String(String::new()),
                    Value::Int(i32::MIN),
                    Value::I8(i64::MAX),
                    Value::I8(3),
                    Value::Base64(vec![0, 255, 7]),
                    Value::Base64(Vec::new()),
                ]),
            ]),
        );
        tree.insert(
            "empty".to_owned(),
            Value::Array(vec![Value::I8(1 << 40), Value::Array(vec![])]),
        );
        let tree = Value::Struct(tree);

        let mut e = EncodedValue::with_capacity(0);
        e.begin_struct();
        e.member(awkward);
        e.begin_array();
        e.int(-7);
        e.begin_array();
        e.hex_string(&digest);
        e.string(awkward);
        e.string("");
        e.int(i32::MIN);
        e.i8(i64::MAX);
        e.value(&Value::I8(3));
        e.base64(&[0, 255, 7]);
        e.base64(&[]);
        e.end_array();
        e.end_array();
        e.end_member();
        e.member("empty");
        e.value(&Value::Array(vec![
            Value::I8(1 << 40),
            Value::Array(vec![]),
        ]));
        e.end_member();
        e.end_struct();

        let mut element = Vec::new();
        encode::value(&tree, &mut element);
        assert_eq!(&e.as_bytes()[..], &element[..]);
        assert_eq!(&e.clone().into_response()[..], &response(&tree)[..]);
        assert_eq!(
            crate::xmlrpc::codec::parse_response(&e.into_response()).unwrap(),
            Ok(tree)
        );
    }

    #[test]
    fn fragments_appended_write_the_bytes_of_one_buffer() {
        let members: BTreeMap<String, i32> = (0..100).map(|i| (format!("f{i:03}"), i)).collect();
        let tree = Value::Struct(
            members
                .iter()
                .map(|(name, i)| (name.clone(), Value::Int(*i)))
                .collect(),
        );
        let names: Vec<(&String, &i32)> = members.iter().collect();
        // Cut into parts at every split, some of them empty.
        for cut in [0, 1, 50, 99, 100] {
            let mut e = EncodedValue::with_capacity(0);
            e.begin_struct();
            let write = |part: &[(&String, &i32)]| {
                let mut f = EncodedValue::fragment(16);
                for (name, i) in part {
                    f.member(name);
                    f.int(**i);
                    f.end_member();
                }
                f
            };
            let (a, b) = names.split_at(cut);
            let (a, b) = (write(a), write(b));
            let mut nested = EncodedValue::fragment(0);
            nested.append(a);
            e.append(nested);
            e.append(b);
            e.end_struct();
            let mut element = Vec::new();
            encode::value(&tree, &mut element);
            assert_eq!(&e.as_bytes()[..], &element[..], "cut at {cut}");
            let parts = e.clone().into_response_parts();
            assert!(parts.iter().all(|p| !p.is_empty()), "cut at {cut}");
            assert_eq!(parts.concat(), response(&tree), "cut at {cut}");
            assert_eq!(&e.into_response()[..], &response(&tree)[..]);
        }
    }

    #[test]
    fn an_empty_struct_and_a_grown_buffer() {
        let members: BTreeMap<String, i32> = (0..1000).map(|i| (format!("f{i}"), i)).collect();
        let mut e = EncodedValue::with_capacity(1);
        e.begin_struct();
        for (name, i) in &members {
            e.member(name);
            e.int(*i);
            e.end_member();
        }
        e.end_struct();
        let tree = Value::Struct(
            members
                .into_iter()
                .map(|(name, i)| (name, Value::Int(i)))
                .collect(),
        );
        assert_eq!(&e.into_response()[..], &response(&tree)[..]);
        let mut e = EncodedValue::with_capacity(0);
        e.begin_struct();
        e.end_struct();
        assert_eq!(
            &e.into_response()[..],
            &response(&Value::Struct(BTreeMap::new()))[..]
        );
    }
}
