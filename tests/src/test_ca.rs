//! A certificate authority made for one test with the `openssl` command: its
//! root certificate, for a process to trust through `SSL_CERT_FILE`, and the
//! server certificates it signs, for a receiver to serve.
//!
//! Keys are P-256 and certificates last two days: nothing outlives the
//! test's scratch directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::process::Scratch;

/// The OpenSSL configuration of every certificate made here: the sections
/// name the extensions a verifier checks (a CA that may sign, a server
/// certificate for serving only, for the names in `$ENV::SAN`).
const OPENSSL_CONFIG: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = pushwire test
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = $ENV::SAN
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

/// A test CA; its files live in the scratch directory.
#[derive(Debug)]
pub struct TestCa {
    config: PathBuf,
    key: PathBuf,
    cert: PathBuf,
}

/// A server certificate signed by a [`TestCa`], and its key (PEM files).
#[derive(Debug, Clone)]
pub struct ServerCert {
    /// The certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

impl TestCa {
    /// Makes a CA named `name` in `scratch`.
    pub fn new(scratch: &Scratch, name: &str) -> Self {
        let config = scratch.file(&format!("{name}-openssl.cnf"));
        std::fs::write(&config, OPENSSL_CONFIG).expect("write the OpenSSL config");
        let key = scratch.file(&format!("{name}.key"));
        let cert = scratch.file(&format!("{name}.pem"));
        openssl(&[
            "req".as_ref(),
            "-x509".as_ref(),
            "-config".as_ref(),
            config.as_os_str(),
            "-extensions".as_ref(),
            "ca".as_ref(),
            "-subj".as_ref(),
            format!("/CN=pushwire test CA {name}").as_ref(),
            "-days".as_ref(),
            "2".as_ref(),
            "-set_serial".as_ref(),
            serial().as_ref(),
            "-newkey".as_ref(),
            "ec".as_ref(),
            "-pkeyopt".as_ref(),
            "ec_paramgen_curve:P-256".as_ref(),
            "-nodes".as_ref(),
            "-keyout".as_ref(),
            key.as_os_str(),
            "-out".as_ref(),
            cert.as_os_str(),
        ]);
        TestCa { config, key, cert }
    }

    /// The root certificate (PEM): what `SSL_CERT_FILE` names to trust this CA.
    pub fn cert(&self) -> &Path {
        &self.cert
    }

    /// Signs a certificate for `127.0.0.1`, its files named after `name`.
    pub fn issue(&self, scratch: &Scratch, name: &str) -> ServerCert {
        self.issue_for(scratch, name, "IP:127.0.0.1")
    }

    /// Signs a certificate for `san` (an OpenSSL `subjectAltName` value, as
    /// `DNS:elsewhere.example`), its files named after `name`.
    pub fn issue_for(&self, scratch: &Scratch, name: &str, san: &str) -> ServerCert {
        let key = scratch.file(&format!("{name}.key"));
        let request = scratch.file(&format!("{name}.csr"));
        let cert = scratch.file(&format!("{name}.pem"));
        openssl(&[
            "req".as_ref(),
            "-new".as_ref(),
            "-config".as_ref(),
            self.config.as_os_str(),
            "-subj".as_ref(),
            format!("/CN={name}").as_ref(),
            "-newkey".as_ref(),
            "ec".as_ref(),
            "-pkeyopt".as_ref(),
            "ec_paramgen_curve:P-256".as_ref(),
            "-nodes".as_ref(),
            "-keyout".as_ref(),
            key.as_os_str(),
            "-out".as_ref(),
            request.as_os_str(),
        ]);
        openssl_with_san(
            san,
            &[
                "x509".as_ref(),
                "-req".as_ref(),
                "-in".as_ref(),
                request.as_os_str(),
                "-CA".as_ref(),
                self.cert.as_os_str(),
                "-CAkey".as_ref(),
                self.key.as_os_str(),
                "-set_serial".as_ref(),
                serial().as_ref(),
                "-days".as_ref(),
                "2".as_ref(),
                "-extfile".as_ref(),
                self.config.as_os_str(),
                "-extensions".as_ref(),
                "server".as_ref(),
                "-out".as_ref(),
                cert.as_os_str(),
            ],
        );
        ServerCert { cert, key }
    }
}

/// A serial number no other certificate of this run has: verifiers may
/// refuse two certificates of one issuer with the same serial.
fn serial() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "{}{:06}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `openssl` with `args`; panics with its output if it fails.
fn openssl(args: &[&std::ffi::OsStr]) {
    // Every run reads the config, which names `SAN`, the CA's too.
    openssl_with_san("IP:127.0.0.1", args);
}

/// Runs `openssl` with `args` and `SAN` (the server section's
/// `subjectAltName`) set to `san`; panics with its output if it fails.
fn openssl_with_san(san: &str, args: &[&std::ffi::OsStr]) {
    let output = Command::new("openssl")
        .args(args)
        .env("SAN", san)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl ({e}): install it (scripts/test.sh does)"));
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
