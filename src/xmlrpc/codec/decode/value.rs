//! The `<value>` grammar as a loop over an explicit stack of open elements:
//! no recursion, so a hostile nesting costs one `TooDeep` error once it passes
//! `max_depth` arrays/structs, and memory stays linear in the body.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::scalar::scalar;
use super::tag::Tag;
use super::{append, is_blank, truncated, Decoder, Node};
use crate::xmlrpc::codec::CodecError;
use crate::xmlrpc::value::Value;

/// An element being filled while parsing a value.
enum Frame<'a> {
    /// Inside `<value>`: the text so far (the value itself if no type element
    /// comes) and the typed value once its element has closed.
    Value {
        text: Cow<'a, str>,
        typed: Option<Value>,
    },
    Array {
        items: Vec<Value>,
        stage: ArrayStage,
    },
    Struct {
        members: BTreeMap<String, Value>,
    },
    Member {
        name: Option<String>,
        value: Option<Value>,
        at: usize,
    },
}

impl Frame<'_> {
    /// A `<value>` just opened.
    fn value() -> Self {
        Frame::Value {
            text: Cow::Borrowed(""),
            typed: None,
        }
    }
}

/// Where an `<array>` is: before `<data>`, inside it, after `</data>`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ArrayStage {
    Start,
    Items,
    End,
}

/// What to do to the frame stack after reading one node.
enum Step<'a> {
    Stay,
    Push(Frame<'a>),
    /// The top frame is a finished `<value>`, `<array>` or `<struct>` of this value.
    Finish(Value),
    /// The top frame is a finished `<member>`.
    FinishMember(String, Value),
}

impl<'a> Decoder<'a> {
    /// Parses the rest of a `<value>` whose start tag was just read,
    /// through its end tag.
    pub(super) fn value(&mut self) -> Result<Value, CodecError> {
        let mut stack: Vec<Frame<'a>> = Vec::with_capacity(8);
        stack.push(Frame::value());
        // Open arrays and structs on the stack; never above `max_depth`.
        let mut depth = 0usize;
        loop {
            let top = stack
                .last_mut()
                .expect("the value stack holds at least the outer <value> until it finishes");
            let step = match top {
                Frame::Value { text, typed } => self.in_value(text, typed, &mut depth)?,
                Frame::Array { items, stage } => self.in_array(items, stage, &mut depth)?,
                Frame::Struct { members } => self.in_struct(members, &mut depth)?,
                Frame::Member { name, value, at } => self.in_member(name, value, *at)?,
            };
            match step {
                Step::Stay => {}
                Step::Push(frame) => stack.push(frame),
                Step::Finish(finished) => {
                    stack.pop();
                    match stack.last_mut() {
                        None => return Ok(finished),
                        // An array or struct closed: it is the typed value of its <value>.
                        Some(Frame::Value { typed, .. }) => *typed = Some(finished),
                        Some(Frame::Array { items, .. }) => items.push(finished),
                        Some(Frame::Member { value, .. }) => *value = Some(finished),
                        Some(Frame::Struct { .. }) => {
                            unreachable!("a struct frame's children are member frames")
                        }
                    }
                }
                Step::FinishMember(name, value) => {
                    stack.pop();
                    match stack.last_mut() {
                        // Last one wins for a repeated name, as in Python's dict.
                        Some(Frame::Struct { members }) => {
                            members.insert(name, value);
                        }
                        _ => unreachable!("a member frame sits on a struct frame"),
                    }
                }
            }
        }
    }

    /// Inside `<value>`: text, then either `</value>` (a bare string) or one
    /// type element, then `</value>`.
    fn in_value(
        &mut self,
        text: &mut Cow<'a, str>,
        typed: &mut Option<Value>,
        depth: &mut usize,
    ) -> Result<Step<'a>, CodecError> {
        let (tag, at) = match self.next_node()? {
            Node::Text(piece, at) => {
                if typed.is_none() {
                    append(text, piece);
                } else if !is_blank(&piece) {
                    return Err(CodecError::MixedContent { offset: at });
                }
                return Ok(Step::Stay);
            }
            Node::Close(..) => {
                return Ok(Step::Finish(match typed.take() {
                    Some(value) => value,
                    None => Value::String(std::mem::take(text).into_owned()),
                }))
            }
            Node::Eof(at) => return Err(truncated(at, "</value>")),
            Node::Open(tag, at) => (tag, at),
        };
        if typed.is_some() || tag == Tag::Value {
            return Err(CodecError::ExtraValue {
                offset: at,
                parent: "value",
            });
        }
        if !is_blank(text) {
            return Err(CodecError::MixedContent { offset: at });
        }
        match tag {
            Tag::Array | Tag::Struct => {
                if *depth >= self.max_depth {
                    return Err(CodecError::TooDeep {
                        offset: at,
                        max: self.max_depth,
                    });
                }
                *depth += 1;
                Ok(Step::Push(if tag == Tag::Array {
                    Frame::Array {
                        items: Vec::new(),
                        stage: ArrayStage::Start,
                    }
                } else {
                    Frame::Struct {
                        members: BTreeMap::new(),
                    }
                }))
            }
            Tag::Nil => {
                self.expect_close(Tag::Nil)?;
                *typed = Some(Value::Nil);
                Ok(Step::Stay)
            }
            Tag::Int
            | Tag::I4
            | Tag::I8
            | Tag::Boolean
            | Tag::String
            | Tag::Double
            | Tag::Base64
            | Tag::DateTime => {
                let content = self.read_text(tag)?;
                *typed = Some(scalar(tag, content, at)?);
                Ok(Step::Stay)
            }
            _ => Err(CodecError::UnknownType {
                offset: at,
                tag: self.tag_name(tag).to_owned(),
            }),
        }
    }

    /// Inside `<array>`: `<data>`, `<value>`s, `</data>`, `</array>`.
    fn in_array(
        &mut self,
        items: &mut Vec<Value>,
        stage: &mut ArrayStage,
        depth: &mut usize,
    ) -> Result<Step<'a>, CodecError> {
        let expected = match stage {
            ArrayStage::Start => "<data>",
            ArrayStage::Items => "<value> or </data>",
            ArrayStage::End => "</array>",
        };
        match (self.next_tag()?, *stage) {
            (Node::Open(Tag::Data, _), ArrayStage::Start) => {
                *stage = ArrayStage::Items;
                Ok(Step::Stay)
            }
            (Node::Open(Tag::Value, _), ArrayStage::Items) => Ok(Step::Push(Frame::value())),
            (Node::Close(Tag::Data, _), ArrayStage::Items) => {
                *stage = ArrayStage::End;
                Ok(Step::Stay)
            }
            // `<array/>` with no `<data>`: Python reads it as [].
            (Node::Close(Tag::Array, _), ArrayStage::Start | ArrayStage::End) => {
                *depth -= 1;
                Ok(Step::Finish(Value::Array(std::mem::take(items))))
            }
            (node, _) => Err(self.unexpected(node, expected)),
        }
    }

    /// Inside `<struct>`: `<member>`s, `</struct>`.
    fn in_struct(
        &mut self,
        members: &mut BTreeMap<String, Value>,
        depth: &mut usize,
    ) -> Result<Step<'a>, CodecError> {
        match self.next_tag()? {
            Node::Open(Tag::Member, at) => Ok(Step::Push(Frame::Member {
                name: None,
                value: None,
                at,
            })),
            Node::Close(Tag::Struct, _) => {
                *depth -= 1;
                Ok(Step::Finish(Value::Struct(std::mem::take(members))))
            }
            node => Err(self.unexpected(node, "<member> or </struct>")),
        }
    }

    /// Inside `<member>` (at `member_at`): one `<name>` and one `<value>`, in
    /// either order, then `</member>`.
    fn in_member(
        &mut self,
        name: &mut Option<String>,
        value: &mut Option<Value>,
        member_at: usize,
    ) -> Result<Step<'a>, CodecError> {
        match self.next_tag()? {
            Node::Open(Tag::Name, at) => {
                if name.is_some() {
                    return Err(CodecError::DuplicateName { offset: at });
                }
                *name = Some(self.read_text(Tag::Name)?.into_owned());
                Ok(Step::Stay)
            }
            Node::Open(Tag::Value, at) => {
                if value.is_some() {
                    return Err(CodecError::ExtraValue {
                        offset: at,
                        parent: "member",
                    });
                }
                Ok(Step::Push(Frame::value()))
            }
            Node::Close(Tag::Member, _) => match (name.take(), value.take()) {
                (Some(name), Some(value)) => Ok(Step::FinishMember(name, value)),
                (None, _) => Err(CodecError::IncompleteMember {
                    offset: member_at,
                    missing: "name",
                }),
                (Some(_), None) => Err(CodecError::IncompleteMember {
                    offset: member_at,
                    missing: "value",
                }),
            },
            node => Err(self.unexpected(node, "<name>, <value> or </member>")),
        }
    }
}
