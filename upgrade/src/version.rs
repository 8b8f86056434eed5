//! Version strings (`MAJOR.MINOR.PATCH[-PRE][+BUILD]`, semver precedence)
//! and the upgrade-path rules: no downgrade, no stable release to a
//! pre-release, no source version on the unsupported list.

use std::cmp::Ordering;

/// Source versions an upgrade cannot start from: `0.0.0` is what a build
/// without any version reports, whose store records cannot be vouched for.
pub const UNSUPPORTED_SOURCES: &[&str] = &["0.0.0"];

/// A parsed version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    /// Dot-separated pre-release identifiers (empty for a release).
    pub pre: Vec<String>,
}

impl Version {
    /// Parses `1.2.3`, `v1.2.3`, `1.2.3-rc.1`, `1.2.3+build`.
    pub fn parse(text: &str) -> Option<Version> {
        let text = text.trim();
        let text = text.strip_prefix('v').unwrap_or(text);
        let text = text.split_once('+').map_or(text, |(v, _)| v);
        let (core, pre) = match text.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (text, None),
        };
        let mut numbers = core.split('.').map(|n| {
            (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                .then(|| n.parse::<u64>().ok())
                .flatten()
        });
        let (major, minor, patch) = (numbers.next()??, numbers.next()??, numbers.next()??);
        if numbers.next().is_some() {
            return None;
        }
        let pre = match pre {
            None => Vec::new(),
            Some(p) => {
                let ids: Vec<String> = p.split('.').map(str::to_owned).collect();
                if ids.iter().any(|i| {
                    i.is_empty() || !i.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                }) {
                    return None;
                }
                ids
            }
        };
        Some(Version {
            major,
            minor,
            patch,
            pre,
        })
    }

    pub fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => compare_pre(&self.pre, &other.pre),
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn compare_pre(a: &[String], b: &[String]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let order = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            (Err(_), Err(_)) => x.cmp(y),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

/// Why upgrading from `from` to `to` is refused, or `None` when allowed.
pub fn path_refusal(from: &str, to: &str, unsupported: &[&str]) -> Option<String> {
    let Some(source) = Version::parse(from) else {
        return Some(format!(
            "the cluster's version {from:?} is not a version like 1.2.3"
        ));
    };
    let Some(target) = Version::parse(to) else {
        return Some(format!(
            "the target version {to:?} is not a version like 1.2.3"
        ));
    };
    if unsupported
        .iter()
        .filter_map(|u| Version::parse(u))
        .any(|u| u == source)
    {
        return Some(format!(
            "upgrades from version {from} are not supported (unsupported source versions: {})",
            unsupported.join(", ")
        ));
    }
    if target < source {
        return Some(format!(
            "{from} to {to} is a downgrade, which is not supported"
        ));
    }
    if !source.is_prerelease() && target.is_prerelease() {
        return Some(format!(
            "{from} is a stable release and {to} a pre-release: upgrading from stable to pre-release is not supported"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).expect("valid version")
    }

    #[test]
    fn parses_and_orders_like_semver() {
        assert_eq!(v("v1.2.3"), v("1.2.3"));
        assert_eq!(v("1.2.3+abc"), v("1.2.3"));
        for bad in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "a.b.c",
            "1.2.3-",
            "1.2.3-a..b",
            "1.-2.3",
        ] {
            assert!(Version::parse(bad).is_none(), "{bad}");
        }
        let ordered = [
            "0.9.9",
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.10.0",
            "2.0.0",
        ];
        for pair in ordered.windows(2) {
            assert!(v(pair[0]) < v(pair[1]), "{} < {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn path_rules() {
        assert_eq!(path_refusal("0.1.0", "0.2.0", &[]), None);
        assert_eq!(path_refusal("0.2.0", "0.2.0", &[]), None);
        assert_eq!(path_refusal("1.0.0-rc.1", "1.0.0-rc.2", &[]), None);
        assert_eq!(path_refusal("1.0.0-rc.1", "1.0.0", &[]), None);
        let down = path_refusal("0.2.0", "0.1.0", &[]).expect("refused");
        assert!(down.contains("downgrade"), "{down}");
        let pre = path_refusal("1.0.0", "1.1.0-rc.1", &[]).expect("refused");
        assert!(pre.contains("stable to pre-release"), "{pre}");
        let listed = path_refusal("0.0.9", "0.1.0", &["0.0.9"]).expect("refused");
        assert!(listed.contains("not supported"), "{listed}");
        assert!(path_refusal("0.0.0", "0.1.0", UNSUPPORTED_SOURCES).is_some());
        assert!(path_refusal("garbage", "0.1.0", &[]).is_some());
        assert!(path_refusal("0.1.0", "", &[]).is_some());
    }
}
