//! The XML-RPC codec against itself (round trips, a proptest), against Python
//! (fixtures written by `tests/fixtures/xmlrpc/gen.py`, and our encodings read
//! by `python3`), and against bad input (one test per class of it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use surfstore::xmlrpc::codec::{
    encode_call, encode_fault, encode_response, parse_call, parse_call_with, parse_response,
    CodecError, Limits, MethodCall,
};
use surfstore::xmlrpc::{Fault, Value};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Equality that treats NaN as equal to NaN and tells 0.0 from -0.0: the codec
/// promises the same bits back, not IEEE equality.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Double(x), Value::Double(y)) => {
            (x.is_nan() && y.is_nan()) || x.to_bits() == y.to_bits()
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Struct(x), Value::Struct(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, a), (kb, b))| ka == kb && same(a, b))
        }
        _ => a == b,
    }
}

fn assert_same(got: &Value, want: &Value, context: &str) {
    assert!(same(got, want), "{context}:\n got  {got:?}\n want {want:?}");
}

fn call_bytes(method: &str, params: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_call(method, params, &mut out);
    out
}

fn response_bytes(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_response(value, &mut out);
    out
}

fn fault_bytes(fault: &Fault) -> Vec<u8> {
    let mut out = Vec::new();
    encode_fault(fault, &mut out);
    out
}

fn round_trip_call(method: &str, params: &[Value]) {
    let body = call_bytes(method, params);
    let call =
        parse_call(&body).unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&body)));
    assert_eq!(call.method, method);
    assert_same(
        &Value::Array(call.params),
        &Value::Array(params.to_vec()),
        "call params",
    );
}

fn round_trip_response(value: &Value) {
    let body = response_bytes(value);
    let got = parse_response(&body)
        .unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&body)))
        .expect("not a fault");
    assert_same(&got, value, "response");
}

fn s(text: &str) -> Value {
    Value::String(text.to_owned())
}

fn strukt(members: &[(&str, Value)]) -> Value {
    Value::Struct(
        members
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    )
}

/// A call body around the given `<value>` XML.
fn call_with_value(value_xml: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?><methodCall><methodName>m</methodName>\
         <params><param>{value_xml}</param></params></methodCall>"
    )
}

fn parse_value(value_xml: &str) -> Result<Value, CodecError> {
    parse_call(call_with_value(value_xml).as_bytes()).map(|mut c| {
        assert_eq!(c.params.len(), 1);
        c.params.remove(0)
    })
}

fn err_of(body: &str) -> CodecError {
    match parse_call(body.as_bytes()) {
        Ok(call) => panic!("expected an error, parsed {call:?} from {body}"),
        Err(e) => e,
    }
}

fn response_err_of(body: &str) -> CodecError {
    match parse_response(body.as_bytes()) {
        Ok(r) => panic!("expected an error, parsed {r:?} from {body}"),
        Err(e) => e,
    }
}

fn every_type() -> Vec<Value> {
    vec![
        Value::Int(0),
        Value::Int(i32::MIN),
        Value::Int(i32::MAX),
        Value::I8(i64::MIN),
        Value::I8(i64::MAX),
        Value::Bool(true),
        Value::Bool(false),
        s(""),
        s("plain"),
        s("  lead and trail  "),
        s("<>&\"' &amp; ]]> &#10;"),
        s("line\nfeed\ttab\r\ncrlf\rcr"),
        s("résumé 文件 😀"),
        Value::Double(0.1),
        Value::Double(-0.0),
        Value::Double(1e100),
        Value::Double(5e-324),
        Value::Double(f64::MAX),
        Value::Double(f64::NAN),
        Value::Double(f64::INFINITY),
        Value::Double(f64::NEG_INFINITY),
        Value::Base64(vec![]),
        Value::Base64((0..=255).collect()),
        Value::DateTime("20240102T03:04:05".into()),
        Value::Nil,
        Value::Array(vec![]),
        Value::Struct(BTreeMap::new()),
        Value::Array(vec![Value::Int(1), s("0"), Value::Array(vec![Value::Nil])]),
        strukt(&[
            ("", s("empty key")),
            (
                "a <b> & c\r",
                Value::Array(vec![strukt(&[("x", Value::Bool(true))])]),
            ),
            ("term", Value::Int(3)),
        ]),
    ]
}

// ---------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------

#[test]
fn every_type_round_trips_as_call_and_response() {
    let values = every_type();
    round_trip_call("surfstore.echo", &values);
    round_trip_call("surfstore.ping", &[]);
    for v in &values {
        round_trip_call("m", std::slice::from_ref(v));
        round_trip_response(v);
    }
    round_trip_response(&Value::Array(values.clone()));
    let nested = values.iter().rev().fold(Value::Nil, |inner, v| {
        Value::Array(vec![v.clone(), strukt(&[("inner", inner)])])
    });
    round_trip_response(&nested);
}

#[test]
fn faults_round_trip() {
    for fault in [
        Fault::new(1, "isCrashed"),
        Fault::new(2, "NotLeader: leader is localhost:9002"),
        Fault::new(-7, "<&> 😀\r\n"),
        Fault::new(i32::MIN, ""),
    ] {
        let body = fault_bytes(&fault);
        assert_eq!(parse_response(&body).unwrap(), Err(fault));
    }
}

#[test]
fn unicode_method_names_round_trip() {
    round_trip_call("surfstore.päng😀<&>", &[Value::Int(1)]);
}

#[test]
fn encodings_are_exactly_these_bytes() {
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    assert_eq!(
        text(response_bytes(&Value::Bool(true))),
        "<?xml version=\"1.0\"?>\n<methodResponse><params><param><value><boolean>1</boolean>\
         </value></param></params></methodResponse>"
    );
    assert_eq!(
        text(call_bytes("surfstore.ping", &[])),
        "<?xml version=\"1.0\"?>\n<methodCall><methodName>surfstore.ping</methodName>\
         <params></params></methodCall>"
    );
    assert_eq!(
        text(call_bytes(
            "surfstore.updatefile",
            &[
                s("a&b.txt"),
                Value::Int(1),
                Value::Array(vec![s("h1"), Value::I8(-5)])
            ]
        )),
        "<?xml version=\"1.0\"?>\n<methodCall><methodName>surfstore.updatefile</methodName>\
         <params><param><value><string>a&amp;b.txt</string></value></param>\
         <param><value><int>1</int></value></param>\
         <param><value><array><data><value><string>h1</string></value>\
         <value><i8>-5</i8></value></data></array></value></param></params></methodCall>"
    );
    assert_eq!(
        text(response_bytes(&strukt(&[
            ("b", Value::Base64(b"hi".to_vec())),
            ("d", Value::Double(1.0)),
            ("n", Value::Nil),
            ("t", Value::DateTime("20240102T03:04:05".into())),
        ]))),
        "<?xml version=\"1.0\"?>\n<methodResponse><params><param><value><struct>\
         <member><name>b</name><value><base64>aGk=</base64></value></member>\
         <member><name>d</name><value><double>1.0</double></value></member>\
         <member><name>n</name><value><nil/></value></member>\
         <member><name>t</name><value><dateTime.iso8601>20240102T03:04:05</dateTime.iso8601>\
         </value></member></struct></value></param></params></methodResponse>"
    );
    assert_eq!(
        text(fault_bytes(&Fault::new(2, "NotLeader: <x>"))),
        "<?xml version=\"1.0\"?>\n<methodResponse><fault><value><struct>\
         <member><name>faultCode</name><value><int>2</int></value></member>\
         <member><name>faultString</name><value><string>NotLeader: &lt;x&gt;</string></value>\
         </member></struct></value></fault></methodResponse>"
    );
}

#[test]
fn encoding_appends_to_the_callers_buffer() {
    let mut out = b"keep".to_vec();
    encode_response(&Value::Int(1), &mut out);
    assert!(out.starts_with(b"keep<?xml"));
}

// ---------------------------------------------------------------------------
// Inputs other encoders write
// ---------------------------------------------------------------------------

#[test]
fn bare_and_empty_values_are_strings() {
    assert_eq!(parse_value("<value>text</value>").unwrap(), s("text"));
    assert_eq!(
        parse_value("<value>  a b \n</value>").unwrap(),
        s("  a b \n")
    );
    assert_eq!(parse_value("<value>  </value>").unwrap(), s("  "));
    assert_eq!(parse_value("<value></value>").unwrap(), s(""));
    assert_eq!(parse_value("<value/>").unwrap(), s(""));
    assert_eq!(parse_value("<value><string/></value>").unwrap(), s(""));
    assert_eq!(
        parse_value("<value>\n  <int>5</int>\n</value>").unwrap(),
        Value::Int(5)
    );
}

#[test]
fn string_whitespace_is_kept_exactly() {
    let text = " \t lead\n\nmiddle\r\n trail \t ";
    let escaped = text.replace('\r', "&#13;");
    assert_eq!(
        parse_value(&format!("<value><string>{escaped}</string></value>")).unwrap(),
        s(text)
    );
    // A raw \r is kept too (see the module doc of the codec).
    assert_eq!(
        parse_value("<value><string>a\r\nb\rc</string></value>").unwrap(),
        s("a\r\nb\rc")
    );
}

#[test]
fn text_split_by_cdata_references_and_comments_is_joined() {
    let v = parse_value(
        "<value><string>a<![CDATA[<b> & ]]>&amp;&lt;&gt;&quot;&apos;<!-- gone -->&#10;&#x1F600;\
         <?pi ignored?>z</string></value>",
    )
    .unwrap();
    assert_eq!(v, s("a<b> & &<>\"'\n😀z"));
    assert_eq!(
        parse_value("<value>x<![CDATA[]]>y</value>").unwrap(),
        s("xy")
    );
}

#[test]
fn every_scalar_spelling_is_read() {
    let cases: Vec<(&str, Value)> = vec![
        ("<int>42</int>", Value::Int(42)),
        ("<i4>-7</i4>", Value::Int(-7)),
        ("<int> +3 </int>", Value::Int(3)),
        ("<i8>9223372036854775807</i8>", Value::I8(i64::MAX)),
        ("<i8>1</i8>", Value::I8(1)),
        ("<boolean>1</boolean>", Value::Bool(true)),
        ("<boolean>0</boolean>", Value::Bool(false)),
        ("<double>1.5</double>", Value::Double(1.5)),
        ("<double>1e+100</double>", Value::Double(1e100)),
        ("<double>-0.0</double>", Value::Double(-0.0)),
        ("<double>inf</double>", Value::Double(f64::INFINITY)),
        ("<double>-inf</double>", Value::Double(f64::NEG_INFINITY)),
        ("<double>10</double>", Value::Double(10.0)),
        ("<base64></base64>", Value::Base64(vec![])),
        ("<base64>\naGVs\nbG8=\n</base64>", Value::Base64(b"hello".to_vec())),
        ("<base64> aG Vs\r\n\tbG8= </base64>", Value::Base64(b"hello".to_vec())),
        ("<dateTime.iso8601>20240102T03:04:05</dateTime.iso8601>", Value::DateTime("20240102T03:04:05".into())),
        ("<nil/>", Value::Nil),
        ("<nil></nil>", Value::Nil),
        ("<ex:nil/>", Value::Nil),
        ("<array><data/></array>", Value::Array(vec![])),
        ("<array><data></data></array>", Value::Array(vec![])),
        ("<array/>", Value::Array(vec![])),
        ("<struct/>", Value::Struct(BTreeMap::new())),
        (
            "<struct>\n <member>\n  <value><int>1</int></value>\n  <name>late name</name>\n </member>\n\
             <member><name>dup</name><value>first</value></member>\
             <member><name>dup</name><value>second</value></member></struct>",
            strukt(&[("late name", Value::Int(1)), ("dup", s("second"))]),
        ),
    ];
    for (xml, want) in cases {
        let got =
            parse_value(&format!("<value>{xml}</value>")).unwrap_or_else(|e| panic!("{xml}: {e}"));
        assert_same(&got, &want, xml);
    }
    assert!(
        matches!(parse_value("<value><double>nan</double></value>").unwrap(), Value::Double(d) if d.is_nan())
    );
}

#[test]
fn document_forms_are_accepted() {
    let want = |c: MethodCall, params: Vec<Value>| {
        assert_eq!(c.method, "m");
        assert_eq!(c.params, params);
    };
    for body in [
        "<methodCall><methodName>m</methodName></methodCall>",
        "<methodCall><methodName>m</methodName><params/></methodCall>",
        "<methodCall><methodName>m</methodName><params>\n</params></methodCall>",
        "<?xml version='1.0'?>\n<methodCall>\n<methodName>m</methodName>\n<params>\n</params>\n</methodCall>\n",
        "\u{FEFF}<?xml version=\"1.0\" encoding=\"UTF-8\"?><methodCall><methodName>m</methodName></methodCall>",
        "<?xml version=\"1.0\" encoding=\"iso-8859-1\"?><methodCall><methodName>m</methodName></methodCall>",
        "<!-- c --><?pi?><methodCall a=\"1\"><!-- c --><methodName>m</methodName></methodCall><!-- c -->\n\n",
    ] {
        want(parse_call(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}")), vec![]);
    }
    let c = parse_call(
        b"<methodCall><methodName>m</methodName><params><param><value>a</value></param>\
                        <param><value><int>2</int></value></param></params></methodCall>",
    )
    .unwrap();
    want(c, vec![s("a"), Value::Int(2)]);
}

#[test]
fn responses_from_other_servers_are_read() {
    let r = parse_response(
        b"<?xml version=\"1.0\"?><methodResponse><params><param><value>ok</value></param>\
          </params></methodResponse>",
    )
    .unwrap();
    assert_eq!(r, Ok(s("ok")));
    let r = parse_response(
        b"<methodResponse><fault><value><struct><member><name>faultString</name><value>bad</value>\
          </member><member><name>faultCode</name><value><i4>4</i4></value></member>\
          <member><name>extra</name><value/></member></struct></value></fault></methodResponse>",
    )
    .unwrap();
    assert_eq!(r, Err(Fault::new(4, "bad")));
}

#[test]
fn nesting_up_to_the_limit_is_accepted() {
    let limits = Limits { max_depth: 3 };
    let nested = |n: usize| {
        let body = format!(
            "{}<value>x</value>{}",
            "<value><array><data>".repeat(n),
            "</data></array></value>".repeat(n)
        );
        parse_call_with(call_with_value(&body).as_bytes(), &limits)
    };
    assert!(nested(3).is_ok());
    assert!(matches!(nested(4), Err(CodecError::TooDeep { max: 3, .. })));
    assert_eq!(Limits::default().max_depth, 256);
    let deepest = (0..256).fold(Value::Int(1), |v, _| Value::Array(vec![v]));
    round_trip_response(&deepest);
}

// ---------------------------------------------------------------------------
// Python's fixtures
// ---------------------------------------------------------------------------

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/xmlrpc")
}

#[test]
fn python_fixtures_parse_to_what_python_meant() {
    let dir = fixtures_dir();
    let manifest = json::parse(&std::fs::read_to_string(dir.join("expected.json")).unwrap());
    let entries = manifest.get("fixtures").as_array();
    assert!(entries.len() >= 40, "only {} fixtures", entries.len());
    let mut listed = Vec::new();
    for entry in entries {
        let file = entry.get("file").as_str();
        listed.push(file.to_owned());
        let body = std::fs::read(dir.join(file)).unwrap();
        match entry.get("kind").as_str() {
            "call" => {
                let call = parse_call(&body).unwrap_or_else(|e| panic!("{file}: {e}"));
                assert_eq!(call.method, entry.get("method").as_str(), "{file}");
                let want: Vec<Value> = entry
                    .get("params")
                    .as_array()
                    .iter()
                    .map(json::to_value)
                    .collect();
                assert_same(&Value::Array(call.params), &Value::Array(want), file);
            }
            "response" => {
                let got = parse_response(&body).unwrap_or_else(|e| panic!("{file}: {e}"));
                assert_same(&got.expect(file), &json::to_value(entry.get("value")), file);
            }
            "fault" => {
                let got = parse_response(&body).unwrap_or_else(|e| panic!("{file}: {e}"));
                let want = Fault::new(
                    entry.get("code").as_i64() as i32,
                    entry.get("message").as_str(),
                );
                assert_eq!(got, Err(want), "{file}");
            }
            other => panic!("{file}: unknown kind {other}"),
        }
    }
    // Every fixture on disk is checked.
    for file in std::fs::read_dir(&dir).unwrap() {
        let name = file.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".xml") {
            assert!(listed.contains(&name), "{name} is not in expected.json");
        }
    }
}

#[test]
fn python_fixtures_spot_checks() {
    // The manifest is written by the same script as the fixtures; pin a few
    // facts by hand so a broken script cannot make the test vacuous.
    let read = |f: &str| std::fs::read(fixtures_dir().join(f)).unwrap();
    let call = parse_call(&read("call_updatefile_xml_chars.xml")).unwrap();
    assert_eq!(call.method, "surfstore.updatefile");
    assert_eq!(call.params[0], s("<>&\"' &amp; ]]>.txt"));
    let call = parse_call(&read("call_updatefile_newlines.xml")).unwrap();
    assert_eq!(call.params[0], s("line1\nline2\ttab\r\ncrlf\rcr.txt"));
    let call = parse_call(&read("call_updatefile_int_hashlist.xml")).unwrap();
    assert_eq!(
        call.params[2],
        Value::Array(vec![Value::Int(1), Value::Int(-2), Value::Int(i32::MAX)])
    );
    let call = parse_call(&read("call_putblock_4k.xml")).unwrap();
    let block: Vec<u8> = (0..4096u32).map(|i| ((i * 7 + 3) % 256) as u8).collect();
    assert_eq!(call.params, vec![Value::Base64(block)]);
    let call = parse_call(&read("call_ping.xml")).unwrap();
    assert_eq!(
        (call.method.as_str(), call.params.len()),
        ("surfstore.ping", 0)
    );
    assert_eq!(
        parse_response(&read("resp_fault_crashed.xml")).unwrap(),
        Err(Fault::new(1, "isCrashed"))
    );
}

// ---------------------------------------------------------------------------
// Python reads what we write
// ---------------------------------------------------------------------------

/// Reads one base64 body a line and prints what `xmlrpc.client.loads` made of
/// it, tagged as in expected.json.
const PYTHON_READER: &str = r#"
import base64, json, sys, xmlrpc.client
def tag(v):
    if isinstance(v, bool): return ["boolean", v]
    if isinstance(v, int): return ["int", v]
    if isinstance(v, float): return ["double", repr(v)]
    if isinstance(v, str): return ["string", v]
    if isinstance(v, xmlrpc.client.Binary): return ["base64", base64.b64encode(v.data).decode()]
    if isinstance(v, xmlrpc.client.DateTime): return ["datetime", v.value]
    if v is None: return ["nil", None]
    if isinstance(v, (list, tuple)): return ["array", [tag(x) for x in v]]
    if isinstance(v, dict): return ["struct", {k: tag(x) for k, x in v.items()}]
    raise TypeError(type(v))
for line in sys.stdin:
    body = base64.b64decode(line)
    try:
        params, method = xmlrpc.client.loads(body)
        out = {"method": method, "params": [tag(p) for p in params]}
    except xmlrpc.client.Fault as f:
        out = {"fault": [f.faultCode, f.faultString]}
    except Exception as e:
        out = {"error": repr(e)}
    print(json.dumps(out))
"#;

/// Runs every body through Python's parser, in one process.
fn python_reads(bodies: &[Vec<u8>]) -> Vec<json::Json> {
    use base64::Engine as _;
    use std::io::Write as _;
    let mut child = std::process::Command::new("python3")
        .args(["-c", PYTHON_READER])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 must be on PATH for the interop test (it is on every CI machine)");
    let mut input = String::new();
    for body in bodies {
        input.push_str(&base64::engine::general_purpose::STANDARD.encode(body));
        input.push('\n');
    }
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()).unwrap());
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(output.status.success(), "python3 failed");
    let lines: Vec<json::Json> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(json::parse)
        .collect();
    assert_eq!(lines.len(), bodies.len());
    lines
}

/// Python has one int type: compare `Int` and `I8` by value.
fn widen(v: &Value) -> Value {
    match v {
        Value::Int(i) => Value::I8(i64::from(*i)),
        Value::Array(items) => Value::Array(items.iter().map(widen).collect()),
        Value::Struct(m) => Value::Struct(m.iter().map(|(k, v)| (k.clone(), widen(v))).collect()),
        other => other.clone(),
    }
}

fn check_python_reads(values: &[Value]) {
    let mut bodies: Vec<Vec<u8>> = values.iter().map(response_bytes).collect();
    bodies.push(call_bytes("surfstore.updatefile", values));
    bodies.push(fault_bytes(&Fault::new(
        2,
        "NotLeader: leader is <localhost:9002> & \r\n 😀",
    )));
    let read = python_reads(&bodies);
    for (v, py) in values.iter().zip(&read) {
        if let Some(err) = py.try_get("error") {
            panic!("Python could not read {v:?}: {}", err.as_str());
        }
        assert!(py.get("method").is_null());
        let params = py.get("params").as_array();
        assert_eq!(params.len(), 1);
        assert_same(
            &widen(&json::to_value(&params[0])),
            &widen(v),
            "python read of a response",
        );
    }
    let call = &read[values.len()];
    assert_eq!(call.get("method").as_str(), "surfstore.updatefile");
    let params: Vec<Value> = call
        .get("params")
        .as_array()
        .iter()
        .map(json::to_value)
        .collect();
    assert_same(
        &widen(&Value::Array(params)),
        &widen(&Value::Array(values.to_vec())),
        "python read of a call",
    );
    let fault = read[values.len() + 1].get("fault").as_array();
    assert_eq!(fault[0].as_i64(), 2);
    assert_eq!(
        fault[1].as_str(),
        "NotLeader: leader is <localhost:9002> & \r\n 😀"
    );
}

#[test]
fn python_reads_our_encodings() {
    check_python_reads(&every_type());
}

/// Characters XML 1.0 can carry at all (Python's expat refuses the rest even as
/// references; Python's own encoder writes them raw and fails the same way).
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

#[test]
fn python_reads_our_encodings_of_random_values() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let strings = any::<String>().prop_map(|s| s.chars().filter(|&c| xml_char(c)).collect());
    let strategy = arb_value(strings.boxed());
    let mut runner = TestRunner::deterministic();
    let values: Vec<Value> = (0..300)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect();
    check_python_reads(&values);
}

// ---------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------

fn arb_value(strings: BoxedStrategy<String>) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<i32>().prop_map(Value::Int),
        any::<i64>().prop_map(Value::I8),
        any::<bool>().prop_map(Value::Bool),
        strings.clone().prop_map(Value::String),
        any::<f64>().prop_map(Value::Double),
        vec(any::<u8>(), 0..80).prop_map(Value::Base64),
        "[0-9]{8}T[0-9]{2}:[0-9]{2}:[0-9]{2}".prop_map(Value::DateTime),
        Just(Value::Nil),
    ];
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(strings.clone(), inner, 0..6).prop_map(Value::Struct),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn any_value_round_trips(
        v in arb_value(any::<String>().boxed()),
        method in "[A-Za-z_.]{1,12}|\\PC{1,8}x",
    ) {
        let body = response_bytes(&v);
        let got = parse_response(&body).unwrap().unwrap();
        prop_assert!(same(&got, &v), "got {:?} want {:?}", got, v);
        let body = call_bytes(&method, &[v.clone(), Value::Int(1)]);
        let call = parse_call(&body).unwrap();
        prop_assert_eq!(&call.method, &method);
        prop_assert!(same(&call.params[0], &v));
    }

    #[test]
    fn damaged_bodies_never_panic(
        v in arb_value(any::<String>().boxed()),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let body = call_bytes("m", &[v]);
        let _ = parse_call(&body[..cut.index(body.len() + 1)]);
        let mut flipped = body.clone();
        flipped[flip.index(body.len())] = byte;
        let _ = parse_call(&flipped);
        let _ = parse_response(&flipped);
    }

    #[test]
    fn arbitrary_bytes_never_panic(body in vec(any::<u8>(), 0..200)) {
        let _ = parse_call(&body);
        let _ = parse_response(&body);
    }
}

// ---------------------------------------------------------------------------
// Bad input: one test per class
// ---------------------------------------------------------------------------

#[test]
fn empty_body() {
    assert_eq!(err_of(""), CodecError::Empty);
    assert_eq!(err_of(" \n\t"), CodecError::Empty);
    assert_eq!(err_of("").to_string(), "empty body");
}

#[test]
fn not_xml_at_all() {
    let e = err_of("hello world");
    assert!(
        matches!(e, CodecError::Unexpected { offset: 0, .. }),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "expected <methodCall>, found text 'hello world' at byte 0"
    );
    assert!(matches!(
        err_of("{\"method\": \"ping\"}"),
        CodecError::Unexpected { .. }
    ));
}

#[test]
fn wrong_root_element() {
    let e = err_of("<?xml version=\"1.0\"?>\n<foo><bar/></foo>");
    assert_eq!(
        e.to_string(),
        "expected <methodCall>, found <foo> at byte 22"
    );
    let e = response_err_of("<methodCall><methodName>m</methodName></methodCall>");
    assert_eq!(
        e.to_string(),
        "expected <methodResponse>, found <methodCall> at byte 0"
    );
}

#[test]
fn malformed_xml() {
    for body in [
        "<methodCall><methodName>m</methodName></methodCal>",
        "<methodCall><methodName>m</methodName></methodCall",
        "<methodCall><methodName>m</methodName><!-- unclosed",
        "<methodCall><methodName>m</methodName><![CDATA[ x",
        "<methodCall><methodName>m</methodName></params></methodCall>",
        "<methodCall><methodName>m</methodName></methodCall><?xml version=\"1.0\"?>",
    ] {
        let e = err_of(body);
        assert!(matches!(e, CodecError::Malformed { .. }), "{body}: {e:?}");
        assert!(e.to_string().starts_with("malformed XML at byte "), "{e}");
    }
}

#[test]
fn truncated_documents() {
    let full = call_bytes(
        "surfstore.updatefile",
        &[s("a.txt"), Value::Int(1), Value::Array(vec![s("h")])],
    );
    for cut in 0..full.len() {
        let part = &full[..cut];
        if part.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let e = parse_call(part).expect_err("a truncated body must not parse");
        assert!(
            matches!(
                e,
                CodecError::Truncated { .. } | CodecError::Malformed { .. }
            ),
            "cut at {cut}: {e:?}"
        );
    }
    let body = "<methodCall><methodName>m</methodName><params><param><value><int>1";
    let e = err_of(body);
    assert_eq!(
        e.to_string(),
        format!(
            "unexpected end of input at byte {}: expected </int>",
            body.len()
        )
    );
}

#[test]
fn invalid_utf8() {
    let mut body = b"<methodCall><methodName>".to_vec();
    body.extend_from_slice(b"caf\xe9</methodName></methodCall>");
    let e = parse_call(&body).unwrap_err();
    assert_eq!(e, CodecError::InvalidUtf8 { offset: 27 });
    assert_eq!(e.to_string(), "invalid UTF-8 at byte 27");
}

#[test]
fn int_overflow() {
    let e = parse_value("<value><int>99999999999</int></value>").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("int overflow: '99999999999' does not fit in i4"),
        "{e}"
    );
    let e = parse_value("<value><i4>-2147483649</i4></value>").unwrap_err();
    assert!(
        matches!(e, CodecError::IntOverflow { width: "i4", .. }),
        "{e:?}"
    );
    let e = parse_value("<value><i8>9223372036854775808</i8></value>").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("int overflow: '9223372036854775808' does not fit in i8"),
        "{e}"
    );
}

#[test]
fn bad_int() {
    for text in ["", "12a", "1.0", "0x10", "--1", "1 2"] {
        let e = parse_value(&format!("<value><int>{text}</int></value>")).unwrap_err();
        assert!(
            matches!(e, CodecError::BadScalar { tag: "int", .. }),
            "{text}: {e:?}"
        );
    }
}

#[test]
fn bad_boolean() {
    let e = parse_value("<value><boolean>2</boolean></value>").unwrap_err();
    assert!(
        matches!(e, CodecError::BadScalar { tag: "boolean", .. }),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .starts_with("bad <boolean> value '2' at byte "),
        "{e}"
    );
    for text in ["true", "", "01"] {
        assert!(parse_value(&format!("<value><boolean>{text}</boolean></value>")).is_err());
    }
}

#[test]
fn bad_double() {
    for text in ["", "1.2.3", "abc", "1,5", "0x1p3"] {
        let e = parse_value(&format!("<value><double>{text}</double></value>")).unwrap_err();
        assert!(
            matches!(e, CodecError::BadScalar { tag: "double", .. }),
            "{text}: {e:?}"
        );
    }
}

#[test]
fn bad_base64() {
    for text in ["!!!!", "aGVsbG8", "a", "aGVsbG8=x"] {
        let e = parse_value(&format!("<value><base64>{text}</base64></value>")).unwrap_err();
        assert!(matches!(e, CodecError::BadBase64 { .. }), "{text}: {e:?}");
        assert!(e.to_string().starts_with("bad base64 at byte "), "{e}");
    }
}

#[test]
fn deep_nesting_fails_fast() {
    for (open, close) in [
        ("<value><array><data>", "</data></array></value>"),
        (
            "<value><struct><member><name>k</name>",
            "</member></struct></value>",
        ),
    ] {
        let n = 20_000;
        let body = call_with_value(&format!("{}{}", open.repeat(n), close.repeat(n)));
        let started = Instant::now();
        let e = parse_call(body.as_bytes()).unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "took {:?}",
            started.elapsed()
        );
        assert!(matches!(e, CodecError::TooDeep { max: 256, .. }), "{e:?}");
        assert!(
            e.to_string()
                .starts_with("nesting deeper than 256 levels at byte "),
            "{e}"
        );
        // Unclosed: the limit trips before the missing end tags matter.
        let body = call_with_value(&open.repeat(n));
        assert!(matches!(
            parse_call(body.as_bytes()),
            Err(CodecError::TooDeep { .. })
        ));
        // In a response too.
        let body = format!(
            "<methodResponse><params><param>{}</param></params></methodResponse>",
            open.repeat(n)
        );
        assert!(matches!(
            parse_response(body.as_bytes()),
            Err(CodecError::TooDeep { .. })
        ));
    }
}

#[test]
fn doctype_is_refused() {
    let billion_laughs = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<methodCall><methodName>&lol3;</methodName></methodCall>"#;
    let e = err_of(billion_laughs);
    assert_eq!(e, CodecError::Doctype { offset: 22 });
    assert_eq!(e.to_string(), "DOCTYPE is not allowed (at byte 22)");
    let e = err_of("<methodCall><!DOCTYPE x><methodName>m</methodName></methodCall>");
    assert!(matches!(e, CodecError::Doctype { offset: 12 }), "{e:?}");
    let e =
        response_err_of("<!DOCTYPE methodResponse SYSTEM \"file:///etc/passwd\"><methodResponse/>");
    assert!(matches!(e, CodecError::Doctype { offset: 0 }), "{e:?}");
}

#[test]
fn unknown_and_bad_references() {
    let e = parse_value("<value><string>&lol9;</string></value>").unwrap_err();
    assert!(
        matches!(&e, CodecError::BadReference { message, .. } if message.contains("&lol9;")),
        "{e:?}"
    );
    for text in ["a & b", "&amp", "&#0;", "&#xD800;", "&#xZZ;", "&;"] {
        let e = parse_value(&format!("<value><string>{text}</string></value>")).unwrap_err();
        assert!(
            matches!(e, CodecError::BadReference { .. }),
            "{text}: {e:?}"
        );
    }
    // Offsets point at the reference itself.
    let body = call_with_value("<value><string>ab&nope;</string></value>");
    let e = parse_call(body.as_bytes()).unwrap_err();
    let at = body.find("&nope;").unwrap();
    assert!(
        matches!(e, CodecError::BadReference { offset, .. } if offset == at),
        "{e:?} vs {at}"
    );
}

#[test]
fn unknown_type_tags() {
    let body = call_with_value("<value><float>1.5</float></value>");
    let e = parse_call(body.as_bytes()).unwrap_err();
    let at = body.find("<float>").unwrap();
    assert_eq!(
        e,
        CodecError::UnknownType {
            offset: at,
            tag: "float".into()
        }
    );
    assert_eq!(e.to_string(), format!("unknown type <float> at byte {at}"));
    for tag in [
        "<bigint>1</bigint>",
        "<param/>",
        "<data/>",
        "<member/>",
        "<methodCall/>",
    ] {
        let e = parse_value(&format!("<value>{tag}</value>")).unwrap_err();
        assert!(matches!(e, CodecError::UnknownType { .. }), "{tag}: {e:?}");
    }
}

#[test]
fn struct_member_without_name_or_value() {
    let e = parse_value("<value><struct><member><value>1</value></member></struct></value>")
        .unwrap_err();
    assert!(
        matches!(
            e,
            CodecError::IncompleteMember {
                missing: "name",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("has no <name>"), "{e}");
    let e =
        parse_value("<value><struct><member><name>k</name></member></struct></value>").unwrap_err();
    assert!(
        matches!(
            e,
            CodecError::IncompleteMember {
                missing: "value",
                ..
            }
        ),
        "{e:?}"
    );
    let e = parse_value(
        "<value><struct><member><name>a</name><name>b</name><value/></member></struct></value>",
    )
    .unwrap_err();
    assert!(matches!(e, CodecError::DuplicateName { .. }), "{e:?}");
    let e = parse_value(
        "<value><struct><member><name>a</name><value/><value/></member></struct></value>",
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            CodecError::ExtraValue {
                parent: "member",
                ..
            }
        ),
        "{e:?}"
    );
    let e = parse_value("<value><struct><value/></struct></value>").unwrap_err();
    assert!(matches!(e, CodecError::Unexpected { .. }), "{e:?}");
    let e =
        parse_value("<value><struct><member><name>a<b/></name><value/></member></struct></value>")
            .unwrap_err();
    assert!(matches!(e, CodecError::Unexpected { .. }), "{e:?}");
}

#[test]
fn more_than_one_value() {
    for (xml, parent) in [
        ("<value><int>1</int><int>2</int></value>", "value"),
        ("<value><value>1</value></value>", "value"),
        ("<value><nil/><string>x</string></value>", "value"),
        ("<value><array><data/></array><struct/></value>", "value"),
        ("<value>1</value><value>2</value>", "param"),
    ] {
        let e = parse_value(xml).unwrap_err();
        assert!(
            matches!(e, CodecError::ExtraValue { parent: p, .. } if p == parent),
            "{xml}: {e:?}"
        );
    }
    let e = parse_value("<value><int>1</int><int>2</int></value>").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("more than one value inside <value> at byte "),
        "{e}"
    );
    let e = response_err_of(
        "<methodResponse><params><param><value>1</value></param><param><value>2</value></param>\
         </params></methodResponse>",
    );
    assert!(
        matches!(
            e,
            CodecError::ExtraValue {
                parent: "params",
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn text_mixed_with_a_type_element() {
    for xml in [
        "<value>abc<int>1</int></value>",
        "<value><int>1</int>abc</value>",
    ] {
        let e = parse_value(xml).unwrap_err();
        assert!(matches!(e, CodecError::MixedContent { .. }), "{xml}: {e:?}");
    }
    let e = parse_value("<value><string>a<b>c</b></string></value>").unwrap_err();
    assert!(matches!(e, CodecError::Unexpected { .. }), "{e:?}");
    let e = parse_value("<value><array>x<data/></array></value>").unwrap_err();
    assert!(matches!(e, CodecError::Unexpected { .. }), "{e:?}");
    let e = parse_value("<value><nil>x</nil></value>").unwrap_err();
    assert!(matches!(e, CodecError::Unexpected { .. }), "{e:?}");
}

#[test]
fn method_name_missing_or_empty() {
    let e = err_of("<methodCall><params/></methodCall>");
    assert_eq!(e, CodecError::MissingMethodName { offset: 0 });
    assert_eq!(e.to_string(), "<methodCall> at byte 0 has no <methodName>");
    assert!(matches!(
        err_of("<methodCall/>"),
        CodecError::MissingMethodName { .. }
    ));
    for name in ["", " \n ", "<!-- x -->"] {
        let e = err_of(&format!(
            "<methodCall><methodName>{name}</methodName></methodCall>"
        ));
        assert_eq!(e, CodecError::EmptyMethodName { offset: 12 }, "{name:?}");
    }
    assert!(matches!(
        err_of("<methodCall><methodName/></methodCall>"),
        CodecError::EmptyMethodName { .. }
    ));
}

#[test]
fn trailing_content_after_the_document() {
    let doc = "<methodCall><methodName>m</methodName></methodCall>";
    let e = err_of(&format!("{doc}garbage"));
    assert_eq!(
        e.to_string(),
        format!(
            "trailing content after the document at byte {}: text 'garbage'",
            doc.len()
        )
    );
    let e = err_of(&format!(
        "{doc}\n<methodCall><methodName>m</methodName></methodCall>"
    ));
    assert!(
        matches!(&e, CodecError::Trailing { found, .. } if found == "<methodCall>"),
        "{e:?}"
    );
    let e = err_of(&format!("{doc}<x/>"));
    assert!(matches!(e, CodecError::Trailing { .. }), "{e:?}");
    // Whitespace, comments and PIs after the root are fine.
    assert!(parse_call(format!("{doc}\n<!-- c -->\n<?pi?>\n").as_bytes()).is_ok());
}

#[test]
fn bad_call_structure() {
    for body in [
        "<methodCall><methodName>m</methodName><params><value>1</value></params></methodCall>",
        "<methodCall><methodName>m</methodName><params><param>1</param></params></methodCall>",
        "<methodCall><methodName>m</methodName><params><param></param></params></methodCall>",
        "<methodCall><methodName>m</methodName><foo/></methodCall>",
        "<methodCall><methodName>m</methodName><params/><params/></methodCall>",
        "<methodCall><methodName>m</methodName>text</methodCall>",
        "<methodCall><methodName>m<b/></methodName></methodCall>",
    ] {
        let e = err_of(body);
        assert!(matches!(e, CodecError::Unexpected { .. }), "{body}: {e:?}");
    }
}

#[test]
fn bad_response_structure() {
    for body in [
        "<methodResponse/>",
        "<methodResponse><params/></methodResponse>",
        "<methodResponse><params><param/></params></methodResponse>",
        "<methodResponse><fault/></methodResponse>",
        "<methodResponse><params><param><value/></param></params><fault/></methodResponse>",
    ] {
        let e = response_err_of(body);
        assert!(
            matches!(
                e,
                CodecError::Unexpected { .. } | CodecError::Truncated { .. }
            ),
            "{body}: {e:?}"
        );
    }
    let fault =
        |v: &str| format!("<methodResponse><fault><value>{v}</value></fault></methodResponse>");
    for (v, says) in [
        ("<int>1</int>", "expected a struct, found int"),
        (
            "<struct><member><name>faultString</name><value>x</value></member></struct>",
            "no faultCode",
        ),
        (
            "<struct><member><name>faultCode</name><value><int>1</int></value></member></struct>",
            "no faultString",
        ),
        (
            "<struct><member><name>faultCode</name><value>1</value></member>\
             <member><name>faultString</name><value>x</value></member></struct>",
            "faultCode is a string",
        ),
    ] {
        let e = response_err_of(&fault(v));
        assert!(matches!(e, CodecError::BadFault { .. }), "{v}: {e:?}");
        assert!(e.to_string().contains(says), "{e}");
    }
}

#[test]
fn unsupported_encoding() {
    let body = "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><methodCall><methodName>café</methodName></methodCall>";
    let e = err_of(body);
    assert!(
        matches!(&e, CodecError::UnsupportedEncoding { encoding, offset: 0 } if encoding == "ISO-8859-1"),
        "{e:?}"
    );
}

#[test]
fn error_messages_are_bounded() {
    let huge = "9".repeat(100_000);
    let e = parse_value(&format!("<value><int>{huge}</int></value>")).unwrap_err();
    assert!(e.to_string().len() < 200, "{}", e.to_string().len());
    let e = err_of(&huge);
    assert!(e.to_string().len() < 200);
}

// ---------------------------------------------------------------------------
// A small JSON reader for expected.json and Python's answers (no serde here).
// ---------------------------------------------------------------------------

mod json {
    use super::Value;
    use base64::Engine as _;

    #[derive(Debug, Clone, PartialEq)]
    pub enum Json {
        Null,
        Bool(bool),
        Int(i64),
        Str(String),
        Arr(Vec<Json>),
        Obj(Vec<(String, Json)>),
    }

    impl Json {
        pub fn try_get(&self, key: &str) -> Option<&Json> {
            match self {
                Json::Obj(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
                _ => None,
            }
        }
        pub fn get(&self, key: &str) -> &Json {
            self.try_get(key)
                .unwrap_or_else(|| panic!("no key {key} in {self:?}"))
        }
        pub fn as_str(&self) -> &str {
            match self {
                Json::Str(s) => s,
                other => panic!("not a string: {other:?}"),
            }
        }
        pub fn as_i64(&self) -> i64 {
            match self {
                Json::Int(i) => *i,
                other => panic!("not an int: {other:?}"),
            }
        }
        pub fn as_array(&self) -> &[Json] {
            match self {
                Json::Arr(a) => a,
                other => panic!("not an array: {other:?}"),
            }
        }
        pub fn is_null(&self) -> bool {
            *self == Json::Null
        }
    }

    /// A tagged value (`["int", 3]`) as the `Value` it stands for.
    pub fn to_value(tagged: &Json) -> Value {
        let pair = tagged.as_array();
        let (tag, v) = (pair[0].as_str(), &pair[1]);
        match tag {
            "int" => match i32::try_from(v.as_i64()) {
                Ok(i) => Value::Int(i),
                Err(_) => Value::I8(v.as_i64()),
            },
            "boolean" => Value::Bool(*v == Json::Bool(true)),
            "string" => Value::String(v.as_str().to_owned()),
            "double" => Value::Double(v.as_str().parse().expect("a Python float repr")),
            "base64" => Value::Base64(
                base64::engine::general_purpose::STANDARD
                    .decode(v.as_str())
                    .unwrap(),
            ),
            "datetime" => Value::DateTime(v.as_str().to_owned()),
            "nil" => Value::Nil,
            "array" => Value::Array(v.as_array().iter().map(to_value).collect()),
            "struct" => match v {
                Json::Obj(members) => Value::Struct(
                    members
                        .iter()
                        .map(|(k, v)| (k.clone(), to_value(v)))
                        .collect(),
                ),
                other => panic!("struct of {other:?}"),
            },
            other => panic!("unknown tag {other}"),
        }
    }

    pub fn parse(text: &str) -> Json {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value();
        p.ws();
        assert_eq!(p.i, p.s.len(), "trailing JSON");
        v
    }

    struct Parser<'a> {
        s: &'a [u8],
        i: usize,
    }

    impl Parser<'_> {
        fn ws(&mut self) {
            while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
                self.i += 1;
            }
        }
        fn eat(&mut self, b: u8) -> bool {
            self.ws();
            let hit = self.s.get(self.i) == Some(&b);
            if hit {
                self.i += 1;
            }
            hit
        }
        fn lit(&mut self, word: &str, v: Json) -> Json {
            assert!(
                self.s[self.i..].starts_with(word.as_bytes()),
                "bad JSON at {}",
                self.i
            );
            self.i += word.len();
            v
        }
        fn value(&mut self) -> Json {
            self.ws();
            match self.s[self.i] {
                b'n' => self.lit("null", Json::Null),
                b't' => self.lit("true", Json::Bool(true)),
                b'f' => self.lit("false", Json::Bool(false)),
                b'"' => Json::Str(self.string()),
                b'[' => {
                    self.i += 1;
                    let mut items = Vec::new();
                    if !self.eat(b']') {
                        loop {
                            items.push(self.value());
                            if self.eat(b']') {
                                break;
                            }
                            assert!(self.eat(b','), "bad JSON array at {}", self.i);
                        }
                    }
                    Json::Arr(items)
                }
                b'{' => {
                    self.i += 1;
                    let mut members = Vec::new();
                    if !self.eat(b'}') {
                        loop {
                            self.ws();
                            let key = self.string();
                            assert!(self.eat(b':'), "bad JSON object at {}", self.i);
                            members.push((key, self.value()));
                            if self.eat(b'}') {
                                break;
                            }
                            assert!(self.eat(b','), "bad JSON object at {}", self.i);
                        }
                    }
                    Json::Obj(members)
                }
                _ => {
                    let start = self.i;
                    while self.i < self.s.len() && matches!(self.s[self.i], b'-' | b'0'..=b'9') {
                        self.i += 1;
                    }
                    let text = std::str::from_utf8(&self.s[start..self.i]).unwrap();
                    Json::Int(
                        text.parse()
                            .unwrap_or_else(|_| panic!("bad JSON number at {start}")),
                    )
                }
            }
        }
        fn hex4(&mut self) -> u32 {
            let text = std::str::from_utf8(&self.s[self.i..self.i + 4]).unwrap();
            self.i += 4;
            u32::from_str_radix(text, 16).unwrap()
        }
        fn string(&mut self) -> String {
            assert_eq!(self.s[self.i], b'"');
            self.i += 1;
            let mut out = String::new();
            loop {
                let start = self.i;
                while !matches!(self.s[self.i], b'"' | b'\\') {
                    self.i += 1;
                }
                out.push_str(std::str::from_utf8(&self.s[start..self.i]).unwrap());
                let b = self.s[self.i];
                self.i += 1;
                if b == b'"' {
                    return out;
                }
                let esc = self.s[self.i];
                self.i += 1;
                match esc {
                    b'"' => out.push('"'),
                    b'\\' => out.push('\\'),
                    b'/' => out.push('/'),
                    b'b' => out.push('\u{8}'),
                    b'f' => out.push('\u{c}'),
                    b'n' => out.push('\n'),
                    b'r' => out.push('\r'),
                    b't' => out.push('\t'),
                    b'u' => {
                        let mut code = self.hex4();
                        if (0xD800..0xDC00).contains(&code) {
                            assert_eq!(&self.s[self.i..self.i + 2], b"\\u");
                            self.i += 2;
                            let low = self.hex4();
                            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                        }
                        out.push(char::from_u32(code).expect("a scalar value"));
                    }
                    other => panic!("bad JSON escape {}", other as char),
                }
            }
        }
    }
}
