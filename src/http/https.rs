//! The `https {}` listeners: which addresses serve which roles over TLS, and their key and
//! certificate, read and checked once at start so that a bad file stops the start with its
//! name. It opens no socket: the workers do, and [`super::tls`] runs each connection.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::router::Roles;
use crate::config::{Config, Https};

/// Why an `https {}` listener cannot start; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// The certificate file could not be read or holds no PEM certificate.
    #[error("https cert {}: {source}", .path.display())]
    Cert {
        /// The `cert` path.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// The key file could not be read or holds no PEM private key.
    #[error("https key {}: {source}", .path.display())]
    Key {
        /// The `key` path.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// rustls refused the pair (a key that is not the certificate's, an unsupported one).
    #[error("https key {} with cert {}: {source}", .key.display(), .cert.display())]
    Pair {
        /// The `key` path.
        key: PathBuf,
        /// The `cert` path.
        cert: PathBuf,
        /// rustls's reason.
        #[source]
        source: rustls::Error,
    },
}

/// One HTTPS listener: where, what it serves, and its TLS settings.
#[derive(Debug, Clone)]
pub struct HttpsListener {
    /// Its address.
    pub addr: SocketAddr,
    /// What it serves: `http_api`'s roles, `http_server`'s, or both on one address.
    pub roles: Roles,
    /// The key and certificate, loaded.
    pub tls: Arc<ServerConfig>,
}

/// The HTTPS listeners `config` asks for, their files read and checked now, so that a bad
/// key or certificate stops the start with the file's name. `http_api`'s and `http_server`'s
/// on one address share one listener with `http_server`'s files, as SRS serves its API on
/// the stream server's listener then.
pub fn https_listeners(config: &Config) -> Result<Vec<HttpsListener>, TlsSetupError> {
    let api = Roles {
        api: true,
        ..Roles::default()
    };
    let streams = Roles {
        streams: true,
        ..Roles::default()
    };
    let mut out: Vec<HttpsListener> = Vec::new();
    for (https, roles) in [
        (&config.http_server.https, streams),
        (&config.http_api.https, api),
    ] {
        if !https.enabled {
            continue;
        }
        match out.iter_mut().find(|l| l.addr == https.listen) {
            Some(shared) => shared.roles.api |= roles.api,
            None => out.push(HttpsListener {
                addr: https.listen,
                roles,
                tls: server_config(https)?,
            }),
        }
    }
    Ok(out)
}

/// rustls's settings for `https`: its key and chain, aws-lc-rs (linked already for WebRTC),
/// TLS 1.2 and 1.3, HTTP/1.1 by ALPN.
fn server_config(https: &Https) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let certs = read_certs(&https.cert).map_err(|source| TlsSetupError::Cert {
        path: https.cert.clone(),
        source,
    })?;
    let key = PrivateKeyDer::from_pem_file(&https.key).map_err(|source| TlsSetupError::Key {
        path: https.key.clone(),
        source,
    })?;
    let pair = |source| TlsSetupError::Pair {
        key: https.key.clone(),
        cert: https.cert.clone(),
        source,
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(pair)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(pair)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, rustls_pki_types::pem::Error> {
    let certs = CertificateDer::pem_file_iter(path)?.collect::<Result<Vec<_>, _>>()?;
    if certs.is_empty() {
        return Err(rustls_pki_types::pem::Error::NoItemsFound);
    }
    Ok(certs)
}
