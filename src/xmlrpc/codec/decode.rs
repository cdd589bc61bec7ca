//! Decoding: XML-RPC bodies → [`Value`]s.
//!
//! The body is checked as UTF-8 once, then read by quick-xml straight from the
//! slice; text borrows from the body until it becomes a `String`. This file
//! reads the document around the values (`<methodCall>`, `<methodResponse>`)
//! and turns quick-xml events into [`Node`]s; `value` parses one `<value>`
//! iteratively, `scalar` converts leaf text, `tag` names the elements.

mod scalar;
mod tag;
mod value;

use std::borrow::Cow;

use quick_xml::events::Event;
use quick_xml::Reader;

use super::{CodecError, Limits, MethodCall};
use crate::xmlrpc::value::{Fault, Value};
use scalar::{fault_from, unescape};
use tag::{closing, opening, Tag};

/// One step of the document, with comments and processing instructions gone.
enum Node<'a> {
    Open(Tag, usize),
    Close(Tag, usize),
    /// Character data with references resolved, or a CDATA section's content.
    Text(Cow<'a, str>, usize),
    Eof(usize),
}

pub(super) struct Decoder<'a> {
    /// The body after any BOM; every event quick-xml gives borrows from it.
    input: &'a str,
    /// Bytes before `input` in the body (a BOM), added to every reported offset.
    base: usize,
    reader: Reader<&'a [u8]>,
    max_depth: usize,
    seen_element: bool,
    seen_decl: bool,
    /// The name of the last `Tag::Other` read, for error messages.
    other: String,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

impl<'a> Decoder<'a> {
    pub(super) fn new(body: &'a [u8], limits: &Limits) -> Result<Self, CodecError> {
        if body.iter().all(|&b| is_xml_space(b)) {
            return Err(CodecError::Empty);
        }
        let (base, rest) = match body.strip_prefix(BOM) {
            Some(rest) => (BOM.len(), rest),
            None => (0, body),
        };
        let input = std::str::from_utf8(rest).map_err(|e| CodecError::InvalidUtf8 {
            offset: base + e.valid_up_to(),
        })?;
        let mut reader = Reader::from_str(input);
        let config = reader.config_mut();
        config.expand_empty_elements = true;
        config.check_end_names = true;
        config.check_comments = true;
        config.trim_text(false);
        Ok(Decoder {
            input,
            base,
            reader,
            max_depth: limits.max_depth,
            seen_element: false,
            seen_decl: false,
            other: String::new(),
        })
    }

    pub(super) fn method_call(mut self) -> Result<MethodCall, CodecError> {
        let root = self.expect_open(Tag::MethodCall)?;
        let method = match self.next_tag()? {
            Node::Open(Tag::MethodName, at) => {
                let text = self.read_text(Tag::MethodName)?;
                if text.trim_matches(is_xml_space_char).is_empty() {
                    return Err(CodecError::EmptyMethodName { offset: at });
                }
                text.into_owned()
            }
            Node::Eof(at) => return Err(truncated(at, "<methodName>")),
            _ => return Err(CodecError::MissingMethodName { offset: root }),
        };
        let mut params = Vec::new();
        match self.next_tag()? {
            Node::Open(Tag::Params, _) => {
                loop {
                    match self.next_tag()? {
                        Node::Open(Tag::Param, _) => {
                            self.expect_open(Tag::Value)?;
                            params.push(self.value()?);
                            self.close_after_value(Tag::Param)?;
                        }
                        Node::Close(Tag::Params, _) => break,
                        node => return Err(self.unexpected(node, "<param> or </params>")),
                    }
                }
                self.expect_close(Tag::MethodCall)?;
            }
            Node::Close(Tag::MethodCall, _) => {}
            node => return Err(self.unexpected(node, "<params> or </methodCall>")),
        }
        self.finish()?;
        Ok(MethodCall { method, params })
    }

    pub(super) fn method_response(mut self) -> Result<Result<Value, Fault>, CodecError> {
        self.expect_open(Tag::MethodResponse)?;
        let result = match self.next_tag()? {
            Node::Open(Tag::Params, _) => {
                self.expect_open(Tag::Param)?;
                self.expect_open(Tag::Value)?;
                let value = self.value()?;
                self.close_after_value(Tag::Param)?;
                match self.next_tag()? {
                    Node::Close(Tag::Params, _) => {}
                    Node::Open(Tag::Param, at) => {
                        return Err(CodecError::ExtraValue {
                            offset: at,
                            parent: "params",
                        })
                    }
                    node => return Err(self.unexpected(node, "</params>")),
                }
                Ok(value)
            }
            Node::Open(Tag::Fault, _) => {
                let at = self.expect_open(Tag::Value)?;
                let value = self.value()?;
                self.close_after_value(Tag::Fault)?;
                Err(fault_from(value, at)?)
            }
            node => return Err(self.unexpected(node, "<params> or <fault>")),
        };
        self.expect_close(Tag::MethodResponse)?;
        self.finish()?;
        Ok(result)
    }

    /// After a `<value>` inside `parent` (`<param>`, `<fault>`): its end tag.
    fn close_after_value(&mut self, parent: Tag) -> Result<(), CodecError> {
        let expected = closing(parent);
        match self.next_tag()? {
            Node::Close(tag, _) if tag == parent => Ok(()),
            Node::Open(Tag::Value, at) => Err(CodecError::ExtraValue {
                offset: at,
                parent: parent.name(),
            }),
            node => Err(self.unexpected(node, expected)),
        }
    }

    /// The text content of a scalar element whose start tag was just read,
    /// through its end tag: text, references and CDATA concatenated.
    fn read_text(&mut self, tag: Tag) -> Result<Cow<'a, str>, CodecError> {
        let mut text = Cow::Borrowed("");
        loop {
            match self.next_node()? {
                Node::Text(piece, _) => append(&mut text, piece),
                Node::Close(..) => return Ok(text),
                node @ Node::Open(..) => {
                    let expected = format!("text or </{}>", tag.name());
                    return Err(self.unexpected(node, &expected));
                }
                Node::Eof(at) => return Err(truncated(at, closing(tag))),
            }
        }
    }

    fn expect_open(&mut self, tag: Tag) -> Result<usize, CodecError> {
        let expected = opening(tag);
        match self.next_tag()? {
            Node::Open(found, at) if found == tag => Ok(at),
            node => Err(self.unexpected(node, expected)),
        }
    }

    fn expect_close(&mut self, tag: Tag) -> Result<(), CodecError> {
        let expected = closing(tag);
        match self.next_tag()? {
            Node::Close(found, _) if found == tag => Ok(()),
            node => Err(self.unexpected(node, expected)),
        }
    }

    /// After the root element: only whitespace, comments and PIs may follow.
    fn finish(&mut self) -> Result<(), CodecError> {
        match self.next_tag()? {
            Node::Eof(_) => Ok(()),
            node => {
                let offset = node_offset(&node);
                Err(CodecError::Trailing {
                    offset,
                    found: self.describe(&node),
                })
            }
        }
    }

    /// The next node that is not whitespace: callers treat text they did not
    /// ask for as unexpected.
    fn next_tag(&mut self) -> Result<Node<'a>, CodecError> {
        loop {
            match self.next_node()? {
                Node::Text(text, _) if is_blank(&text) => continue,
                node => return Ok(node),
            }
        }
    }

    fn next_node(&mut self) -> Result<Node<'a>, CodecError> {
        loop {
            let at = self.base + self.reader.buffer_position() as usize;
            let event = match self.reader.read_event() {
                Ok(event) => event,
                Err(e) => {
                    return Err(CodecError::Malformed {
                        offset: self.base + self.reader.error_position() as usize,
                        message: e.to_string(),
                    })
                }
            };
            return Ok(match event {
                Event::Start(start) => {
                    self.seen_element = true;
                    Node::Open(self.classify(start.local_name().as_ref()), at)
                }
                Event::End(end) => Node::Close(self.classify(end.local_name().as_ref()), at),
                Event::Empty(_) => {
                    unreachable!("expand_empty_elements is set, so quick-xml yields Start+End")
                }
                Event::Text(text) => {
                    let raw = self.borrow_str(text.into_inner(), at)?;
                    Node::Text(unescape(raw, at)?, at)
                }
                Event::CData(cdata) => {
                    // `<![CDATA[` precedes the content.
                    Node::Text(self.borrow_str(cdata.into_inner(), at + 9)?, at)
                }
                Event::Comment(_) | Event::PI(_) => continue,
                Event::Decl(decl) => {
                    if self.seen_element || self.seen_decl {
                        return Err(CodecError::Malformed {
                            offset: at,
                            message: "XML declaration is allowed only at the start".into(),
                        });
                    }
                    self.seen_decl = true;
                    self.check_decl(&decl, at)?;
                    continue;
                }
                Event::DocType(_) => return Err(CodecError::Doctype { offset: at }),
                Event::Eof => Node::Eof(at),
            });
        }
    }

    fn check_decl(
        &self,
        decl: &quick_xml::events::BytesDecl<'_>,
        at: usize,
    ) -> Result<(), CodecError> {
        let malformed = |message: String| CodecError::Malformed {
            offset: at,
            message,
        };
        decl.version()
            .map_err(|e| malformed(format!("bad XML declaration: {e}")))?;
        match decl.encoding() {
            None => Ok(()),
            Some(Err(e)) => Err(malformed(format!("bad XML declaration: {e}"))),
            Some(Ok(encoding)) => {
                let utf8 = [&b"utf-8"[..], b"utf8"]
                    .iter()
                    .any(|name| encoding.eq_ignore_ascii_case(name));
                // Any ASCII-compatible label reads an all-ASCII body the same way.
                if utf8 || self.input.is_ascii() {
                    Ok(())
                } else {
                    Err(CodecError::UnsupportedEncoding {
                        offset: at,
                        encoding: clip(&String::from_utf8_lossy(&encoding)),
                    })
                }
            }
        }
    }

    /// Turns event content that quick-xml borrowed from `input` back into a
    /// `&str` of `input` (it was validated as UTF-8 once, up front).
    fn borrow_str(&self, bytes: Cow<'a, [u8]>, at: usize) -> Result<Cow<'a, str>, CodecError> {
        match bytes {
            Cow::Borrowed(slice) => {
                let start = (slice.as_ptr() as usize).wrapping_sub(self.input.as_ptr() as usize);
                if let Some(s) = self.input.get(start..start.wrapping_add(slice.len())) {
                    if s.as_ptr() == slice.as_ptr() {
                        return Ok(Cow::Borrowed(s));
                    }
                }
                std::str::from_utf8(slice)
                    .map(Cow::Borrowed)
                    .map_err(|e| CodecError::InvalidUtf8 {
                        offset: at + e.valid_up_to(),
                    })
            }
            Cow::Owned(vec) => {
                String::from_utf8(vec)
                    .map(Cow::Owned)
                    .map_err(|e| CodecError::InvalidUtf8 {
                        offset: at + e.utf8_error().valid_up_to(),
                    })
            }
        }
    }

    fn classify(&mut self, local_name: &[u8]) -> Tag {
        let tag = Tag::classify(local_name);
        if tag == Tag::Other {
            self.other = clip(&String::from_utf8_lossy(local_name));
        }
        tag
    }

    fn tag_name(&self, tag: Tag) -> &str {
        if tag == Tag::Other {
            &self.other
        } else {
            tag.name()
        }
    }

    fn describe(&self, node: &Node<'_>) -> String {
        match node {
            Node::Open(tag, _) => format!("<{}>", self.tag_name(*tag)),
            Node::Close(tag, _) => format!("</{}>", self.tag_name(*tag)),
            Node::Text(text, _) => format!("text '{}'", clip(text)),
            Node::Eof(_) => "end of input".to_owned(),
        }
    }

    fn unexpected(&self, node: Node<'_>, expected: &str) -> CodecError {
        match node {
            Node::Eof(at) => truncated(at, expected),
            node => CodecError::Unexpected {
                offset: node_offset(&node),
                expected: expected.to_owned(),
                found: self.describe(&node),
            },
        }
    }
}

fn append<'a>(text: &mut Cow<'a, str>, piece: Cow<'a, str>) {
    if text.is_empty() {
        *text = piece;
    } else if !piece.is_empty() {
        text.to_mut().push_str(&piece);
    }
}

fn truncated(at: usize, expected: &str) -> CodecError {
    CodecError::Truncated {
        offset: at,
        expected: expected.to_owned(),
    }
}

fn node_offset(node: &Node<'_>) -> usize {
    match node {
        Node::Open(_, at) | Node::Close(_, at) | Node::Text(_, at) | Node::Eof(at) => *at,
    }
}

fn is_xml_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn is_xml_space_char(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

fn is_blank(text: &str) -> bool {
    text.bytes().all(is_xml_space)
}

/// At most 64 characters of `text`, for an error message.
fn clip(text: &str) -> String {
    const MAX: usize = 64;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(body: &str) -> Vec<Cow<'_, str>> {
        let mut decoder = Decoder::new(body.as_bytes(), &Limits::default()).unwrap();
        let mut out = Vec::new();
        loop {
            match decoder.next_node().unwrap() {
                Node::Text(text, _) => out.push(text),
                Node::Eof(_) => return out,
                _ => {}
            }
        }
    }

    #[test]
    fn text_without_references_borrows_from_the_body() {
        let got = texts("<a>plain ü</a><b><![CDATA[raw & <x>]]></b><c>a &amp; b</c>");
        assert!(matches!(&got[0], Cow::Borrowed("plain ü")), "{got:?}");
        assert!(matches!(&got[1], Cow::Borrowed("raw & <x>")), "{got:?}");
        assert!(matches!(&got[2], Cow::Owned(s) if s == "a & b"), "{got:?}");
    }

    #[test]
    fn offsets_count_the_bom() {
        let body = b"\xEF\xBB\xBF<methodCall><nope/></methodCall>";
        let e = Decoder::new(body, &Limits::default())
            .unwrap()
            .method_call()
            .unwrap_err();
        assert_eq!(e, CodecError::MissingMethodName { offset: 3 });
    }

    #[test]
    fn every_tag_name_classifies_back_to_its_tag() {
        use Tag::*;
        for tag in [
            MethodCall,
            MethodResponse,
            MethodName,
            Params,
            Param,
            Fault,
            Value,
            Int,
            I4,
            I8,
            Boolean,
            String,
            Double,
            Base64,
            DateTime,
            Nil,
            Array,
            Data,
            Struct,
            Member,
            Name,
        ] {
            assert_eq!(Tag::classify(tag.name().as_bytes()), tag);
        }
        assert_eq!(Tag::classify(b"float"), Other);
    }

    #[test]
    fn clip_keeps_messages_short() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(100);
        assert_eq!(clip(&long).chars().count(), 65);
    }
}
