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
//! Redaction keeps structure: only the secret itself is replaced (inside
//! its quotes; a bare JSON number or word becomes the string
//! `"<redacted>"`; a YAML block scalar's lines keep their indentation), so
//! a redacted JSON or YAML file parses to the same shape. Quotes, commas,
//! brackets and newlines are never removed.
//!
//! Kubernetes `Secret` objects are never collected at all. Counts per kind
//! ([`KIND_KNOWN`], [`KIND_HEADER`], [`KIND_FIELD`], [`KIND_PEM`]) go to
//! `manifest.json`.

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

/// Kinds counted in `manifest.json` (none of them names a credential key,
/// so the manifest's own counts survive its redaction).
pub const KIND_KNOWN: &str = "known-secret";
pub const KIND_HEADER: &str = "authorization-header";
pub const KIND_FIELD: &str = "credential-field";
pub const KIND_PEM: &str = "private-key-block";

/// Replaces secrets in text and counts what it replaced.
///
/// Structure is kept: a secret inside a quoted string is replaced inside
/// the quotes, a non-string JSON value by the string `"<redacted>"`,
/// indentation is kept, and no quote, comma, bracket or newline is ever
/// removed, so redacted JSON and YAML still parse to the same shape.
#[derive(Debug, Default)]
pub struct Redactor {
    known: Vec<String>,
    counts: Mutex<BTreeMap<&'static str, u64>>,
}

/// Per-stream state (inside a PEM private key block or a credential's
/// YAML block scalar, or not).
#[derive(Debug, Default, Clone, Copy)]
pub struct LineState {
    in_private_key: bool,
    /// Inside `key: |` of a credential key: the key's indentation.
    secret_block_indent: Option<usize>,
}

/// A secret as it appears unescaped and inside a JSON string.
fn spellings(secret: &str) -> Vec<String> {
    let mut out = vec![secret.to_string()];
    if let Ok(json) = serde_json::to_string(secret) {
        let escaped = &json[1..json.len() - 1];
        if escaped != secret {
            out.push(escaped.to_string());
        }
    }
    out
}

impl Redactor {
    /// A redactor that also removes each of `known` (values shorter than 6
    /// bytes are ignored: too likely to match ordinary text).
    pub fn new(known: impl IntoIterator<Item = String>) -> Self {
        let mut redactor = Self::default();
        for secret in known {
            redactor.learn(&secret);
        }
        redactor
    }

    /// Adds a secret learnt while collecting.
    pub fn learn(&mut self, secret: &str) {
        if secret.len() < 6 {
            return;
        }
        for spelling in spellings(secret) {
            if !self.known.contains(&spelling) {
                self.known.push(spelling);
            }
        }
        // Longest first, so a secret containing another is removed whole.
        self.known.sort_by_key(|k| std::cmp::Reverse(k.len()));
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
        let indent = &body[..body.len() - body.trim_start_matches([' ', '\t']).len()];
        if let Some(key_indent) = state.secret_block_indent {
            if body.trim().is_empty() {
                return line.to_string();
            }
            if indent.len() > key_indent {
                return format!("{indent}{MARK}{newline}");
            }
            state.secret_block_indent = None;
        }
        if state.in_private_key {
            if is_pem_end(body) {
                state.in_private_key = false;
                return line.to_string();
            }
            return format!("{indent}{MARK}{newline}");
        }
        let mut text = body.to_string();
        let n = redact_private_keys(&mut text, state);
        self.count(KIND_PEM, n);
        for secret in &self.known {
            let n = text.matches(secret.as_str()).count();
            if n > 0 {
                text = text.replace(secret.as_str(), MARK);
                self.count(KIND_KNOWN, n as u64);
            }
        }
        let n = redact_after_scheme(&mut text);
        self.count(KIND_HEADER, n);
        let (n, block) = redact_secret_keys(&mut text);
        self.count(KIND_FIELD, n);
        if block.is_some() {
            state.secret_block_indent = block;
        }
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
                            self.count(KIND_FIELD, 1);
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

/// Replaces PEM private keys that begin on this line: whole when the
/// block ends on the line or within the same quoted string (escaped
/// newlines), else up to the end of the line, entering the block state.
fn redact_private_keys(text: &mut String, state: &mut LineState) -> u64 {
    let mut count = 0;
    let mut from = 0;
    while let Some(pos) = text[from..].find("-----BEGIN ") {
        let start = from + pos;
        // `-----BEGIN <type>-----`: the type ends at the next dashes.
        let Some(header_end) = text[start + 11..].find("-----").map(|i| start + 11 + i) else {
            break;
        };
        if !text[start..header_end].contains("PRIVATE KEY") {
            from = start + 11;
            continue;
        }
        count += 1;
        if let Some(end) = text[header_end..].find("-----END ") {
            let end_abs = header_end + end;
            let tail_end = text[end_abs..]
                .find("KEY-----")
                .map_or(text.len(), |i| end_abs + i + 8);
            text.replace_range(start..tail_end, MARK);
        } else if let Some(quote) = closing_quote(text, start, '"') {
            // Inside one quoted string (a JSON value cut short): the rest
            // of that string only.
            text.replace_range(start..quote, MARK);
        } else {
            state.in_private_key = true;
            text.truncate(start);
            text.push_str(MARK);
            break;
        }
        from = start + MARK.len();
    }
    count
}

/// The index of the first unescaped `quote` at or after `from`, when the
/// text before it from `from` holds an escaped newline (`\n`): the end of
/// a JSON string holding a multi-line value.
fn closing_quote(text: &str, from: usize, quote: char) -> Option<usize> {
    let end = string_end(text, from, quote)?;
    text[from..end].contains("\\n").then_some(end)
}

/// The index of the quote ending a string whose content starts at
/// `from`; `\` escapes in `"` strings, `''` in `'` strings.
fn string_end(text: &str, from: usize, quote: char) -> Option<usize> {
    let bytes = text.as_bytes();
    let q = quote as u8;
    let mut i = from;
    while i < bytes.len() {
        let b = bytes[i];
        if q == b'"' && b == b'\\' {
            i += 2;
            continue;
        }
        if b == q {
            if q == b'\'' && bytes.get(i + 1) == Some(&b'\'') {
                i += 2;
                continue;
            }
            return Some(i);
        }
        i += 1;
    }
    None
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

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
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

/// How a credential's value is written.
enum Value {
    /// Between quotes (content range); the quotes stay.
    Quoted(usize, usize),
    /// A bare value (range); in JSON it becomes the string `"<redacted>"`.
    Bare(usize, usize, bool),
    /// `key: |` (a YAML block scalar): the following, deeper lines.
    Block,
    /// Nothing to redact here (empty, null, a nested map or list).
    None,
}

/// Finds the value after the separator at `sep` of a credential key.
/// `json` says the key was double-quoted; `line_start` that the key opens
/// the line (YAML: the value runs to the end of the line).
fn value_after(text: &str, sep: usize, json: bool, line_start: bool) -> Value {
    let after = &text[sep + 1..];
    let start = sep + 1 + after.len() - after.trim_start_matches([' ', '\t']).len();
    let rest = &text[start..];
    if let Some(inner) = rest.strip_prefix("\\\"") {
        // An escaped string inside a string: `{\"token\":\"x\"}`.
        let end = inner.find("\\\"").map_or(text.len(), |i| start + 2 + i);
        return Value::Quoted(start + 2, end);
    }
    match rest.chars().next() {
        None | Some('{' | '[' | '#') => Value::None,
        Some(q @ ('"' | '\'')) => {
            let end = string_end(text, start + 1, q).unwrap_or(text.len());
            Value::Quoted(start + 1, end)
        }
        Some('|' | '>')
            if line_start
                && text[sep..].starts_with(':')
                && rest[1..]
                    .trim_end()
                    .chars()
                    .all(|c| matches!(c, '-' | '+' | '0'..='9')) =>
        {
            Value::Block
        }
        Some(_) => {
            let end = if line_start && !json && text[sep..].starts_with(':') {
                // YAML plain scalar: to the end of the line or a comment.
                let line_end = rest.find(" #").map_or(text.len(), |i| start + i);
                start + text[start..line_end].trim_end().len()
            } else {
                start
                    + rest
                        .chars()
                        .take_while(|c| is_value_char(*c))
                        .map(char::len_utf8)
                        .sum::<usize>()
            };
            let value = &text[start..end];
            let scheme = ["bearer", "basic"]
                .iter()
                .any(|s| value.eq_ignore_ascii_case(s));
            if value.is_empty()
                || scheme
                || ["null", "~", "true", "false"]
                    .iter()
                    .any(|s| value.eq_ignore_ascii_case(s))
            {
                Value::None
            } else {
                Value::Bare(start, end, json)
            }
        }
    }
}

/// `key: value`, `"key": "value"`, `key=value` for credential keys.
/// Returns how many, and the key's indentation when it opens a YAML block
/// scalar whose lines follow.
fn redact_secret_keys(text: &mut String) -> (u64, Option<usize>) {
    let mut count = 0;
    let mut block = None;
    let mut search_from = 0;
    while let Some(sep_rel) = text[search_from..].find([':', '=']) {
        let sep = search_from + sep_rel;
        let mut next = sep + 1;
        // The key: the word just before the separator (maybe quoted,
        // maybe with escaped quotes).
        let before = text[..sep].trim_end();
        let unquoted = before.trim_end_matches(['"', '\'', '\\']);
        let json = before.ends_with('"');
        let key_start = unquoted
            .rfind(|c: char| !is_key_char(c))
            .map_or(0, |i| i + 1);
        let key = &unquoted[key_start..];
        if !key.is_empty() && is_secret_key(key) {
            let opening = text[..key_start].trim_start();
            let line_start = opening.is_empty()
                || ["\"", "'", "- ", "- \"", "- '"].contains(&opening)
                || opening == "-";
            match value_after(text, sep, json, line_start) {
                Value::Quoted(start, end) => {
                    let value = &text[start..end];
                    if !value.is_empty() && value != MARK {
                        if !value.contains(MARK) {
                            count += 1;
                        }
                        text.replace_range(start..end, MARK);
                    }
                    next = start + MARK.len().min(text.len() - start);
                }
                Value::Bare(start, end, quote) => {
                    if &text[start..end] != MARK {
                        if !text[start..end].contains(MARK) {
                            count += 1;
                        }
                        let with = if quote {
                            format!("\"{MARK}\"")
                        } else {
                            MARK.to_string()
                        };
                        text.replace_range(start..end, &with);
                        next = start + with.len();
                    } else {
                        next = end;
                    }
                }
                Value::Block => {
                    count += 1;
                    block = Some(text.len() - text.trim_start_matches([' ', '\t']).len());
                }
                Value::None => {}
            }
        }
        search_from = next.min(text.len());
    }
    (count, block)
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
mod tests;
