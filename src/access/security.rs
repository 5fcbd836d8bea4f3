//! A vhost's `security { enabled on; allow publish 10.0.0.0/8; deny play all; ... }`, parsed
//! once when the config is built ([`Rule::parse`]) and evaluated by [`check`], a pure function
//! of the rules, the action and the peer's address.
//!
//! The order is SRS 6's (`srs_app_security.cpp`), not first-match:
//! 1. security disabled: allowed;
//! 2. any `deny` rule of this action that matches: denied, whatever the `allow` rules say;
//! 3. any `allow` rule of this action that matches: allowed;
//! 4. otherwise denied when the block has at least one `allow` rule (of either action) or no
//!    rule at all, and allowed when it has only `deny` rules.
//!
//! A rule's address is `all`, an IP address (IPv4 or IPv6) or a CIDR block. Where ringcast
//! differs from SRS, which compares IPv6 rules only as strings: IPv6 CIDR blocks match, and
//! an IPv4-mapped IPv6 peer (`::ffff:10.1.2.3`, as a dual-stack listener reports IPv4
//! clients) matches the IPv4 rules of its IPv4 address.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// What a client asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Publish a stream (RTMP publish, WHIP).
    Publish,
    /// Play a stream (RTMP play, HTTP-FLV, WHEP).
    Play,
}

impl Action {
    fn word(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Play => "play",
        }
    }
}

/// Whom a rule names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addresses {
    /// `all`.
    All,
    /// An address (as a /32 or /128) or a CIDR block.
    Net(IpNet),
}

impl Addresses {
    fn contains(&self, ip: IpAddr) -> bool {
        match self {
            Self::All => true,
            Self::Net(net) => net.contains(&ip) || net.contains(&ip.to_canonical()),
        }
    }
}

/// One `allow|deny publish|play ADDRESSES;` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `allow` (true) or `deny`.
    pub allow: bool,
    /// The action it governs.
    pub action: Action,
    /// Whom it names.
    pub addresses: Addresses,
    /// The address as written, for messages.
    pub text: String,
}

/// Why a rule line was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The action is not `publish` or `play`.
    #[error("`{0}`: expected `publish` or `play`")]
    Action(String),
    /// The address is not `all`, an IP address or a CIDR block.
    #[error("`{0}`: expected `all`, an IP address or a CIDR block such as 10.0.0.0/8")]
    Address(String),
}

impl Rule {
    /// Parses `allow` or `deny` (`allow`) with its action word and address.
    ///
    /// # Errors
    /// [`RuleError`] naming the word that is wrong.
    pub fn parse(allow: bool, action: &str, address: &str) -> Result<Self, RuleError> {
        let action = match action {
            "publish" => Action::Publish,
            "play" => Action::Play,
            other => return Err(RuleError::Action(other.to_owned())),
        };
        let addresses = if address == "all" {
            Addresses::All
        } else if let Ok(ip) = address.parse::<IpAddr>() {
            Addresses::Net(IpNet::from(ip))
        } else {
            Addresses::Net(
                address
                    .parse::<IpNet>()
                    .map_err(|_| RuleError::Address(address.to_owned()))?,
            )
        };
        Ok(Self {
            allow,
            action,
            addresses,
            text: address.to_owned(),
        })
    }
}

/// A vhost's `security {}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Security {
    /// `enabled on|off;`, default off as in SRS.
    pub enabled: bool,
    /// The rules in file order.
    pub rules: Vec<Rule>,
}

/// Why a client was refused, with SRS's error codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// A `deny` rule matched (SRS's ERROR_SYSTEM_SECURITY_DENY).
    ByRule {
        /// The action refused.
        action: Action,
        /// The matching rule's address as written.
        rule: String,
    },
    /// No `allow` rule matched (SRS's ERROR_SYSTEM_SECURITY_ALLOW).
    NotAllowed {
        /// The action refused.
        action: Action,
        /// `allow` rules in the block.
        allow: usize,
        /// `deny` rules in the block.
        deny: usize,
    },
}

impl Denied {
    /// SRS's error code: 1053 for a deny rule, 1054 when no allow rule matched.
    #[must_use]
    pub fn code(&self) -> u32 {
        match self {
            Self::ByRule { .. } => 1053,
            Self::NotAllowed { .. } => 1054,
        }
    }
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ByRule { action, rule } => {
                write!(
                    f,
                    "{} denied by security rule `deny {0} {rule}`",
                    action.word()
                )
            }
            Self::NotAllowed {
                action,
                allow,
                deny,
            } => write!(
                f,
                "{} not allowed by any security rule ({allow} allow, {deny} deny)",
                action.word()
            ),
        }
    }
}

/// Whether `ip` may do `action` under `security`; see the module doc for the order.
///
/// # Errors
/// [`Denied`] with the reason when it may not.
pub fn check(security: &Security, action: Action, ip: IpAddr) -> Result<(), Denied> {
    if !security.enabled {
        return Ok(());
    }
    let applies = |r: &&Rule| r.action == action && r.addresses.contains(ip);
    if let Some(rule) = security.rules.iter().filter(|r| !r.allow).find(applies) {
        return Err(Denied::ByRule {
            action,
            rule: rule.text.clone(),
        });
    }
    if security
        .rules
        .iter()
        .filter(|r| r.allow)
        .any(|r| applies(&r))
    {
        return Ok(());
    }
    let allow = security.rules.iter().filter(|r| r.allow).count();
    let deny = security.rules.len() - allow;
    if allow > 0 || deny == 0 {
        return Err(Denied::NotAllowed {
            action,
            allow,
            deny,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(lines: &[(&str, &str, &str)]) -> Security {
        Security {
            enabled: true,
            rules: lines
                .iter()
                .map(|(kind, action, addr)| Rule::parse(*kind == "allow", action, addr).unwrap())
                .collect(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn disabled_allows_everyone() {
        let mut s = rules(&[("deny", "publish", "all")]);
        s.enabled = false;
        assert_eq!(check(&s, Action::Publish, ip("1.2.3.4")), Ok(()));
    }

    #[test]
    fn enabled_without_rules_denies_everything() {
        let s = rules(&[]);
        let denied = check(&s, Action::Play, ip("127.0.0.1")).unwrap_err();
        assert_eq!(denied.code(), 1054);
        assert!(check(&s, Action::Publish, ip("::1")).is_err());
    }

    #[test]
    fn a_matching_deny_wins_over_any_allow() {
        // The example: SRS checks every deny rule first, so `deny publish all`
        // refuses even the addresses allowed above it.
        let s = rules(&[
            ("allow", "publish", "127.0.0.1"),
            ("allow", "publish", "10.0.0.0/8"),
            ("deny", "publish", "all"),
            ("allow", "play", "all"),
        ]);
        let denied = check(&s, Action::Publish, ip("127.0.0.1")).unwrap_err();
        assert_eq!(
            denied,
            Denied::ByRule {
                action: Action::Publish,
                rule: "all".into()
            }
        );
        assert_eq!(denied.code(), 1053);
        assert_eq!(check(&s, Action::Play, ip("8.8.8.8")), Ok(()));
    }

    #[test]
    fn allow_rules_deny_whoever_they_do_not_name() {
        let s = rules(&[
            ("allow", "publish", "127.0.0.1"),
            ("allow", "publish", "10.0.0.0/8"),
        ]);
        assert_eq!(check(&s, Action::Publish, ip("127.0.0.1")), Ok(()));
        assert_eq!(check(&s, Action::Publish, ip("10.200.1.1")), Ok(()));
        assert!(check(&s, Action::Publish, ip("11.0.0.1")).is_err());
        // An allow rule of the other action still counts: play is denied too.
        assert_eq!(
            check(&s, Action::Play, ip("127.0.0.1")),
            Err(Denied::NotAllowed {
                action: Action::Play,
                allow: 2,
                deny: 0
            })
        );
    }

    #[test]
    fn deny_rules_alone_allow_whoever_they_do_not_name() {
        let s = rules(&[("deny", "play", "192.168.0.0/16")]);
        assert!(check(&s, Action::Play, ip("192.168.7.7")).is_err());
        assert_eq!(check(&s, Action::Play, ip("192.169.0.1")), Ok(()));
        assert_eq!(check(&s, Action::Publish, ip("192.168.7.7")), Ok(()));
    }

    #[test]
    fn cidr_host_bits_are_masked_as_srs_masks_them() {
        let s = rules(&[("allow", "play", "10.1.2.3/8")]);
        assert_eq!(check(&s, Action::Play, ip("10.9.9.9")), Ok(()));
        let s = rules(&[("allow", "play", "127.0.0.2/32")]);
        assert_eq!(check(&s, Action::Play, ip("127.0.0.2")), Ok(()));
        assert!(check(&s, Action::Play, ip("127.0.0.1")).is_err());
    }

    #[test]
    fn ipv6_rules_and_ipv4_mapped_peers() {
        let s = rules(&[
            ("allow", "publish", "2001:db8::/32"),
            ("allow", "publish", "::1"),
        ]);
        assert_eq!(check(&s, Action::Publish, ip("2001:db8::7")), Ok(()));
        assert_eq!(check(&s, Action::Publish, ip("0:0::1")), Ok(()));
        assert!(check(&s, Action::Publish, ip("2001:db9::1")).is_err());
        let s = rules(&[("allow", "publish", "10.0.0.0/8")]);
        assert_eq!(check(&s, Action::Publish, ip("::ffff:10.1.2.3")), Ok(()));
        assert!(check(&s, Action::Publish, ip("::ffff:11.1.2.3")).is_err());
        // An IPv4 rule never matches a native IPv6 peer, even `::` against 0.0.0.0/8.
        let s = rules(&[("allow", "publish", "0.0.0.0/8")]);
        assert!(check(&s, Action::Publish, ip("::")).is_err());
    }

    #[test]
    fn bad_rules_name_the_wrong_word() {
        assert_eq!(
            Rule::parse(true, "watch", "all"),
            Err(RuleError::Action("watch".into()))
        );
        for bad in [
            "10.0.0.0/33",
            "localhost",
            "10.0.0/8",
            "",
            "1.2.3.4/",
            "::1/129",
        ] {
            assert_eq!(
                Rule::parse(false, "play", bad),
                Err(RuleError::Address(bad.into())),
                "{bad}"
            );
        }
    }
}
