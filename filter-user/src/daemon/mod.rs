//! `borderfilter run`: the daemon. It keeps the data plane equal to the order list and
//! serves the CLI.
//!
//! - `config`: its settings;
//! - `source`: where the list comes from (the file), read, watched and written back;
//! - `engine`: the data plane and the list in force, and every sync;
//! - `names`: orders that name domains: resolving them, the timers, the guard;
//! - `server`: the control socket; `access`: who may change what;
//! - `metrics`: Prometheus and the health check; `history`: what it counts;
//! - `audit`: the audit trail; `redirect`: the way to the block-notice host.

pub mod access;
pub mod audit;
pub mod config;
pub mod engine;
pub mod history;
pub mod metrics;
pub mod names;
pub mod redirect;
pub mod server;
pub mod source;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    signal::unix::{signal, SignalKind},
    sync::mpsc,
};

use audit::Origin;
pub use config::Config;
use engine::Engine;
use source::{etcd::EtcdSource, file::FileSource, ListSource};

/// The engine, shared by the tasks that trigger syncs and the control socket.
pub type Shared = Arc<Mutex<Engine>>;

/// How often the daemon looks at the clock (order windows) and the interfaces.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Quiet time after a file event before reading the file, so that a burst of events
/// (an editor's write, rename and chmod) gives one sync.
const DEBOUNCE: Duration = Duration::from_millis(50);

pub fn run(config: Config) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run_async(config))
}

async fn blocking<T: Send + 'static>(
    engine: &Shared,
    f: impl FnOnce(&mut Engine) -> T + Send + 'static,
) -> T {
    let engine = Arc::clone(engine);
    tokio::task::spawn_blocking(move || f(&mut engine.lock().unwrap_or_else(|p| p.into_inner())))
        .await
        .expect("engine task panicked")
}

async fn run_async(config: Config) -> anyhow::Result<()> {
    let listener = server::bind(&config.socket, config.public_read)?;
    let socket = config.socket.clone();
    let metrics_addr = config.metrics;
    let source: Box<dyn ListSource> = match &config.fleet {
        Some(fleet) => Box::new(EtcdSource::new(fleet.clone())),
        None => Box::new(FileSource::new(
            config.orders.clone(),
            config.max_list_bytes,
        )),
    };
    let (changed_tx, mut changed) = mpsc::channel(1);
    let resolver_config = config.names.resolver.clone();
    let name = source.name();
    let origin = source.origin();
    let started = tokio::task::spawn_blocking(move || Engine::start(config, source)).await?;
    let engine: Shared = match started {
        Ok(e) => Arc::new(Mutex::new(e)),
        Err(e) => {
            // Refused before it served anything: leave no socket behind, nor the
            // directory made for it (removed only if empty).
            let _ = std::fs::remove_file(&socket);
            if let Some(dir) = socket.parent() {
                let _ = std::fs::remove_dir(dir);
            }
            return Err(e);
        }
    };
    // Watched once the engine has read it: a change from now on is a change to apply.
    blocking(&engine, move |e| e.watch_source(changed_tx)).await;
    log::info!("control socket {}; following {name}", socket.display());
    if let Some(addr) = metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e} (choose another with --metrics, or --no-metrics)"))?;
        log::info!("metrics on http://{addr}/metrics, health on http://{addr}/healthz");
        tokio::spawn(metrics::serve(listener, Arc::clone(&engine)));
    }
    match names::resolver::Resolver::new(&resolver_config) {
        Ok(resolver) => {
            tokio::spawn(names::worker::run(Arc::clone(&engine), resolver));
        }
        Err(e) => {
            let why = crate::error_chain(e.as_ref());
            log::error!("{why}: names in orders are not resolved (their last known addresses stay enforced)");
            blocking(&engine, move |e| e.names_unresolvable(why)).await;
        }
    }
    let (stop_tx, mut stop) = mpsc::channel(1);
    tokio::spawn(server::serve(listener, Arc::clone(&engine), stop_tx));

    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            Some(()) = changed.recv() => {
                tokio::time::sleep(DEBOUNCE).await;
                while changed.try_recv().is_ok() {}
                let origin = origin.clone();
                blocking(&engine, move |e| e.sync(origin, false)).await;
            }
            _ = hangup.recv() => {
                log::info!("SIGHUP: reading the order list and the shared-hosting ranges again");
                blocking(&engine, |e| {
                    e.reload_shared_ranges();
                    e.sync(Origin::Signal, false)
                })
                .await;
            }
            _ = heartbeat.tick() => {
                blocking(&engine, |e| {
                    e.keep_attached();
                    e.refresh_redirect();
                    e.tick(time::OffsetDateTime::now_utc())
                })
                .await;
            }
            _ = stop.recv() => break,
            _ = terminate.recv() => { log::info!("SIGTERM: stopping; the filter stays attached and enforcing"); break }
            _ = interrupt.recv() => { log::info!("SIGINT: stopping; the filter stays attached and enforcing"); break }
        }
    }
    let _ = std::fs::remove_file(&socket);
    // CLI edits are durable in the journal already; writing them into the file now
    // saves the next start from making them again.
    blocking(&engine, |e| e.flush_source()).await;
    Ok(())
}
