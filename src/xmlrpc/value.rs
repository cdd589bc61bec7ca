//! The XML-RPC value model. Every value a client sends comes back with the same
//! type and content, so the enum keeps the distinctions the wire makes
//! (`i4`/`int` vs `i8`, typed vs bare strings are both `String`).

use std::collections::BTreeMap;

/// One XML-RPC value. `Struct` keeps members sorted by name (XML-RPC structs are
/// unordered; a sorted map makes encodings deterministic for tests).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `<int>` / `<i4>`: 32-bit signed.
    Int(i32),
    /// `<i8>`: 64-bit signed (an extension Python and Apache accept).
    I8(i64),
    Bool(bool),
    /// `<string>` or a bare `<value>text</value>`.
    String(String),
    Double(f64),
    /// `<base64>`: raw bytes (decoded).
    Base64(Vec<u8>),
    /// `<dateTime.iso8601>`: kept as its text, round-tripped verbatim.
    DateTime(String),
    Array(Vec<Value>),
    Struct(BTreeMap<String, Value>),
    /// `<nil/>`.
    Nil,
}

impl Value {
    /// A short name of the value's type, for error messages ("expected int, got string").
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Int(_) => "int",
            Value::I8(_) => "i8",
            Value::Bool(_) => "boolean",
            Value::String(_) => "string",
            Value::Double(_) => "double",
            Value::Base64(_) => "base64",
            Value::DateTime(_) => "dateTime.iso8601",
            Value::Array(_) => "array",
            Value::Struct(_) => "struct",
            Value::Nil => "nil",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// An integer of either width.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(i64::from(*i)),
            Value::I8(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_struct(&self) -> Option<&BTreeMap<String, Value>> {
        match self {
            Value::Struct(s) => Some(s),
            _ => None,
        }
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
impl From<i32> for Value {
    fn from(i: i32) -> Self {
        Value::Int(i)
    }
}
impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}
impl From<Vec<Value>> for Value {
    fn from(a: Vec<Value>) -> Self {
        Value::Array(a)
    }
}

/// An XML-RPC fault: `faultCode` and `faultString`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub code: i32,
    pub message: String,
}

impl Fault {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Fault {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "fault {}: {}", self.code, self.message)
    }
}

impl std::error::Error for Fault {}
