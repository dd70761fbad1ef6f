//! TLS to PostgreSQL, as the connection URL asks with libpq's `sslmode` and `sslrootcert`
//! parameters (rustls with the ring provider, the same rustls the gRPC listener uses):
//!
//! - `disable`: plaintext.
//! - `prefer` (the default when `sslmode` is absent): TLS when the server offers it, else
//!   plaintext; the certificate is not checked (as libpq), so it protects against passive
//!   listening only.
//! - `require`: TLS or no connection; the certificate is not checked, unless `sslrootcert`
//!   is given, then its chain is (as libpq).
//! - `verify-ca`: TLS, and the server's chain must lead to `sslrootcert` (else to the public
//!   web roots); the host name is not compared.
//! - `verify-full`: as `verify-ca`, and the certificate must name the host connected to. The
//!   one to use over any network you do not own.
//!
//! tokio-postgres itself knows only `disable`, `prefer` and `require`: the URL it parses has
//! `sslmode` reduced to those and `sslrootcert` taken out; the checks are this module's.

use std::sync::Arc;

use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_rustls::rustls::{
    self,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    client::WebPkiServerVerifier,
    crypto::CryptoProvider,
    pki_types::{pem::PemObject, CertificateDer, ServerName, UnixTime},
    CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use super::StoreError;

/// How far the server is checked (libpq's `sslmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// What the URL asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: TlsMode,
    /// PEM file of the certificate authorities to trust (`sslrootcert`).
    pub root_cert: Option<String>,
}

/// Takes `sslmode` and `sslrootcert` out of a connection URL (`postgres://...?...`) or
/// key=value string: the rest for tokio-postgres, and the settings.
pub fn split_url(url: &str) -> Result<(String, TlsSettings), StoreError> {
    let mut mode = None;
    let mut root_cert = None;
    let mut take = |key: &str, value: &str| -> Result<bool, StoreError> {
        match key {
            "sslmode" => {
                mode = Some(match value {
                    "disable" => TlsMode::Disable,
                    "prefer" => TlsMode::Prefer,
                    "require" => TlsMode::Require,
                    "verify-ca" => TlsMode::VerifyCa,
                    "verify-full" => TlsMode::VerifyFull,
                    other => {
                        return Err(StoreError(format!(
                            "store.postgres_url: sslmode {other:?} is not one of disable, \
                             prefer, require, verify-ca, verify-full"
                        )))
                    }
                });
                Ok(true)
            }
            "sslrootcert" => {
                root_cert = Some(value.to_owned());
                Ok(true)
            }
            _ => Ok(false),
        }
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            Some((base, query)) => {
                let mut kept = form_urlencoded::Serializer::new(String::new());
                for (key, value) in form_urlencoded::parse(query.as_bytes()) {
                    if !take(&key, &value)? {
                        kept.append_pair(&key, &value);
                    }
                }
                let kept = kept.finish();
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{kept}")
                }
            }
            None => url.to_owned(),
        }
    } else {
        // key=value pairs separated by spaces (values with spaces or quotes pass untouched).
        let mut kept = Vec::new();
        for pair in url.split_whitespace() {
            match pair.split_once('=') {
                Some((key, value)) if take(key, value)? => {}
                _ => kept.push(pair),
            }
        }
        kept.join(" ")
    };
    Ok((
        rest,
        TlsSettings {
            mode: mode.unwrap_or(TlsMode::Prefer),
            root_cert,
        },
    ))
}

impl TlsSettings {
    /// tokio-postgres's part: whether TLS is tried, and required.
    pub fn ssl_mode(&self) -> SslMode {
        match self.mode {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
        }
    }

    /// The connector that makes this module's checks.
    pub fn connector(&self) -> Result<MakeRustlsConnect, StoreError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = || -> Result<Arc<RootCertStore>, StoreError> {
            let mut roots = RootCertStore::empty();
            match &self.root_cert {
                Some(path) => {
                    let certs = CertificateDer::pem_file_iter(path)
                        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                        .map_err(|e| {
                            StoreError(format!("postgres sslrootcert {path}: cannot read: {e}"))
                        })?;
                    let (added, _) = roots.add_parsable_certificates(certs);
                    if added == 0 {
                        return Err(StoreError(format!(
                            "postgres sslrootcert {path}: no certificate in it"
                        )));
                    }
                }
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            Ok(Arc::new(roots))
        };
        let verifier: Arc<dyn ServerCertVerifier> = match self.mode {
            TlsMode::VerifyFull => chain_verifier(roots()?, &provider)?,
            TlsMode::VerifyCa => Arc::new(IgnoreHostName(chain_verifier(roots()?, &provider)?)),
            TlsMode::Require if self.root_cert.is_some() => {
                Arc::new(IgnoreHostName(chain_verifier(roots()?, &provider)?))
            }
            _ => Arc::new(Unchecked(provider.clone())),
        };
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreError(format!("postgres TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }
}

fn chain_verifier(
    roots: Arc<RootCertStore>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ServerCertVerifier>, StoreError> {
    WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map(|v| v as Arc<dyn ServerCertVerifier>)
        .map_err(|e| StoreError(format!("postgres TLS roots: {e}")))
}

/// `verify-ca`: the chain is checked, the name in the certificate is not.
#[derive(Debug)]
struct IgnoreHostName(Arc<dyn ServerCertVerifier>);

impl ServerCertVerifier for IgnoreHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require` without `sslrootcert`: encryption without checking who answers (as
/// libpq does). The handshake signatures are still verified.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_are_taken_out_of_both_url_forms() {
        let (rest, tls) = split_url(
            "postgres://u:p@db:5432/billpay?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u:p@db:5432/billpay?application_name=x");
        assert_eq!(tls.mode, TlsMode::VerifyFull);
        assert_eq!(tls.root_cert.as_deref(), Some("/etc/ca.pem"));
        assert_eq!(tls.ssl_mode(), SslMode::Require);

        let (rest, tls) = split_url("postgres://db/billpay?sslmode=disable").unwrap();
        assert_eq!(
            (rest.as_str(), tls.mode),
            ("postgres://db/billpay", TlsMode::Disable)
        );

        let (rest, tls) =
            split_url("host=db user=u sslmode=verify-ca sslrootcert=/ca.pem").unwrap();
        assert_eq!(rest, "host=db user=u");
        assert_eq!(tls.mode, TlsMode::VerifyCa);
        assert_eq!(tls.root_cert.as_deref(), Some("/ca.pem"));

        let (_, tls) = split_url("postgres://db/billpay").unwrap();
        assert_eq!(
            (tls.mode, tls.ssl_mode()),
            (TlsMode::Prefer, SslMode::Prefer)
        );
        let e = split_url("postgres://db/b?sslmode=allow-anything").unwrap_err();
        assert!(e.0.contains("sslmode"), "{e}");
    }

    #[test]
    fn a_missing_root_certificate_file_is_named() {
        let (_, tls) =
            split_url("postgres://db/b?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")
                .unwrap();
        let e = tls.connector().err().expect("refused");
        assert!(e.0.contains("/nonexistent/ca.pem"), "{e}");
    }
}
