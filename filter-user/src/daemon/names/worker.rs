//! The task that resolves names when they are due: it asks the engine what is due,
//! resolves outside the engine's lock (several names at once), hands the answers back,
//! and sleeps until the next TTL or grace ends, or until the list names new names.

use std::{sync::Arc, time::Duration};

use time::OffsetDateTime;
use tokio::task::JoinSet;

use super::resolver::Resolver;
use crate::{
    daemon::{blocking, Shared},
    orders::DomainName,
};

/// Names resolved at once, at most.
const CONCURRENT: usize = 64;
/// Answers are handed to the engine at least this often while a long round runs, so
/// that one slow name does not hold back what the others found.
const HAND_OVER: Duration = Duration::from_secs(1);
/// The longest sleep: a clock jump or a lost wake-up costs at most this.
const LONGEST_SLEEP: Duration = Duration::from_secs(10);

pub async fn run(engine: Shared, resolver: Resolver) {
    let resolver = Arc::new(resolver);
    let wake = blocking(&engine, |e| e.names_wake()).await;
    loop {
        let (due, next) = blocking(&engine, |e| e.names_due(OffsetDateTime::now_utc())).await;
        if !due.is_empty() {
            resolve_all(&engine, &resolver, due).await;
            continue;
        }
        let sleep = next
            .map(|t| {
                let d = t - OffsetDateTime::now_utc();
                Duration::try_from(d).unwrap_or(Duration::ZERO)
            })
            .unwrap_or(LONGEST_SLEEP)
            .min(LONGEST_SLEEP);
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = wake.notified() => {}
        }
    }
}

/// Resolves `due`, at most [`CONCURRENT`] at once, handing the answers to the engine as
/// they come (every [`HAND_OVER`], and at the end).
async fn resolve_all(engine: &Shared, resolver: &Arc<Resolver>, due: Vec<DomainName>) {
    let mut waiting = due.into_iter();
    let mut set = JoinSet::new();
    let spawn = |set: &mut JoinSet<_>, name: DomainName| {
        let resolver = Arc::clone(resolver);
        set.spawn(async move {
            let answer = resolver.resolve(&name).await;
            (name, answer)
        });
    };
    for name in waiting.by_ref().take(CONCURRENT) {
        spawn(&mut set, name);
    }
    let mut answers = Vec::new();
    let mut handed = std::time::Instant::now();
    while let Some(done) = set.join_next().await {
        match done {
            Ok(answer) => answers.push(answer),
            Err(e) => log::error!("resolving a name failed: {e}"),
        }
        if let Some(name) = waiting.next() {
            spawn(&mut set, name);
        }
        if !answers.is_empty() && (set.is_empty() || handed.elapsed() >= HAND_OVER) {
            let batch = std::mem::take(&mut answers);
            blocking(engine, move |e| e.names_answered(batch)).await;
            handed = std::time::Instant::now();
        }
    }
}
