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
/// TLS 1.2 and 1.3. No ALPN, as SRS: a client that offers only `http/1.0` (curl --http1.0)
/// would be refused by a server that names `http/1.1`, and one that offers `h2` too falls
/// back to HTTP/1.1 without an answer.
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
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(pair)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(pair)?;
    Ok(Arc::new(config))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, rustls_pki_types::pem::Error> {
    let certs = CertificateDer::pem_file_iter(path)?.collect::<Result<Vec<_>, _>>()?;
    if certs.is_empty() {
        return Err(rustls_pki_types::pem::Error::NoItemsFound);
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed key and certificate for 127.0.0.1, written in `dir`.
    fn files(dir: &Path) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
        let cert = params.self_signed(&key).expect("certificate");
        let paths = (dir.join("k.pem"), dir.join("c.pem"));
        std::fs::write(&paths.0, key.serialize_pem()).expect("key file");
        std::fs::write(&paths.1, cert.pem()).expect("cert file");
        paths
    }

    fn config(dir: &Path, api_port: u16, server_port: u16) -> Config {
        let (key, cert) = files(dir);
        let mut config = Config::default();
        for (listener, port) in [
            (&mut config.http_api, api_port),
            (&mut config.http_server, server_port),
        ] {
            listener.enabled = true;
            listener.https.enabled = true;
            listener.https.listen.set_port(port);
            listener.https.key.clone_from(&key);
            listener.https.cert.clone_from(&cert);
        }
        config
    }

    #[test]
    fn the_api_and_the_server_share_one_address_or_have_their_own() {
        let dir = tempfile::tempdir().expect("temp dir");
        let roles = |l: &HttpsListener| (l.addr.port(), l.roles.api, l.roles.streams);
        let got: Vec<_> = https_listeners(&config(dir.path(), 1990, 8088))
            .expect("listeners")
            .iter()
            .map(roles)
            .collect();
        assert_eq!(got, [(8088, false, true), (1990, true, false)]);
        let got: Vec<_> = https_listeners(&config(dir.path(), 8443, 8443))
            .expect("listeners")
            .iter()
            .map(roles)
            .collect();
        assert_eq!(got, [(8443, true, true)]);
        let mut off = config(dir.path(), 1990, 8088);
        off.http_api.https.enabled = false;
        off.http_server.https.enabled = false;
        assert!(https_listeners(&off).expect("none").is_empty());
    }

    #[test]
    fn a_bad_file_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = config(dir.path(), 1990, 8088);
        config.http_server.https.cert = dir.path().join("nope.crt");
        let e = https_listeners(&config).expect_err("missing cert");
        assert!(matches!(e, TlsSetupError::Cert { .. }), "{e}");
        assert!(e.to_string().contains("nope.crt"), "{e}");
        let junk = dir.path().join("junk.key");
        std::fs::write(&junk, "junk").expect("junk");
        config.http_server.https = config.http_api.https.clone();
        config.http_server.https.key = junk;
        let e = https_listeners(&config).expect_err("junk key");
        assert!(
            matches!(e, TlsSetupError::Key { .. }) && e.to_string().contains("junk.key"),
            "{e}"
        );
    }
}
