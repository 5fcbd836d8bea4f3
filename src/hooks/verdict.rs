//! SRS's rule for a hook's answer (`SrsHttpHooks::do_post`): HTTP 200 or 201 with a body of
//! exactly `0`, or a JSON object whose `code` is the integer 0, allows; anything else denies:
//! another status (a redirect too), an empty body, a body that is not JSON, another number,
//! an object without an integer `code` or with another one. Pure: status and body in, the
//! verdict out; how the answer was fetched (and a timeout or a refused connection, which
//! deny as well) is the caller's.
#![forbid(unsafe_code)]

/// The most bytes of a body a denial quotes in its message (and so in the log).
const QUOTED: usize = 200;

/// Why an answer denies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Deny {
    /// A status other than 200 and 201.
    #[error("status {status}, body {body}")]
    Status {
        /// The status.
        status: u16,
        /// The start of the body, quoted.
        body: String,
    },
    /// Status 200 but no body.
    #[error("empty body")]
    Empty,
    /// A body that is not JSON.
    #[error("body is not JSON: {0}")]
    NotJson(String),
    /// JSON, but neither `0` nor an object.
    #[error("body is not 0 nor an object: {0}")]
    NotZero(String),
    /// An object without an integer `code`.
    #[error("no integer code in {0}")]
    NoCode(String),
    /// An object whose `code` is not 0.
    #[error("code {code} in {body}")]
    Code {
        /// The code.
        code: i128,
        /// The body, quoted.
        body: String,
    },
}

/// Whether an answer with `status` and `body` allows.
pub fn verdict(status: u16, body: &[u8]) -> Result<(), Deny> {
    if status != 200 && status != 201 {
        return Err(Deny::Status {
            status,
            body: quote(body),
        });
    }
    if body.is_empty() {
        return Err(Deny::Empty);
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| Deny::NotJson(quote(body)))?;
    let Some(object) = value.as_object() else {
        return if body == b"0" {
            Ok(())
        } else {
            Err(Deny::NotZero(quote(body)))
        };
    };
    let code = object.get("code").and_then(|c| {
        c.as_i64()
            .map(i128::from)
            .or_else(|| c.as_u64().map(i128::from))
    });
    match code {
        Some(0) => Ok(()),
        Some(code) => Err(Deny::Code {
            code,
            body: quote(body),
        }),
        None => Err(Deny::NoCode(quote(body))),
    }
}

/// The start of `body` as a JSON string, for a log line: escaped, at most [`QUOTED`] bytes
/// of it and at most twice that once escaped (control bytes escape to six characters), with
/// the length when cut.
fn quote(body: &[u8]) -> String {
    let shown = String::from_utf8_lossy(&body[..body.len().min(QUOTED)]);
    let mut quoted = String::from("\"");
    let mut cut = body.len() > QUOTED;
    for c in shown.chars() {
        let escaped = serde_json::Value::from(c.to_string()).to_string();
        let inner = &escaped[1..escaped.len() - 1];
        if quoted.len() + inner.len() > 2 * QUOTED {
            cut = true;
            break;
        }
        quoted.push_str(inner);
    }
    quoted.push('"');
    if cut {
        format!("{quoted}... ({} bytes)", body.len())
    } else {
        quoted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_as_srs() {
        for body in [&b"0"[..], b"{\"code\": 0}", b"{\"code\":0,\"data\":\"x\"}"] {
            assert_eq!(verdict(200, body), Ok(()), "{body:?}");
        }
        assert_eq!(verdict(201, b"0"), Ok(()));
    }

    #[test]
    fn denies_as_srs() {
        assert!(matches!(
            verdict(403, b"0"),
            Err(Deny::Status { status: 403, .. })
        ));
        assert!(matches!(
            verdict(302, b""),
            Err(Deny::Status { status: 302, .. })
        ));
        assert!(matches!(verdict(204, b""), Err(Deny::Status { .. })));
        assert_eq!(verdict(200, b""), Err(Deny::Empty));
        assert!(matches!(verdict(200, b"ok"), Err(Deny::NotJson(_))));
        assert!(matches!(verdict(200, b"\x00\xff"), Err(Deny::NotJson(_))));
        for body in [&b"1"[..], b" 0", b"0\n", b"\"0\"", b"[0]", b"null", b"0.0"] {
            assert!(
                matches!(verdict(200, body), Err(Deny::NotZero(_))),
                "{body:?}"
            );
        }
        assert!(matches!(verdict(200, b"{}"), Err(Deny::NoCode(_))));
        assert!(matches!(
            verdict(200, b"{\"code\":\"0\"}"),
            Err(Deny::NoCode(_))
        ));
        assert!(matches!(
            verdict(200, b"{\"code\":0.0}"),
            Err(Deny::NoCode(_))
        ));
        assert!(matches!(
            verdict(200, b"{\"code\":-1}"),
            Err(Deny::Code { code: -1, .. })
        ));
        assert!(matches!(
            verdict(200, b"{\"code\":18446744073709551615}"),
            Err(Deny::Code { .. })
        ));
    }

    #[test]
    fn quotes_are_short_and_escaped() {
        let big = vec![b'a'; 10_000];
        let Err(Deny::NotJson(q)) = verdict(200, &big) else {
            panic!("garbage denies");
        };
        assert!(q.len() < 300 && q.ends_with("(10000 bytes)"), "{q}");
        let Err(Deny::Status { body, .. }) = verdict(500, b"a\"\nb") else {
            panic!("500 denies");
        };
        assert_eq!(body, "\"a\\\"\\nb\"");
        let Err(Deny::NotJson(q)) = verdict(200, &[1u8; 300]) else {
            panic!("control bytes deny");
        };
        assert!(q.len() < 450 && q.ends_with("(300 bytes)"), "{q}");
    }
}
