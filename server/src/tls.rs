//! HTTPS on the listener: reading the certificate, key and client CA named by `TLS_CERT_FILE`,
//! `TLS_KEY_FILE` and `TLS_CLIENT_CA_FILE` into a rustls configuration (ring provider, TLS 1.2
//! and 1.3, ALPN `http/1.1`), re-reading them on `SIGHUP` ([`Tls::reload`]) for the
//! connections accepted from then on, and the watchdog probe's own identity.
//!
//! The engine (`vendor/tiny_http`, `src/tls.rs`) drives the sessions without blocking; this
//! module only builds configurations.
//!
//! # The watchdog probe under mTLS
//!
//! The watchdog asks the server's own listener for `/ping` (see [`crate::health`]). With client
//! certificates required, the probe needs one too, and the server must not depend on an
//! operator-issued certificate for its own liveness. So at start the server makes an in-memory
//! key pair and self-signed certificate ([`ProbeIdentity`]) and its client verifier accepts,
//! besides certificates signed by `TLS_CLIENT_CA_FILE`, exactly that certificate. Its private
//! key never leaves the process, and a TLS client must prove possession of the key
//! (CertificateVerify), so no one else can present it.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};

use crate::config::TlsFiles;
use crate::config::{TLS_CERT_FILE, TLS_CLIENT_CA_FILE, TLS_KEY_FILE};

/// A TLS file that cannot be used, with the setting that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError {
    /// The environment variable of the setting (`TLS_CERT_FILE`, …).
    pub setting: &'static str,
    /// What is wrong, one line.
    pub reason: String,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.setting, self.reason)
    }
}

impl std::error::Error for TlsError {}

/// The crypto provider of every TLS session of the server (ring; see Cargo.toml).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server's TLS: the files it reads, the engine's acceptor, and the probe's identity.
pub struct Tls {
    files: TlsFiles,
    acceptor: Arc<tiny_http::TlsAcceptor>,
    probe: ProbeIdentity,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads the files; an error names the setting whose file is unusable.
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        let probe = ProbeIdentity::generate()?;
        let config = server_config(files, &probe)?;
        Ok(Self {
            files: files.clone(),
            acceptor: Arc::new(tiny_http::TlsAcceptor::new(config)),
            probe,
        })
    }

    /// The engine's acceptor (for the connection policy).
    pub fn acceptor(&self) -> Arc<tiny_http::TlsAcceptor> {
        self.acceptor.clone()
    }

    /// Re-reads the files; on success new connections use them, on error nothing changes.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.files, &self.probe)?;
        self.acceptor.replace(config);
        Ok(())
    }

    /// Whether clients must present a certificate.
    pub fn requires_client_certificates(&self) -> bool {
        self.files.client_ca.is_some()
    }

    /// The watchdog probe's identity (accepted by the client verifier whatever the CA).
    pub fn probe_identity(&self) -> &ProbeIdentity {
        &self.probe
    }

    /// The files, for the start-up line.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }
}

/// An in-memory client identity of the watchdog probe (see the module doc).
#[derive(Clone)]
pub struct ProbeIdentity {
    /// The self-signed certificate, DER.
    pub cert_der: Vec<u8>,
    /// Its PKCS#8 private key, PEM.
    pub key_pem: String,
}

impl fmt::Debug for ProbeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProbeIdentity")
    }
}

impl ProbeIdentity {
    fn generate() -> Result<Self, TlsError> {
        let failed = |e: rcgen::Error| TlsError {
            setting: TLS_CERT_FILE.env,
            reason: format!("cannot make the watchdog probe's identity: {e}"),
        };
        let key = rcgen::KeyPair::generate().map_err(failed)?;
        let params =
            rcgen::CertificateParams::new(vec!["golectra-watchdog".to_owned()]).map_err(failed)?;
        let cert = params.self_signed(&key).map_err(failed)?;
        Ok(Self {
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Builds the rustls configuration the files describe.
fn server_config(files: &TlsFiles, probe: &ProbeIdentity) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = read_certificates(&files.cert, TLS_CERT_FILE.env)?;
    let key = read_key(&files.key)?;
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError {
            setting: TLS_CERT_FILE.env,
            reason: e.to_string(),
        })?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certificates(path, TLS_CLIENT_CA_FILE.env)? {
                roots.add(cert).map_err(|e| TlsError {
                    setting: TLS_CLIENT_CA_FILE.env,
                    reason: format!("{}: not a usable CA certificate: {e}", path.display()),
                })?;
            }
            let ca = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError {
                    setting: TLS_CLIENT_CA_FILE.env,
                    reason: format!("{}: {e}", path.display()),
                })?;
            builder.with_client_cert_verifier(Arc::new(CaOrProbe {
                ca,
                probe: CertificateDer::from(probe.cert_der.clone()),
            }))
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| TlsError {
        setting: TLS_KEY_FILE.env,
        reason: format!(
            "{} does not fit the certificate in {}: {e}",
            files.key.display(),
            files.cert.display()
        ),
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_certificates(
    path: &Path,
    setting: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let error = |reason: String| TlsError { setting, reason };
    let pem =
        std::fs::read(path).map_err(|e| error(format!("cannot read {}: {e}", path.display())))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| error(format!("{}: not PEM certificates: {e:?}", path.display())))?;
    if certs.is_empty() {
        return Err(error(format!(
            "{} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let error = |reason: String| TlsError {
        setting: TLS_KEY_FILE.env,
        reason,
    };
    let pem =
        std::fs::read(path).map_err(|e| error(format!("cannot read {}: {e}", path.display())))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        error(format!(
            "{}: no PEM private key (PKCS#8, PKCS#1 or SEC1) in it: {e:?}",
            path.display()
        ))
    })
}

/// Client certificates signed by the configured CA, or the watchdog probe's own certificate.
#[derive(Debug)]
struct CaOrProbe {
    ca: Arc<dyn ClientCertVerifier>,
    probe: CertificateDer<'static>,
}

impl ClientCertVerifier for CaOrProbe {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.ca.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.probe.as_ref() && intermediates.is_empty() {
            return Ok(ClientCertVerified::assertion());
        }
        self.ca.verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.ca.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.ca.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.ca.supported_verify_schemes()
    }
}
