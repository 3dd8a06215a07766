//! The control socket: one request per connection, read with a size limit and a
//! deadline, checked against the peer's credentials, answered with one line. A client
//! that sends garbage, too much, or half a request and then nothing gets an error or is
//! dropped, without holding up anyone else.

use std::{path::Path, sync::Arc};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::mpsc,
};

use super::{access, audit::Origin, engine::Outcome, Shared};
use crate::{
    control::{Request, Response, MAX_REQUEST_BYTES, REQUEST_TIMEOUT},
    paths,
};

/// How long to wait after a failed accept before the next.
const ACCEPT_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// Binds the control socket at `path`, refusing to steal it from a running daemon.
pub fn bind(path: &Path, public_read: bool) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!(
                "another daemon is already listening on {}; give this one its own --socket and --pin-dir",
                path.display()
            );
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    access::secure_socket(path, paths::ADMIN_GROUP, public_read)?;
    Ok(listener)
}

/// Serves connections until the process ends. `stop` is told when a request (detach)
/// asks the daemon to exit.
pub async fn serve(listener: UnixListener, engine: Shared, stop: mpsc::Sender<()>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let engine = Arc::clone(&engine);
                let stop = stop.clone();
                tokio::spawn(async move {
                    if let Err(e) = handle(stream, engine, stop).await {
                        log::debug!("control connection: {e}");
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors, every accept fails at once until a connection
                // closes: pause rather than spin and flood the log.
                log::warn!("accepting a control connection: {e}");
                tokio::time::sleep(ACCEPT_PAUSE).await;
            }
        }
    }
}

async fn respond(stream: &mut UnixStream, response: &Response) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(response).expect("responses always serialize");
    line.push(b'\n');
    stream.write_all(&line).await?;
    stream.shutdown().await
}

/// Reads one line of at most `MAX_REQUEST_BYTES`.
async fn read_request(stream: &mut UnixStream) -> Result<String, Response> {
    let mut line = Vec::new();
    let mut reader = BufReader::new(stream).take(MAX_REQUEST_BYTES as u64 + 1);
    match tokio::time::timeout(REQUEST_TIMEOUT, reader.read_until(b'\n', &mut line)).await {
        Err(_) => {
            return Err(Response::error(format!(
                "no complete request within {} s",
                REQUEST_TIMEOUT.as_secs()
            )))
        }
        Ok(Err(e)) => return Err(Response::error(format!("reading the request: {e}"))),
        Ok(Ok(_)) => {}
    }
    if line.len() > MAX_REQUEST_BYTES {
        return Err(Response::error(format!(
            "request larger than {MAX_REQUEST_BYTES} bytes"
        )));
    }
    String::from_utf8(line).map_err(|_| Response::error("the request is not UTF-8"))
}

async fn handle(
    mut stream: UnixStream,
    engine: Shared,
    stop: mpsc::Sender<()>,
) -> std::io::Result<()> {
    let cred = stream.peer_cred()?;
    let peer = access::Peer {
        uid: cred.uid(),
        gid: cred.gid(),
        pid: cred.pid(),
        groups: access::peer_groups(std::os::fd::AsRawFd::as_raw_fd(&stream)),
    };
    let text = match read_request(&mut stream).await {
        Ok(t) => t,
        Err(response) => return respond(&mut stream, &response).await,
    };
    let request = match Request::decode(text.as_bytes()) {
        Ok(r) => r,
        Err(message) => return respond(&mut stream, &Response::error(message)).await,
    };
    if request.changes_state() && !access::may_change(&peer, paths::ADMIN_GROUP) {
        log::warn!(
            "refused {} from uid {} (pid {:?}): not root and not in group {}",
            request.name(),
            peer.uid,
            peer.pid,
            paths::ADMIN_GROUP
        );
        let response = Response::error(format!(
            "not allowed: `{}` changes the filter, which needs root or membership of group `{}` (you are uid {})",
            request.name(), paths::ADMIN_GROUP, peer.uid
        ));
        return respond(&mut stream, &response).await;
    }
    let detach = matches!(request, Request::Detach);
    let response = tokio::task::spawn_blocking(move || {
        let mut engine = engine
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        dispatch(&mut engine, request, peer)
    })
    .await
    .unwrap_or_else(|e| Response::error(format!("internal error: {e}")));
    let stopping = detach && response.ok;
    respond(&mut stream, &response).await?;
    if stopping {
        let _ = stop.send(()).await;
    }
    Ok(())
}

fn outcome(o: Outcome) -> Response {
    match o {
        Outcome::Applied(r) | Outcome::Unchanged(r) => Response::ok(r),
        Outcome::Refused(r) => Response::error(r.problems.join("\n")).with_details(r),
    }
}

fn dispatch(engine: &mut super::engine::Engine, request: Request, peer: access::Peer) -> Response {
    let pid = peer.pid.unwrap_or(0);
    match request {
        Request::Status => Response::ok(engine.status()),
        Request::OrdersList => Response::ok(engine.orders()),
        Request::OrdersShow { id } => match engine.order(&id) {
            Some(o) => Response::ok(o),
            None => Response::error(format!("no order with id {id:?} in the list in force")),
        },
        Request::Check { address } => match address.trim().parse() {
            Ok(addr) => match engine.check(addr) {
                Some(r) => Response::ok(r),
                None => {
                    Response::error("no order list is in force yet (see `borderfilter status`)")
                }
            },
            Err(_) => Response::error(format!("{address:?} is not an IPv4 or IPv6 address")),
        },
        Request::Stats => Response::ok(engine.stats()),
        Request::Audit { since, order } => match engine.audit(since.as_deref(), order.as_deref()) {
            Ok(records) => Response::ok(records),
            Err(e) => Response::error(e),
        },
        Request::AuditPrefix { prefix, since } => match prefix.trim().parse() {
            Ok(query) => match engine.audit_prefix(query, since.as_deref()) {
                Ok(history) => Response::ok(history),
                Err(e) => Response::error(e),
            },
            Err(e) => Response::error(format!(
                "--prefix {prefix:?}: {e}; give an address (203.0.113.98) or a prefix (203.0.113.0/24)"
            )),
        },
        Request::Edit { edit, force } => {
            let origin = Origin::Cli {
                uid: peer.uid,
                pid,
                command: edit.describe(),
            };
            outcome(engine.edit(&edit, origin, force))
        }
        Request::Reload { force } => outcome(engine.sync(
            Origin::Reload {
                uid: peer.uid,
                pid,
                force,
            },
            force,
        )),
        Request::Detach => match engine.detach() {
            Ok(ifaces) => Response::ok(ifaces),
            Err(e) => Response::error(e),
        },
    }
}
