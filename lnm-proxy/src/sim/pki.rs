//! A throw-away PKI: one CA and one server certificate for a set of names.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::SimError;

/// A test CA, a server certificate for some names (wildcards allowed), and the rustls
/// configurations of a server presenting it and of a client trusting the CA.
#[derive(Clone)]
pub struct TestPki {
    /// The CA certificate, PEM (for curl `--cacert`, openssl `-CAfile`).
    pub ca_pem: String,
    /// A server configuration presenting the certificate.
    pub server: Arc<rustls::ServerConfig>,
    /// A client configuration trusting the CA.
    pub client: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki").finish_non_exhaustive()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl TestPki {
    /// A TLS connector trusting the CA: `pki.connector().connect(server_name, tcp)`.
    pub fn connector(&self) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(self.client.clone())
    }

    /// A TLS acceptor presenting the certificate.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.server.clone())
    }

    /// A CA and a certificate for `names`.
    pub fn new(names: &[&str]) -> Result<TestPki, SimError> {
        let pki = |e: rcgen::Error| SimError::Pki(Box::new(e));
        let tls = |e: rustls::Error| SimError::Pki(Box::new(e));
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(pki)?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "lnm simulation CA");
        let ca_key = rcgen::KeyPair::generate().map_err(pki)?;
        let ca = ca_params.self_signed(&ca_key).map_err(pki)?;
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let leaf_key = rcgen::KeyPair::generate().map_err(pki)?;
        let leaf = rcgen::CertificateParams::new(names)
            .map_err(pki)?
            .signed_by(&leaf_key, &ca, &ca_key)
            .map_err(pki)?;

        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let chain: Vec<CertificateDer<'static>> = vec![leaf.der().clone(), ca.der().clone()];
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(tls)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(tls)?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).map_err(tls)?;
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(tls)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TestPki {
            ca_pem: ca.pem(),
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }

    /// A client configuration that sends no SNI.
    pub fn client_without_sni(&self) -> Arc<rustls::ClientConfig> {
        let mut config = (*self.client).clone();
        config.enable_sni = false;
        Arc::new(config)
    }
}
