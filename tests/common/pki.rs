//! Test certificates: a CA with a server and a client certificate (rcgen).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all in `dir`.
pub fn make_pki(dir: &Path, prefix: &str) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("{prefix} test CA"));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let mut srv =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    srv.distinguished_name.push(DnType::CommonName, "berthd");
    srv.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let srv_key = KeyPair::generate().unwrap();
    let srv_cert = srv.signed_by(&srv_key, &issuer).unwrap();

    let mut cli = CertificateParams::new(Vec::<String>::new()).unwrap();
    cli.distinguished_name.push(DnType::CommonName, "client");
    cli.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cli_key = KeyPair::generate().unwrap();
    let cli_cert = cli.signed_by(&cli_key, &issuer).unwrap();

    Pki {
        ca: write(dir, &format!("{prefix}-ca.pem"), &ca_cert.pem()),
        server_cert: write(dir, &format!("{prefix}-server-cert.pem"), &srv_cert.pem()),
        server_key: write(
            dir,
            &format!("{prefix}-server-key.pem"),
            &srv_key.serialize_pem(),
        ),
        client_cert: write(dir, &format!("{prefix}-client-cert.pem"), &cli_cert.pem()),
        client_key: write(
            dir,
            &format!("{prefix}-client-key.pem"),
            &cli_key.serialize_pem(),
        ),
    }
}
