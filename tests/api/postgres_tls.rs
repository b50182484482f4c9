//! PostgreSQL over TLS (API.md §12): `sslmode` and `sslrootcert` in
//! `SENDMUX_DATABASE_URL` are honoured. The test starts its own PostgreSQL server
//! (`initdb` + `pg_ctl`) that accepts TLS connections only, with a certificate for
//! `localhost` issued by a certificate authority the test makes, so it runs the same
//! whichever store the rest of the suite uses.

use crate::helpers::PASSWORD;
use sendmux::app::App;
use sendmux::config::Settings;
use serde_json::{Value, json};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use tokio_util::sync::CancellationToken;

/// A throwaway PostgreSQL server on loopback that refuses connections without TLS.
struct TlsPostgres {
    dir: tempfile::TempDir,
    port: u16,
    /// The authority that issued the server's certificate.
    ca: PathBuf,
    /// Another authority, which issued nothing the server presents.
    other_ca: PathBuf,
}

fn bin(tool: &str) -> PathBuf {
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let debian = std::fs::read_dir("/usr/lib/postgresql").ok().and_then(|versions| {
        versions.filter_map(|v| v.ok()).map(|v| v.path().join("bin")).filter(|b| b.join("initdb").exists()).max()
    });
    let dir = debian.or(from_pg_config).expect("PostgreSQL server binaries (initdb, pg_ctl)");
    dir.join(tool)
}

/// Runs a PostgreSQL tool; as root it runs as `postgres`, since the server refuses root.
fn run_pg(tool: &str, args: &[&str]) {
    let as_root = std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
    let tool = bin(tool);
    let mut cmd = if as_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&tool);
        c
    } else {
        Command::new(&tool)
    };
    let out = cmd.args(args).output().expect("run a PostgreSQL tool");
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}{}",
        tool.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn authority(name: &str) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().expect("CA key")).expect("CA certificate")
}

impl TlsPostgres {
    fn start() -> TlsPostgres {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let ca = authority("Sendmux test CA");
        let other = authority("Some other CA");
        // The server's certificate names `localhost` only: connecting to 127.0.0.1 with
        // verify-full must fail on the name.
        let key = rcgen::KeyPair::generate().expect("server key");
        let server = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .expect("server params")
            .signed_by(&key, &ca)
            .expect("server certificate");
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let as_root = std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
        if as_root {
            let status = Command::new("chown").arg("postgres:postgres").arg(dir.path()).status().expect("chown");
            assert!(status.success());
        }
        run_pg(
            "initdb",
            &["-D", data.to_str().expect("utf-8 path"), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"],
        );
        let write = |path: &Path, text: &str| {
            std::fs::write(path, text).expect("write server file");
            std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
            if as_root {
                let status = Command::new("chown").arg("postgres:postgres").arg(path).status().expect("chown");
                assert!(status.success());
            }
        };
        write(&data.join("server.crt"), &server.pem());
        write(&data.join("server.key"), &key.serialize_pem());
        // TLS connections only: anything else finds no matching line and is refused.
        write(&data.join("pg_hba.conf"), "hostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n");
        let options = format!(
            "-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c ssl=on \
             -c ssl_cert_file=server.crt -c ssl_key_file=server.key -c fsync=off",
            data.display()
        );
        let log = dir.path().join("postgres.log");
        run_pg(
            "pg_ctl",
            &[
                "-D",
                data.to_str().expect("utf-8 path"),
                "-l",
                log.to_str().expect("utf-8 path"),
                "-w",
                "-o",
                &options,
                "start",
            ],
        );
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, ca.pem()).expect("write CA");
        let other_ca = dir.path().join("other-ca.pem");
        std::fs::write(&other_ca, other.pem()).expect("write other CA");
        TlsPostgres { dir, port, ca: ca_path, other_ca }
    }

    fn url(&self, host: &str, query: &str) -> String {
        format!("postgres://postgres@{host}:{}/postgres?{query}", self.port)
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let as_root = std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
        let mut cmd = if as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin("pg_ctl"));
            c
        } else {
            Command::new(bin("pg_ctl"))
        };
        let _ = cmd.arg("-D").arg(&data).args(["-m", "immediate", "stop"]).output();
    }
}

fn settings(database_url: &str, data_dir: &Path) -> Settings {
    let env: Vec<(String, String)> = [
        ("SENDMUX_HTTP_ADDR", "127.0.0.1:0"),
        ("SENDMUX_SMTP_ADDR", "127.0.0.1:0"),
        ("SENDMUX_SIGNUP", "open"),
        ("SENDMUX_DNS_SERVER", "off"),
        ("SENDMUX_DATABASE_URL", database_url),
        ("SENDMUX_DATA_DIR", data_dir.to_str().expect("utf-8 path")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    Settings::from_sources(None, &env).expect("settings")
}

/// Why `App::build` refused to start, with its causes.
async fn refusal(database_url: &str) -> String {
    let data = tempfile::tempdir().expect("temp dir");
    match App::build(settings(database_url, data.path())).await {
        Ok(_) => panic!("started on {database_url}"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
async fn postgres_over_tls_verifies_the_server_certificate_and_its_name() {
    let pg = TlsPostgres::start();
    let ca = pg.ca.display().to_string();

    // verify-full with the right authority and the certificate's name: Sendmux starts,
    // its connections are encrypted, and the API works on it.
    let data = tempfile::tempdir().expect("temp dir");
    let url = pg.url("localhost", &format!("sslmode=verify-full&sslrootcert={ca}"));
    let app = App::build(settings(&url, data.path())).await.expect("starts over verified TLS");
    let state = app.state().clone();
    let base = format!("http://{}", app.http_addr());
    let stop = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(stop.clone()));
    let encrypted: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(state.store.pool())
        .await
        .expect("pg_stat_ssl");
    assert!(encrypted, "the store's connection is not encrypted");
    let client = reqwest::Client::new();
    let signup: Value = client
        .post(format!("{base}/api/v1/auth/signup"))
        .json(&json!({"email": "tls@example.com", "password": PASSWORD, "team_name": "Over TLS"}))
        .send()
        .await
        .expect("signup")
        .json()
        .await
        .expect("signup body");
    let token = signup["token"].as_str().expect("session token");
    let team: Value = client
        .get(format!("{base}/api/v1/team"))
        .bearer_auth(token)
        .send()
        .await
        .expect("team")
        .json()
        .await
        .expect("team body");
    assert_eq!(team["name"], "Over TLS");
    stop.cancel();
    server.await.expect("server task").expect("server stops cleanly");

    // The certificate names `localhost`, not 127.0.0.1: verify-full refuses the server.
    let wrong_name = refusal(&pg.url("127.0.0.1", &format!("sslmode=verify-full&sslrootcert={ca}"))).await;
    assert!(wrong_name.contains("connecting to PostgreSQL"), "{wrong_name}");
    assert!(wrong_name.to_lowercase().contains("certificate"), "{wrong_name}");

    // verify-ca checks the authority, not the name: 127.0.0.1 is accepted (same data
    // folder: it holds the key this database's secrets are sealed with).
    let by_address = pg.url("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}"));
    App::build(settings(&by_address, data.path())).await.expect("verify-ca ignores the host name");

    // verify-ca with an authority that did not issue the server's certificate.
    let other = pg.other_ca.display().to_string();
    let wrong_ca = refusal(&pg.url("localhost", &format!("sslmode=verify-ca&sslrootcert={other}"))).await;
    assert!(wrong_ca.to_lowercase().contains("certificate"), "{wrong_ca}");

    // The server takes TLS only, so sslmode=disable really connects without it.
    let plain = refusal(&pg.url("localhost", "sslmode=disable")).await;
    assert!(plain.contains("no encryption"), "{plain}");
}
