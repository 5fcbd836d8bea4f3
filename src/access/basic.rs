//! HTTP Basic authentication (RFC 7617) for the API: [`parse`] takes an `Authorization`
//! header's value apart (`Basic` and base64 of `user:password`), [`Credentials::verify`]
//! compares it with the configured user and password in constant time. Pure and total: any
//! header, however long or malformed, gives an [`AuthError`], never a panic.
//!
//! Where ringcast differs from SRS 6 (`SrsHttpAuthMux`): the password is what follows the
//! first `:` (SRS refuses a password that holds a `:`), and the scheme name is matched
//! without regard to case, as the RFC says.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The longest header value taken apart; a real one is a few dozen bytes.
pub const MAX_HEADER: usize = 4096;

/// Why a request is not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("no Authorization header")]
    Missing,
    /// The header is longer than [`MAX_HEADER`].
    #[error("Authorization header of {0} bytes is too long")]
    TooLong(usize),
    /// Another scheme than `Basic`, or no token after it.
    #[error("Authorization is not `Basic TOKEN`")]
    NotBasic,
    /// The token is not base64, or not `user:password` in UTF-8.
    #[error("Authorization token is not base64 of user:password")]
    Malformed,
    /// The user or the password is wrong.
    #[error("wrong user or password for `{0}`")]
    Wrong(String),
}

/// A user and password as a client sent them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The user name.
    pub user: String,
    /// The password.
    pub password: String,
}

/// Takes an `Authorization` header's value apart.
///
/// # Errors
/// [`AuthError`]: missing, too long, not Basic, or not base64 of `user:password`.
pub fn parse(header: Option<&str>) -> Result<Sent, AuthError> {
    let value = header.ok_or(AuthError::Missing)?;
    if value.len() > MAX_HEADER {
        return Err(AuthError::TooLong(value.len()));
    }
    let (scheme, token) = value.trim().split_once(' ').ok_or(AuthError::NotBasic)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("basic") || token.is_empty() {
        return Err(AuthError::NotBasic);
    }
    let plain = STANDARD.decode(token).map_err(|_| AuthError::Malformed)?;
    let plain = String::from_utf8(plain).map_err(|_| AuthError::Malformed)?;
    let (user, password) = plain.split_once(':').ok_or(AuthError::Malformed)?;
    Ok(Sent {
        user: user.to_owned(),
        password: password.to_owned(),
    })
}

/// The user and password the API takes.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    user: [u8; 32],
    password: [u8; 32],
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(..)")
    }
}

impl Credentials {
    /// Keeps only digests: comparing digests of equal length takes the same time whatever
    /// the lengths of what was configured and what was sent.
    #[must_use]
    pub fn new(user: &str, password: &str) -> Self {
        Self {
            user: Sha256::digest(user.as_bytes()).into(),
            password: Sha256::digest(password.as_bytes()).into(),
        }
    }

    /// Whether `header` carries these credentials.
    ///
    /// # Errors
    /// As [`parse`], or [`AuthError::Wrong`] naming the user sent.
    pub fn verify(&self, header: Option<&str>) -> Result<(), AuthError> {
        let sent = parse(header)?;
        let user: [u8; 32] = Sha256::digest(sent.user.as_bytes()).into();
        let password: [u8; 32] = Sha256::digest(sent.password.as_bytes()).into();
        // Both compared, always: which of the two was wrong must not show in the time taken.
        let ok = self.user.ct_eq(&user) & self.password.ct_eq(&password);
        if bool::from(ok) {
            Ok(())
        } else {
            Err(AuthError::Wrong(sent.user))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(plain: &str) -> String {
        format!("Basic {}", STANDARD.encode(plain))
    }

    #[test]
    fn takes_a_basic_header_apart() {
        assert_eq!(
            parse(Some(&basic("admin:s3cret"))),
            Ok(Sent {
                user: "admin".into(),
                password: "s3cret".into()
            })
        );
        // The password is everything after the first colon; the scheme is any case.
        let sent = parse(Some(&format!("bAsIc  {}", STANDARD.encode("a:b:c")))).unwrap();
        assert_eq!((sent.user.as_str(), sent.password.as_str()), ("a", "b:c"));
    }

    #[test]
    fn refuses_what_is_not_basic_user_password() {
        assert_eq!(parse(None), Err(AuthError::Missing));
        for bad in ["", "Basic", "Basic ", "Bearer abc", "Basicx YTpi"] {
            assert_eq!(parse(Some(bad)), Err(AuthError::NotBasic), "{bad:?}");
        }
        for bad in ["Basic !!!", "Basic YWRtaW4=", "Basic //79"] {
            assert_eq!(parse(Some(bad)), Err(AuthError::Malformed), "{bad:?}");
        }
        let long = format!("Basic {}", "A".repeat(MAX_HEADER));
        assert_eq!(parse(Some(&long)), Err(AuthError::TooLong(long.len())));
    }

    #[test]
    fn verifies_user_and_password_both() {
        let creds = Credentials::new("admin", "s3cret");
        assert_eq!(creds.verify(Some(&basic("admin:s3cret"))), Ok(()));
        assert_eq!(
            creds.verify(Some(&basic("admin:s3cre"))),
            Err(AuthError::Wrong("admin".into()))
        );
        assert!(creds.verify(Some(&basic("Admin:s3cret"))).is_err());
        assert!(creds.verify(Some(&basic(":"))).is_err());
        assert_eq!(format!("{creds:?}"), "Credentials(..)");
    }
}
