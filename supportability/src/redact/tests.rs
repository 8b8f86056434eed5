//! Unit tests of the redactor: every secret form it knows, across
//! write boundaries.

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
fn manifest_survives_its_own_redaction() {
    use crate::manifest::{CollectorRecord, Manifest, Sources};
    let r = Redactor::new(["given-token-123".to_string()]);
    let mut redactions = BTreeMap::new();
    for kind in [KIND_KNOWN, KIND_HEADER, KIND_FIELD, KIND_PEM] {
        redactions.insert(kind.to_string(), 2);
    }
    let manifest = Manifest {
        tool: "t".into(),
        version: "1".into(),
        created: "2026-12-06T00:00:00.000Z".into(),
        resource: "system".into(),
        archive_format: "zip".into(),
        logs_since: "2026-12-05T00:00:00.000Z".into(),
        max_log_bytes: 1,
        sources: Sources::default(),
        collectors: vec![CollectorRecord {
            name: "logs/loki/io-engine".into(),
            source: "http://x/?token=abcdef123".into(),
            outcome: "failed".into(),
            error: Some(
                "401: Authorization: Bearer given-token-123 \"password\": \"pw-9876\"".into(),
            ),
            files: Vec::new(),
            duration_ms: 5,
        }],
        redactions,
        partial: true,
    };
    let json = serde_json::to_string_pretty(&manifest).expect("json");
    let redacted = r.text(&json);
    let back: Manifest = serde_json::from_str(&redacted).expect("redacted manifest parses");
    assert_eq!(back.redactions, manifest.redactions);
    assert_eq!(back.collectors[0].duration_ms, 5);
    for secret in ["given-token-123", "abcdef123", "pw-9876"] {
        assert!(!redacted.contains(secret), "{secret} in {redacted}");
    }
}

#[test]
fn json_keeps_its_shape() {
    let r = Redactor::new(["quo\"ted-secret".to_string()]);
    let value = serde_json::json!({
        "token": 12345,
        "password": "a\"b, c}",
        "nested": {"secret": true, "api_key": null, "apikey": "k-1234567"},
        "list": ["Bearer zzz.yyy", {"authorization": "Basic dXNlcjpwYXNz"}],
        "text": "carry quo\"ted-secret on",
        "n": 1,
    });
    for json in [
        value.to_string(),
        serde_json::to_string_pretty(&value).expect("json"),
    ] {
        let redacted = r.text(&json);
        let back: serde_json::Value =
            serde_json::from_str(&redacted).expect("redacted JSON parses");
        assert_eq!(back["token"], MARK, "{redacted}");
        assert_eq!(back["password"], MARK, "{redacted}");
        assert_eq!(back["nested"]["secret"], true);
        assert_eq!(back["nested"]["api_key"], serde_json::Value::Null);
        assert_eq!(back["nested"]["apikey"], MARK);
        assert_eq!(back["list"][0], "Bearer <redacted>");
        assert_eq!(back["list"][1]["authorization"], MARK);
        assert_eq!(back["text"], "carry <redacted> on");
        assert_eq!(back["n"], 1);
        for secret in [
            "12345",
            "a\\\"b",
            "k-1234567",
            "zzz.yyy",
            "dXNlcjpwYXNz",
            "ted-secret",
        ] {
            assert!(!redacted.contains(secret), "{secret} in {redacted}");
        }
    }
}

#[test]
fn yaml_keeps_its_shape() {
    let r = Redactor::default();
    let yaml = "\
apiVersion: v1
users:
- name: admin
  user:
    token: abc.def ghi   # the token
    password: 'it''s secret'
    client-key-data: |
      LS0tLS1CRUdJTiBQUklW
      QVRFIEtFWS0tLS0tCg==
    username: bob
    passwd: 123456
metadata:
  annotations:
    last-applied: \"{\\\"token\\\":\\\"zzz-inner\\\",\\\"a\\\":1}\"
  tls.key: |
    -----BEGIN PRIVATE KEY-----
    MIIEvQIBADANBg
    -----END PRIVATE KEY-----
kind: Config
";
    let redacted = r.text(yaml);
    for secret in [
        "abc.def",
        "ghi",
        "it''s",
        "LS0tLS1",
        "QVRFIE",
        "zzz-inner",
        "MIIEvQ",
        "123456",
    ] {
        assert!(!redacted.contains(secret), "{secret} in {redacted}");
    }
    let back: serde_yaml::Value = serde_yaml::from_str(&redacted).expect("redacted YAML parses");
    let user = &back["users"][0]["user"];
    assert_eq!(user["token"], MARK, "{redacted}");
    assert_eq!(user["password"], MARK);
    assert_eq!(user["client-key-data"], "<redacted>\n<redacted>\n");
    assert_eq!(user["username"], "bob");
    assert_eq!(user["passwd"], MARK);
    let inner: serde_json::Value = serde_json::from_str(
        back["metadata"]["annotations"]["last-applied"]
            .as_str()
            .expect("string"),
    )
    .expect("inner JSON parses");
    assert_eq!(inner, serde_json::json!({"token": MARK, "a": 1}));
    assert_eq!(
        back["metadata"]["tls.key"],
        "<redacted>\n<redacted>\n-----END PRIVATE KEY-----\n"
    );
    assert_eq!(back["kind"], "Config");
    let counts = r.counts();
    assert_eq!(counts.get(KIND_PEM), Some(&1), "{counts:?}");
    assert_eq!(counts.get(KIND_FIELD), Some(&5), "{counts:?}");
}

#[test]
fn json_values() {
    let r = Redactor::default();
    let mut v =
        serde_json::json!({"env":[{"name":"X","value":"Bearer zzzzzz"}],"token":"abcdefg","n":1});
    r.json(&mut v);
    let text = v.to_string();
    assert!(
        !text.contains("zzzzzz") && !text.contains("abcdefg"),
        "{text}"
    );
    assert!(text.contains("\"n\":1"));
}
