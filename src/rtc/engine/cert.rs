//! The DTLS certificate new sessions are made with, and the crypto provider behind it. One
//! certificate serves every session, as SRS does, which saves a key generation per session;
//! it is renewed after [`CERT_RENEWAL`] to stay far from its one-year expiry. Owned by the
//! [`RtcHub`](super::hub::RtcHub) and handed to each session at signalling, with the time.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use str0m::crypto::dtls::DtlsCert;
use str0m::crypto::CryptoProvider;

/// How long one DTLS certificate serves new sessions.
pub const CERT_RENEWAL: Duration = Duration::from_secs(24 * 3600);

/// The crypto provider and the certificate in use, with when it was made.
pub struct Certs {
    provider: Arc<CryptoProvider>,
    current: Mutex<Option<(DtlsCert, Instant)>>,
}

impl std::fmt::Debug for Certs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certs").finish_non_exhaustive()
    }
}

impl Default for Certs {
    /// The provider str0m's features select; the first certificate is made on first use.
    fn default() -> Self {
        Self::new(Arc::new(str0m::crypto::from_feature_flags()))
    }
}

impl Certs {
    /// Certificates from `provider`.
    pub fn new(provider: Arc<CryptoProvider>) -> Self {
        Self {
            provider,
            current: Mutex::new(None),
        }
    }

    /// The crypto provider sessions are built with.
    pub fn provider(&self) -> &Arc<CryptoProvider> {
        &self.provider
    }

    /// The certificate for a session made at `now`, made or renewed as needed; `None` if the
    /// provider cannot make one (str0m then fails loudly, which the tests would show).
    pub fn current(&self, now: Instant) -> Option<DtlsCert> {
        let mut current = self.current.lock().expect("rtc certificate lock poisoned");
        match &*current {
            Some((c, made)) if now.saturating_duration_since(*made) < CERT_RENEWAL => {
                Some(c.clone())
            }
            _ => {
                let fresh = self.provider.dtls_provider.generate_certificate()?;
                *current = Some((fresh.clone(), now));
                Some(fresh)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_certificate_until_it_is_due_for_renewal() {
        let certs = Certs::default();
        let t0 = Instant::now();
        let first = certs.current(t0).expect("the provider makes certificates");
        let later = certs.current(t0 + CERT_RENEWAL / 2).unwrap();
        assert_eq!(first.certificate, later.certificate);
        let renewed = certs.current(t0 + CERT_RENEWAL).unwrap();
        assert_ne!(first.certificate, renewed.certificate);
        let after = certs
            .current(t0 + CERT_RENEWAL + Duration::from_secs(1))
            .unwrap();
        assert_eq!(
            renewed.certificate, after.certificate,
            "renewed from its own birth"
        );
    }
}
