//! The local development PKI through the real binary: `idca init --local-pki`,
//! `idca issue`, `idca certs`, `idca trust`; certificates checked by OpenSSL, rustls,
//! Java's keytool and headless Chromium.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use instant_acme::{Account, Identifier, NewAccount, NewOrder};
use x509_parser::prelude::*;

use crate::certs::{leaf_sans, pem_blocks};

/// Runs `idca --data DATA ARGS` in `cwd`.
fn idca(cwd: &Path, data: &Path, args: &[&str]) -> Output {
    idca_env(cwd, data, args, &[])
}

fn idca_env(cwd: &Path, data: &Path, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_idca"));
    cmd.current_dir(cwd).arg("--data").arg(data).args(args).envs(crate::harness::store_env(data));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "stdout: {}\nstderr: {}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

fn failed(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure; stdout: {}", text(&out.stdout));
    text(&out.stderr)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A temporary directory with a local-PKI CA in `data/`.
fn local_pki() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = ok(&idca(dir.path(), &data, &["init", "--local-pki"]));
    assert!(out.contains("name-constrained to local names"), "{out}");
    (dir, data)
}

fn openssl(args: &[&str]) -> Output {
    Command::new("openssl").args(args).output().expect("the openssl command (Debian: openssl)")
}

/// `openssl verify` of a chain file against the data directory's root.
fn openssl_verify(data: &Path, chain: &Path, extra: &[&str]) -> Output {
    let root = data.join("root.pem");
    let mut args = vec!["verify", "-CAfile", root.to_str().unwrap(), "-untrusted", chain.to_str().unwrap()];
    args.extend(extra);
    args.push(chain.to_str().unwrap());
    openssl(&args)
}

/// A TLS server answering every request with a fixed page, from a cert/key pair.
async fn https_server(chain: &Path, key: &Path) -> u16 {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let certs: Vec<CertificateDer<'static>> =
        pem_blocks(&std::fs::read_to_string(chain).unwrap()).into_iter().map(CertificateDer::from).collect();
    let key_pem = std::fs::read_to_string(key).unwrap();
    let key_der = {
        use base64::Engine;
        let body: String = key_pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD.decode(body).unwrap()
    };
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der)))
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let body = "<html><body><p id=\"x\">hello from idca issue</p></body></html>";
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(reply.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

fn serial_of(chain: &Path) -> String {
    let der = pem_blocks(&std::fs::read_to_string(chain).unwrap()).remove(0);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    cert.raw_serial().iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn issued_server_certificate_verifies_with_openssl_and_rustls() {
    let (dir, data) = local_pki();
    let out = ok(&idca(dir.path(), &data, &["issue", "myapp.test", "localhost", "127.0.0.1"]));
    assert!(out.contains("myapp.test+2.pem") && out.contains("myapp.test+2-key.pem"), "{out}");
    let chain = dir.path().join("myapp.test+2.pem");
    let key = dir.path().join("myapp.test+2-key.pem");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let pem = std::fs::read_to_string(&chain).unwrap();
    assert_eq!(pem_blocks(&pem).len(), 2, "leaf and intermediate");
    assert_eq!(leaf_sans(&pem), vec!["127.0.0.1", "localhost", "myapp.test"]);

    // OpenSSL: the chain, the purpose, the host name and the IP.
    for extra in [
        &["-purpose", "sslserver", "-verify_hostname", "myapp.test"][..],
        &["-verify_hostname", "localhost"],
        &["-verify_ip", "127.0.0.1"],
    ] {
        let v = openssl_verify(&data, &chain, extra);
        assert!(v.status.success(), "{extra:?}: {}", text(&v.stderr));
    }
    let wrong = openssl_verify(&data, &chain, &["-verify_hostname", "other.test"]);
    assert!(!wrong.status.success(), "a name not in the certificate must not verify");

    // rustls (webpki) as a client, over a real TLS connection to a server using the files.
    let port = https_server(&chain, &key).await;
    let root = reqwest::Certificate::from_pem(&std::fs::read(data.join("root.pem")).unwrap()).unwrap();
    let http = reqwest::Client::builder()
        .tls_certs_only([root])
        .resolve("myapp.test", format!("127.0.0.1:{port}").parse().unwrap())
        .build()
        .unwrap();
    for url in [format!("https://myapp.test:{port}/"), format!("https://127.0.0.1:{port}/")] {
        let body = http.get(&url).send().await.unwrap().text().await.unwrap();
        assert!(body.contains("hello from idca issue"), "{url}: {body}");
    }
    // Without idca's root, the same server is refused.
    let plain = reqwest::Client::builder()
        .tls_certs_only([])
        .resolve("myapp.test", format!("127.0.0.1:{port}").parse().unwrap())
        .build()
        .unwrap();
    assert!(plain.get(format!("https://myapp.test:{port}/")).send().await.is_err());

    // Recorded like an ACME certificate: listed, with its origin.
    let serial = serial_of(&chain);
    let list = ok(&idca(dir.path(), &data, &["certs"]));
    let line = list.lines().find(|l| l.starts_with(&serial)).unwrap_or_else(|| panic!("{list}"));
    assert!(line.contains("valid") && line.contains("cli") && line.contains("myapp.test"), "{line}");
}

#[tokio::test]
async fn key_types_client_certificates_and_pkcs12() {
    let (dir, data) = local_pki();
    let d = dir.path();
    // Key types: generated P-384 and Ed25519, and an RSA key the user brings.
    ok(&idca(d, &data, &["issue", "--key-type", "p384", "p384.test"]));
    ok(&idca(d, &data, &["issue", "--key-type", "ed25519", "ed.test"]));
    let rsa = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/keys/rsa2048.pem");
    let out = ok(&idca(d, &data, &["issue", "--key", rsa.to_str().unwrap(), "rsa.test"]));
    assert!(out.contains("RSA 2048") && !d.join("rsa.test-key.pem").exists(), "{out}");
    for (file, alg) in [("p384.test", "id-ecPublicKey"), ("ed.test", "ED25519"), ("rsa.test", "rsaEncryption")] {
        let x = openssl(&["x509", "-noout", "-text", "-in", d.join(format!("{file}.pem")).to_str().unwrap()]);
        assert!(text(&x.stdout).contains(alg), "{file}: {}", text(&x.stdout));
        let v = openssl_verify(&data, &d.join(format!("{file}.pem")), &["-purpose", "sslserver"]);
        assert!(v.status.success(), "{file}: {}", text(&v.stderr));
    }
    // The RSA certificate's key is the one in the file.
    let cert_key = openssl(&["x509", "-noout", "-pubkey", "-in", d.join("rsa.test.pem").to_str().unwrap()]);
    let file_key = openssl(&["pkey", "-pubout", "-in", rsa.to_str().unwrap()]);
    assert_eq!(text(&cert_key.stdout), text(&file_key.stdout));

    // A client certificate: email and URI names, clientAuth only.
    ok(&idca(d, &data, &["issue", "--client", "alice@myapp.test", "spiffe://myapp.test/alice"]));
    let client = d.join("alice@myapp.test+1.pem");
    let v = openssl_verify(&data, &client, &["-purpose", "sslclient"]);
    assert!(v.status.success(), "{}", text(&v.stderr));
    let v = openssl_verify(&data, &client, &["-purpose", "sslserver"]);
    assert!(!v.status.success(), "a client certificate is not a server certificate");
    let pem = std::fs::read_to_string(&client).unwrap();
    assert_eq!(leaf_sans(&pem), vec!["RFC822Name(\"alice@myapp.test\")", "URI(\"spiffe://myapp.test/alice\")"]);

    // PKCS#12: OpenSSL opens it with the password (and only with it); keytool lists the chain.
    ok(&idca(d, &data, &["issue", "--pkcs12", "--p12-password", "s3cret pass", "p12.test"]));
    let p12 = d.join("p12.test.p12");
    assert!(!d.join("p12.test.pem").exists() && !d.join("p12.test-key.pem").exists());
    let dump = openssl(&["pkcs12", "-in", p12.to_str().unwrap(), "-passin", "pass:s3cret pass", "-nodes"]);
    let dumped = text(&dump.stdout);
    assert!(dump.status.success(), "{}", text(&dump.stderr));
    assert_eq!(pem_blocks(&dumped).len(), 2, "leaf and intermediate");
    assert!(dumped.contains("BEGIN PRIVATE KEY") && dumped.contains("subject=CN = p12.test"), "{dumped}");
    let wrong = openssl(&["pkcs12", "-in", p12.to_str().unwrap(), "-passin", "pass:wrong", "-nodes"]);
    assert!(!wrong.status.success());
    if let Ok(k) = Command::new("keytool")
        .args(["-list", "-v", "-storetype", "PKCS12", "-keystore", p12.to_str().unwrap(), "-storepass", "s3cret pass"])
        .output()
    {
        let listed = text(&k.stdout);
        assert!(k.status.success(), "keytool: {listed} {}", text(&k.stderr));
        assert!(listed.contains("PrivateKeyEntry") && listed.contains("Certificate chain length: 2"), "{listed}");
    } else {
        eprintln!("keytool not installed: PKCS#12 checked with OpenSSL only");
    }
    let list = ok(&idca(d, &data, &["certs"]));
    assert_eq!(list.lines().filter(|l| l.contains(" cli ")).count(), 5, "{list}");
    // Expiring soon: only the short-lived one.
    ok(&idca(d, &data, &["issue", "--days", "10", "soon.test"]));
    let soon = ok(&idca(d, &data, &["certs", "expiring", "--days", "30"]));
    assert_eq!(soon.lines().count(), 2, "header and one certificate: {soon}");
    assert!(soon.contains("soon.test"), "{soon}");
}

/// The CA material in the store of the data directory `data` (sled, or the test
/// database), opened as the CLI opens it, and closed again.
async fn stored_ca(data: &Path) -> idca::model::CaMaterial {
    let mut config = idca::config::Config::default();
    config.storage.data_dir = data.to_owned();
    if let Some((_, url)) = crate::harness::store_env(data).pop() {
        config.storage.url = url;
    }
    let store = idca::app::open_store(&config).await.unwrap();
    store.ca_material().await.unwrap().unwrap()
}

/// Signs a leaf for `name` with the CA's intermediate key directly, bypassing idca's
/// own check, as an attacker holding the key would.
async fn forge_leaf(data: &Path, name: &str) -> String {
    use rcgen::{CertificateParams, Issuer, KeyPair};
    let material = stored_ca(data).await;
    let key = KeyPair::try_from(material.intermediate_key.as_slice()).unwrap();
    let issuer =
        Issuer::from_ca_cert_der(&rustls::pki_types::CertificateDer::from(material.intermediate_cert.clone()), key)
            .unwrap();
    let params = CertificateParams::new(vec![name.to_owned()]).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = params.signed_by(&leaf_key, &issuer).unwrap();
    format!("{}{}", leaf.pem(), idca::ca::cert_pem(&material.intermediate_cert))
}

#[tokio::test]
async fn names_outside_the_constraints_are_refused_at_issuance_and_by_verifiers() {
    let (dir, data) = local_pki();
    let d = dir.path();
    let err = failed(&idca(d, &data, &["issue", "myapp.test", "example.com"]));
    assert!(err.contains("`example.com` is outside this CA's name constraints"), "{err}");
    let err = failed(&idca(d, &data, &["issue", "8.8.8.8"]));
    assert!(err.contains("8.8.8.8 is outside"), "{err}");
    // Bad input: a clear message, and nothing written or recorded.
    let err = failed(&idca(d, &data, &["issue", "bad_name!.test"]));
    assert!(err.contains("is not a DNS name"), "{err}");
    let err = failed(&idca(d, &data, &["issue", "alice@myapp.test"]));
    assert!(err.contains("add --client"), "{err}");
    let err = failed(&idca(d, &data, &["issue", "--days", "900", "myapp.test"]));
    assert!(err.contains("--days"), "{err}");
    let err = failed(&idca(d, &data, &["issue", "--cert-file", "/nonexistent/dir/x.pem", "myapp.test"]));
    assert!(err.contains("cannot write /nonexistent/dir/x.pem"), "{err}");
    let err = failed(&idca(d, &data, &["issue", "--key-file", "/nonexistent/k.pem", "myapp.test"]));
    assert!(err.contains("cannot write /nonexistent/k.pem"), "{err}");
    assert!(!d.join("myapp.test.pem").exists(), "the certificate of a failed issue must not be left behind");
    let leftovers: Vec<_> = std::fs::read_dir(d).unwrap().flatten().filter(|e| e.file_name() != "data").collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let list = ok(&idca(d, &data, &["certs"]));
    assert_eq!(list.lines().count(), 1, "only the header: {list}");
    // A missing store is an error, and is not created.
    let missing = d.join("nothing-here");
    let err = failed(&idca(d, &missing, &["issue", "myapp.test"]));
    assert!(err.contains("no CA in") && err.contains("idca init --local-pki"), "{err}");
    assert!(!missing.exists());
    // A second init on the same data directory is refused.
    let err = failed(&idca(d, &data, &["init", "--local-pki"]));
    assert!(err.contains("already holds a CA"), "{err}");

    // Verifiers enforce the constraints too: a leaf forged with the intermediate's key
    // for an outside name fails in OpenSSL and in rustls-webpki.
    let forged = forge_leaf(&data, "www.example.com").await;
    std::fs::write(d.join("forged.pem"), &forged).unwrap();
    let v = openssl_verify(&data, &d.join("forged.pem"), &[]);
    assert!(!v.status.success());
    assert!(text(&v.stdout).contains("permitted subtree violation") || text(&v.stderr).contains("subtree"));
    let inside = forge_leaf(&data, "ok.test").await;
    std::fs::write(d.join("inside.pem"), &inside).unwrap();
    assert!(openssl_verify(&data, &d.join("inside.pem"), &[]).status.success(), "the control must verify");
    let root_pem = std::fs::read_to_string(data.join("root.pem")).unwrap();
    let webpki = |chain: &str, name: &str| crate::chains::webpki(chain, &root_pem, name);
    assert!(webpki(&inside, "ok.test").is_ok());
    let e = webpki(&forged, "www.example.com").unwrap_err();
    assert!(format!("{e:?}").contains("NameConstraint"), "{e:?}");
}

#[tokio::test]
async fn acme_on_a_local_pki_refuses_outside_names_and_serves_the_crl_of_cli_certificates() {
    let (dir, data) = local_pki();
    ok(&idca(dir.path(), &data, &["issue", "revoke-me.test"]));
    let serial = serial_of(&dir.path().join("revoke-me.test.pem"));
    let err = failed(&idca(dir.path(), &data, &["certs", "revoke", "abc"]));
    assert!(err.contains("at least 8"), "{err}");
    let out = ok(&idca(dir.path(), &data, &["certs", "revoke", &serial[..12], "--reason", "4"]));
    assert!(out.contains(&serial), "{out}");
    let err = failed(&idca(dir.path(), &data, &["certs", "revoke", &serial]));
    assert!(err.contains("already revoked"), "{err}");
    let list = ok(&idca(dir.path(), &data, &["certs"]));
    assert!(list.lines().any(|l| l.starts_with(&serial) && l.contains("revoked")), "{list}");

    let data_dir = data.clone();
    let server = crate::harness::start_with(move |c| c.storage.data_dir = data_dir).await;
    // The revoked CLI certificate is in the CRL the server serves.
    let root = reqwest::Certificate::from_pem(server.root_pem().as_bytes()).unwrap();
    let http = reqwest::Client::builder().tls_certs_only([root]).build().unwrap();
    let crl_url = server.directory_url().replace("/directory", "/crl");
    let crl = http.get(&crl_url).send().await.unwrap().bytes().await.unwrap();
    let (_, crl) = CertificateRevocationList::from_der(&crl).unwrap();
    let listed: Vec<String> =
        crl.iter_revoked_certificates().map(|r| r.raw_serial().iter().map(|b| format!("{b:02x}")).collect()).collect();
    assert!(listed.contains(&serial), "{listed:?}");

    let (account, _) = Account::builder_with_root(&server.root_path)
        .unwrap()
        .create(
            &NewAccount { contact: &[], terms_of_service_agreed: true, only_return_existing: false },
            server.directory_url(),
            None,
        )
        .await
        .unwrap();
    let Err(err) = account.new_order(&NewOrder::new(&[Identifier::Dns("www.example.com".into())])).await else {
        panic!("an outside name was ordered")
    };
    let e = format!("{err:?}");
    assert!(e.contains("rejectedIdentifier") && e.contains("name constraints"), "{e}");
    let Err(err) = account.new_order(&NewOrder::new(&[Identifier::Ip("8.8.8.8".parse().unwrap())])).await else {
        panic!("an outside IP was ordered")
    };
    assert!(format!("{err:?}").contains("rejectedIdentifier"), "{err:?}");
    // A local name goes through the whole flow.
    let mut order = account.new_order(&NewOrder::new(&[Identifier::Dns("app.test".into())])).await.unwrap();
    let chain = crate::harness::finish_with_http01(&server, &mut order).await;
    assert_eq!(leaf_sans(&chain), vec!["app.test"]);
    server.stop().await;
}

#[test]
fn offline_root_key_stays_out_of_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = dir.path().join("root-key.pem");
    ok(&idca(dir.path(), &data, &["init", "--local-pki", "--offline-root-key", key.to_str().unwrap()]));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // The written key is the root's.
    let from_key = openssl(&["pkey", "-pubout", "-in", key.to_str().unwrap()]);
    let from_cert = openssl(&["x509", "-noout", "-pubkey", "-in", data.join("root.pem").to_str().unwrap()]);
    assert_eq!(text(&from_key.stdout), text(&from_cert.stdout));
    {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let material = rt.block_on(stored_ca(&data));
        assert!(material.root_key.is_empty() && !material.intermediate_key.is_empty());
    }
    // The intermediate still issues.
    ok(&idca(dir.path(), &data, &["issue", "svc.internal"]));
    assert!(openssl_verify(&data, &dir.path().join("svc.internal.pem"), &[]).status.success());
}

fn certutil(args: &[&str]) -> Output {
    Command::new("certutil").args(args).output().expect("the certutil command (Debian: libnss3-tools)")
}

/// Every file in a directory with its contents.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .collect();
    files.sort();
    files
}

#[test]
fn trust_install_then_uninstall_leaves_the_stores_as_they_were() {
    let (dir, data) = local_pki();
    let d = dir.path();
    // A system anchors directory and an NSS database that already hold another root.
    let system = d.join("anchors");
    std::fs::create_dir(&system).unwrap();
    let other = d.join("other");
    ok(&idca(d, &other, &["init"]));
    std::fs::copy(other.join("root.pem"), system.join("someone-else.crt")).unwrap();
    let nss = d.join("nssdb");
    std::fs::create_dir(&nss).unwrap();
    let db = format!("sql:{}", nss.display());
    assert!(certutil(&["-N", "-d", &db, "--empty-password"]).status.success());
    let other_root = other.join("root.pem");
    assert!(
        certutil(&["-A", "-d", &db, "-t", "C,,", "-n", "someone else", "-i", other_root.to_str().unwrap()])
            .status
            .success()
    );
    let before = (snapshot(&system), text(&certutil(&["-L", "-d", &db]).stdout));
    let flags =
        ["--system-dir", system.to_str().unwrap(), "--update-command", "none", "--nss-db", nss.to_str().unwrap()];
    let with = |cmd: &'static str| -> Vec<&str> { ["trust", cmd].into_iter().chain(flags).collect() };

    let status = ok(&idca(d, &data, &with("status")));
    assert_eq!(status.matches(": not trusted").count(), 2, "{status}");
    let out = ok(&idca(d, &data, &with("install")));
    assert!(out.contains("system store: added") && out.contains("NSS") && out.contains("added"), "{out}");
    assert!(out.contains("keytool -importcert") && out.contains("NODE_EXTRA_CA_CERTS="), "{out}");
    let installed: Vec<String> = snapshot(&system).into_iter().map(|(n, _)| n).collect();
    assert_eq!(installed.len(), 2);
    let ours = installed.iter().find(|n| n.starts_with("idca-root-")).unwrap();
    assert_eq!(
        std::fs::read_to_string(system.join(ours)).unwrap(),
        std::fs::read_to_string(data.join("root.pem")).unwrap()
    );
    let listed = text(&certutil(&["-L", "-d", &db]).stdout);
    let nick = ours.trim_end_matches(".crt");
    assert!(listed.lines().any(|l| l.starts_with(nick) && l.trim_end().ends_with("C,,")), "{listed}");
    let status = ok(&idca(d, &data, &with("status")));
    assert_eq!(status.matches(": trusted").count(), 2, "{status}");
    // Idempotent.
    let again = ok(&idca(d, &data, &with("install")));
    assert_eq!(again.matches("already trusted").count(), 2, "{again}");

    ok(&idca(d, &data, &with("uninstall")));
    let after = (snapshot(&system), text(&certutil(&["-L", "-d", &db]).stdout));
    assert_eq!(after, before, "uninstall restores both stores");

    // An unconstrained root is refused unless forced, and nothing changes.
    let err = failed(&idca(d, &other, &with("install")));
    assert!(err.contains("not name-constrained") && err.contains("--force"), "{err}");
    assert_eq!((snapshot(&system), text(&certutil(&["-L", "-d", &db]).stdout)), before);
}

/// Runs headless Chromium on `url` with `home` as HOME (whose ~/.pki/nssdb it reads)
/// and returns the page it rendered.
fn chromium_dump(home: &Path, url: &str, port: u16) -> String {
    let profile = home.join("profile");
    let out = Command::new("chromium")
        .env("HOME", home)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--timeout=15000",
            &format!("--host-resolver-rules=MAP myapp.test:{port} 127.0.0.1:{port}"),
            &format!("--user-data-dir={}", profile.display()),
            "--dump-dom",
            url,
        ])
        .output()
        .expect("Debian's chromium (apt-get install chromium)");
    text(&out.stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_loads_an_issued_certificate_once_trust_install_filled_its_nss_db() {
    let (dir, data) = local_pki();
    let d = dir.path();
    ok(&idca(d, &data, &["issue", "myapp.test", "localhost", "127.0.0.1"]));
    let port = https_server(&d.join("myapp.test+2.pem"), &d.join("myapp.test+2-key.pem")).await;
    let url = format!("https://myapp.test:{port}/");
    for who in ["trusting", "control"] {
        let home = d.join(who);
        std::fs::create_dir_all(home.join(".pki/nssdb")).unwrap();
        let db = format!("sql:{}", home.join(".pki/nssdb").display());
        assert!(certutil(&["-N", "-d", &db, "--empty-password"]).status.success());
    }
    // `trust install` finds ~/.pki/nssdb by itself (HOME points at the test's).
    let home = d.join("trusting");
    let out = ok(&idca_env(d, &data, &["trust", "install", "--no-system"], &[("HOME", &home)]));
    assert!(out.contains(".pki/nssdb: added"), "{out}");
    let trusted = tokio::task::spawn_blocking({
        let (home, url) = (home.clone(), url.clone());
        move || chromium_dump(&home, &url, port)
    })
    .await
    .unwrap();
    assert!(trusted.contains("hello from idca issue"), "Chromium did not load the page: {trusted}");
    // The control: the same page with an NSS database that lacks the root shows no page.
    let control = tokio::task::spawn_blocking({
        let home = d.join("control");
        move || chromium_dump(&home, &url, port)
    })
    .await
    .unwrap();
    assert!(!control.contains("hello from idca issue"), "an untrusted root must not load: {control}");
}

#[tokio::test]
async fn root_rotation_prints_a_plan_then_retires_the_old_ca() {
    let (dir, data) = local_pki();
    let d = dir.path();
    ok(&idca(d, &data, &["issue", "old.test"]));
    ok(&idca(d, &data, &["issue", "--client", "bob@old.test"]));
    let old_root = std::fs::read_to_string(data.join("root.pem")).unwrap();
    let system = d.join("anchors");
    std::fs::create_dir(&system).unwrap();
    let flags = ["--system-dir", system.to_str().unwrap(), "--update-command", "none", "--no-nss"];
    let trust =
        |cmd: &[&'static str]| -> Vec<&str> { ["trust"].iter().chain(cmd).chain(flags.iter()).copied().collect() };
    ok(&idca(d, &data, &trust(&["install"])));

    // The plan changes nothing.
    let plan = ok(&idca(d, &data, &["rotate-root"]));
    assert!(plan.contains("2 certificates still valid (0 through ACME, 2 with idca issue)"), "{plan}");
    assert!(plan.contains("issue old.test") && plan.contains("issue --client bob@old.test"), "{plan}");
    assert!(plan.contains("trust uninstall --retired"), "{plan}");
    assert_eq!(std::fs::read_to_string(data.join("root.pem")).unwrap(), old_root);
    assert!(!data.join("retired-roots.pem").exists());

    let key = d.join("new-root-key.pem");
    let done = ok(&idca(d, &data, &["rotate-root", "--apply", "--offline-root-key", key.to_str().unwrap()]));
    assert!(done.contains("Done: the new root is"), "{done}");
    let new_root = std::fs::read_to_string(data.join("root.pem")).unwrap();
    assert_ne!(new_root, old_root);
    assert_eq!(std::fs::read_to_string(data.join("retired-roots.pem")).unwrap(), old_root);
    let from_key = openssl(&["pkey", "-pubout", "-in", key.to_str().unwrap()]);
    let from_cert = openssl(&["x509", "-noout", "-pubkey", "-in", data.join("root.pem").to_str().unwrap()]);
    assert_eq!(text(&from_key.stdout), text(&from_cert.stdout), "the offline key is the new root's");

    // The old certificates stay listed; new ones chain to the new root, under the same constraints.
    let list = ok(&idca(d, &data, &["certs"]));
    assert!(list.contains("old.test") && list.contains("bob@old.test"), "{list}");
    ok(&idca(d, &data, &["issue", "new.test"]));
    assert!(openssl_verify(&data, &d.join("new.test.pem"), &[]).status.success());
    assert!(!openssl_verify(&data, &d.join("old.test.pem"), &[]).status.success(), "old chain, new root");
    let err = failed(&idca(d, &data, &["issue", "example.com"]));
    assert!(err.contains("outside this CA's name constraints"), "{err}");

    // Trust: the new root beside the old, then the old one removed.
    ok(&idca(d, &data, &trust(&["install"])));
    assert_eq!(snapshot(&system).len(), 2);
    let out = ok(&idca(d, &data, &trust(&["uninstall", "--retired"])));
    assert!(out.contains("(retired)") && !out.contains("(current)"), "{out}");
    let left = snapshot(&system);
    assert_eq!(left.len(), 1);
    assert_eq!(String::from_utf8(left[0].1.clone()).unwrap(), new_root);

    // A retired CA's leaves stay revocable: each leaf's CRL is signed by its own issuer.
    let old_serial = serial_of(&d.join("old.test.pem"));
    ok(&idca(d, &data, &["certs", "revoke", &old_serial]));
    let data_dir = data.clone();
    let server = crate::harness::start_with(move |c| c.storage.data_dir = data_dir).await;
    let root = reqwest::Certificate::from_pem(server.root_pem().as_bytes()).unwrap();
    let http = reqwest::Client::builder().tls_certs_only([root]).build().unwrap();
    for (leaf, revoked) in [("old.test.pem", true), ("new.test.pem", false)] {
        let chain = pem_blocks(&std::fs::read_to_string(d.join(leaf)).unwrap());
        let (_, cert) = X509Certificate::from_der(&chain[0]).unwrap();
        let (_, issuer) = X509Certificate::from_der(&chain[1]).unwrap();
        let dp = cert
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::CRLDistributionPoints(p) => Some(format!("{p:?}")),
                _ => None,
            })
            .unwrap();
        let url = dp.split("URI(\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
        // The leaf names the server's public URL; ask the test server at that path.
        let path = url.split_once("/crl").unwrap().1;
        let base = server.directory_url().replace("/directory", "/crl");
        let der = http.get(format!("{base}{path}")).send().await.unwrap().bytes().await.unwrap();
        let (_, crl) = CertificateRevocationList::from_der(&der).unwrap();
        crl.verify_signature(issuer.public_key())
            .unwrap_or_else(|e| panic!("{leaf}: CRL not signed by its issuer: {e:?}"));
        let listed = crl.iter_revoked_certificates().any(|r| r.raw_serial() == cert.raw_serial());
        assert_eq!(listed, revoked, "{leaf}");
    }
    server.stop().await;
}
