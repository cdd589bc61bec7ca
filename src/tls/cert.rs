//! `surfstore cert`: a test CA and one node certificate for a whole cluster,
//! made offline with rcgen (ECDSA P-256).
//!
//! Promises:
//! - Writes `ca.pem`, `ca-key.pem`, `node.pem` and `node-key.pem` into the
//!   output directory (created if missing); the keys are mode 0600 from
//!   the moment they exist (written to a temporary file of that mode, then
//!   linked into place).
//! - Refuses, before writing anything, when one of the four exists, unless
//!   `--force`.
//! - The node certificate names every host of the config file, `localhost`
//!   and `127.0.0.1` (and any `--host`), is for server authentication only,
//!   and is signed by the CA, which can sign nothing but end entities.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// The four files, in the order they are written.
pub const FILES: [&str; 4] = ["ca.pem", "ca-key.pem", "node.pem", "node-key.pem"];

#[derive(clap::Args, Clone, Debug)]
pub struct CertArgs {
    /// Name every host of this cluster config file in the node certificate
    /// (besides localhost and 127.0.0.1).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where to write ca.pem, ca-key.pem, node.pem and node-key.pem
    /// (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Another name for the node certificate, a DNS name or an IP address
    /// (repeat for more).
    #[arg(long = "host", value_name = "NAME")]
    pub hosts: Vec<String>,
    /// How many days from now both certificates are valid.
    #[arg(long, default_value_t = 825)]
    pub days: u32,
    /// Overwrite the files if they exist.
    #[arg(long)]
    pub force: bool,
}

/// Why no certificates were written.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{} already holds {}; pass --force to overwrite", dir.display(), names.join(", "))]
    Exists { dir: PathBuf, names: Vec<String> },
    #[error("`{name}` cannot be named in a certificate: {why}")]
    BadName { name: String, why: String },
    #[error("--days must be at least 1")]
    NoDays,
    #[error("making the certificates: {0}")]
    Generate(String),
    #[error("{}: {cause}", path.display())]
    Write {
        path: PathBuf,
        cause: std::io::Error,
    },
}

/// The PEM texts of a test CA and a node certificate it signed.
pub struct Generated {
    pub ca_cert: String,
    pub ca_key: String,
    pub node_cert: String,
    pub node_key: String,
    /// The names in the node certificate, as given.
    pub names: Vec<String>,
}

/// The node certificate's names: the hosts (deduplicated, in order, IPv6
/// brackets removed), then `localhost` and `127.0.0.1` unless among them.
pub fn names(hosts: &[String]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let all = hosts
        .iter()
        .map(String::as_str)
        .chain(["localhost", "127.0.0.1"]);
    for host in all {
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if !names.iter().any(|n| n.eq_ignore_ascii_case(host)) {
            names.push(host.to_owned());
        }
    }
    names
}

/// Makes a CA and a node certificate for `names`, valid from an hour ago
/// (some clock skew) until `days` from now.
pub fn generate(names: &[String], days: u32) -> Result<Generated, CertError> {
    if days == 0 {
        return Err(CertError::NoDays);
    }
    let gen = |e: rcgen::Error| CertError::Generate(e.to_string());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let at = |t: Duration| {
        time::OffsetDateTime::from_unix_timestamp(t.as_secs() as i64)
            .map_err(|e| CertError::Generate(e.to_string()))
    };
    let not_before = at(now.saturating_sub(Duration::from_secs(3600)))?;
    let not_after = at(now + Duration::from_secs(u64::from(days) * 86_400))?;

    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(gen)?;
    // A name of its own, so that a certificate of another test CA is
    // reported as from an unknown issuer, not as a bad signature.
    let ca_name = format!("SurfStore test CA {:08x}", rand::random::<u32>());
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    // A CA for end entities only: path length 0.
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.not_before = not_before;
    ca.not_after = not_after;
    let ca_key = KeyPair::generate().map_err(gen)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(gen)?;

    for name in names {
        if name.parse::<std::net::IpAddr>().is_err() {
            rustls::pki_types::DnsName::try_from(name.as_str()).map_err(|e| {
                CertError::BadName {
                    name: name.clone(),
                    why: e.to_string(),
                }
            })?;
        }
    }
    let mut node = CertificateParams::new(names.to_vec()).map_err(|e| CertError::BadName {
        name: names.join(", "),
        why: e.to_string(),
    })?;
    node.distinguished_name
        .push(DnType::CommonName, "SurfStore node");
    node.is_ca = IsCa::ExplicitNoCa;
    node.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    node.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    node.use_authority_key_identifier_extension = true;
    node.not_before = not_before;
    node.not_after = not_after;
    let node_key = KeyPair::generate().map_err(gen)?;
    let issuer = Issuer::from_params(&ca, &ca_key);
    let node_cert = node.signed_by(&node_key, &issuer).map_err(gen)?;

    Ok(Generated {
        ca_cert: ca_cert.pem(),
        ca_key: ca_key.serialize_pem(),
        node_cert: node_cert.pem(),
        node_key: node_key.serialize_pem(),
        names: names.to_vec(),
    })
}

/// Writes the four files into `dir`; see the module's promises.
pub fn write(dir: &Path, g: &Generated, force: bool) -> Result<Vec<PathBuf>, CertError> {
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |cause| CertError::Write { path, cause }
    };
    std::fs::create_dir_all(dir).map_err(write_err(dir))?;
    if !force {
        let existing: Vec<String> = FILES
            .iter()
            .filter(|f| dir.join(f).symlink_metadata().is_ok())
            .map(|f| f.to_string())
            .collect();
        if !existing.is_empty() {
            return Err(CertError::Exists {
                dir: dir.to_path_buf(),
                names: existing,
            });
        }
    }
    let contents = [&g.ca_cert, &g.ca_key, &g.node_cert, &g.node_key];
    let mut written = Vec::new();
    for (name, text) in FILES.iter().zip(contents) {
        let mode = if name.ends_with("-key.pem") {
            0o600
        } else {
            0o644
        };
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let result = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&tmp)?;
            // The umask may have taken bits the mode asked for; never more.
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            if force {
                std::fs::rename(&tmp, &path)
            } else {
                // Fails if the file appeared since the check: never clobbered.
                std::fs::hard_link(&tmp, &path)?;
                std::fs::remove_file(&tmp)
            }
        })();
        if let Err(cause) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(write_err(&path)(cause));
        }
        written.push(path);
    }
    Ok(written)
}

/// `surfstore cert`: returns the exit code (0 written, 1 refused or failed).
pub fn run_cli(args: &CertArgs) -> i32 {
    match run(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("surfstore cert: {e}");
            1
        }
    }
}

fn run(args: &CertArgs) -> Result<(), CertError> {
    let mut hosts = Vec::new();
    if let Some(config) = &args.config {
        let config = crate::config::load(config)?;
        for member in &config.members {
            let host = member.rsplit_once(':').map_or(member.as_str(), |(h, _)| h);
            hosts.push(host.to_owned());
        }
    }
    hosts.extend(args.hosts.iter().cloned());
    let names = names(&hosts);
    let generated = generate(&names, args.days)?;
    let written = write(&args.out, &generated, args.force)?;
    for path in &written {
        println!("wrote {}", path.display());
    }
    let p = |i: usize| written[i].display().to_string();
    println!(
        "node certificate for {}, valid {} days",
        generated.names.join(", "),
        args.days
    );
    println!(
        "nodes:   --tls-cert {} --tls-key {} --tls-ca {}",
        p(2),
        p(3),
        p(0)
    );
    println!("clients: --tls-ca {}", p(0));
    Ok(())
}
