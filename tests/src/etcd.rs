//! Real etcd (Debian's `etcd-server`) started by the tests: one member, or a cluster of
//! three, on loopback ports that were free, with data in a directory of its own; killed
//! and removed on drop. `etcdctl` (Debian's `etcd-client`) reads and writes keys behind
//! borderfilter's back.

use std::{
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use crate::poll;

/// How long a member may take to answer after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Certificates for an etcd that requires client certificates, made with openssl.
pub struct Certs {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// Signed by `ca`: accepted by etcd.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Certs {
    /// A CA, a server certificate for 127.0.0.1 and a client certificate, in `dir`.
    #[track_caller]
    pub fn make(dir: &Path) -> Self {
        fs::create_dir_all(dir).expect("creating the certificates' directory");
        let p = |name: &str| dir.join(name);
        let ext = p("ext.cnf");
        fs::write(
            &ext,
            "[server]\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n\
             [client]\nextendedKeyUsage=clientAuth\n",
        )
        .expect("writing the openssl extensions");
        let key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &key,
                &[
                    "-keyout",
                    s(&p("ca.key")),
                    "-out",
                    s(&p("ca.pem")),
                    "-days",
                    "2",
                    "-subj",
                    "/CN=borderfilter test CA",
                ],
            ]
            .concat(),
        );
        for (who, cn) in [("server", "127.0.0.1"), ("client", "publisher")] {
            let subj = format!("/CN={cn}");
            openssl(
                &[
                    &["req"][..],
                    &key,
                    &[
                        "-keyout",
                        s(&p(&format!("{who}.key"))),
                        "-out",
                        s(&p(&format!("{who}.csr"))),
                        "-subj",
                        &subj,
                    ],
                ]
                .concat(),
            );
            openssl(&[
                "x509",
                "-req",
                "-in",
                s(&p(&format!("{who}.csr"))),
                "-CA",
                s(&p("ca.pem")),
                "-CAkey",
                s(&p("ca.key")),
                "-CAcreateserial",
                "-out",
                s(&p(&format!("{who}.pem"))),
                "-days",
                "2",
                "-extfile",
                s(&ext),
                "-extensions",
                who,
            ]);
        }
        Certs {
            dir: dir.to_path_buf(),
            ca: p("ca.pem"),
            server_cert: p("server.pem"),
            server_key: p("server.key"),
            client_cert: p("client.pem"),
            client_key: p("client.key"),
        }
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

#[track_caller]
fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("running openssl (Debian package openssl; `cargo xtask setup`)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding a free loopback port")
        .port()
}

struct Member {
    name: String,
    client_url: String,
    peer_url: String,
    child: Option<Child>,
}

/// A running etcd: one member or a cluster. Killed, and its data removed, on drop.
pub struct Etcd {
    dir: PathBuf,
    members: Vec<Member>,
    /// The `--initial-cluster` value.
    cluster: String,
    tls: Option<TlsFiles>,
}

struct TlsFiles {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Etcd {
    /// One member on loopback.
    #[track_caller]
    pub fn start(test: &str) -> Self {
        Self::launch(test, 1, None)
    }

    /// Three members on loopback, forming one cluster.
    #[track_caller]
    pub fn cluster(test: &str) -> Self {
        Self::launch(test, 3, None)
    }

    /// One member serving clients over TLS and requiring a client certificate signed by
    /// the CA of `certs` (`--client-cert-auth`).
    #[track_caller]
    pub fn start_tls(test: &str, certs: &Certs) -> Self {
        Self::launch(
            test,
            1,
            Some(TlsFiles {
                ca: certs.ca.clone(),
                cert: certs.server_cert.clone(),
                key: certs.server_key.clone(),
            }),
        )
    }

    #[track_caller]
    fn launch(test: &str, n: usize, tls: Option<TlsFiles>) -> Self {
        let tag = crate::unique_tag(test);
        let dir = std::env::temp_dir().join(format!("borderfilter-etcd-{tag}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("creating etcd's directory");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_url: format!("{scheme}://127.0.0.1:{}", free_port()),
                peer_url: format!("http://127.0.0.1:{}", free_port()),
                child: None,
            })
            .collect();
        let cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        let mut etcd = Etcd {
            dir,
            members,
            cluster,
            tls,
        };
        for i in 0..n {
            etcd.spawn(i, "new");
        }
        etcd.wait_healthy();
        etcd
    }

    fn spawn(&mut self, i: usize, state: &str) {
        let m = &self.members[i];
        let data = self.dir.join(&m.name);
        let log = fs::File::create(self.dir.join(format!("{}.log", m.name)))
            .expect("creating etcd's log");
        let mut cmd = Command::new("etcd");
        cmd.args(["--name", &m.name])
            .args(["--data-dir", s(&data)])
            .args(["--listen-client-urls", &m.client_url])
            .args(["--advertise-client-urls", &m.client_url])
            .args(["--listen-peer-urls", &m.peer_url])
            .args(["--initial-advertise-peer-urls", &m.peer_url])
            .args(["--initial-cluster", &self.cluster])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", s(&self.dir)])
            // Short elections, so that fault tests see a new leader quickly.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("etcd's log"))
            .stderr(log);
        if let Some(t) = &self.tls {
            cmd.args(["--cert-file", s(&t.cert), "--key-file", s(&t.key)])
                .args(["--trusted-ca-file", s(&t.ca), "--client-cert-auth"]);
        }
        let child = cmd
            .spawn()
            .expect("starting etcd (Debian package etcd-server; `cargo xtask setup`)");
        self.members[i].child = Some(child);
    }

    /// Waits until every running member answers a health check.
    #[track_caller]
    pub fn wait_healthy(&self) {
        let running: Vec<&str> = self
            .members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| m.client_url.as_str())
            .collect();
        poll::until("etcd to answer", START_TIMEOUT, || {
            let out = self.etcdctl_at(&running.join(","), &["endpoint", "health"]);
            (out.status.success(), self.log_tail())
        });
    }

    /// The client endpoints, comma-separated, as `--etcd` takes them.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| m.client_url.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Kills member `i` (SIGKILL) and waits for it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts member `i` again on its data (after `kill`).
    #[track_caller]
    pub fn restart(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "member {i} is running");
        self.spawn(i, "existing");
    }

    /// The index of the member that is the leader now (`None`: no leader or no answer).
    pub fn leader(&self) -> Option<usize> {
        let out = self.etcdctl(&["endpoint", "status", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v.as_array()?.iter().find_map(|s| {
            let status = &s["Status"];
            let leader = status["leader"].as_u64()?;
            (status["header"]["member_id"].as_u64()? == leader)
                .then(|| s["Endpoint"].as_str())
                .flatten()
                .and_then(|e| self.members.iter().position(|m| m.client_url == e))
        })
    }

    /// The last lines of every member's log, for failure messages.
    pub fn log_tail(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                let text = fs::read_to_string(self.dir.join(format!("{}.log", m.name)))
                    .unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                format!(
                    "{}: {}",
                    m.name,
                    lines[lines.len().saturating_sub(3)..].join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The `--etcd-cacert/--etcd-cert/--etcd-key` a client of this etcd needs (empty
    /// without TLS), with `certs`' client certificate.
    pub fn client_args(&self, certs: Option<&Certs>) -> Vec<String> {
        match certs {
            Some(c) => vec![
                "--etcd-cacert".into(),
                s(&c.ca).into(),
                "--etcd-cert".into(),
                s(&c.client_cert).into(),
                "--etcd-key".into(),
                s(&c.client_key).into(),
            ],
            None => Vec::new(),
        }
    }

    /// Runs etcdctl (API v3) against every member.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        self.etcdctl_at(&self.endpoints(), args)
    }

    /// Runs etcdctl with `input` on its stdin (passwords: `--interactive=false`).
    pub fn etcdctl_input(&self, args: &[&str], input: &[u8]) -> Output {
        self.etcdctl_stdin(&self.endpoints(), args, Some(input))
    }

    fn etcdctl_at(&self, endpoints: &str, args: &[&str]) -> Output {
        self.etcdctl_stdin(endpoints, args, None)
    }

    fn etcdctl_stdin(&self, endpoints: &str, args: &[&str], input: Option<&[u8]>) -> Output {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .args(["--endpoints", endpoints, "--command-timeout", "5s"]);
        if let Some(t) = &self.tls {
            // The server's own certificate is signed by the CA and allows client use.
            cmd.args([
                "--cacert",
                s(&t.ca),
                "--cert",
                s(&t.cert),
                "--key",
                s(&t.key),
            ]);
        }
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .expect("running etcdctl (Debian package etcd-client; `cargo xtask setup`)");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("etcdctl's stdin");
            if let Some(bytes) = input {
                stdin.write_all(bytes).expect("writing to etcdctl");
            }
        }
        child.wait_with_output().expect("waiting for etcdctl")
    }

    /// Writes `value` (any bytes) at `key`, behind borderfilter's back.
    #[track_caller]
    pub fn put(&self, key: &str, value: &[u8]) {
        // Without a value argument, etcdctl reads it from stdin, byte for byte.
        let out = self.etcdctl_stdin(&self.endpoints(), &["put", key], Some(value));
        assert!(
            out.status.success(),
            "etcdctl put {key} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The value at `key` (`None`: absent). Text values only: etcdctl prints a newline
    /// after it.
    #[track_caller]
    pub fn get(&self, key: &str) -> Option<String> {
        let out = self.etcdctl(&["get", key, "-w", "json"]);
        assert!(out.status.success(), "etcdctl get {key}: {out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("etcdctl's JSON");
        v["kvs"].as_array().map(|_| {
            let out = self.etcdctl(&["get", key, "--print-value-only"]);
            let mut text = String::from_utf8(out.stdout).expect("a text value");
            text.pop();
            text
        })
    }

    /// Deletes `key`.
    #[track_caller]
    pub fn del(&self, key: &str) {
        let out = self.etcdctl(&["del", key]);
        assert!(out.status.success(), "etcdctl del {key}: {out:?}");
    }

    /// The keys under `prefix`, sorted.
    #[track_caller]
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let out = self.etcdctl(&["get", prefix, "--prefix", "--keys-only"]);
        assert!(
            out.status.success(),
            "etcdctl get --prefix {prefix}: {out:?}"
        );
        let mut keys: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        keys.sort();
        keys
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}
