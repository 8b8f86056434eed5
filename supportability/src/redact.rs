//! Redaction: secrets never enter the archive.
//!
//! Every byte written to the archive goes through [`Redactor`], line by
//! line (see [`crate::archive`]). It replaces with `<redacted>`:
//!
//! - the secrets the tool itself was given or read (a bearer token, the
//!   kubeconfig's tokens, passwords and client keys), wherever they appear;
//! - the value after `Bearer ` / `Basic ` (HTTP authorization headers);
//! - the value of a key that names a credential (`token`, `password`,
//!   `client-key-data`, `secret`, ...) in YAML (`key: value`), JSON
//!   (`"key": "value"`) and `key=value` forms;
//! - PEM private keys, whole (`-----BEGIN ... PRIVATE KEY-----` to its
//!   `END` line, also inside one JSON string with `\n` escapes).
//!
//! Kubernetes `Secret` objects are never collected at all. Counts per kind
//! go to `manifest.json`.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;

/// What replaces a secret.
pub const MARK: &str = "<redacted>";

/// Keys whose values are credentials (compared lowercase, `-`/`_` alike).
const SECRET_KEYS: &[&str] = &[
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "auth_token",
    "bearer_token",
    "password",
    "passwd",
    "client_key_data",
    "secret",
    "private_key",
    "api_key",
    "apikey",
    "authorization",
];

/// Replaces secrets in text and counts what it replaced.
#[derive(Debug, Default)]
pub struct Redactor {
    known: Vec<String>,
    counts: Mutex<BTreeMap<&'static str, u64>>,
}

/// Per-stream state (inside a PEM private key block or not).
#[derive(Debug, Default, Clone, Copy)]
pub struct LineState {
    in_private_key: bool,
}

impl Redactor {
    /// A redactor that also removes each of `known` (values shorter than 6
    /// bytes are ignored: too likely to match ordinary text).
    pub fn new(known: impl IntoIterator<Item = String>) -> Self {
        let mut known: Vec<String> = known.into_iter().filter(|k| k.len() >= 6).collect();
        // Longest first, so a secret containing another is removed whole.
        known.sort_by_key(|k| std::cmp::Reverse(k.len()));
        known.dedup();
        Self {
            known,
            counts: Mutex::default(),
        }
    }

    /// Adds a secret learnt while collecting.
    pub fn learn(&mut self, secret: &str) {
        if secret.len() >= 6 && !self.known.iter().any(|k| k == secret) {
            self.known.push(secret.to_string());
            self.known.sort_by_key(|k| std::cmp::Reverse(k.len()));
        }
    }

    /// How many secrets of each kind were replaced so far.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect()
    }

    fn count(&self, kind: &'static str, n: u64) {
        if n > 0 {
            *self
                .counts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(kind)
                .or_default() += n;
        }
    }

    /// Redacts a whole text (several lines).
    pub fn text(&self, text: &str) -> String {
        let mut state = LineState::default();
        let mut out = String::with_capacity(text.len());
        for line in text.split_inclusive('\n') {
            out.push_str(&self.line(line, &mut state));
        }
        out
    }

    /// Redacts one line (with or without its newline).
    pub fn line(&self, line: &str, state: &mut LineState) -> String {
        let (body, newline) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        if state.in_private_key {
            if is_pem_end(body) {
                state.in_private_key = false;
                return line.to_string();
            }
            self.count("private-key", 1);
            return format!("{MARK}{newline}");
        }
        let mut text = body.to_string();
        if let Some(start) = text.find("-----BEGIN ") {
            if text[start..].contains("PRIVATE KEY-----") {
                match text[start + 11..].find("-----END ") {
                    Some(end) => {
                        // One-line key (escaped newlines in a JSON string).
                        let end_abs = start + 11 + end;
                        let tail_end = text[end_abs..]
                            .find("KEY-----")
                            .map_or(text.len(), |i| end_abs + i + 8);
                        text.replace_range(start..tail_end, MARK);
                        self.count("private-key", 1);
                    }
                    None => {
                        state.in_private_key = true;
                        text.truncate(start);
                        text.push_str(MARK);
                        self.count("private-key", 1);
                    }
                }
            }
        }
        for secret in &self.known {
            let n = text.matches(secret.as_str()).count();
            if n > 0 {
                text = text.replace(secret.as_str(), MARK);
                self.count("known-secret", n as u64);
            }
        }
        let n = redact_after_scheme(&mut text);
        self.count("authorization-header", n);
        let n = redact_secret_keys(&mut text);
        self.count("credential-field", n);
        text.push_str(newline);
        text
    }

    /// Redacts every string of a JSON value (keys naming credentials lose
    /// their value whole).
    pub fn json(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    if is_secret_key(key) && !v.is_null() && !v.is_object() && !v.is_array() {
                        if v.as_str() != Some(MARK) {
                            *v = serde_json::Value::String(MARK.into());
                            self.count("credential-field", 1);
                        }
                    } else {
                        self.json(v);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.json(v)),
            serde_json::Value::String(s) => {
                let redacted = self.text(s);
                if redacted != *s {
                    *s = redacted;
                }
            }
            _ => {}
        }
    }
}

fn is_pem_end(line: &str) -> bool {
    line.contains("-----END ") && line.contains("PRIVATE KEY-----")
}

fn normalise(key: &str) -> String {
    key.trim()
        .trim_matches(|c| c == '"' || c == '\'')
        .to_ascii_lowercase()
        .replace('-', "_")
}

fn is_secret_key(key: &str) -> bool {
    let key = normalise(key);
    SECRET_KEYS.contains(&key.as_str())
}

fn is_value_char(c: char) -> bool {
    !c.is_whitespace() && !matches!(c, '"' | '\'' | ',' | '}' | ']' | ';' | '\\')
}

/// `Bearer X` / `Basic X` -> `Bearer <redacted>`; returns how many.
fn redact_after_scheme(text: &mut String) -> u64 {
    let mut count = 0;
    for scheme in ["bearer ", "basic "] {
        let mut from = 0;
        while let Some(pos) = text[from..].to_ascii_lowercase().find(scheme) {
            let start = from + pos + scheme.len();
            let len: usize = text[start..]
                .chars()
                .take_while(|c| is_value_char(*c))
                .map(char::len_utf8)
                .sum();
            if len > 0 && &text[start..start + len] != MARK {
                text.replace_range(start..start + len, MARK);
                count += 1;
            }
            from = start + MARK.len().min(text.len() - start);
        }
    }
    count
}

/// `key: value`, `"key": "value"`, `key=value` for credential keys.
fn redact_secret_keys(text: &mut String) -> u64 {
    let mut count = 0;
    let mut search_from = 0;
    loop {
        let rest = &text[search_from..];
        let Some(sep_rel) = rest.find([':', '=']) else {
            break;
        };
        let sep = search_from + sep_rel;
        // The key: the word just before the separator (maybe quoted).
        let before = &text[..sep];
        let key_start = before
            .trim_end_matches(['"', '\''])
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .map_or(0, |i| i + 1);
        let key = &text[key_start..sep];
        let mut next = sep + 1;
        if is_secret_key(key) {
            // The value: after spaces and an opening quote.
            let after = &text[sep + 1..];
            let skipped = after.len() - after.trim_start_matches([' ', '\t']).len();
            let mut vstart = sep + 1 + skipped;
            if text[vstart..].starts_with(['"', '\'']) {
                vstart += 1;
            }
            let len: usize = text[vstart..]
                .chars()
                .take_while(|c| is_value_char(*c))
                .map(char::len_utf8)
                .sum();
            let value = &text[vstart..vstart + len];
            if len > 0 && value != MARK && !value.eq_ignore_ascii_case("null") {
                text.replace_range(vstart..vstart + len, MARK);
                count += 1;
                next = vstart + MARK.len();
            }
        }
        search_from = next.min(text.len());
    }
    count
}

/// A writer that redacts what goes through it, line by line, holding at
/// most [`MAX_LINE_BYTES`] of an unfinished line (a longer line is cut
/// there and each part redacted alone).
pub struct RedactingWriter<'r, W: Write> {
    inner: W,
    redactor: &'r Redactor,
    pending: Vec<u8>,
    state: LineState,
    written: u64,
}

/// The longest line kept whole.
pub const MAX_LINE_BYTES: usize = 1 << 20;

impl<'r, W: Write> RedactingWriter<'r, W> {
    pub fn new(inner: W, redactor: &'r Redactor) -> Self {
        Self {
            inner,
            redactor,
            pending: Vec::new(),
            state: LineState::default(),
            written: 0,
        }
    }

    fn emit(&mut self, line: &[u8]) -> std::io::Result<()> {
        let text = String::from_utf8_lossy(line);
        let redacted = self.redactor.line(&text, &mut self.state);
        self.inner.write_all(redacted.as_bytes())?;
        self.written += redacted.len() as u64;
        Ok(())
    }

    /// Writes the unfinished last line; returns the inner writer and the
    /// bytes written to it.
    pub fn finish(mut self) -> std::io::Result<(W, u64)> {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.emit(&rest)?;
        }
        self.inner.flush()?;
        Ok((self.inner, self.written))
    }
}

impl<W: Write> Write for RedactingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            let (line, tail) = rest.split_at(nl + 1);
            if self.pending.is_empty() {
                self.emit(line)?;
            } else {
                self.pending.extend_from_slice(line);
                let whole = std::mem::take(&mut self.pending);
                self.emit(&whole)?;
            }
            rest = tail;
        }
        self.pending.extend_from_slice(rest);
        if self.pending.len() >= MAX_LINE_BYTES {
            let whole = std::mem::take(&mut self.pending);
            self.emit(&whole)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_secrets_headers_and_fields() {
        let r = Redactor::new(["s3cr3t-token-value".to_string()]);
        let out = r.text(
            "a s3cr3t-token-value b\n\
             Authorization: Bearer abc.def-ghi\n\
             token: kube-token-123\n\
             {\"password\":\"hunter22\",\"user\":\"bob\"}\n\
             client-key-data: LS0tLS1CRUdJTg==\n\
             next_token: 5 size=10\n",
        );
        for secret in [
            "s3cr3t-token-value",
            "abc.def-ghi",
            "kube-token-123",
            "hunter22",
            "LS0tLS1CRUdJTg",
        ] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(out.contains("\"user\":\"bob\""), "{out}");
        assert!(out.contains("next_token: 5 size=10"), "{out}");
        assert!(r.counts().values().sum::<u64>() >= 5);
    }

    #[test]
    fn private_keys_multi_and_single_line() {
        let r = Redactor::default();
        let out = r.text(
            "before\n-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nAAAA\n-----END RSA PRIVATE KEY-----\nafter\n",
        );
        assert_eq!(
            out,
            "before\n<redacted>\n<redacted>\n<redacted>\n-----END RSA PRIVATE KEY-----\nafter\n"
        );
        let one =
            r.text("{\"k\":\"-----BEGIN PRIVATE KEY-----\\nMIIE\\n-----END PRIVATE KEY-----\\n\"}");
        assert!(!one.contains("MIIE"), "{one}");
    }

    #[test]
    fn json_values() {
        let r = Redactor::default();
        let mut v = serde_json::json!({"env":[{"name":"X","value":"Bearer zzzzzz"}],"token":"abcdefg","n":1});
        r.json(&mut v);
        let text = v.to_string();
        assert!(
            !text.contains("zzzzzz") && !text.contains("abcdefg"),
            "{text}"
        );
        assert!(text.contains("\"n\":1"));
    }
}
