//! TLS of both daemons' HTTP clients (the agent's sender, the server's audit URL sink): what an
//! `https://` peer is verified against — the system trust store, or only the CAs of a PEM file
//! — and an optional client certificate (mTLS), read from PEM files once at start into a ureq
//! TLS configuration on rustls with the ring provider; and the one-line cause of a TLS failure.
//!
//! The files are read while the configuration is read, so a missing, unreadable or unparsable
//! file stops the daemon at start (exit 2) with a line naming the setting, and a certificate
//! whose key does not match it is caught there too, rather than at the first request. A plain
//! `http://` peer never reaches this module: its settings must then be empty.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig, TlsProvider};

use crate::settings::{ConfigError, Setting, Values};

/// The largest PEM file read: system bundles are a few hundred KiB; anything larger is not a
/// certificate file (and `/dev/zero` must not hang the start).
pub const MAX_PEM_FILE: u64 = 4 << 20;

/// The three settings of one client, so that every message names the daemon's own setting.
#[derive(Debug)]
pub struct TlsSettings {
    /// The CA file (`CA_FILE`, `AUDIT_CA_FILE`).
    pub ca_file: &'static Setting,
    /// The client certificate chain (`TLS_CLIENT_CERT_FILE`, …).
    pub client_cert: &'static Setting,
    /// The client certificate's private key (`TLS_CLIENT_KEY_FILE`, …).
    pub client_key: &'static Setting,
}

/// What the peer's certificate is verified against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The system trust store (`SSL_CERT_FILE` / `SSL_CERT_DIR` when set, else the
    /// distribution's bundle, e.g. `/etc/ssl/certs`), with this many CA certificates.
    System(usize),
    /// Only the CA certificates of this file.
    CaFile(PathBuf),
}

/// A client certificate and its key, checked to belong together.
#[derive(Clone)]
struct Identity {
    cert_file: PathBuf,
    cert: ClientCert,
}

/// The loaded TLS configuration of one client (see the module docs).
#[derive(Clone)]
pub struct ClientTls {
    settings: &'static TlsSettings,
    trust: Trust,
    roots: Arc<Vec<Certificate<'static>>>,
    identity: Option<Identity>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("ClientTls")
            .field("trust", &self.trust)
            .field("client_cert", &self.identity.as_ref().map(|i| &i.cert_file))
            .finish()
    }
}

impl PartialEq for ClientTls {
    fn eq(&self, other: &Self) -> bool {
        let ders = |certs: &[Certificate<'static>]| -> Vec<Vec<u8>> {
            certs.iter().map(|c| c.der().to_vec()).collect()
        };
        let identity = |t: &Self| {
            t.identity.as_ref().map(|i| {
                (
                    i.cert_file.clone(),
                    ders(i.cert.certs()),
                    i.cert.private_key().der().to_vec(),
                )
            })
        };
        self.trust == other.trust
            && ders(&self.roots) == ders(&other.roots)
            && identity(self) == identity(other)
            && std::ptr::eq(self.settings, other.settings)
    }
}

impl Eq for ClientTls {}

/// The ring provider, the only one the daemons are built with.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl ClientTls {
    /// Reads the TLS settings of a client whose peer is `https` (or not). For an `http://`
    /// peer every setting must be empty (`None` then); for an `https://` one the CA file (or
    /// the system trust store) and the client identity are read. `peer` is the setting that
    /// names the peer (`ADDRESS`, `AUDIT_URL`), for the message when they do not fit.
    pub fn from_settings(
        values: &Values,
        settings: &'static TlsSettings,
        https: bool,
        peer: &Setting,
    ) -> Result<Option<Self>, ConfigError> {
        let path = |setting: &Setting| {
            Some(values.string(setting))
                .filter(|s| !s.trim().is_empty())
                .map(PathBuf::from)
        };
        let ca_file = path(settings.ca_file);
        let cert = path(settings.client_cert);
        let key = path(settings.client_key);
        let pair = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (given, _) => {
                let (set, unset) = if given.is_some() {
                    (settings.client_cert, settings.client_key)
                } else {
                    (settings.client_key, settings.client_cert)
                };
                return Err(ConfigError(format!(
                    "{} is set but {} is not: a client certificate needs both files (set both, or neither)",
                    set.label(),
                    unset.label()
                )));
            }
        };
        if !https {
            let given = [settings.ca_file, settings.client_cert, settings.client_key]
                .into_iter()
                .find(|s| path(s).is_some());
            return match given {
                None => Ok(None),
                Some(setting) => Err(ConfigError(format!(
                    "{} is set but {} is not an https:// address: TLS settings apply to https:// only",
                    setting.label(),
                    peer.label()
                ))),
            };
        }
        let (trust, roots) = match ca_file {
            Some(path) => {
                let roots = load_ca_file(&path)
                    .map_err(|why| settings.ca_file.invalid(&path.display().to_string(), &why))?;
                (Trust::CaFile(path), roots)
            }
            None => {
                let roots = load_system_store().map_err(|why| {
                    ConfigError(format!(
                        "{} is not set and the system trust store has no usable CA certificate ({why}): set {} to the CA that signed the peer's certificate",
                        settings.ca_file.label(),
                        settings.ca_file.label()
                    ))
                })?;
                (Trust::System(roots.len()), roots)
            }
        };
        let identity = match pair {
            None => None,
            Some((cert, key)) => Some(load_identity(settings, &cert, &key)?),
        };
        Ok(Some(Self {
            settings,
            trust,
            roots: Arc::new(
                roots
                    .iter()
                    .map(|c| Certificate::from_der(c.as_ref()).to_owned())
                    .collect(),
            ),
            identity,
        }))
    }

    /// What the peer is verified against.
    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    /// The client certificate file, with mTLS.
    pub fn client_cert_file(&self) -> Option<&Path> {
        self.identity.as_ref().map(|i| i.cert_file.as_path())
    }

    /// The ureq TLS configuration: rustls on ring, these roots only, the client certificate.
    pub fn ureq_config(&self) -> TlsConfig {
        TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(provider())
            .root_certs(RootCerts::Specific(self.roots.clone()))
            .client_cert(self.identity.as_ref().map(|i| i.cert.clone()))
            .build()
    }

    /// One line for the start-up log: `TLS: the system trust store (146 CAs), client
    /// certificate /etc/golectra/agent.crt`.
    pub fn describe(&self) -> String {
        let trust = match &self.trust {
            Trust::System(n) => format!("the system trust store ({n} CAs)"),
            Trust::CaFile(path) => format!("only the CAs in {}", path.display()),
        };
        match &self.identity {
            None => format!("verifying the peer against {trust}, no client certificate"),
            Some(i) => format!(
                "verifying the peer against {trust}, client certificate {}",
                i.cert_file.display()
            ),
        }
    }

    /// When `error` is a TLS failure (a handshake refused by either side, a certificate that
    /// does not verify, a peer that does not speak TLS): its one-line cause with a hint naming
    /// the setting to look at, e.g. `certificate verify failed: UnknownIssuer (the peer's
    /// certificate is not signed by a CA in CA_FILE /etc/golectra/ca.pem)`. `None` for any
    /// other error.
    pub fn explain(&self, error: &ureq::Error) -> Option<String> {
        let tls = tls_error(error)?;
        let cause = cause(tls);
        let hint = match tls {
            rustls::Error::InvalidCertificate(_) => match &self.trust {
                Trust::CaFile(path) => format!(
                    "the peer's certificate is not accepted by the CAs in {} {}",
                    self.settings.ca_file.label(),
                    path.display()
                ),
                Trust::System(_) => format!(
                    "the peer's certificate is not accepted by the system trust store; for a private CA set {}",
                    self.settings.ca_file.label()
                ),
            },
            rustls::Error::AlertReceived(alert) if refuses_client(*alert) => match &self.identity {
                None => format!(
                    "the peer may require a client certificate: set {} and {}",
                    self.settings.client_cert.label(),
                    self.settings.client_key.label()
                ),
                Some(i) => format!(
                    "the peer does not accept the client certificate in {} {}",
                    self.settings.client_cert.label(),
                    i.cert_file.display()
                ),
            },
            rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
                "is the peer speaking plain HTTP? then use an http:// address".to_owned()
            }
            _ => return Some(cause),
        };
        Some(format!("{cause} ({hint})"))
    }
}

/// The rustls error inside a ureq error, if it is one.
fn tls_error(error: &ureq::Error) -> Option<&rustls::Error> {
    match error {
        ureq::Error::Rustls(e) => Some(e),
        ureq::Error::Io(e) => e.get_ref()?.downcast_ref::<rustls::Error>(),
        _ => None,
    }
}

/// A rustls error in the words of the usual tools: `certificate verify failed: UnknownIssuer`.
fn cause(error: &rustls::Error) -> String {
    match error {
        rustls::Error::InvalidCertificate(e) => format!("certificate verify failed: {e}"),
        rustls::Error::AlertReceived(alert) => {
            format!("the peer refused the handshake: received fatal alert {alert:?}")
        }
        other => other.to_string(),
    }
}

/// Whether a fatal alert from the server says it did not accept the client (no certificate, or
/// one it does not trust).
fn refuses_client(alert: rustls::AlertDescription) -> bool {
    use rustls::AlertDescription as A;
    matches!(
        alert,
        A::CertificateRequired
            | A::BadCertificate
            | A::UnknownCA
            | A::CertificateUnknown
            | A::UnsupportedCertificate
            | A::CertificateExpired
            | A::CertificateRevoked
            | A::AccessDenied
            | A::HandshakeFailure
    )
}

/// Reads a PEM file of at most [`MAX_PEM_FILE`] bytes.
fn read_pem(path: &Path) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_PEM_FILE {
        return Err(format!(
            "larger than {} MiB: not a PEM file",
            MAX_PEM_FILE >> 20
        ));
    }
    Ok(bytes)
}

/// A PEM parse error in words.
fn pem_error(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a PEM section has no END line".into(),
        pem::Error::IllegalSectionStart { .. } => "a PEM BEGIN line is malformed".into(),
        pem::Error::Base64Decode(why) => format!("a PEM section is not valid base64 ({why})"),
        other => other.to_string(),
    }
}

/// Every certificate of a PEM file, at least one.
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read_pem(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(&e))?;
    if certs.is_empty() {
        return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) in the file".into());
    }
    Ok(certs)
}

/// The CA certificates of a `CA_FILE`, each checked to be usable as a trust anchor.
pub fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = read_certificates(path)?;
    let mut store = RootCertStore::empty();
    for (i, cert) in certs.iter().enumerate() {
        store.add(cert.clone()).map_err(|e| {
            format!(
                "certificate {} of the file is not usable as a CA: {e}",
                i + 1
            )
        })?;
    }
    Ok(certs)
}

/// The system trust store's CA certificates: at least one that parses.
fn load_system_store() -> Result<Vec<CertificateDer<'static>>, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(found.certs.iter().cloned());
    if added == 0 {
        let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
        return Err(if errors.is_empty() {
            "no CA certificate found".into()
        } else {
            errors.join("; ")
        });
    }
    let mut usable = found.certs;
    usable.retain(|c| {
        let mut one = RootCertStore::empty();
        one.add(c.clone()).is_ok()
    });
    Ok(usable)
}

/// A client certificate chain and its key, checked to belong together (rustls would otherwise
/// only find out at the first handshake).
fn load_identity(settings: &TlsSettings, cert: &Path, key: &Path) -> Result<Identity, ConfigError> {
    let chain = read_certificates(cert).map_err(|why| {
        settings
            .client_cert
            .invalid(&cert.display().to_string(), &why)
    })?;
    let key_error = |why: String| {
        settings
            .client_key
            .invalid(&key.display().to_string(), &why)
    };
    let bytes = read_pem(key).map_err(key_error)?;
    let der = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => key_error(
            "no PEM private key (PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY) in the file"
                .into(),
        ),
        other => key_error(pem_error(&other)),
    })?;
    match CertifiedKey::from_der(chain.clone(), der, &provider()) {
        Ok(_) => {}
        Err(rustls::Error::InconsistentKeys(_)) => {
            return Err(key_error(format!(
                "the key does not belong to the certificate in {} {}",
                settings.client_cert.label(),
                cert.display()
            )));
        }
        Err(e) if is_certificate_problem(&e) => {
            return Err(settings
                .client_cert
                .invalid(&cert.display().to_string(), &e.to_string()));
        }
        Err(e) => return Err(key_error(format!("unusable private key: {e}"))),
    }
    let chain: Vec<Certificate<'static>> = chain
        .iter()
        .map(|c| Certificate::from_der(c.as_ref()).to_owned())
        .collect();
    // ureq reads the same first key of the file that rustls just accepted.
    let key = PrivateKey::from_pem(&bytes).map_err(|e| key_error(e.to_string()))?;
    Ok(Identity {
        cert_file: cert.to_owned(),
        cert: ClientCert::new_with_certs(&chain, key),
    })
}

/// Whether a [`CertifiedKey::from_der`] error is about the certificate rather than the key.
fn is_certificate_problem(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
    )
}

#[cfg(test)]
mod tests;
