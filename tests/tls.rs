//! The TCP socket with mutual TLS: the docker CLI with a client certificate from the right CA
//! gets in; without one, or with one from another CA, the handshake fails.

mod common;

use std::path::PathBuf;

use common::pki::make_pki;
use common::{free_port, stderr, stdout, Berthd};

fn docker_tls(b: &Berthd, port: u16, args: &[&str]) -> std::process::Output {
    let mut c = std::process::Command::new("docker");
    c.env("DOCKER_CONFIG", b.dir.path().join("docker-config"))
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_TLS_VERIFY")
        .env_remove("DOCKER_CERT_PATH")
        .arg("-H")
        .arg(format!("tcp://127.0.0.1:{port}"))
        .args(args);
    c.output().unwrap()
}

#[test]
fn mutual_tls_admits_only_clients_of_the_ca() {
    require!(
        common::is_root() && common::have_docker_cli(),
        "needs root and the docker CLI"
    );
    let certs = tempfile::tempdir().unwrap();
    let pki = make_pki(certs.path(), "good");
    let other = make_pki(certs.path(), "other");
    let port = free_port();
    let b = Berthd::start(&[
        "-H",
        &format!("tcp://127.0.0.1:{port}"),
        "--tlsverify",
        "--tlscacert",
        pki.ca.to_str().unwrap(),
        "--tlscert",
        pki.server_cert.to_str().unwrap(),
        "--tlskey",
        pki.server_key.to_str().unwrap(),
    ]);
    let s = |p: &PathBuf| p.to_str().unwrap().to_string();

    // The right client certificate.
    let out = docker_tls(
        &b,
        port,
        &[
            "--tlsverify",
            "--tlscacert",
            &s(&pki.ca),
            "--tlscert",
            &s(&pki.client_cert),
            "--tlskey",
            &s(&pki.client_key),
            "version",
            "--format",
            "{{.Server.APIVersion}}",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "1.51");

    // No client certificate: the server refuses the handshake.
    let out = docker_tls(
        &b,
        port,
        &["--tlsverify", "--tlscacert", &s(&pki.ca), "version"],
    );
    assert!(
        !out.status.success(),
        "a client without a certificate got in: {}",
        stdout(&out)
    );
    assert!(!stdout(&out).contains("Server: berth"));

    // A client certificate from another CA.
    let out = docker_tls(
        &b,
        port,
        &[
            "--tlsverify",
            "--tlscacert",
            &s(&pki.ca),
            "--tlscert",
            &s(&other.client_cert),
            "--tlskey",
            &s(&other.client_key),
            "version",
        ],
    );
    assert!(
        !out.status.success(),
        "a client of another CA got in: {}",
        stdout(&out)
    );
    assert!(!stdout(&out).contains("Server: berth"));

    // Plain HTTP on the TLS port gets nothing useful.
    let out = common::docker_cli(&format!("tcp://127.0.0.1:{port}"), b.dir.path())
        .args(["version", "--format", "{{.Server.APIVersion}}"])
        .output()
        .unwrap();
    assert!(!out.status.success());

    // The unix socket is unaffected.
    assert!(b.docker_out(&["info"]).status.success());
    // No warning about the TLS listener.
    let out = b.docker_out(&["info", "--format", "{{json .Warnings}}"]);
    assert!(
        !stdout(&out).contains("API is accessible"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn tls_without_client_verification_on_loopback() {
    require!(
        common::is_root() && common::have_docker_cli(),
        "needs root and the docker CLI"
    );
    let certs = tempfile::tempdir().unwrap();
    let pki = make_pki(certs.path(), "srv");
    let port = free_port();
    let b = Berthd::start(&[
        "-H",
        &format!("tcp://127.0.0.1:{port}"),
        "--tlsverify=false",
        "--tlscert",
        pki.server_cert.to_str().unwrap(),
        "--tlskey",
        pki.server_key.to_str().unwrap(),
    ]);
    // The client verifies the server; it presents no certificate.
    let out = docker_tls(
        &b,
        port,
        &[
            "--tlsverify",
            "--tlscacert",
            pki.ca.to_str().unwrap(),
            "version",
            "--format",
            "{{.Server.Os}}",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "linux");
    let out = b.docker_out(&["info", "--format", "{{json .Warnings}}"]);
    assert!(
        stdout(&out).contains(&format!(
            "API is accessible on https://127.0.0.1:{port} without TLS client verification"
        )),
        "{}",
        stdout(&out)
    );
}

#[test]
fn tlsverify_with_missing_certificates_fails_to_start() {
    require!(common::is_root(), "needs root");
    let mut b = Berthd::prepare();
    let port = free_port();
    let mut args = vec![
        "-H".to_string(),
        format!("tcp://127.0.0.1:{port}"),
        "--tlsverify".to_string(),
        "--tlscacert".to_string(),
        "/nonexistent/ca.pem".to_string(),
        "--tlscert".to_string(),
        "/nonexistent/cert.pem".to_string(),
        "--tlskey".to_string(),
        "/nonexistent/key.pem".to_string(),
    ];
    args.extend(b.base_args());
    b.spawn_args(&args);
    assert_eq!(
        b.wait_exit(std::time::Duration::from_secs(20)).code(),
        Some(1)
    );
    assert!(
        b.log_text().contains("/nonexistent/cert.pem"),
        "{}",
        b.log_text()
    );
}
