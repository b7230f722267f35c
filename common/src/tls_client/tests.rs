use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

use super::*;
use crate::settings::{self, Arity, Fallback};

static PEER: Setting = setting("PEER_URL", "peer-url");
static CA: Setting = setting("T_CA_FILE", "t-ca-file");
static CERT: Setting = setting("T_CERT_FILE", "t-cert-file");
static KEY: Setting = setting("T_KEY_FILE", "t-key-file");
static TABLE: &[&Setting] = &[&PEER, &CA, &CERT, &KEY];
static TLS: TlsSettings = TlsSettings {
    ca_file: &CA,
    client_cert: &CERT,
    client_key: &KEY,
};

const fn setting(env: &'static str, long: &'static str) -> Setting {
    Setting {
        env,
        short: None,
        long,
        default: Fallback::Value(""),
        arity: Arity::Value,
        help: "test",
    }
}

fn load(env: &[(&str, &str)], https: bool) -> Result<Option<ClientTls>, ConfigError> {
    let values = settings::collect(TABLE, Vec::<String>::new(), settings::fixed_env(env))?;
    let settings::Parsed::Run(values) = values else {
        panic!("no command")
    };
    ClientTls::from_settings(&values, &TLS, https, &PEER)
}

/// A CA certificate and a leaf certificate with its key, as PEM.
struct Pems {
    ca: String,
    leaf: String,
    leaf_key: String,
    other_key: String,
}

fn pems() -> Pems {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let issuer = rcgen::CertifiedIssuer::self_signed(ca, ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["client".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    Pems {
        ca: issuer.pem(),
        leaf: leaf.pem(),
        leaf_key: leaf_key.serialize_pem(),
        other_key: KeyPair::generate().unwrap().serialize_pem(),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn a_ca_file_is_the_only_trust() {
    let dir = tempfile::tempdir().unwrap();
    let p = pems();
    let ca = write(dir.path(), "ca.pem", &format!("{}{}", p.ca, p.ca));
    let tls = load(&[("T_CA_FILE", &ca)], true).unwrap().unwrap();
    assert_eq!(tls.trust(), &Trust::CaFile(ca.clone().into()));
    assert_eq!(tls.roots.len(), 2);
    assert_eq!(tls.client_cert_file(), None);
    assert!(tls.describe().contains(&format!("only the CAs in {ca}")));
}

#[test]
fn unusable_ca_files_name_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem").display().to_string();
    let garbage = write(dir.path(), "garbage.pem", "hello, not a certificate\n");
    let base64 = write(
        dir.path(),
        "base64.pem",
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    );
    let unterminated = write(dir.path(), "cut.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n");
    let not_der = write(
        dir.path(),
        "notder.pem",
        "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
    );
    for (path, why) in [
        (&missing, "cannot open"),
        (&garbage, "no PEM certificate"),
        (&base64, "not valid base64"),
        (&unterminated, "no END line"),
        (&not_der, "not usable as a CA"),
    ] {
        let err = load(&[("T_CA_FILE", path)], true).unwrap_err();
        assert!(
            err.0.starts_with("invalid T_CA_FILE (--t-ca-file) value") && err.0.contains(why),
            "{path}: {err}"
        );
        assert!(!err.0.contains('\n'), "{err}");
    }
}

#[test]
fn a_client_certificate_needs_both_files_and_a_matching_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = pems();
    let ca = write(dir.path(), "ca.pem", &p.ca);
    let cert = write(dir.path(), "c.crt", &p.leaf);
    let key = write(dir.path(), "c.key", &p.leaf_key);
    let other = write(dir.path(), "o.key", &p.other_key);
    let tls = load(
        &[
            ("T_CA_FILE", &ca),
            ("T_CERT_FILE", &cert),
            ("T_KEY_FILE", &key),
        ],
        true,
    )
    .unwrap()
    .unwrap();
    assert_eq!(tls.client_cert_file(), Some(Path::new(&cert)));
    assert!(!format!("{tls:?}").contains("PRIVATE"), "{tls:?}");

    let only_cert = load(&[("T_CA_FILE", &ca), ("T_CERT_FILE", &cert)], true).unwrap_err();
    assert!(
        only_cert
            .0
            .starts_with("T_CERT_FILE (--t-cert-file) is set but T_KEY_FILE (--t-key-file) is not"),
        "{only_cert}"
    );
    let only_key = load(&[("T_KEY_FILE", &key)], true).unwrap_err();
    assert!(
        only_key
            .0
            .starts_with("T_KEY_FILE (--t-key-file) is set but T_CERT_FILE"),
        "{only_key}"
    );
    let mismatch = load(
        &[
            ("T_CERT_FILE", &cert),
            ("T_KEY_FILE", &other),
            ("T_CA_FILE", &ca),
        ],
        true,
    )
    .unwrap_err();
    assert!(
        mismatch.0.starts_with("invalid T_KEY_FILE") && mismatch.0.contains("does not belong"),
        "{mismatch}"
    );
    // A certificate where the key belongs, and the reverse.
    let swapped = load(
        &[
            ("T_CERT_FILE", &key),
            ("T_KEY_FILE", &cert),
            ("T_CA_FILE", &ca),
        ],
        true,
    )
    .unwrap_err();
    assert!(
        swapped.0.starts_with("invalid T_CERT_FILE") && swapped.0.contains("no PEM certificate"),
        "{swapped}"
    );
    let swapped = load(
        &[
            ("T_CERT_FILE", &cert),
            ("T_KEY_FILE", &cert),
            ("T_CA_FILE", &ca),
        ],
        true,
    )
    .unwrap_err();
    assert!(
        swapped.0.starts_with("invalid T_KEY_FILE") && swapped.0.contains("no PEM private key"),
        "{swapped}"
    );
}

#[test]
fn tls_settings_with_a_plain_http_peer_are_refused() {
    assert!(load(&[], false).unwrap().is_none());
    let err = load(&[("T_CA_FILE", "/etc/ssl/ca.pem")], false).unwrap_err();
    assert_eq!(
        err.0,
        "T_CA_FILE (--t-ca-file) is set but PEER_URL (--peer-url) is not an https:// address: TLS settings apply to https:// only"
    );
}

#[test]
fn oversized_files_are_refused_without_reading_them_whole() {
    let err = load(&[("T_CA_FILE", "/dev/zero")], true).unwrap_err();
    assert!(err.0.contains("larger than 4 MiB"), "{err}");
}
