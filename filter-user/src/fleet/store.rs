//! Connecting to etcd: endpoints, TLS (a CA, a client certificate), etcd users, and one
//! request bounded by the timeout, with errors that say what to check.

use std::{
    future::Future,
    path::Path,
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
};

use etcd_client::{Certificate, Client, ConnectOptions, GetOptions, Identity, TlsOptions};

use super::{EtcdOptions, Fleet, FleetError, Keys, OptionProblem, PASSWORD_ENV};

impl Fleet {
    /// Connects to etcd and checks that it answers (a read of the pointer key), so that
    /// an unreachable cluster, a refused certificate or a wrong password is reported here,
    /// naming the endpoints. With several endpoints, the first that answers is used; when
    /// it stops answering, the next request connects again, to the next one that does.
    pub async fn connect(o: &EtcdOptions) -> Result<Fleet, FleetError> {
        let (client, endpoint) = connect_client(o).await?;
        Ok(Fleet {
            client,
            keys: Keys::new(&o.prefix),
            options: o.clone(),
            endpoint,
            lost: AtomicBool::new(false),
        })
    }

    /// The member this store talks to now.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Runs one request, bounded by the timeout; errors name `op` and `key`. A request
    /// that could not reach the member makes the next one connect again.
    pub(super) async fn call<T>(
        &self,
        op: &'static str,
        key: &str,
        request: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, FleetError> {
        match tokio::time::timeout(self.options.timeout, request).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => {
                if unreachable(&source) {
                    self.lost.store(true, Ordering::Relaxed);
                }
                Err(FleetError::Request {
                    op,
                    key: key.to_string(),
                    hint: hint(&source, &self.options),
                    source,
                })
            }
            Err(_) => {
                self.lost.store(true, Ordering::Relaxed);
                Err(FleetError::Timeout {
                    op,
                    key: format!("{key} at {}", self.endpoint),
                    after: self.options.timeout,
                })
            }
        }
    }

    /// The client, connected again first if the last request could not reach its member.
    pub(super) async fn client(&mut self) -> Result<Client, FleetError> {
        if self.lost.load(Ordering::Relaxed) {
            let (client, endpoint) = connect_client(&self.options).await?;
            self.client = client;
            self.endpoint = endpoint;
            self.lost.store(false, Ordering::Relaxed);
        }
        Ok(self.client.clone())
    }

    pub(super) fn options(&self) -> &EtcdOptions {
        &self.options
    }
}

/// Whether an error means the member could not be reached (rather than a refusal).
fn unreachable(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        // gRPC status codes (the gRPC spec): 2 UNKNOWN (a broken connection shows so),
        // 4 DEADLINE_EXCEEDED, 14 UNAVAILABLE.
        etcd_client::Error::GRpcStatus(s) => {
            matches!(i32::from(s.code()), 2 | 4 | 14) || s.message().contains("no leader")
        }
        _ => false,
    }
}

/// Successive connections start at successive endpoints, so that a member that
/// stopped answering is not the first one tried again.
static NEXT_ENDPOINT: AtomicUsize = AtomicUsize::new(0);

/// A client of the first endpoint that answers a read of the pointer key.
pub(super) async fn connect_client(o: &EtcdOptions) -> Result<(Client, String), FleetError> {
    let endpoints = endpoints(o)?;
    if endpoints.is_empty() {
        return Err(FleetError::NoEndpoints);
    }
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
    let probe_key = Keys::new(&o.prefix).current();
    let start = NEXT_ENDPOINT.fetch_add(1, Ordering::Relaxed);
    let mut first_error = None;
    for i in 0..endpoints.len() {
        let endpoint = &endpoints[(start + i) % endpoints.len()];
        match connect_one(endpoint, &options, &probe_key, o).await {
            Ok(client) => return Ok((client, endpoint.clone())),
            Err(e) => {
                log::debug!("etcd at {endpoint}: {e}");
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.expect("at least one endpoint was tried"))
}

async fn connect_one(
    endpoint: &str,
    options: &ConnectOptions,
    probe_key: &str,
    o: &EtcdOptions,
) -> Result<Client, FleetError> {
    let timed_out = || FleetError::Timeout {
        op: "connect to",
        key: endpoint.to_string(),
        after: o.timeout,
    };
    let failed = |source: etcd_client::Error| FleetError::Connect {
        endpoints: endpoint.to_string(),
        hint: hint(&source, o),
        source,
    };
    let connect = Client::connect([endpoint], Some(options.clone()));
    let client = tokio::time::timeout(o.timeout, connect)
        .await
        .map_err(|_| timed_out())?
        .map_err(failed)?;
    // The first request opens the connection: TLS and permissions show here.
    let mut kv = client.kv_client();
    let probe = kv.get(probe_key, Some(GetOptions::new().with_count_only()));
    tokio::time::timeout(o.timeout, probe)
        .await
        .map_err(|_| timed_out())?
        .map_err(failed)?;
    Ok(client)
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
    let tls_alert = text.contains("certificaterequired")
        || text.contains("certificate required")
        || text.contains("badcertificate")
        || text.contains("bad certificate")
        || text.contains("handshake");
    // Under TLS 1.3 the client finishes its handshake first: etcd's refusal of a missing
    // certificate may arrive as its alert, or only as the connection closing.
    let closed = text.contains("connection closed")
        || text.contains("canceled")
        || text.contains("connection reset")
        || text.contains("broken pipe");
    let hint = if tls_alert && o.cert.is_none() {
        " (etcd requires a client certificate: give --etcd-cert and --etcd-key)"
    } else if closed && o.cacert.is_some() && o.cert.is_none() {
        " (etcd closed the connection: if it requires a client certificate (--client-cert-auth), give --etcd-cert and --etcd-key)"
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
