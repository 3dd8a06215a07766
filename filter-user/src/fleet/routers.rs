//! What follows and reports: a watch on the pointer, keys kept under a lease (a router's
//! status), and reading every router's key.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use etcd_client::{Client, GetOptions, PutOptions, WatchOptions};
use tokio::{sync::mpsc, task::JoinHandle};

use super::{store::connect_client, EtcdOptions, Fleet, FleetError, Problem};

/// The longest wait between two attempts to watch again or renew a lease.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl Fleet {
    /// A receiver that yields whenever `P/list/current` changes, and once after etcd
    /// was unreachable (a change may have been missed: read the pointer again). A full
    /// channel means a look is already due. The watch runs on the current runtime until
    /// the receiver is dropped. Start it before reading the pointer, so that no change
    /// falls between the read and the watch.
    pub async fn watch_current(&mut self) -> Result<mpsc::Receiver<()>, FleetError> {
        let key = self.keys.current();
        let mut client = self.client().await?;
        let stream = self
            .call("watch", &key, client.watch(key.clone(), None))
            .await?;
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(follow(self.options().clone(), key, stream, tx));
        Ok(rx)
    }

    /// Puts `value` at `key` under a lease of `ttl`, kept alive in the background (a
    /// router's status key, `P/routers/<name>`). When etcd was unreachable longer than
    /// `ttl`, the key is written again under a new lease with its latest value. Dropping
    /// the handle stops the keep-alive: the key then disappears `ttl` later.
    pub async fn keep_key(
        &mut self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<KeptKey, FleetError> {
        let ttl_secs = ttl.as_secs().max(1) as i64;
        let mut client = self.client().await?;
        let lease = self
            .call("grant a lease for", key, client.lease_grant(ttl_secs, None))
            .await?
            .id();
        self.call(
            "write",
            key,
            client.put(key, value, Some(PutOptions::new().with_lease(lease))),
        )
        .await?;
        let state = Arc::new(Mutex::new(Kept {
            lease,
            value: value.to_string(),
        }));
        let task = tokio::spawn(keep_alive(
            self.options().clone(),
            client.clone(),
            key.to_string(),
            ttl_secs,
            state.clone(),
        ));
        Ok(KeptKey {
            client,
            key: key.to_string(),
            timeout: self.options().timeout,
            state,
            task,
        })
    }

    /// Every key under `P/routers/` with its value (full keys; `Keys::router` builds
    /// one).
    pub async fn routers(&mut self) -> Result<Vec<(String, String)>, FleetError> {
        let prefix = self.keys.routers();
        let mut kv = self.client().await?.kv_client();
        let resp = self
            .call(
                "list",
                &prefix,
                kv.get(prefix.clone(), Some(GetOptions::new().with_prefix())),
            )
            .await?;
        resp.kvs()
            .iter()
            .map(|kv| {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                match std::str::from_utf8(kv.value()) {
                    Ok(v) => Ok((key, v.to_string())),
                    Err(_) => Err(FleetError::Bad {
                        key,
                        problem: Problem::NotText,
                    }),
                }
            })
            .collect()
    }
}

/// Forwards the watch's events; watches again, with a growing pause, when the stream
/// ends or fails.
async fn follow(
    options: EtcdOptions,
    key: String,
    mut stream: etcd_client::WatchStream,
    tx: mpsc::Sender<()>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let lost = tokio::select! {
            _ = tx.closed() => return,
            m = stream.message() => match m {
                Ok(Some(resp)) if resp.canceled() => true,
                Ok(Some(resp)) => {
                    if !resp.events().is_empty() {
                        let _ = tx.try_send(());
                    }
                    backoff = Duration::from_millis(100);
                    false
                }
                Ok(None) | Err(_) => true,
            },
        };
        if !lost {
            continue;
        }
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            // Possibly another member: the one watched may be the one that is gone.
            let Ok((mut client, _)) = connect_client(&options).await else {
                continue;
            };
            if let Ok(s) = client.watch(key.clone(), None::<WatchOptions>).await {
                stream = s;
                // Whatever changed while the watch was down is read now.
                let _ = tx.try_send(());
                break;
            }
        }
    }
}

struct Kept {
    lease: i64,
    value: String,
}

/// A key kept under a lease; see [`Fleet::keep_key`].
pub struct KeptKey {
    client: Client,
    key: String,
    timeout: Duration,
    state: Arc<Mutex<Kept>>,
    task: JoinHandle<()>,
}

impl KeptKey {
    /// Writes a new value (under the current lease; kept for a new one).
    pub async fn update(&mut self, value: &str) -> Result<(), FleetError> {
        let lease = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.value = value.to_string();
            s.lease
        };
        let put = self.client.put(
            self.key.as_str(),
            value,
            Some(PutOptions::new().with_lease(lease)),
        );
        match tokio::time::timeout(self.timeout, put).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(source)) => Err(FleetError::Request {
                op: "write",
                key: self.key.clone(),
                hint: String::new(),
                source,
            }),
            Err(_) => Err(FleetError::Timeout {
                op: "write",
                key: self.key.clone(),
                after: self.timeout,
            }),
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }
}

impl Drop for KeptKey {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Renews the lease a third of its time to live; when it has expired (etcd unreachable
/// for longer), grants a new one and writes the latest value under it.
async fn keep_alive(
    options: EtcdOptions,
    mut client: Client,
    key: String,
    ttl: i64,
    state: Arc<Mutex<Kept>>,
) {
    let period = Duration::from_secs(ttl as u64) / 3;
    let mut backoff = Duration::from_millis(100);
    loop {
        let lease = state.lock().unwrap_or_else(|p| p.into_inner()).lease;
        // One keep-alive stream for as long as the lease lives and etcd answers.
        if let Ok((mut keeper, mut stream)) = client.lease_keep_alive(lease).await {
            while keeper.keep_alive().await.is_ok() {
                let answer =
                    tokio::time::timeout(period.max(Duration::from_millis(300)), stream.message());
                match answer.await {
                    Ok(Ok(Some(r))) if r.ttl() > 0 => {
                        backoff = Duration::from_millis(100);
                        tokio::time::sleep(period).await;
                    }
                    // Expired (ttl 0), or no answer.
                    _ => break,
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        // Possibly another member: the one used may be the one that is gone.
        if let Ok((c, _)) = connect_client(&options).await {
            client = c;
        }
        let lease = state.lock().unwrap_or_else(|p| p.into_inner()).lease;
        if lease_expired(&mut client, lease).await {
            // A failed renewal is tried again on the next round.
            let _ = renew(&mut client, &key, ttl, &state).await;
        }
    }
}

async fn lease_expired(client: &mut Client, lease: i64) -> bool {
    client
        .lease_time_to_live(lease, None)
        .await
        .is_ok_and(|r| r.ttl() <= 0)
}

async fn renew(
    client: &mut Client,
    key: &str,
    ttl: i64,
    state: &Arc<Mutex<Kept>>,
) -> Result<(), etcd_client::Error> {
    let lease = client.lease_grant(ttl, None).await?.id();
    let value = state
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .value
        .clone();
    client
        .put(key, value, Some(PutOptions::new().with_lease(lease)))
        .await?;
    state.lock().unwrap_or_else(|p| p.into_inner()).lease = lease;
    Ok(())
}
