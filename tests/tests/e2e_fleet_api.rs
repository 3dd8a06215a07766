//! The fleet library's calls the daemon builds on, against a real etcd: the pointer's
//! watch (also across an etcd restart), keys kept under a lease, the routers' keys, and a
//! publish over a broken pointer.

use std::time::{Duration, Instant};

use borderfilter_tests::etcd::Etcd;
use filter_user::fleet::{Base, EtcdOptions, Fleet, FleetError};

fn options(etcd: &Etcd, prefix: &str) -> EtcdOptions {
    EtcdOptions {
        endpoints: vec![etcd.endpoints()],
        prefix: prefix.to_string(),
        timeout: Duration::from_secs(2),
        ..EtcdOptions::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Waits (bounded) for the watch to yield.
async fn yields(rx: &mut tokio::sync::mpsc::Receiver<()>, what: &str) {
    match tokio::time::timeout(Duration::from_secs(15), rx.recv()).await {
        Ok(Some(())) => {}
        Ok(None) => panic!("{what}: the watch ended"),
        Err(_) => panic!("{what}: the watch did not yield within 15 s"),
    }
}

#[test]
fn the_watch_yields_on_each_publish_and_after_etcd_comes_back() {
    let mut etcd = Etcd::start("fleet_api_watch");
    let o = options(&etcd, "/w");
    runtime().block_on(async {
        let mut fleet = Fleet::connect(&o).await.expect("connecting");
        assert_eq!(fleet.current().await.unwrap(), None);
        let mut rx = fleet.watch_current().await.expect("watching");
        let v1 = fleet.publish(b"one", Base::Empty, 10).await.unwrap();
        yields(&mut rx, "after the first publish").await;
        let c = fleet.current().await.unwrap().expect("a current version");
        assert_eq!((c.version, c.sha256.len()), (v1, 64));
        let f = fleet.fetch(v1).await.unwrap();
        assert_eq!(f.bytes, b"one");
        // Nothing else happened: no spurious wake-up.
        assert!(rx.try_recv().is_err(), "the watch yielded without a change");

        // etcd goes away and comes back: the watch is re-established and yields once (a
        // change may have been missed), then follows the next publish.
        etcd.kill(0);
        etcd.restart(0);
        etcd.wait_healthy();
        yields(&mut rx, "after etcd came back").await;
        let mut other = Fleet::connect(&o).await.expect("connecting again");
        let v2 = other.publish(b"two", Base::Version(v1), 10).await.unwrap();
        yields(&mut rx, "after a publish by another client").await;
        assert_eq!(fleet.current().await.unwrap().unwrap().version, v2);
        let (c, f) = fleet.fetch_current().await.unwrap().unwrap();
        assert_eq!((c.version, f.bytes.as_slice()), (v2, &b"two"[..]));
    });
}

#[test]
fn a_kept_key_lives_while_kept_follows_updates_and_expires_when_dropped() {
    let etcd = Etcd::start("fleet_api_lease");
    let o = options(&etcd, "/l");
    runtime().block_on(async {
        let mut fleet = Fleet::connect(&o).await.expect("connecting");
        let key = fleet.keys().router("r1");
        let ttl = Duration::from_secs(2);
        let mut kept = fleet.keep_key(&key, "{\"version\":1}", ttl).await.unwrap();
        assert_eq!(
            fleet.routers().await.unwrap(),
            [(key.clone(), "{\"version\":1}".to_string())]
        );
        // Three times the lease's time to live: the keep-alive must be renewing it.
        tokio::time::sleep(3 * ttl).await;
        kept.update("{\"version\":2}").await.unwrap();
        assert_eq!(
            fleet.routers().await.unwrap(),
            [(key.clone(), "{\"version\":2}".to_string())],
            "the key did not outlive its lease's time to live while kept"
        );
        drop(kept);
        // Gone within the time to live (and a margin for etcd's lease checks).
        let deadline = Instant::now() + ttl + Duration::from_secs(5);
        loop {
            if fleet.routers().await.unwrap().is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the key outlived its dropped lease"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

#[test]
fn a_broken_pointer_is_replaced_only_with_base_any() {
    let etcd = Etcd::start("fleet_api_pointer");
    let o = options(&etcd, "/bp");
    runtime().block_on(async {
        let mut fleet = Fleet::connect(&o).await.expect("connecting");
        let v1 = fleet.publish(b"one", Base::Empty, 10).await.unwrap();
        etcd.put("/bp/list/current", b"{");
        match fleet.publish(b"two", Base::Version(v1), 10).await {
            Err(FleetError::Bad { key, .. }) => assert_eq!(key, "/bp/list/current"),
            other => panic!("expected the broken pointer named, got {other:?}"),
        }
        // Version numbers continue after the manifests that exist.
        let v2 = fleet.publish(b"two", Base::Any, 10).await.unwrap();
        assert_eq!(v2, v1 + 1);
        assert_eq!(
            fleet.fetch_current().await.unwrap().unwrap().1.bytes,
            b"two"
        );
        // A pointer deleted by hand does not make numbers start again.
        etcd.del("/bp/list/current");
        assert_eq!(
            fleet.publish(b"three", Base::Empty, 10).await.unwrap(),
            v2 + 1
        );
    });
}
