//! Pool disk URIs.
//!
//! Purpose: turn the strings an operator writes in a `DiskPool` (or hands
//! to `io-engine-client pool create`) into a [`DiskUri`], and print a
//! [`DiskUri`] back in one canonical form.
//!
//! Accepted forms (DESIGN.md section 2):
//! - a plain absolute path, `/dev/sdx`, shorthand for `aio:///dev/sdx`
//!   (a query is accepted after it exactly as after `aio://`);
//! - `aio:///path?blk_size=512|4096`;
//! - `uring:///path?blk_size=512|4096`;
//! - `malloc:///<name>?size_mb=M` or `?num_blocks=B`, plus an optional
//!   `&blk_size=512|4096` (default 512); `size_mb` and `num_blocks` are
//!   mutually exclusive.
//!
//! Invariants:
//! - parsing is strict: unknown schemes, host parts, relative paths,
//!   unknown or duplicate parameters, malformed numbers, zero sizes and
//!   sizes whose byte count overflows `u64` are refused with an error that
//!   names the offending part;
//! - `s.parse::<DiskUri>()` never panics, and for every parsed `u`,
//!   `u.to_string().parse() == Ok(u)` (property-tested below, fuzzed in
//!   `engine/fuzz`);
//! - paths never contain `?` (it starts the query) nor NUL; no
//!   percent-decoding is done.
//!
//! Threading model: plain values, no shared state.

use std::{
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
};

/// One mebibyte, the unit of `size_mb`.
const MIB: u64 = 1 << 20;

/// Default block size of a malloc disk.
const DEFAULT_MALLOC_BLK_SIZE: u32 = 512;

/// Size of a malloc disk, as written in its URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MallocSize {
    /// `size_mb=M`: M mebibytes.
    SizeMb(u64),
    /// `num_blocks=B`: B blocks of the URI's block size.
    NumBlocks(u64),
}

impl MallocSize {
    /// Number of `blk_size`-byte blocks, or `None` when the size is zero
    /// or its byte count overflows `u64`.
    pub fn num_blocks(&self, blk_size: u32) -> Option<u64> {
        let bs = u64::from(blk_size);
        if bs == 0 {
            return None;
        }
        let blocks = match *self {
            MallocSize::SizeMb(mb) => mb.checked_mul(MIB)? / bs,
            MallocSize::NumBlocks(n) => {
                n.checked_mul(bs)?;
                n
            }
        };
        (blocks > 0).then_some(blocks)
    }
}

/// A pool disk.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DiskUri {
    /// A file or block device, io_uring when available, else the portable
    /// backend (`aio:///path` or a plain path).
    Aio {
        path: PathBuf,
        blk_size: Option<u32>,
    },
    /// A file or block device that must be served by io_uring.
    Uring {
        path: PathBuf,
        blk_size: Option<u32>,
    },
    /// A RAM disk.
    Malloc {
        name: String,
        size: MallocSize,
        blk_size: u32,
    },
}

impl DiskUri {
    /// The file or device path (`None` for malloc disks).
    pub fn path(&self) -> Option<&Path> {
        match self {
            DiskUri::Aio { path, .. } | DiskUri::Uring { path, .. } => Some(path),
            DiskUri::Malloc { .. } => None,
        }
    }

    /// The block size the URI asks for (always set for malloc disks).
    pub fn blk_size(&self) -> Option<u32> {
        match self {
            DiskUri::Aio { blk_size, .. } | DiskUri::Uring { blk_size, .. } => *blk_size,
            DiskUri::Malloc { blk_size, .. } => Some(*blk_size),
        }
    }
}

/// Why a disk URI was refused. Messages quote the offending URI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UriError {
    #[error("empty disk uri")]
    Empty,
    #[error("unknown scheme '{scheme}' in '{uri}' (expected aio, uring or malloc)")]
    UnknownScheme { scheme: String, uri: String },
    #[error("expected '//' after '{scheme}:' in '{uri}'")]
    MissingSlashes { scheme: String, uri: String },
    #[error("path must be absolute in '{uri}'")]
    RelativePath { uri: String },
    #[error("host '{host}' is not allowed in '{uri}' (use three slashes: {scheme}:///path)")]
    HostNotAllowed {
        host: String,
        scheme: String,
        uri: String,
    },
    #[error("missing path in '{uri}'")]
    MissingPath { uri: String },
    #[error("path contains a nul byte in '{uri}'")]
    NulInPath { uri: String },
    #[error("invalid malloc name '{name}' in '{uri}' (expected letters, digits, '_' or '-')")]
    InvalidMallocName { name: String, uri: String },
    #[error("empty parameter in '{uri}'")]
    EmptyParameter { uri: String },
    #[error("parameter '{param}' has no value in '{uri}'")]
    MissingValue { param: String, uri: String },
    #[error("unknown parameter '{param}' in '{uri}'")]
    UnknownParameter { param: String, uri: String },
    #[error("duplicate parameter '{param}' in '{uri}'")]
    DuplicateParameter { param: String, uri: String },
    #[error("{param} must be a decimal number, got '{value}' in '{uri}'")]
    InvalidNumber {
        param: &'static str,
        value: String,
        uri: String,
    },
    #[error("blk_size must be 512 or 4096, got {value}")]
    InvalidBlockSize { value: u64 },
    #[error("size_mb and num_blocks are mutually exclusive")]
    SizeConflict,
    #[error("malloc disk needs size_mb or num_blocks in '{uri}'")]
    MissingSize { uri: String },
    #[error("{param} must be greater than 0")]
    ZeroSize { param: &'static str },
    #[error("{param}={value} is too large (the size in bytes overflows 64 bits)")]
    SizeOverflow { param: &'static str, value: u64 },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Aio,
    Uring,
    Malloc,
}

impl FromStr for DiskUri {
    type Err = UriError;

    fn from_str(s: &str) -> Result<Self, UriError> {
        if s.is_empty() {
            return Err(UriError::Empty);
        }
        let uri = || s.escape_debug().to_string();
        if s.contains('\0') {
            return Err(UriError::NulInPath { uri: uri() });
        }

        // A plain absolute path is shorthand for `aio://<path>`.
        let (scheme, rest) = if s.starts_with('/') {
            (Scheme::Aio, s)
        } else {
            let Some((scheme_str, after)) = s.split_once(':').filter(|(sch, _)| !sch.contains('/'))
            else {
                return Err(UriError::RelativePath { uri: uri() });
            };
            let scheme = match scheme_str.to_ascii_lowercase().as_str() {
                "aio" => Scheme::Aio,
                "uring" => Scheme::Uring,
                "malloc" => Scheme::Malloc,
                _ => {
                    return Err(UriError::UnknownScheme {
                        scheme: scheme_str.to_string(),
                        uri: uri(),
                    })
                }
            };
            let Some(authority_and_path) = after.strip_prefix("//") else {
                return Err(UriError::MissingSlashes {
                    scheme: scheme_str.to_ascii_lowercase(),
                    uri: uri(),
                });
            };
            let (authority, path) = match authority_and_path.find(['/', '?']) {
                Some(i) => authority_and_path.split_at(i),
                None => (authority_and_path, ""),
            };
            if !authority.is_empty() {
                return Err(UriError::HostNotAllowed {
                    host: authority.to_string(),
                    scheme: scheme_str.to_ascii_lowercase(),
                    uri: uri(),
                });
            }
            (scheme, path)
        };

        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        if path.trim_start_matches('/').is_empty() {
            return Err(UriError::MissingPath { uri: uri() });
        }
        let params = Params::parse(query, s)?;

        match scheme {
            Scheme::Aio | Scheme::Uring => {
                params.only(&["blk_size"], s)?;
                let blk_size = params.blk_size(s)?;
                let path = PathBuf::from(path);
                Ok(if scheme == Scheme::Aio {
                    DiskUri::Aio { path, blk_size }
                } else {
                    DiskUri::Uring { path, blk_size }
                })
            }
            Scheme::Malloc => {
                params.only(&["size_mb", "num_blocks", "blk_size"], s)?;
                let name = &path[1..];
                let name_ok = name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if !name_ok {
                    return Err(UriError::InvalidMallocName {
                        name: name.to_string(),
                        uri: uri(),
                    });
                }
                let blk_size = params.blk_size(s)?.unwrap_or(DEFAULT_MALLOC_BLK_SIZE);
                let size = match (
                    params.number("size_mb", s)?,
                    params.number("num_blocks", s)?,
                ) {
                    (Some(_), Some(_)) => return Err(UriError::SizeConflict),
                    (None, None) => return Err(UriError::MissingSize { uri: uri() }),
                    (Some(0), None) => return Err(UriError::ZeroSize { param: "size_mb" }),
                    (None, Some(0)) => {
                        return Err(UriError::ZeroSize {
                            param: "num_blocks",
                        })
                    }
                    (Some(mb), None) => {
                        if mb.checked_mul(MIB).is_none() {
                            return Err(UriError::SizeOverflow {
                                param: "size_mb",
                                value: mb,
                            });
                        }
                        MallocSize::SizeMb(mb)
                    }
                    (None, Some(n)) => {
                        if n.checked_mul(u64::from(blk_size)).is_none() {
                            return Err(UriError::SizeOverflow {
                                param: "num_blocks",
                                value: n,
                            });
                        }
                        MallocSize::NumBlocks(n)
                    }
                };
                Ok(DiskUri::Malloc {
                    name: name.to_string(),
                    size,
                    blk_size,
                })
            }
        }
    }
}

/// The `key=value` pairs of a query, in order, without duplicates.
struct Params<'a> {
    pairs: Vec<(&'a str, &'a str)>,
}

impl<'a> Params<'a> {
    fn parse(query: Option<&'a str>, uri: &str) -> Result<Self, UriError> {
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        let Some(query) = query else {
            return Ok(Params { pairs });
        };
        for item in query.split('&') {
            if item.is_empty() {
                return Err(UriError::EmptyParameter {
                    uri: uri.escape_debug().to_string(),
                });
            }
            let Some((key, value)) = item.split_once('=') else {
                return Err(UriError::MissingValue {
                    param: item.to_string(),
                    uri: uri.escape_debug().to_string(),
                });
            };
            if key.is_empty() {
                return Err(UriError::EmptyParameter {
                    uri: uri.escape_debug().to_string(),
                });
            }
            if pairs.iter().any(|(k, _)| *k == key) {
                return Err(UriError::DuplicateParameter {
                    param: key.to_string(),
                    uri: uri.escape_debug().to_string(),
                });
            }
            pairs.push((key, value));
        }
        Ok(Params { pairs })
    }

    /// Refuses every parameter not in `allowed`.
    fn only(&self, allowed: &[&str], uri: &str) -> Result<(), UriError> {
        match self.pairs.iter().find(|(k, _)| !allowed.contains(k)) {
            Some((k, _)) => Err(UriError::UnknownParameter {
                param: (*k).to_string(),
                uri: uri.escape_debug().to_string(),
            }),
            None => Ok(()),
        }
    }

    fn number(&self, param: &'static str, uri: &str) -> Result<Option<u64>, UriError> {
        let Some((_, value)) = self.pairs.iter().find(|(k, _)| *k == param) else {
            return Ok(None);
        };
        let invalid = || UriError::InvalidNumber {
            param,
            value: (*value).to_string(),
            uri: uri.escape_debug().to_string(),
        };
        // `u64::from_str` accepts a leading '+'; be strict.
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        value.parse::<u64>().map(Some).map_err(|_| invalid())
    }

    fn blk_size(&self, uri: &str) -> Result<Option<u32>, UriError> {
        match self.number("blk_size", uri)? {
            None => Ok(None),
            Some(512) => Ok(Some(512)),
            Some(4096) => Ok(Some(4096)),
            Some(value) => Err(UriError::InvalidBlockSize { value }),
        }
    }
}

impl fmt::Display for DiskUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiskUri::Aio { path, blk_size } | DiskUri::Uring { path, blk_size } => {
                let scheme = if matches!(self, DiskUri::Aio { .. }) {
                    "aio"
                } else {
                    "uring"
                };
                write!(f, "{scheme}://{}", path.display())?;
                if let Some(bs) = blk_size {
                    write!(f, "?blk_size={bs}")?;
                }
                Ok(())
            }
            DiskUri::Malloc {
                name,
                size,
                blk_size,
            } => {
                write!(f, "malloc:///{name}?")?;
                match size {
                    MallocSize::SizeMb(mb) => write!(f, "size_mb={mb}")?,
                    MallocSize::NumBlocks(n) => write!(f, "num_blocks={n}")?,
                }
                write!(f, "&blk_size={blk_size}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(s: &str) -> Result<DiskUri, UriError> {
        s.parse()
    }

    fn aio(path: &str, blk_size: Option<u32>) -> DiskUri {
        DiskUri::Aio {
            path: path.into(),
            blk_size,
        }
    }

    #[test]
    fn plain_paths_are_aio() {
        assert_eq!(parse("/dev/sdx").unwrap(), aio("/dev/sdx", None));
        assert_eq!(parse("/tmp/x.img").unwrap(), aio("/tmp/x.img", None));
        assert_eq!(
            parse("/tmp/x.img?blk_size=4096").unwrap(),
            aio("/tmp/x.img", Some(4096))
        );
        assert_eq!(parse("/dev/sdx").unwrap().to_string(), "aio:///dev/sdx");
    }

    #[test]
    fn aio_and_uring() {
        assert_eq!(parse("aio:///dev/sdx").unwrap(), aio("/dev/sdx", None));
        assert_eq!(
            parse("aio:///dev/sdx?blk_size=512").unwrap(),
            aio("/dev/sdx", Some(512))
        );
        assert_eq!(parse("AIO:///dev/sdx").unwrap(), aio("/dev/sdx", None));
        assert_eq!(
            parse("uring:///tmp/d.img?blk_size=4096").unwrap(),
            DiskUri::Uring {
                path: "/tmp/d.img".into(),
                blk_size: Some(4096)
            }
        );
        let u = parse("uring:///tmp/d.img").unwrap();
        assert_eq!(u.path(), Some(Path::new("/tmp/d.img")));
        assert_eq!(u.blk_size(), None);
        assert_eq!(u.to_string(), "uring:///tmp/d.img");
        assert_eq!(
            parse("aio:///x?blk_size=4096").unwrap().to_string(),
            "aio:///x?blk_size=4096"
        );
    }

    #[test]
    fn malloc_forms() {
        let u = parse("malloc:///malloc0?size_mb=64").unwrap();
        assert_eq!(
            u,
            DiskUri::Malloc {
                name: "malloc0".into(),
                size: MallocSize::SizeMb(64),
                blk_size: 512
            }
        );
        assert_eq!(u.to_string(), "malloc:///malloc0?size_mb=64&blk_size=512");
        assert_eq!(u.path(), None);
        assert_eq!(u.blk_size(), Some(512));

        let u = parse("malloc:///m_1-x?num_blocks=100&blk_size=4096").unwrap();
        assert_eq!(
            u,
            DiskUri::Malloc {
                name: "m_1-x".into(),
                size: MallocSize::NumBlocks(100),
                blk_size: 4096
            }
        );
        assert_eq!(
            u.to_string(),
            "malloc:///m_1-x?num_blocks=100&blk_size=4096"
        );
        // Parameter order does not matter.
        assert_eq!(
            parse("malloc:///m?blk_size=4096&size_mb=1").unwrap(),
            parse("malloc:///m?size_mb=1&blk_size=4096").unwrap()
        );
    }

    #[test]
    fn malloc_size_to_blocks() {
        assert_eq!(MallocSize::SizeMb(1).num_blocks(512), Some(2048));
        assert_eq!(MallocSize::SizeMb(1).num_blocks(4096), Some(256));
        assert_eq!(MallocSize::NumBlocks(7).num_blocks(4096), Some(7));
        assert_eq!(MallocSize::NumBlocks(0).num_blocks(512), None);
        assert_eq!(MallocSize::SizeMb(u64::MAX).num_blocks(512), None);
        assert_eq!(MallocSize::NumBlocks(u64::MAX).num_blocks(512), None);
        assert_eq!(MallocSize::NumBlocks(1).num_blocks(0), None);
    }

    #[track_caller]
    fn err(s: &str) -> String {
        match parse(s) {
            Ok(u) => panic!("{s:?} parsed as {u:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn errors_name_the_offending_part() {
        assert_eq!(err(""), "empty disk uri");
        assert_eq!(
            err("nvmf:///x"),
            "unknown scheme 'nvmf' in 'nvmf:///x' (expected aio, uring or malloc)"
        );
        assert_eq!(err("dev/sdx"), "path must be absolute in 'dev/sdx'");
        assert_eq!(err("./x.img"), "path must be absolute in './x.img'");
        assert_eq!(err("aio:/x"), "expected '//' after 'aio:' in 'aio:/x'");
        assert_eq!(
            err("aio://host/x"),
            "host 'host' is not allowed in 'aio://host/x' (use three slashes: aio:///path)"
        );
        assert_eq!(
            err("aio://dev/sdx"),
            "host 'dev' is not allowed in 'aio://dev/sdx' (use three slashes: aio:///path)"
        );
        assert_eq!(err("aio://"), "missing path in 'aio://'");
        assert_eq!(err("aio:///"), "missing path in 'aio:///'");
        assert_eq!(
            err("uring:///?blk_size=512"),
            "missing path in 'uring:///?blk_size=512'"
        );
        assert_eq!(err("/"), "missing path in '/'");
        assert_eq!(
            err("malloc:///?size_mb=1"),
            "missing path in 'malloc:///?size_mb=1'"
        );
        assert_eq!(err("/x\0y"), "path contains a nul byte in '/x\\0y'");
        assert_eq!(
            err("aio:///x?foo=1"),
            "unknown parameter 'foo' in 'aio:///x?foo=1'"
        );
        assert_eq!(
            err("aio:///x?size_mb=1"),
            "unknown parameter 'size_mb' in 'aio:///x?size_mb=1'"
        );
        assert_eq!(
            err("aio:///x?blk_size=512&blk_size=512"),
            "duplicate parameter 'blk_size' in 'aio:///x?blk_size=512&blk_size=512'"
        );
        assert_eq!(err("aio:///x?"), "empty parameter in 'aio:///x?'");
        assert_eq!(
            err("aio:///x?blk_size=512&"),
            "empty parameter in 'aio:///x?blk_size=512&'"
        );
        assert_eq!(err("aio:///x?=5"), "empty parameter in 'aio:///x?=5'");
        assert_eq!(
            err("aio:///x?blk_size"),
            "parameter 'blk_size' has no value in 'aio:///x?blk_size'"
        );
        assert_eq!(
            err("aio:///x?blk_size=1024"),
            "blk_size must be 512 or 4096, got 1024"
        );
        assert_eq!(
            err("aio:///x?blk_size=0"),
            "blk_size must be 512 or 4096, got 0"
        );
        assert_eq!(
            err("aio:///x?blk_size=abc"),
            "blk_size must be a decimal number, got 'abc' in 'aio:///x?blk_size=abc'"
        );
        assert_eq!(
            err("aio:///x?blk_size=+512"),
            "blk_size must be a decimal number, got '+512' in 'aio:///x?blk_size=+512'"
        );
        assert_eq!(
            err("aio:///x?blk_size="),
            "blk_size must be a decimal number, got '' in 'aio:///x?blk_size='"
        );
        assert_eq!(
            err("aio:///x?blk_size=99999999999999999999999"),
            "blk_size must be a decimal number, got '99999999999999999999999' in 'aio:///x?blk_size=99999999999999999999999'"
        );
        assert_eq!(
            err("malloc:///m?size_mb=1&num_blocks=2"),
            "size_mb and num_blocks are mutually exclusive"
        );
        assert_eq!(
            err("malloc:///m"),
            "malloc disk needs size_mb or num_blocks in 'malloc:///m'"
        );
        assert_eq!(
            err("malloc:///m?blk_size=512"),
            "malloc disk needs size_mb or num_blocks in 'malloc:///m?blk_size=512'"
        );
        assert_eq!(
            err("malloc:///m?size_mb=0"),
            "size_mb must be greater than 0"
        );
        assert_eq!(
            err("malloc:///m?num_blocks=0"),
            "num_blocks must be greater than 0"
        );
        assert_eq!(
            err("malloc:///m?size_mb=17592186044416"),
            "size_mb=17592186044416 is too large (the size in bytes overflows 64 bits)"
        );
        assert_eq!(
            err("malloc:///m?num_blocks=4503599627370496&blk_size=4096"),
            "num_blocks=4503599627370496 is too large (the size in bytes overflows 64 bits)"
        );
        assert_eq!(
            err("malloc:///a/b?size_mb=1"),
            "invalid malloc name 'a/b' in 'malloc:///a/b?size_mb=1' (expected letters, digits, '_' or '-')"
        );
        assert_eq!(
            err("malloc:///m.0?size_mb=1"),
            "invalid malloc name 'm.0' in 'malloc:///m.0?size_mb=1' (expected letters, digits, '_' or '-')"
        );
        assert_eq!(
            err("malloc:///m?size_mb=1&uuid=x"),
            "unknown parameter 'uuid' in 'malloc:///m?size_mb=1&uuid=x'"
        );
        assert_eq!(
            err("malloc:///m?size_mb=1&blk_size=520"),
            "blk_size must be 512 or 4096, got 520"
        );
    }

    #[test]
    fn largest_sizes_that_fit_are_accepted() {
        // 2^44 - 1 MiB is just below 2^64 bytes.
        let u = parse("malloc:///m?size_mb=17592186044415").unwrap();
        assert_eq!(u.to_string().parse::<DiskUri>().unwrap(), u);
        parse("malloc:///m?num_blocks=4503599627370495&blk_size=4096").unwrap();
    }

    fn path_strategy() -> impl Strategy<Value = PathBuf> {
        "(/[A-Za-z0-9._ #%:=&-]{1,12}){1,4}".prop_map(PathBuf::from)
    }

    fn blk_strategy() -> impl Strategy<Value = u32> {
        prop_oneof![Just(512u32), Just(4096u32)]
    }

    fn uri_strategy() -> impl Strategy<Value = DiskUri> {
        prop_oneof![
            (path_strategy(), proptest::option::of(blk_strategy()))
                .prop_map(|(path, blk_size)| DiskUri::Aio { path, blk_size }),
            (path_strategy(), proptest::option::of(blk_strategy()))
                .prop_map(|(path, blk_size)| DiskUri::Uring { path, blk_size }),
            (
                "[A-Za-z0-9_-]{1,16}",
                prop_oneof![
                    (1u64..=(u64::MAX >> 20)).prop_map(MallocSize::SizeMb),
                    (1u64..=(u64::MAX >> 12)).prop_map(MallocSize::NumBlocks),
                ],
                blk_strategy()
            )
                .prop_map(|(name, size, blk_size)| DiskUri::Malloc {
                    name,
                    size,
                    blk_size
                }),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_strings_never_panic(s in any::<String>()) {
            let _ = parse(&s);
        }

        #[test]
        fn uri_shaped_strings_never_panic(
            s in "(aio|uring|malloc|nvmf|)(:|://|:///)[/a-z0-9]{0,8}(\\?([a-z_]{0,10}(=[0-9a-z+]{0,22})?&?){0,4})?"
        ) {
            if let Ok(u) = parse(&s) {
                prop_assert_eq!(parse(&u.to_string()), Ok(u));
            }
        }

        #[test]
        fn display_then_parse_round_trips(u in uri_strategy()) {
            let shown = u.to_string();
            prop_assert_eq!(parse(&shown), Ok(u.clone()));
            // The canonical form is a fixed point.
            prop_assert_eq!(parse(&shown).map(|v| v.to_string()), Ok(shown));
        }

        #[test]
        fn successful_parses_round_trip(s in any::<String>()) {
            if let Ok(u) = parse(&s) {
                prop_assert_eq!(parse(&u.to_string()), Ok(u));
            }
        }
    }
}
