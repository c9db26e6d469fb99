//! The TLS side of `https://` webhooks: which root certificates receivers'
//! certificates are verified against, and the rustls client configuration.
//!
//! The roots are the platform's, as OpenSSL finds them (`SSL_CERT_FILE` and
//! `SSL_CERT_DIR` override where), loaded once when the queue starts. The
//! certificate chain and the host name are always verified: there is no
//! setting that turns either off.

use std::sync::Arc;

use pushwire_shared::webhook::WebhookUrl;
use rustls::{ClientConfig, RootCertStore};

/// The environment variables that replace the platform's certificate store.
const CERT_VARIABLES: [&str; 2] = ["SSL_CERT_FILE", "SSL_CERT_DIR"];

/// Why no `https://` endpoint can be sent to. Final: retrying cannot mend it,
/// only a restart with a certificate store can.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HttpsUnavailable {
    /// No root certificate could be loaded, so no receiver's certificate
    /// could ever be verified.
    #[error(
        "no root certificate could be loaded from {from}{problems}; install the system's CA certificates or point SSL_CERT_FILE at a PEM bundle"
    )]
    NoRoots {
        /// Where they were looked for.
        from: String,
        /// What went wrong reading them, `: `-prefixed, or empty.
        problems: String,
    },
    /// rustls refused the client's own configuration.
    #[error("the TLS client could not be set up: {0}")]
    Setup(String),
}

/// The roots the https endpoints among `urls` are verified against: the
/// platform's when any is https, else an empty store, since nothing would use
/// it and a machine without a certificate store may still send to `http://`.
///
/// Logs where the roots came from, or (as an error) why https endpoints will
/// get nothing.
pub(crate) fn roots_for<'a>(
    mut urls: impl Iterator<Item = &'a WebhookUrl>,
) -> Result<RootCertStore, HttpsUnavailable> {
    if !urls.any(WebhookUrl::is_https) {
        return Ok(RootCertStore::empty());
    }
    let roots = platform_roots();
    match &roots {
        Ok(roots) => tracing::info!(
            roots = roots.len(),
            from = %cert_source(),
            "https webhooks are verified against these root certificates"
        ),
        Err(error) => tracing::error!(%error, "https webhook endpoints will get nothing"),
    }
    roots
}

/// Loads the platform's root certificates (or those `SSL_CERT_FILE` and
/// `SSL_CERT_DIR` name); refuses an empty result.
///
/// Problems with some certificates are logged and the others are used: a
/// store with one unreadable file still verifies most receivers.
fn platform_roots() -> Result<RootCertStore, HttpsUnavailable> {
    let loaded = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (_, unparsable) = roots.add_parsable_certificates(loaded.certs);
    let mut problems: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
    if unparsable > 0 {
        problems.push(format!("{unparsable} certificates could not be parsed"));
    }
    if roots.is_empty() {
        return Err(HttpsUnavailable::NoRoots {
            from: cert_source(),
            problems: problems.iter().map(|p| format!(": {p}")).collect(),
        });
    }
    if !problems.is_empty() {
        tracing::warn!(
            problems = problems.join("; "),
            "some root certificates could not be loaded; the others are used"
        );
    }
    Ok(roots)
}

/// Where the roots are read from, as an operator would look for them.
fn cert_source() -> String {
    let set: Vec<String> = CERT_VARIABLES
        .iter()
        .filter_map(|name| {
            let value = std::env::var_os(name)?;
            Some(format!("{name}={}", value.to_string_lossy()))
        })
        .collect();
    if set.is_empty() {
        "the system's certificate store".to_owned()
    } else {
        set.join(" ")
    }
}

/// A client configuration that verifies receivers against `roots`: rustls
/// with the ring provider, its safe default protocol versions (TLS 1.2 and
/// 1.3), no client certificate.
pub(crate) fn client_config(roots: RootCertStore) -> Result<ClientConfig, HttpsUnavailable> {
    // An explicit provider: the process-wide default would panic if another
    // crate ever enabled a second one.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpsUnavailable::Setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The TLS error under `error`, if the attempt failed in the TLS layer (a
/// certificate refused, a handshake broken off).
///
/// Looks through `std::io::Error`s by their inner error: their `source()`
/// skips it, and the TLS stack wraps its error in two of them.
pub(crate) fn tls_cause<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        current = match error.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => error.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_root_is_loaded_when_no_endpoint_is_https() {
        let http = WebhookUrl::new("http://127.0.0.1:9/").unwrap();
        let roots = roots_for([&http].into_iter()).unwrap();
        assert!(roots.is_empty());
    }

    #[test]
    fn the_tls_error_is_found_under_io_errors() {
        let tls = rustls::Error::General("refused".into());
        let wrapped = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            tls.clone(),
        ));
        assert_eq!(tls_cause(&wrapped), Some(&tls));
        assert_eq!(tls_cause(&std::io::Error::other("plain")), None);
    }

    #[test]
    fn no_roots_says_where_it_looked_and_what_to_do() {
        let error = HttpsUnavailable::NoRoots {
            from: "SSL_CERT_FILE=/nowhere.pem".into(),
            problems: ": failed to read PEM from file".into(),
        };
        let text = error.to_string();
        assert!(
            text.contains("from SSL_CERT_FILE=/nowhere.pem: failed"),
            "{text}"
        );
        assert!(
            text.contains("point SSL_CERT_FILE at a PEM bundle"),
            "{text}"
        );
        assert!(client_config(RootCertStore::empty()).is_ok());
    }
}
