//! A cursor over one call's arguments, in the spirit of mini-redis `Parse`:
//! a method takes its arguments in order with typed `next_*` calls and ends
//! with [`Args::finish`], which refuses any left over. Every refusal is a
//! `BadRequest` (fault 3) that names the method, the argument (position and
//! name) and the signature the method expects.

use crate::node::command::Hash;
use crate::node::error::NodeError;
use crate::xmlrpc::Value;

pub(super) struct Args<'a> {
    method: &'a str,
    /// What the method takes, e.g. `(filename:string, version:int, hashlist:array)`.
    signature: &'static str,
    params: std::vec::IntoIter<Value>,
    /// Arguments the call carried.
    given: usize,
    /// Arguments taken so far (`taken <= given`).
    taken: usize,
}

impl<'a> Args<'a> {
    pub(super) fn new(method: &'a str, signature: &'static str, params: Vec<Value>) -> Self {
        Args {
            method,
            signature,
            given: params.len(),
            params: params.into_iter(),
            taken: 0,
        }
    }

    fn wrong_count(&self) -> NodeError {
        NodeError::BadRequest(format!(
            "{} expects {}, got {} argument{}",
            self.method,
            self.signature,
            self.given,
            if self.given == 1 { "" } else { "s" }
        ))
    }

    /// A refusal of argument `name`, the one just taken.
    pub(super) fn bad(&self, name: &str, why: &str) -> NodeError {
        NodeError::BadRequest(format!(
            "{}: argument {} ({name}) {why}; expects {}",
            self.method, self.taken, self.signature
        ))
    }

    fn next(&mut self) -> Result<Value, NodeError> {
        match self.params.next() {
            Some(v) => {
                self.taken += 1;
                Ok(v)
            }
            None => Err(self.wrong_count()),
        }
    }

    fn mistyped(&self, name: &str, want: &str, got: &Value) -> NodeError {
        self.bad(name, &format!("must be {want}, got {}", got.type_name()))
    }

    pub(super) fn next_string(&mut self, name: &str) -> Result<String, NodeError> {
        match self.next()? {
            Value::String(s) => Ok(s),
            other => Err(self.mistyped(name, "a string", &other)),
        }
    }

    /// An `int` or an `i8`.
    pub(super) fn next_int(&mut self, name: &str) -> Result<i64, NodeError> {
        match self.next()? {
            Value::Int(i) => Ok(i.into()),
            Value::I8(i) => Ok(i),
            other => Err(self.mistyped(name, "an int", &other)),
        }
    }

    pub(super) fn next_base64(&mut self, name: &str) -> Result<Vec<u8>, NodeError> {
        match self.next()? {
            Value::Base64(b) => Ok(b),
            other => Err(self.mistyped(name, "base64", &other)),
        }
    }

    pub(super) fn next_array(&mut self, name: &str) -> Result<Vec<Value>, NodeError> {
        match self.next()? {
            Value::Array(a) => Ok(a),
            other => Err(self.mistyped(name, "an array", &other)),
        }
    }

    /// An array of strings.
    pub(super) fn next_strings(&mut self, name: &str) -> Result<Vec<String>, NodeError> {
        let list = self.next_array(name)?;
        let mut out = Vec::with_capacity(list.len());
        for (i, v) in list.into_iter().enumerate() {
            match v {
                Value::String(s) => out.push(s),
                other => {
                    return Err(self.bad(
                        name,
                        &format!(
                            "must hold strings, but {name}[{i}] is {}",
                            other.type_name()
                        ),
                    ))
                }
            }
        }
        Ok(out)
    }

    /// A hash list: strings, ints (`int` or `i8`) and base64, each kept with
    /// its type; `check_text` vets each string.
    pub(super) fn next_hash_list(
        &mut self,
        name: &str,
        check_text: impl Fn(&str) -> Result<(), String>,
    ) -> Result<Vec<Hash>, NodeError> {
        let list = self.next_array(name)?;
        let mut out = Vec::with_capacity(list.len());
        for (i, v) in list.into_iter().enumerate() {
            out.push(match v {
                Value::String(s) => {
                    check_text(&s).map_err(|why| self.bad(name, &format!("{name}[{i}] {why}")))?;
                    Hash::text(s)
                }
                Value::Int(n) => Hash::Int(n),
                Value::I8(n) => Hash::I8(n),
                Value::Base64(b) => Hash::Bytes(b.into()),
                other => {
                    return Err(self.bad(
                        name,
                        &format!(
                            "may hold strings, ints and base64, but {name}[{i}] is {}",
                            other.type_name()
                        ),
                    ))
                }
            });
        }
        Ok(out)
    }

    /// Refuses arguments left over.
    pub(super) fn finish(self) -> Result<(), NodeError> {
        if self.taken < self.given {
            return Err(self.wrong_count());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIG: &str = "(filename:string, version:int, hashlist:array)";

    fn message(e: NodeError) -> String {
        match e {
            NodeError::BadRequest(m) => m,
            other => panic!("not a BadRequest: {other:?}"),
        }
    }

    fn no_check(_: &str) -> Result<(), String> {
        Ok(())
    }

    #[test]
    fn takes_typed_arguments_in_order() {
        let mut a = Args::new(
            "updatefile",
            SIG,
            vec!["f".into(), Value::I8(1 << 40), Value::Array(vec![])],
        );
        assert_eq!(a.next_string("filename").unwrap(), "f");
        assert_eq!(a.next_int("version").unwrap(), 1 << 40);
        assert_eq!(a.next_hash_list("hashlist", no_check).unwrap(), vec![]);
        a.finish().unwrap();
    }

    #[test]
    fn too_few_and_too_many_name_the_signature_and_the_count() {
        let mut a = Args::new("updatefile", SIG, vec!["f".into()]);
        a.next_string("filename").unwrap();
        assert_eq!(
            message(a.next_int("version").unwrap_err()),
            format!("updatefile expects {SIG}, got 1 argument")
        );
        let a = Args::new("ping", "no arguments", vec![Value::Nil, Value::Nil]);
        assert_eq!(
            message(a.finish().unwrap_err()),
            "ping expects no arguments, got 2 arguments"
        );
    }

    #[test]
    fn a_mistyped_argument_is_named_with_its_position() {
        let mut a = Args::new("updatefile", SIG, vec!["f".into(), "one".into()]);
        a.next_string("filename").unwrap();
        assert_eq!(
            message(a.next_int("version").unwrap_err()),
            format!("updatefile: argument 2 (version) must be an int, got string; expects {SIG}")
        );
        let mut a = Args::new("putblock", "(block:base64)", vec![Value::Bool(true)]);
        assert_eq!(
            message(a.next_base64("block").unwrap_err()),
            "putblock: argument 1 (block) must be base64, got boolean; expects (block:base64)"
        );
    }

    #[test]
    fn a_hash_list_keeps_each_type_and_refuses_the_rest_by_position() {
        let list = vec![
            Value::from("h"),
            Value::Int(3),
            Value::I8(4),
            Value::Base64(vec![1]),
        ];
        let mut a = Args::new("updatefile", SIG, vec![Value::Array(list)]);
        assert_eq!(
            a.next_hash_list("hashlist", no_check).unwrap(),
            vec![
                Hash::text("h"),
                Hash::Int(3),
                Hash::I8(4),
                Hash::Bytes(vec![1].into())
            ]
        );
        for (bad, kind) in [
            (Value::Double(1.0), "double"),
            (Value::Bool(false), "boolean"),
            (Value::Nil, "nil"),
            (Value::Array(vec![]), "array"),
            (Value::Struct(Default::default()), "struct"),
            (
                Value::DateTime("20260101T00:00:00".into()),
                "dateTime.iso8601",
            ),
        ] {
            let list = Value::Array(vec![Value::from("ok"), bad]);
            let mut a = Args::new("updatefile", SIG, vec![list]);
            let m = message(a.next_hash_list("hashlist", no_check).unwrap_err());
            assert_eq!(
                m,
                format!(
                    "updatefile: argument 1 (hashlist) may hold strings, ints and base64, \
                     but hashlist[1] is {kind}; expects {SIG}"
                )
            );
        }
        let list = Value::Array(vec![Value::from("ok"), Value::from("bad")]);
        let mut a = Args::new("updatefile", SIG, vec![list]);
        let check = |s: &str| match s {
            "bad" => Err("is bad".to_owned()),
            _ => Ok(()),
        };
        assert_eq!(
            message(a.next_hash_list("hashlist", check).unwrap_err()),
            format!("updatefile: argument 1 (hashlist) hashlist[1] is bad; expects {SIG}")
        );
    }

    #[test]
    fn string_lists_refuse_other_elements() {
        let list = Value::Array(vec![Value::from("a"), Value::Int(1)]);
        let mut a = Args::new("hasblocks", "(hashlist:array of string)", vec![list]);
        assert_eq!(
            message(a.next_strings("hashlist").unwrap_err()),
            "hasblocks: argument 1 (hashlist) must hold strings, but hashlist[1] is int; \
             expects (hashlist:array of string)"
        );
    }
}
