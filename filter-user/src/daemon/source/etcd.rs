//! The fleet's order list in etcd (`fleet`, docs/fleet.md) as the daemon's source: read
//! from the version the pointer names, followed through a watch on the pointer (and a
//! look every few seconds, which also notices etcd going away and coming back), written
//! back by publishing a new version (a CLI edit on a fleet router changes the fleet's
//! list, based on the version it was made on), kept in a local copy so that a start while
//! etcd is unreachable resumes exactly what was enforced, and told what this router
//! enforces: its status key `P/routers/<name>`, under a lease.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::{runtime::Handle, sync::mpsc};

use super::{Enforcing, ListSource, Revision, SourceError, Version, WriteFailure};
use crate::{
    daemon::audit::Origin,
    error_chain,
    fleet::{Base, Current, EtcdOptions, Fleet, FleetError, KeptKey},
    orders::{file, window::rfc3339},
};

/// How often the pointer is looked at besides the watch, and the status key refreshed.
const LOOK_EVERY: Duration = Duration::from_secs(2);
/// The status key's lease: a router that stops reporting disappears this long after.
const STATUS_TTL: Duration = Duration::from_secs(15);

/// How a router follows the fleet.
#[derive(Clone, Debug)]
pub struct FleetConfig {
    pub etcd: EtcdOptions,
    /// This router's name in `P/routers/`.
    pub router: String,
    /// The local copy of the last list read from etcd (and its version beside it).
    pub copy: PathBuf,
    /// Generations kept when a CLI edit publishes a version.
    pub keep: usize,
}

/// What a router says about itself in `P/routers/<name>`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterStatus {
    pub router: String,
    /// The version it enforces (`None`: none it read from etcd, e.g. nothing published).
    pub version: Option<u64>,
    #[serde(flatten)]
    pub enforcing: Enforcing,
    /// Why it cannot follow etcd now, seen from the router (written once it can again).
    pub problem: Option<String>,
    /// When it last wrote this (every few seconds while it can reach etcd).
    pub reported_at: String,
}

/// The local copy's companion file: which version the copy is.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct CopyMeta {
    version: u64,
    sha256: String,
    fetched_at: String,
}

#[derive(Default)]
struct State {
    fleet: Option<Fleet>,
    /// The pointer as last seen.
    current: Option<Current>,
    /// The versions this process read (the last few), by SHA-256: which version a
    /// router enforces, also when it refused a newer one.
    read: std::collections::HashMap<String, u64>,
    /// Since when, and why, etcd cannot be followed.
    unreachable: Option<(OffsetDateTime, String)>,
    status: RouterStatus,
    key: Option<KeptKey>,
}

impl State {
    fn remember(&mut self, version: u64, sha256: &str) {
        if self.read.len() >= 16 {
            self.read.clear();
        }
        self.read.insert(sha256.to_string(), version);
    }
}

pub struct EtcdSource {
    config: FleetConfig,
    runtime: Handle,
    state: Arc<Mutex<State>>,
    /// One report at a time (the engine's and the look thread's): two would each make
    /// a lease for the same key.
    reporting: Arc<Mutex<()>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether `e` means etcd cannot be reached or will not answer (rather than bad data).
fn unreachable(e: &FleetError) -> bool {
    matches!(
        e,
        FleetError::Connect { .. } | FleetError::Timeout { .. } | FleetError::Request { .. }
    )
}

fn meta_path(copy: &std::path::Path) -> PathBuf {
    let mut name = copy.file_name().unwrap_or_default().to_os_string();
    name.push(".version");
    copy.with_file_name(name)
}

impl EtcdSource {
    /// The source; call from within the daemon's runtime (it keeps its handle).
    pub fn new(config: FleetConfig) -> Self {
        let status = RouterStatus {
            router: config.router.clone(),
            ..RouterStatus::default()
        };
        Self {
            config,
            runtime: Handle::current(),
            state: Arc::new(Mutex::new(State {
                status,
                ..State::default()
            })),
            reporting: Arc::default(),
        }
    }

    /// Runs `f` on a connection to etcd (made if there is none), from a thread that may
    /// block (the engine's).
    fn with_fleet<T>(
        &self,
        f: impl AsyncFnOnce(&mut Fleet) -> Result<T, FleetError>,
    ) -> Result<T, FleetError> {
        // The connection is taken out while in use: no lock is held over the network.
        let taken = lock(&self.state).fleet.take();
        let (result, fleet) = self.runtime.block_on(async {
            let mut fleet = match taken {
                Some(f) => f,
                None => match Fleet::connect(&self.config.etcd).await {
                    Ok(f) => f,
                    Err(e) => return (Err(e), None),
                },
            };
            (f(&mut fleet).await, Some(fleet))
        });
        let mut state = lock(&self.state);
        match &result {
            Err(e) if unreachable(e) => {
                if state.unreachable.is_none() {
                    log::error!(
                        "etcd cannot be followed: {}; enforcing the list in force",
                        error_chain(e)
                    );
                }
                let since = state
                    .unreachable
                    .as_ref()
                    .map_or_else(OffsetDateTime::now_utc, |u| u.0);
                state.unreachable = Some((since, error_chain(e)));
            }
            _ => {
                if state.unreachable.take().is_some() {
                    log::info!("etcd can be followed again");
                }
                if state.fleet.is_none() {
                    state.fleet = fleet;
                }
            }
        }
        result
    }

    /// Keeps `bytes`, version `version`, as the local copy (written and synced whole).
    fn keep_copy(&self, version: u64, sha256: &str, bytes: &[u8]) {
        let copy = &self.config.copy;
        let meta = CopyMeta {
            version,
            sha256: sha256.to_string(),
            fetched_at: rfc3339(OffsetDateTime::now_utc()),
        };
        let result = (|| {
            if let Some(dir) = copy.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(file::write_error("creating the directory of", copy))?;
            }
            file::write_atomic(copy, bytes)?;
            let meta = serde_json::to_vec(&meta).expect("always serializes");
            file::write_atomic(&meta_path(copy), &meta)
        })();
        if let Err(e) = result {
            log::error!(
                "keeping the local copy of the fleet's list: {}",
                error_chain(&e)
            );
        }
    }

    /// The local copy, if there is one and it is whole.
    fn local_copy(&self) -> Option<(CopyMeta, Vec<u8>)> {
        let meta: CopyMeta =
            serde_json::from_slice(&std::fs::read(meta_path(&self.config.copy)).ok()?).ok()?;
        let bytes = file::read(&self.config.copy, u64::MAX / 2).ok()?;
        (file::digest(&bytes) == meta.sha256).then_some((meta, bytes))
    }

    /// Writes the status key (making it, with its lease, the first time).
    fn publish_status(&self) {
        let _one = self.reporting.lock().unwrap_or_else(|p| p.into_inner());
        let (value, kept) = {
            let mut state = lock(&self.state);
            state.status.reported_at = rfc3339(OffsetDateTime::now_utc());
            state.status.problem = unreachable_since(&state);
            if state.unreachable.is_some() && state.key.is_none() {
                return;
            }
            let value = serde_json::to_string(&state.status).expect("always serializes");
            // Taken out while in use: no lock is held over the network.
            (value, state.key.take())
        };
        let name = self.config.router.clone();
        let result = match kept {
            Some(mut kept) => {
                let r = self.runtime.block_on(kept.update(&value));
                lock(&self.state).key = Some(kept);
                r
            }
            None => self
                .with_fleet(async |f| {
                    let key = f.keys().router(&name);
                    f.keep_key(&key, &value, STATUS_TTL).await
                })
                .map(|k| lock(&self.state).key = Some(k)),
        };
        if let Err(e) = result {
            log::debug!("reporting to etcd as router {name}: {}", error_chain(&e));
        }
    }
}

/// "etcd unreachable since T: why", while it is.
fn unreachable_since(state: &State) -> Option<String> {
    state
        .unreachable
        .as_ref()
        .map(|(since, why)| format!("etcd unreachable since {}: {why}", rfc3339(*since)))
}

impl ListSource for EtcdSource {
    fn name(&self) -> String {
        format!(
            "etcd {} {}",
            self.config.etcd.endpoints.join(","),
            crate::fleet::Keys::new(&self.config.etcd.prefix).current()
        )
    }

    fn origin(&self) -> Origin {
        Origin::Fleet
    }

    fn revision(&self) -> Option<Revision> {
        lock(&self.state)
            .current
            .as_ref()
            .map(|c| Revision::List(c.sha256.clone()))
    }

    fn read(&self) -> Result<Version, SourceError> {
        match self.with_fleet(async |f| f.fetch_current().await) {
            Ok(Some((current, fetched))) => {
                self.keep_copy(fetched.version, &fetched.sha256, &fetched.bytes);
                let mut state = lock(&self.state);
                state.remember(fetched.version, &fetched.sha256);
                state.current = Some(current);
                Ok(Version {
                    revision: Some(Revision::List(fetched.sha256.clone())),
                    sha256: fetched.sha256,
                    bytes: fetched.bytes,
                    persist: false,
                    notes: Vec::new(),
                })
            }
            Ok(None) => Err(SourceError::NothingPublished { place: self.name() }),
            Err(e) if unreachable(&e) => {
                let Some((meta, bytes)) = self.local_copy() else {
                    return Err(e.into());
                };
                let note = format!(
                    "etcd cannot be reached ({}): enforcing the local copy of version {} ({}), fetched {}",
                    error_chain(&e),
                    meta.version,
                    self.config.copy.display(),
                    meta.fetched_at
                );
                lock(&self.state).remember(meta.version, &meta.sha256);
                Ok(Version {
                    bytes,
                    revision: Some(Revision::List(meta.sha256.clone())),
                    sha256: meta.sha256,
                    persist: false,
                    notes: vec![note],
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    fn replace(
        &mut self,
        contents: &[u8],
        base: Option<Revision>,
    ) -> Result<Revision, WriteFailure> {
        let current = lock(&self.state).current.clone();
        let base = match (&base, &current) {
            (Some(Revision::List(sha)), Some(c)) if *sha == c.sha256 => Base::Version(c.version),
            (_, None) => Base::Empty,
            _ => return Err(WriteFailure::Changed),
        };
        let keep = self.config.keep;
        match self.with_fleet(async |f| {
            let published = f.publish_report(contents, base, keep).await?;
            let current = f.current().await?;
            Ok((published, current))
        }) {
            Ok((published, current)) => {
                log::info!(
                    "published version {} of the fleet's list (based on {:?})",
                    published.version,
                    published.base
                );
                self.keep_copy(published.version, &published.sha256, contents);
                let mut state = lock(&self.state);
                state.remember(published.version, &published.sha256);
                state.current = current;
                Ok(Revision::List(published.sha256))
            }
            Err(FleetError::Stale { .. }) => Err(WriteFailure::Changed),
            Err(e) => Err(WriteFailure::Failed(e.into())),
        }
    }

    /// The pointer's digest: one small read, not the version's chunks.
    fn digest(&self) -> Result<String, SourceError> {
        match self.with_fleet(async |f| f.current().await)? {
            Some(current) => {
                let sha256 = current.sha256.clone();
                lock(&self.state).current = Some(current);
                Ok(sha256)
            }
            None => Err(SourceError::NothingPublished { place: self.name() }),
        }
    }

    fn problem(&self) -> Option<String> {
        unreachable_since(&lock(&self.state))
    }

    fn report(&self, enforcing: &Enforcing) {
        {
            let mut state = lock(&self.state);
            let version = enforcing
                .sha256
                .as_ref()
                .and_then(|sha| state.read.get(sha).copied());
            state.status.version = version;
            state.status.enforcing = enforcing.clone();
        }
        self.publish_status();
    }

    fn watch(&self, changed: mpsc::Sender<()>) {
        let config = self.config.etcd.clone();
        let state = Arc::clone(&self.state);
        let me = EtcdSource {
            config: self.config.clone(),
            runtime: self.runtime.clone(),
            state: Arc::clone(&self.state),
            reporting: Arc::clone(&self.reporting),
        };
        // The pointer's watch: a change is a sync (the pointer is read again then).
        let notify = changed.clone();
        let forget = Arc::clone(&self.state);
        self.runtime.spawn(async move {
            loop {
                match Fleet::connect(&config).await {
                    Ok(mut fleet) => match fleet.watch_current().await {
                        Ok(mut events) => {
                            while events.recv().await.is_some() {
                                lock(&forget).current = None;
                                let _ = notify.try_send(());
                            }
                        }
                        Err(e) => log::debug!("watching the fleet's pointer: {}", error_chain(&e)),
                    },
                    Err(e) => log::debug!("connecting to watch: {}", error_chain(&e)),
                }
                tokio::time::sleep(LOOK_EVERY).await;
            }
        });
        // A look every few seconds: notices etcd going and coming back (and a change the
        // watch missed), and refreshes the status key.
        std::thread::Builder::new()
            .name("fleet-look".into())
            .spawn(move || loop {
                std::thread::sleep(LOOK_EVERY);
                let seen = lock(&state).current.as_ref().map(|c| c.sha256.clone());
                let was_down = lock(&state).unreachable.is_some();
                match me.with_fleet(async |f| f.current().await) {
                    Ok(now) => {
                        let moved = now.as_ref().map(|c| c.sha256.clone()) != seen;
                        lock(&state).current = now;
                        if moved || was_down {
                            let _ = changed.try_send(());
                        }
                    }
                    Err(e) if !unreachable(&e) => {
                        // Unknown now: the sync reads it and refuses it, naming the key.
                        let fresh = lock(&state).current.take().is_some();
                        if fresh {
                            log::warn!("the fleet's pointer: {}", error_chain(&e));
                            let _ = changed.try_send(());
                        }
                    }
                    Err(_) => {}
                }
                me.publish_status();
            })
            .expect("starting the fleet look thread");
    }
}
