//! Connecting to etcd: endpoints, TLS (a CA, a client certificate), etcd users, and one
//! request bounded by the timeout, with errors that say what to check.

use std::{future::Future, path::Path, time::Duration};

use etcd_client::{Certificate, Client, ConnectOptions, GetOptions, Identity, TlsOptions};

use super::{EtcdOptions, Fleet, FleetError, Keys, OptionProblem, PASSWORD_ENV};

impl Fleet {
    /// Connects to etcd and checks that it answers (a read of the pointer key), so that
    /// an unreachable cluster, a refused certificate or a wrong password is reported here,
    /// naming the endpoints.
    pub async fn connect(o: &EtcdOptions) -> Result<Fleet, FleetError> {
        let endpoints = endpoints(o)?;
        if endpoints.is_empty() {
            return Err(FleetError::NoEndpoints);
        }
        let shown = endpoints.join(",");
        let mut options = ConnectOptions::new()
            .with_connect_timeout(o.timeout)
            // Notices a dead member under a long watch or keep-alive stream.
            .with_keep_alive(o.timeout, o.timeout)
            // A member cut off from the others refuses, instead of serving stale reads.
            .with_require_leader(true);
        if let Some(tls) = tls(o)? {
            options = options.with_tls(tls);
        }
        if let Some(user) = &o.user {
            options = options.with_user(user, password(o, user)?);
        } else if o.password_file.is_some() {
            return Err(FleetError::Options(OptionProblem::PasswordWithoutUser));
        }
        let connect = Client::connect(&endpoints, Some(options));
        let client = match tokio::time::timeout(o.timeout, connect).await {
            Ok(Ok(c)) => c,
            Ok(Err(source)) => {
                return Err(FleetError::Connect {
                    hint: hint(&source, o),
                    endpoints: shown,
                    source,
                })
            }
            Err(_) => {
                return Err(FleetError::Timeout {
                    op: "connect to",
                    key: shown,
                    after: o.timeout,
                })
            }
        };
        let mut fleet = Fleet {
            client,
            keys: Keys::new(&o.prefix),
            timeout: o.timeout,
            endpoints: shown,
        };
        // The first request opens the connection: TLS and permissions show here.
        let key = fleet.keys.current();
        let mut kv = fleet.client.kv_client();
        let probe = kv.get(key.clone(), Some(GetOptions::new().with_count_only()));
        match tokio::time::timeout(o.timeout, probe).await {
            Ok(Ok(_)) => Ok(fleet),
            Ok(Err(source)) => Err(FleetError::Connect {
                hint: hint(&source, o),
                endpoints: std::mem::take(&mut fleet.endpoints),
                source,
            }),
            Err(_) => Err(FleetError::Timeout {
                op: "read",
                key: format!("{key} at {}", fleet.endpoints),
                after: o.timeout,
            }),
        }
    }

    /// Runs one request, bounded by the timeout; errors name `op` and `key`.
    pub(super) async fn call<T>(
        &self,
        op: &'static str,
        key: &str,
        request: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, FleetError> {
        match tokio::time::timeout(self.timeout, request).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => Err(FleetError::Request {
                op,
                key: key.to_string(),
                hint: hint(&source, &EtcdOptions::default()),
                source,
            }),
            Err(_) => Err(FleetError::Timeout {
                op,
                key: key.to_string(),
                after: self.timeout,
            }),
        }
    }

    pub(super) fn client(&self) -> etcd_client::Client {
        self.client.clone()
    }

    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// The endpoints as URLs: `host:port` becomes https when TLS options are given.
fn endpoints(o: &EtcdOptions) -> Result<Vec<String>, FleetError> {
    let tls = o.cacert.is_some() || o.cert.is_some();
    let mut out = Vec::new();
    for e in o.endpoints.iter().flat_map(|e| e.split(',')) {
        let e = e.trim();
        if e.is_empty() {
            continue;
        }
        if e.starts_with("https://") && o.cacert.is_none() {
            return Err(FleetError::Options(OptionProblem::HttpsWithoutCa {
                endpoint: e.to_string(),
            }));
        }
        if e.starts_with("http://") && tls {
            return Err(FleetError::Options(OptionProblem::HttpWithTls {
                endpoint: e.to_string(),
            }));
        }
        out.push(if e.contains("://") {
            e.to_string()
        } else if tls {
            format!("https://{e}")
        } else {
            format!("http://{e}")
        });
    }
    Ok(out)
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, FleetError> {
    std::fs::read(path).map_err(|source| FleetError::ReadOption {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn tls(o: &EtcdOptions) -> Result<Option<TlsOptions>, FleetError> {
    let identity = match (&o.cert, &o.key) {
        (Some(cert), Some(key)) => Some(Identity::from_pem(
            read("client certificate (--etcd-cert)", cert)?,
            read("client key (--etcd-key)", key)?,
        )),
        (None, None) => None,
        _ => return Err(FleetError::Options(OptionProblem::CertWithoutKey)),
    };
    if o.cacert.is_none() && identity.is_none() {
        return Ok(None);
    }
    let mut tls = TlsOptions::new();
    if let Some(ca) = &o.cacert {
        tls = tls.ca_certificate(Certificate::from_pem(read(
            "CA certificate (--etcd-cacert)",
            ca,
        )?));
    }
    if let Some(identity) = identity {
        tls = tls.identity(identity);
    }
    Ok(Some(tls))
}

fn password(o: &EtcdOptions, user: &str) -> Result<String, FleetError> {
    let text = match &o.password_file {
        Some(path) => String::from_utf8_lossy(&read("password file (--etcd-password-file)", path)?)
            .into_owned(),
        None => std::env::var(PASSWORD_ENV).map_err(|_| {
            FleetError::Options(OptionProblem::NoPassword {
                user: user.to_string(),
            })
        })?,
    };
    // A file written with `echo` ends with a newline that is not part of the password.
    Ok(text.trim_end_matches(['\r', '\n']).to_string())
}

/// What to check, from what the error says: etcd-client reports TLS and permission
/// problems as gRPC statuses and transport errors whose text is all there is.
fn hint(e: &etcd_client::Error, o: &EtcdOptions) -> String {
    let mut text = format!("{e:?}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(" {s} {s:?}"));
        source = s.source();
    }
    let text = text.to_lowercase();
    let hint = if text.contains("certificaterequired")
        || text.contains("certificate required")
        || (text.contains("handshake") && o.cert.is_none() && o.cacert.is_some())
    {
        " (etcd requires a client certificate: give --etcd-cert and --etcd-key)"
    } else if text.contains("badcertificate")
        || text.contains("unknownca")
        || text.contains("bad certificate")
        || text.contains("unknown ca")
    {
        " (etcd did not accept the client certificate: is it signed by the CA etcd trusts (its --trusted-ca-file)?)"
    } else if text.contains("invalid peer certificate") || text.contains("unknownissuer") {
        " (etcd's certificate is not signed by the --etcd-cacert given, or does not name the endpoint's address)"
    } else if text.contains("authentication failed") {
        " (wrong etcd user or password)"
    } else if text.contains("permission denied") {
        " (the etcd user's roles do not allow this (see docs/fleet.md, Security))"
    } else if text.contains("user name is empty") || text.contains("invalid auth token") {
        " (etcd has authentication enabled: give --etcd-user and a password)"
    } else if text.contains("connection refused") {
        " (nothing listens there: is etcd running?)"
    } else if text.contains("no leader") {
        " (the etcd cluster has no leader (a majority of its members is down or cut off))"
    } else if text.contains("request is too large") || text.contains("too large") {
        " (the value exceeds etcd's request limit (--max-request-bytes))"
    } else {
        ""
    };
    hint.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_get_a_scheme_from_the_tls_options() {
        let mut o = EtcdOptions {
            endpoints: vec!["127.0.0.1:2379, 127.0.0.2:2379".into(), "http://h:1".into()],
            ..EtcdOptions::default()
        };
        assert_eq!(
            endpoints(&o).unwrap(),
            [
                "http://127.0.0.1:2379",
                "http://127.0.0.2:2379",
                "http://h:1"
            ]
        );
        o.cacert = Some("/ca.pem".into());
        assert!(matches!(
            endpoints(&o),
            Err(FleetError::Options(OptionProblem::HttpWithTls { .. }))
        ));
        o.endpoints = vec!["h:1".into()];
        assert_eq!(endpoints(&o).unwrap(), ["https://h:1"]);
        o.cacert = None;
        o.endpoints = vec!["https://h:1".into()];
        assert!(matches!(
            endpoints(&o),
            Err(FleetError::Options(OptionProblem::HttpsWithoutCa { .. }))
        ));
    }
}
