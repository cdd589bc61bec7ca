//! Optional TLS (rustls on the `ring` provider) for nodes, their peer calls
//! and the clients: the flags, loading and checking the PEM files, the
//! server's side of a handshake and the clients' side.
//!
//! Promises:
//! - No flag, no change: plain HTTP everywhere, as before.
//! - A node given `--tls-cert`/`--tls-key` serves HTTPS only, and calls its
//!   peers over HTTPS, verifying them against `--tls-ca` and the host names
//!   of the config file. A node needs all three or none ([`TlsArgs::load`]
//!   says why), and checks at start that its own certificate passes the test
//!   its peers will put it to ([`NodeTls::check_serves`]).
//! - Every bad file is refused before anything listens, with a message that
//!   names the file and what is wrong with it ([`TlsError`]).
//! - No client certificate is asked for: TLS hides the traffic and proves
//!   the server; who may call what stays with the HMAC secrets of
//!   [`crate::auth`], unchanged.
//! - [`accept`] never decides how long a handshake may take: the caller
//!   bounds it (the server uses its `header_read_timeout`). A plain-HTTP
//!   request on a TLS port is answered 400 with a line saying to use https,
//!   never passed on.

pub mod cert;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{PemObject, SectionKind};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest PEM file read (a certificate chain is a few KiB).
pub const MAX_PEM_BYTES: u64 = 1 << 20;

/// At most this much of a plain-HTTP request is read (and dropped) after it
/// was answered 400, so the close does not reset the answer away.
const PLAIN_DRAIN_BYTES: usize = 64 << 10;

/// The TLS flags of a command that runs nodes (`server`, `cluster`).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct TlsArgs {
    /// Serve HTTPS only, with this certificate (PEM: the node's certificate
    /// first, then any intermediates). It must name the node's host as the
    /// config file spells it. Needs --tls-key and --tls-ca.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1, not
    /// encrypted).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Call the peers over HTTPS, verifying their certificates against these
    /// CA certificates (PEM, one or more) and the host names of the config
    /// file. Needs --tls-cert and --tls-key.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
}

/// The TLS flag of a command that calls nodes (`tester`, `client`).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct TlsClientArgs {
    /// Talk HTTPS to the nodes, verifying their certificates against these CA
    /// certificates (PEM, one or more) and the host names called (HOST:PORT
    /// and the members' list). No client certificate is sent: the secret
    /// files decide what a caller may do.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
}

impl TlsArgs {
    /// The node's TLS setup, `None` when no flag is given. Refuses a partial
    /// set: a certificate without its key or the other way round; a
    /// certificate without a CA (the node would serve HTTPS but could not
    /// verify its peers); a CA without a certificate (the node would call its
    /// peers over HTTPS but answer them in plain HTTP, which peers set up
    /// like it cannot call).
    pub fn load(&self) -> Result<Option<NodeTls>, TlsError> {
        match (&self.tls_cert, &self.tls_key, &self.tls_ca) {
            (None, None, None) => Ok(None),
            (Some(cert), Some(key), Some(ca)) => NodeTls::load(cert, key, ca).map(Some),
            (Some(_), None, _) => Err(TlsError::Flags(
                "--tls-cert needs --tls-key, the certificate's private key".into(),
            )),
            (None, Some(_), _) => Err(TlsError::Flags(
                "--tls-key needs --tls-cert, the certificate it belongs to".into(),
            )),
            (Some(_), Some(_), None) => Err(TlsError::Flags(
                "--tls-cert and --tls-key need --tls-ca: this node would serve HTTPS but could \
                 not verify its peers' certificates; give it the CA that signed every node's \
                 certificate (`surfstore cert` makes one)"
                    .into(),
            )),
            (None, None, Some(_)) => Err(TlsError::Flags(
                "--tls-ca needs --tls-cert and --tls-key: this node would call its peers over \
                 HTTPS but serve plain HTTP, which peers set up like it cannot call"
                    .into(),
            )),
        }
    }
}

impl TlsClientArgs {
    /// The client's TLS configuration, `None` without `--tls-ca`.
    pub fn load(&self) -> Result<Option<Arc<ClientConfig>>, TlsError> {
        self.tls_ca.as_deref().map(client_config).transpose()
    }
}

/// Why a TLS file or flag was refused. Every message about a file names it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{0}")]
    Flags(String),
    #[error("{}: cannot read the {what}: {cause}", path.display())]
    Read {
        path: PathBuf,
        what: &'static str,
        cause: std::io::Error,
    },
    #[error("{}: the {what} file is over {MAX_PEM_BYTES} bytes; is it the right file?", path.display())]
    TooLarge { path: PathBuf, what: &'static str },
    #[error("{}: the {what} file is not PEM: {why}", path.display())]
    NotPem {
        path: PathBuf,
        what: &'static str,
        why: String,
    },
    #[error("{}: no {what} in it ({why})", path.display())]
    Missing {
        path: PathBuf,
        what: &'static str,
        why: String,
    },
    #[error("{}: the private key is encrypted, and a node cannot ask for its passphrase; decrypt it with `openssl pkey -in {} -out plain-key.pem`", path.display(), path.display())]
    Encrypted { path: PathBuf },
    #[error("{}: {count} private keys in it; expected exactly one", path.display())]
    ManyKeys { path: PathBuf, count: usize },
    #[error("{}: the private key cannot be used: {why} (usable: RSA of 2048 bits or more, ECDSA P-256 or P-384, Ed25519)", path.display())]
    Key { path: PathBuf, why: String },
    #[error("{}: the certificate does not belong to the private key in {}", cert.display(), key.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{}: the certificate cannot be used: {why}", path.display())]
    Cert { path: PathBuf, why: String },
    #[error("{}: certificate {index} cannot be a trusted CA: {why}", path.display())]
    Ca {
        path: PathBuf,
        index: usize,
        why: String,
    },
    #[error("{}: peers that trust {} would refuse it for {host}: {why}", cert.display(), ca.display())]
    NotTrusted {
        cert: PathBuf,
        ca: PathBuf,
        host: String,
        why: String,
    },
    #[error("TLS setup: {0}")]
    Setup(String),
}

/// The process-wide crypto provider: ring, chosen explicitly so that no
/// other crate's feature can change it under us.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// What a node serves with and calls its peers with.
#[derive(Clone)]
pub struct NodeTls {
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
    /// The node's own chain, end entity first (never empty).
    chain: Arc<[CertificateDer<'static>]>,
    /// What its peers verify it with (the same as in `client`).
    verifier: Arc<WebPkiServerVerifier>,
    cert_file: PathBuf,
    ca_file: PathBuf,
}

impl fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeTls")
            .field("cert", &self.cert_file)
            .field("ca", &self.ca_file)
            .finish()
    }
}

impl NodeTls {
    /// Reads and checks the three files: the chain parses, the key is one a
    /// ring signer can use and belongs to the chain's first certificate, the
    /// CA file holds trust anchors.
    pub fn load(cert: &Path, key: &Path, ca: &Path) -> Result<NodeTls, TlsError> {
        let (server, chain) = server_config(cert, key)?;
        let verifier = ca_verifier(ca)?;
        let client = client_config_with(verifier.clone())?;
        Ok(NodeTls {
            server,
            client,
            chain: chain.into(),
            verifier,
            cert_file: cert.to_path_buf(),
            ca_file: ca.to_path_buf(),
        })
    }

    /// Checks that peers would accept this node's certificate when they call
    /// `host` (a config file's host, `localhost` or `127.0.0.1`): it chains
    /// to the CA, is valid now and names the host.
    pub fn check_serves(&self, host: &str) -> Result<(), TlsError> {
        let not_trusted = |why: String| TlsError::NotTrusted {
            cert: self.cert_file.clone(),
            ca: self.ca_file.clone(),
            host: host.to_owned(),
            why,
        };
        let name = server_name(host).map_err(not_trusted)?;
        let (end_entity, intermediates) = self
            .chain
            .split_first()
            .expect("load refuses an empty chain");
        self.verifier
            .verify_server_cert(end_entity, intermediates, &name, &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| not_trusted(explain(&e, &self.ca_file)))
    }
}

/// A certificate error, with the likely cause when rustls's words hide it.
fn explain(e: &rustls::Error, ca: &Path) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
            format!("{e} (no CA in {} signed it)", ca.display())
        }
        _ => e.to_string(),
    }
}

/// The body of the 400 a TLS port answers a plain-HTTP request with.
pub const PLAIN_HTTP_REFUSAL: &str =
    "this node serves HTTPS only: call https://HOST:PORT/RPC2, trusting the cluster's CA\n";

/// A server configuration from a certificate chain and its key, checked as
/// [`NodeTls::load`] says; also the chain, for [`NodeTls::check_serves`].
pub fn server_config(
    cert: &Path,
    key: &Path,
) -> Result<(Arc<ServerConfig>, Vec<CertificateDer<'static>>), TlsError> {
    let chain = load_certs(cert, "certificate")?;
    let key_der = load_key(key)?;
    let provider = provider();
    let signer = provider
        .key_provider
        .load_private_key(key_der.clone_key())
        .map_err(|e| TlsError::Key {
            path: key.to_path_buf(),
            why: e.to_string(),
        })?;
    let bad_cert = |e: rustls::Error| TlsError::Cert {
        path: cert.to_path_buf(),
        why: e.to_string(),
    };
    match rustls::sign::CertifiedKey::new(chain.clone(), signer).keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(TlsError::KeyMismatch {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            })
        }
        // The signer cannot tell its public key: nothing to compare.
        Err(rustls::Error::InconsistentKeys(_)) => {}
        Err(e) => return Err(bad_cert(e)),
    }
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain.clone(), key_der)
        .map_err(bad_cert)?;
    Ok((Arc::new(config), chain))
}

/// A client configuration that trusts the CA certificates in `ca`.
pub fn client_config(ca: &Path) -> Result<Arc<ClientConfig>, TlsError> {
    client_config_with(ca_verifier(ca)?)
}

fn client_config_with(verifier: Arc<WebPkiServerVerifier>) -> Result<Arc<ClientConfig>, TlsError> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_webpki_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The verifier of server certificates against the CAs in `ca`.
fn ca_verifier(ca: &Path) -> Result<Arc<WebPkiServerVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for (i, der) in load_certs(ca, "CA certificate")?.into_iter().enumerate() {
        roots.add(der).map_err(|e| TlsError::Ca {
            path: ca.to_path_buf(),
            index: i + 1,
            why: e.to_string(),
        })?;
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| TlsError::Setup(e.to_string()))
}

/// The TLS name to verify a server by, from `host` or `host:port` (an IP
/// address, also bracketed IPv6, or a DNS name).
pub fn server_name(addr: &str) -> Result<ServerName<'static>, String> {
    let host = match addr.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => addr,
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(host.to_owned()).map_err(|e| format!("`{host}` is no TLS name: {e}"))
}

/// Opens TLS over `tcp` to `addr` (`host:port`, whose host the certificate
/// must name). Unbounded: the caller puts a deadline on it.
pub async fn connect(
    config: &Arc<ClientConfig>,
    addr: &str,
    tcp: TcpStream,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let name = server_name(addr).map_err(std::io::Error::other)?;
    tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
}

/// Why an accepted connection never got to HTTP.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("closed before a TLS handshake")]
    Closed,
    #[error("plain HTTP on the TLS port (answered 400)")]
    PlainHttp,
    #[error("not a TLS handshake (first byte {0:#04x})")]
    NotTls(u8),
    #[error("TLS handshake failed: {0}")]
    Handshake(std::io::Error),
}

/// The server's side of a handshake on an accepted connection. A peer that
/// starts with an HTTP request line (an `http://` client on this port) gets
/// a 400 saying to use https, its request is read and dropped (at most
/// [`PLAIN_DRAIN_BYTES`]), and the connection closes. Unbounded: the caller
/// puts a deadline on it.
pub async fn accept(
    acceptor: &tokio_rustls::TlsAcceptor,
    mut stream: TcpStream,
) -> Result<tokio_rustls::server::TlsStream<TcpStream>, AcceptError> {
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(0) => return Err(AcceptError::Closed),
        Ok(_) => {}
        Err(e) => return Err(AcceptError::Handshake(e)),
    }
    // Every TLS connection opens with a handshake record (content type 22).
    if first[0] == 0x16 {
        return acceptor
            .accept(stream)
            .await
            .map_err(AcceptError::Handshake);
    }
    if !first[0].is_ascii_uppercase() {
        return Err(AcceptError::NotTls(first[0]));
    }
    const BODY: &str = PLAIN_HTTP_REFUSAL;
    let answer = format!(
        "HTTP/1.1 400 This port speaks HTTPS only\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
    // Closing with unread bytes would reset the connection, and the answer
    // with it; the client closes once it has read the answer.
    let mut drained = 0;
    let mut buf = [0u8; 4096];
    while drained < PLAIN_DRAIN_BYTES {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
    Err(AcceptError::PlainHttp)
}

/// The certificates of a PEM file, in order; at least one.
fn load_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let sections = read_pem(path, what)?.sections;
    let certs: Vec<_> = sections
        .iter()
        .filter(|(kind, _)| *kind == SectionKind::Certificate)
        .map(|(_, der)| CertificateDer::from(der.clone()))
        .collect();
    if certs.is_empty() {
        return Err(TlsError::Missing {
            path: path.to_path_buf(),
            what,
            why: format!(
                "it holds {}, no CERTIFICATE{}",
                kinds(&sections),
                if what == "certificate" {
                    swapped_hint(&sections)
                } else {
                    ""
                }
            ),
        });
    }
    Ok(certs)
}

/// The one private key of a PEM file.
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let what = "private key";
    let pem = read_pem(path, what)?;
    let sections = pem.sections;
    let mut keys: Vec<_> = sections
        .iter()
        .filter_map(|(kind, der)| PrivateKeyDer::from_pem(*kind, der.clone()))
        .collect();
    match keys.len() {
        1 => Ok(keys.pop().expect("one key")),
        0 if pem.encrypted => Err(TlsError::Encrypted {
            path: path.to_path_buf(),
        }),
        0 => Err(TlsError::Missing {
            path: path.to_path_buf(),
            what,
            why: format!(
                "it holds {}, no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY{}",
                kinds(&sections),
                swapped_hint(&sections)
            ),
        }),
        count => Err(TlsError::ManyKeys {
            path: path.to_path_buf(),
            count,
        }),
    }
}

/// A PEM file as read.
struct Pem {
    /// Every section of a kind rustls knows, in order (others, like `EC
    /// PARAMETERS` or `ENCRYPTED PRIVATE KEY`, are skipped); at least one.
    sections: Vec<(SectionKind, Vec<u8>)>,
    /// The file holds an encrypted key.
    encrypted: bool,
}

fn read_pem(path: &Path, what: &'static str) -> Result<Pem, TlsError> {
    let bytes = read_capped(path, what)?;
    let encrypted = encrypted(&bytes);
    let mut sections = Vec::new();
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(&bytes) {
        match section {
            Ok(section) => sections.push(section),
            // An old-style encrypted key's headers are no base64.
            Err(_) if encrypted => {
                return Err(TlsError::Encrypted {
                    path: path.to_path_buf(),
                })
            }
            Err(e) => {
                return Err(TlsError::NotPem {
                    path: path.to_path_buf(),
                    what,
                    why: e.to_string(),
                })
            }
        }
    }
    if sections.is_empty() && encrypted {
        return Err(TlsError::Encrypted {
            path: path.to_path_buf(),
        });
    }
    if sections.is_empty() {
        return Err(TlsError::NotPem {
            path: path.to_path_buf(),
            what,
            why: not_pem_hint(&bytes, path),
        });
    }
    Ok(Pem {
        sections,
        encrypted,
    })
}

fn read_capped(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    let read_err = |cause| TlsError::Read {
        path: path.to_path_buf(),
        what,
        cause,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(file, MAX_PEM_BYTES + 1),
        &mut bytes,
    )
    .map_err(read_err)?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(TlsError::TooLarge {
            path: path.to_path_buf(),
            what,
        });
    }
    Ok(bytes)
}

/// Why a file with no section rustls reads is not what was asked for.
fn not_pem_hint(bytes: &[u8], path: &Path) -> String {
    let text = String::from_utf8_lossy(bytes);
    let p = path.display();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        "the file is empty".into()
    } else if text.contains("-----BEGIN ") {
        "it holds no section of a kind used here (CERTIFICATE, PRIVATE KEY, RSA PRIVATE KEY, EC PRIVATE KEY)".into()
    } else if bytes.first() == Some(&0x30) {
        format!(
            "it looks like DER; convert it with `openssl x509 -inform der -in {p} -out cert.pem` \
             (a key: `openssl pkey -inform der -in {p} -out key.pem`)"
        )
    } else {
        "no `-----BEGIN ...-----` line".into()
    }
}

/// An encrypted key: PKCS#8 (`ENCRYPTED PRIVATE KEY`) or the old
/// `Proc-Type: 4,ENCRYPTED` header.
fn encrypted(bytes: &[u8]) -> bool {
    bytes.windows(9).any(|w| w == b"ENCRYPTED")
}

/// `CERTIFICATE, PRIVATE KEY`: the kinds of `sections`, in order, once each.
fn kinds(sections: &[(SectionKind, Vec<u8>)]) -> String {
    let mut names: Vec<&str> = Vec::new();
    for (kind, _) in sections {
        let name = kind_name(*kind);
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names.join(", ")
}

fn kind_name(kind: SectionKind) -> &'static str {
    match kind {
        SectionKind::Certificate => "CERTIFICATE",
        SectionKind::PublicKey => "PUBLIC KEY",
        SectionKind::RsaPrivateKey => "RSA PRIVATE KEY",
        SectionKind::PrivateKey => "PRIVATE KEY",
        SectionKind::EcPrivateKey => "EC PRIVATE KEY",
        SectionKind::Crl => "X509 CRL",
        SectionKind::Csr => "CERTIFICATE REQUEST",
        SectionKind::EchConfigList => "ECHCONFIG",
        _ => "another kind of section",
    }
}

/// A hint when a file holds what the other flag wants.
fn swapped_hint(sections: &[(SectionKind, Vec<u8>)]) -> &'static str {
    let has_cert = sections.iter().any(|(k, _)| *k == SectionKind::Certificate);
    let has_key = sections.iter().any(|(k, _)| {
        matches!(
            k,
            SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey
        )
    });
    match (has_cert, has_key) {
        (true, false) | (false, true) => "; are --tls-cert and --tls-key swapped?",
        _ => "",
    }
}

#[cfg(test)]
mod tests;
