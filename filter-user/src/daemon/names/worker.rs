//! The task that resolves names when they are due: it asks the engine what is due,
//! resolves outside the engine's lock (several names at once), hands the answers back,
//! and sleeps until the next TTL or grace ends, or until the list names new names.

use std::{sync::Arc, time::Duration};

use time::OffsetDateTime;
use tokio::task::JoinSet;

use super::resolver::Resolver;
use crate::daemon::{blocking, Shared};

/// Names resolved at once, at most.
const CONCURRENT: usize = 32;
/// The longest sleep: a clock jump or a lost wake-up costs at most this.
const LONGEST_SLEEP: Duration = Duration::from_secs(10);

pub async fn run(engine: Shared, resolver: Resolver) {
    let resolver = Arc::new(resolver);
    let wake = blocking(&engine, |e| e.names_wake()).await;
    loop {
        let (due, next) = blocking(&engine, |e| e.names_due(OffsetDateTime::now_utc())).await;
        if !due.is_empty() {
            let mut answers = Vec::with_capacity(due.len());
            for chunk in due.chunks(CONCURRENT) {
                let mut set = JoinSet::new();
                for name in chunk.iter().cloned() {
                    let resolver = Arc::clone(&resolver);
                    set.spawn(async move {
                        let answer = resolver.resolve(&name).await;
                        (name, answer)
                    });
                }
                while let Some(done) = set.join_next().await {
                    match done {
                        Ok(answer) => answers.push(answer),
                        Err(e) => log::error!("resolving a name panicked: {e}"),
                    }
                }
            }
            blocking(&engine, move |e| e.names_answered(answers)).await;
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
