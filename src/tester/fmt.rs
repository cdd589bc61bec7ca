//! Values and calls written the way a Python `xmlrpc.client` user reads them:
//! `True`, `'text'`, `[1, ['h1']]`, `{'a.txt': [1, ['h1']]}`, and
//! `surfstore.updatefile('a.txt', 1, ['h1'])`. Used in every failure message,
//! so a report can be pasted into a Python shell to retry the call.

use std::fmt::Write;

use crate::xmlrpc::client::CallError;
use crate::xmlrpc::Value;

/// `v` in Python notation.
pub fn value(v: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, v);
    out
}

fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::I8(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
        Value::String(s) => write_str(out, s),
        Value::Double(d) => {
            let _ = write!(out, "{d:?}");
        }
        Value::Base64(b) => {
            let _ = write!(out, "<{} bytes>", b.len());
        }
        Value::DateTime(t) => {
            let _ = write!(out, "<DateTime {t}>");
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Struct(members) => {
            out.push('{');
            for (i, (k, item)) in members.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_str(out, k);
                out.push_str(": ");
                write_value(out, item);
            }
            out.push('}');
        }
        Value::Nil => out.push_str("None"),
    }
}

/// A Python string literal for `s` (single-quoted, escapes for quotes,
/// backslashes and control characters).
pub fn write_str(out: &mut String, s: &str) {
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('\'');
}

/// A Python string literal for `s`.
pub fn string(s: &str) -> String {
    let mut out = String::new();
    write_str(&mut out, s);
    out
}

/// `surfstore.method(args...)` as it would be typed in Python.
pub fn call(method: &str, params: &[Value]) -> String {
    let mut out = format!("surfstore.{method}(");
    for (i, p) in params.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_value(&mut out, p);
    }
    out.push(')');
    out
}

/// A call's result: the value, or the fault / transport error.
pub fn outcome(r: &Result<Value, CallError>) -> String {
    match r {
        Ok(v) => value(v),
        Err(CallError::Fault(f)) => format!("Fault {}: {}", f.code, string(&f.message)),
        Err(e) => format!("error: {e}"),
    }
}

/// A duration for humans: `850 ms`, `2.31 s`.
pub fn duration(d: std::time::Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn python_notation() {
        let mut m = BTreeMap::new();
        m.insert(
            "a'b".to_owned(),
            Value::Array(vec![Value::Int(1), Value::Array(vec!["h\n".into()])]),
        );
        assert_eq!(value(&Value::Struct(m)), r"{'a\'b': [1, ['h\n']]}");
        assert_eq!(
            call("updatefile", &["f".into(), 2.into(), Value::Array(vec![])]),
            "surfstore.updatefile('f', 2, [])"
        );
        assert_eq!(value(&Value::Bool(true)), "True");
        assert_eq!(duration(std::time::Duration::from_millis(2310)), "2.31 s");
    }
}
