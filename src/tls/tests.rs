//! Bad TLS files and flags are refused with a message naming the file; good
//! ones load, and a node's own certificate is checked as its peers will.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::cert::{self, Generated};
use super::*;

/// A fresh directory, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!(
            "surfstore-tls-{tag}-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    fn file(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn names() -> Vec<String> {
    cert::names(&["localhost".into(), "node-a.test".into()])
}

/// A CA and node certificate in `dir`: (cert, key, ca).
fn good(dir: &Dir) -> (PathBuf, PathBuf, PathBuf, Generated) {
    let g = cert::generate(&names(), 30).unwrap();
    (
        dir.file("node.pem", &g.node_cert),
        dir.file("node-key.pem", &g.node_key),
        dir.file("ca.pem", &g.ca_cert),
        g,
    )
}

/// The message of a refused load; it must name `file`.
fn refused(r: Result<NodeTls, TlsError>, file: &Path) -> String {
    let msg = match r {
        Ok(_) => panic!("{} was accepted", file.display()),
        Err(e) => e.to_string(),
    };
    assert!(
        msg.contains(&file.display().to_string()),
        "the message names {}: {msg}",
        file.display()
    );
    msg
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[test]
fn good_files_load_and_the_node_certificate_names_its_hosts() {
    let d = Dir::new("good");
    let (cert, key, ca, _) = good(&d);
    let tls = NodeTls::load(&cert, &key, &ca).unwrap();
    for host in [
        "localhost:9001",
        "localhost",
        "127.0.0.1:9850",
        "node-a.test:1",
    ] {
        tls.check_serves(host)
            .unwrap_or_else(|e| panic!("{host}: {e}"));
    }
    let msg = tls.check_serves("other.test:9001").unwrap_err().to_string();
    assert!(
        msg.contains("other.test") && msg.contains("not valid for name"),
        "{msg}"
    );
    assert!(msg.contains(&cert.display().to_string()), "{msg}");
    // The client side alone.
    client_config(&ca).unwrap();
}

#[test]
fn missing_and_unreadable_files_are_named() {
    let d = Dir::new("missing");
    let (cert, key, ca, _) = good(&d);
    let nope = d.0.join("nope.pem");
    for (c, k, a) in [
        (&nope, &key, &ca),
        (&cert, &nope, &ca),
        (&cert, &key, &nope),
    ] {
        let msg = refused(NodeTls::load(c, k, a), &nope);
        assert!(msg.contains("cannot read"), "{msg}");
    }
    // A directory is not a file.
    let msg = refused(NodeTls::load(&d.0, &key, &ca), &d.0);
    assert!(msg.contains("cannot read the certificate"), "{msg}");
}

#[test]
fn files_that_are_not_pem_are_refused_with_a_hint() {
    let d = Dir::new("notpem");
    let (cert, key, ca, g) = good(&d);
    let empty = d.file("empty.pem", "");
    let msg = refused(NodeTls::load(&empty, &key, &ca), &empty);
    assert!(msg.contains("not PEM") && msg.contains("empty"), "{msg}");

    let text = d.file("config.txt", "M: 1\nmetadata0: localhost:9001\n");
    let msg = refused(NodeTls::load(&text, &key, &ca), &text);
    assert!(
        msg.contains("not PEM") && msg.contains("-----BEGIN"),
        "{msg}"
    );

    // The same certificate in DER.
    let der: Vec<u8> = <CertificateDer as PemObject>::from_pem_slice(g.node_cert.as_bytes())
        .unwrap()
        .to_vec();
    let der = d.file("node.der", der);
    let msg = refused(NodeTls::load(&der, &key, &ca), &der);
    assert!(
        msg.contains("looks like DER") && msg.contains("openssl x509"),
        "{msg}"
    );

    let cut = d.file("cut.pem", &g.node_cert[..g.node_cert.len() - 30]);
    let msg = refused(NodeTls::load(&cut, &key, &ca), &cut);
    assert!(
        msg.contains("not PEM") && msg.contains("end marker"),
        "{msg}"
    );

    let garbled = d.file(
        "garbled.pem",
        "-----BEGIN CERTIFICATE-----\n!!!! not base64 ????\n-----END CERTIFICATE-----\n",
    );
    let msg = refused(NodeTls::load(&garbled, &key, &ca), &garbled);
    assert!(msg.contains("not PEM") && msg.contains("base64"), "{msg}");

    let big = d.file("big.pem", vec![b'a'; MAX_PEM_BYTES as usize + 1]);
    let msg = refused(NodeTls::load(&cert, &key, &big), &big);
    assert!(msg.contains("over"), "{msg}");

    let _ = cert;
}

#[test]
fn a_file_of_the_wrong_kind_is_refused() {
    let d = Dir::new("kind");
    let (cert, key, ca, _) = good(&d);
    // Swapped flags.
    let msg = refused(NodeTls::load(&key, &cert, &ca), &key);
    assert!(
        msg.contains("no certificate") && msg.contains("PRIVATE KEY") && msg.contains("swapped"),
        "{msg}"
    );
    let msg = refused(NodeTls::load(&cert, &cert, &ca), &cert);
    assert!(
        msg.contains("no private key") && msg.contains("swapped"),
        "{msg}"
    );
    // A key given as the CA.
    let msg = refused(NodeTls::load(&cert, &key, &key), &key);
    assert!(
        msg.contains("no CA certificate") && !msg.contains("swapped"),
        "{msg}"
    );
    // A file of sections rustls does not read.
    let params = d.file(
        "params.pem",
        "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n",
    );
    let msg = refused(NodeTls::load(&cert, &params, &ca), &params);
    assert!(msg.contains("no section of a kind used here"), "{msg}");
}

#[test]
fn unusable_keys_are_refused() {
    let d = Dir::new("keys");
    let (cert, key, ca, g) = good(&d);
    // A key of another certificate.
    let other = cert::generate(&names(), 30).unwrap();
    let other_key = d.file("other-key.pem", &other.node_key);
    let msg = refused(NodeTls::load(&cert, &other_key, &ca), &cert);
    assert!(
        msg.contains("does not belong to the private key")
            && msg.contains(&other_key.display().to_string()),
        "{msg}"
    );
    // Two keys.
    let two = d.file("two.pem", format!("{}{}", g.node_key, other.node_key));
    let msg = refused(NodeTls::load(&cert, &two, &ca), &two);
    assert!(msg.contains("2 private keys"), "{msg}");
    // A PKCS#8 section that no signer can use.
    let junk = d.file(
        "junk-key.pem",
        pem("PRIVATE KEY", &[0x30, 0x03, 0x02, 0x01, 0x00]),
    );
    let msg = refused(NodeTls::load(&cert, &junk, &ca), &junk);
    assert!(msg.contains("private key cannot be used"), "{msg}");
    // An encrypted key: a node cannot ask for its passphrase.
    let enc = d.file(
        "enc-key.pem",
        pem("ENCRYPTED PRIVATE KEY", &[0x30, 0x03, 0x02, 0x01, 0x00]),
    );
    let msg = refused(NodeTls::load(&cert, &enc, &ca), &enc);
    assert!(
        msg.contains("encrypted") && msg.contains("openssl pkey"),
        "{msg}"
    );
    let old_style = d.file(
        "old-enc-key.pem",
        "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\
         DEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n\nMAMCAQA=\n\
         -----END RSA PRIVATE KEY-----\n",
    );
    let msg = refused(NodeTls::load(&cert, &old_style, &ca), &old_style);
    assert!(
        msg.contains("encrypted") && msg.contains("openssl pkey"),
        "{msg}"
    );
    // The key with a certificate that does not parse.
    let bad_cert = d.file(
        "bad-cert.pem",
        pem("CERTIFICATE", &[0x30, 0x03, 0x02, 0x01, 0x00]),
    );
    let msg = refused(NodeTls::load(&bad_cert, &key, &ca), &bad_cert);
    assert!(msg.contains("certificate cannot be used"), "{msg}");
    // A combined file (certificate and key in one) serves as both.
    let both = d.file("both.pem", format!("{}{}", g.node_cert, g.node_key));
    NodeTls::load(&both, &both, &ca).unwrap();
}

#[test]
fn bad_ca_files_and_foreign_certificates_are_refused() {
    let d = Dir::new("ca");
    let (cert, key, ca, _) = good(&d);
    let junk_ca = d.file(
        "junk-ca.pem",
        pem("CERTIFICATE", &[0x30, 0x03, 0x02, 0x01, 0x00]),
    );
    let msg = refused(NodeTls::load(&cert, &key, &junk_ca), &junk_ca);
    assert!(
        msg.contains("certificate 1 cannot be a trusted CA"),
        "{msg}"
    );
    let msg = client_config(&junk_ca).unwrap_err().to_string();
    assert!(msg.contains(&junk_ca.display().to_string()), "{msg}");

    // A certificate another CA signed loads, but the start check refuses
    // it, naming both files.
    let other = cert::generate(&names(), 30).unwrap();
    let other_ca = d.file("other-ca.pem", &other.ca_cert);
    let tls = NodeTls::load(&cert, &key, &other_ca).unwrap();
    let msg = tls.check_serves("localhost:9001").unwrap_err().to_string();
    assert!(
        msg.contains(&cert.display().to_string())
            && msg.contains(&other_ca.display().to_string())
            && msg.contains("no CA in"),
        "{msg}"
    );
    // The CA's own certificate is no node certificate.
    let ca_key = d.file("ca-key.pem", &other.ca_key);
    let tls = NodeTls::load(&other_ca, &ca_key, &other_ca).unwrap();
    let msg = tls.check_serves("localhost:9001").unwrap_err().to_string();
    assert!(msg.contains("CaUsedAsEndEntity"), "{msg}");
    // Two CAs in one file: either one's certificates are trusted.
    let both = d.file(
        "both-ca.pem",
        format!("{}{}", other.ca_cert, std::fs::read_to_string(&ca).unwrap()),
    );
    NodeTls::load(&cert, &key, &both)
        .unwrap()
        .check_serves("localhost:9001")
        .unwrap();
}

#[test]
fn a_node_needs_all_three_flags_or_none() {
    let d = Dir::new("flags");
    let (cert, key, ca, _) = good(&d);
    let args = |c: Option<&PathBuf>, k: Option<&PathBuf>, a: Option<&PathBuf>| TlsArgs {
        tls_cert: c.cloned(),
        tls_key: k.cloned(),
        tls_ca: a.cloned(),
    };
    assert!(args(None, None, None).load().unwrap().is_none());
    assert!(args(Some(&cert), Some(&key), Some(&ca))
        .load()
        .unwrap()
        .is_some());
    for (a, want) in [
        (args(Some(&cert), Some(&key), None), "need --tls-ca"),
        (
            args(None, None, Some(&ca)),
            "--tls-ca needs --tls-cert and --tls-key",
        ),
        (
            args(Some(&cert), None, Some(&ca)),
            "--tls-cert needs --tls-key",
        ),
        (
            args(None, Some(&key), Some(&ca)),
            "--tls-key needs --tls-cert",
        ),
    ] {
        let msg = a.load().unwrap_err().to_string();
        assert!(msg.contains(want), "{a:?}: {msg}");
    }
    let client = TlsClientArgs { tls_ca: None };
    assert!(client.load().unwrap().is_none());
    let client = TlsClientArgs {
        tls_ca: Some(key.clone()),
    };
    let msg = client.load().unwrap_err().to_string();
    assert!(msg.contains(&key.display().to_string()), "{msg}");
}

#[test]
fn server_names_come_from_host_port() {
    use rustls::pki_types::IpAddr;
    assert!(
        matches!(server_name("localhost:9001"), Ok(ServerName::DnsName(n)) if n.as_ref() == "localhost")
    );
    assert!(matches!(
        server_name("127.0.0.1:9001"),
        Ok(ServerName::IpAddress(IpAddr::V4(_)))
    ));
    assert!(matches!(
        server_name("[::1]:9001"),
        Ok(ServerName::IpAddress(IpAddr::V6(_)))
    ));
    assert!(matches!(
        server_name("localhost"),
        Ok(ServerName::DnsName(_))
    ));
    assert!(server_name("bad name!:9001").is_err());
}

#[test]
fn cert_writes_four_files_keys_private_and_never_overwrites() {
    let d = Dir::new("cert");
    let out = d.0.join("certs");
    let g = cert::generate(&names(), 30).unwrap();
    let written = cert::write(&out, &g, false).unwrap();
    assert_eq!(written.len(), 4);
    for (name, path) in cert::FILES.iter().zip(&written) {
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        if name.ends_with("-key.pem") {
            assert_eq!(mode, 0o600, "{name}");
        } else {
            assert_eq!(mode, 0o644, "{name}");
        }
    }
    let tls = NodeTls::load(
        &out.join("node.pem"),
        &out.join("node-key.pem"),
        &out.join("ca.pem"),
    )
    .unwrap();
    tls.check_serves("127.0.0.1:1").unwrap();
    tls.check_serves("node-a.test:1").unwrap();

    // A second run refuses and leaves the files as they were.
    let before = std::fs::read(out.join("node.pem")).unwrap();
    let again = cert::generate(&names(), 30).unwrap();
    let msg = cert::write(&out, &again, false).unwrap_err().to_string();
    assert!(msg.contains("--force") && msg.contains("node.pem"), "{msg}");
    assert_eq!(std::fs::read(out.join("node.pem")).unwrap(), before);
    // Even when only one of them exists.
    std::fs::remove_file(out.join("ca.pem")).unwrap();
    assert!(cert::write(&out, &again, false).is_err());
    assert!(!out.join("ca.pem").exists(), "nothing written on refusal");
    // --force replaces them, keys still 0600.
    std::fs::set_permissions(
        out.join("node-key.pem"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    cert::write(&out, &again, true).unwrap();
    assert_ne!(std::fs::read(out.join("node.pem")).unwrap(), before);
    let mode = std::fs::metadata(out.join("node-key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        std::fs::read_dir(&out).unwrap().count() == 4,
        "no temporary file left"
    );
}

#[test]
fn cert_names_and_bad_names() {
    assert_eq!(
        cert::names(&[
            "localhost".into(),
            "[::1]".into(),
            "db.test".into(),
            "LOCALHOST".into()
        ]),
        ["localhost", "::1", "db.test", "127.0.0.1"]
    );
    assert!(cert::generate(&["bad name".into()], 30).is_err());
    assert!(cert::generate(&names(), 0).is_err());
}
