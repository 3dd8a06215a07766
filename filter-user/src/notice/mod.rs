//! `borderfilter notice`: the block-notice host's web server. Redirected packets arrive
//! addressed to the blocked address itself; the server answers every request, whatever
//! its host, path or shape, with 451 Unavailable For Legal Reasons (RFC 7725) and a page
//! naming the order that blocks the address the client tried to reach (the connection's
//! local address), in Danish and English.
//!
//! - this file: the order list (read at start, followed on disk) and the page for an
//!   address;
//! - `server`: listening, connections, limits, the HTTPS resets;
//! - `request`: the tolerant reader of request heads;
//! - `templates`: the pages and their placeholders.

pub mod request;
pub mod server;
pub mod templates;

use std::{
    collections::HashMap,
    net::IpAddr,
    path::PathBuf,
    sync::{Arc, RwLock},
    time::Duration,
};

use time::OffsetDateTime;

use crate::{
    orders::{
        journal,
        validate::{check, Policy},
        DomainName, Order, OrderList, OrderState, Side,
    },
    semantics::{decide, Decision},
};
pub use server::{Handle, Limits, NoticeError, Server};
use templates::Format;

#[derive(Clone, Debug)]
pub struct NoticeConfig {
    /// The HTTP addresses; port 0 picks a free port (see [`Server::http_addrs`]).
    pub listen: Vec<std::net::SocketAddr>,
    pub orders: PathBuf,
    pub templates: Option<PathBuf>,
    /// `Link: <URL>; rel="blocked-by"` (RFC 7725); `{authority}` in it is replaced by the
    /// order's authority, URL-encoded.
    pub blocked_by: Option<String>,
    pub max_list_bytes: u64,
    /// Connections, sizes and timeouts that keep the server up under abuse.
    pub limits: Limits,
    /// The port on each listening address whose connections are reset at once (HTTPS:
    /// no certificate can name a blocked site, see docs/redirect.md); `None` for none,
    /// 0 for a free port.
    pub reset_port: Option<u16>,
    /// Follow the fleet's list in etcd instead of `orders` (as the routers do).
    pub fleet: Option<crate::fleet::EtcdOptions>,
}

/// The list as last read; kept when a new version fails to validate.
type SharedList = Arc<RwLock<Option<OrderList>>>;

fn load(config: &NoticeConfig) -> Result<OrderList, String> {
    // With the CLI edits a daemon on this host may still hold in the file's journal.
    let bytes = journal::read_with_journal(&config.orders, config.max_list_bytes)
        .map_err(|e| crate::error_chain(&e))?
        .bytes;
    let (list, problems) = check(&bytes, &Policy::default());
    list.ok_or_else(|| problems.to_string())
}

/// The list at start; the server answers (naming no order) even when it cannot be read.
/// The fleet's list is fetched by `follow` as soon as the server runs.
fn initial_list(config: &NoticeConfig) -> SharedList {
    if config.fleet.is_some() {
        return Arc::default();
    }
    Arc::new(RwLock::new(match load(config) {
        Ok(l) => Some(l),
        Err(e) => {
            log::error!(
                "the order list {} cannot be used yet; pages name no order until it can:\n{e}",
                config.orders.display()
            );
            None
        }
    }))
}

/// Follows the list (the file, or the fleet's in etcd): a changed list is used once it
/// validates. Runs until dropped.
async fn follow(list: SharedList, config: NoticeConfig) {
    match &config.fleet {
        Some(etcd) => follow_fleet(list, etcd.clone()).await,
        None => follow_file(list, config).await,
    }
}

/// The fleet's current version, read when the pointer's watch says it changed and every
/// few seconds besides (which also reconnects after etcd was unreachable).
async fn follow_fleet(list: SharedList, etcd: crate::fleet::EtcdOptions) {
    use crate::fleet::Fleet;
    let mut seen: Option<String> = None;
    let mut fleet: Option<Fleet> = None;
    let mut changes: Option<tokio::sync::mpsc::Receiver<()>> = None;
    loop {
        if fleet.is_none() {
            match Fleet::connect(&etcd).await {
                Ok(mut f) => {
                    changes = f.watch_current().await.ok();
                    fleet = Some(f);
                }
                Err(e) => log::warn!("following the fleet's list: {}", crate::error_chain(&e)),
            }
        }
        if let Some(f) = fleet.as_mut() {
            match f.fetch_current().await {
                Ok(Some((current, fetched))) if seen.as_ref() != Some(&current.sha256) => {
                    let (parsed, problems) = check(&fetched.bytes, &Policy::default());
                    match parsed {
                        Some(l) => {
                            log::info!(
                                "following version {} of the fleet's list ({} orders)",
                                fetched.version,
                                l.orders.len()
                            );
                            *list.write().unwrap_or_else(|p| p.into_inner()) = Some(l);
                            seen = Some(current.sha256);
                        }
                        None => log::warn!(
                            "version {} of the fleet's list is invalid; keeping the previous one:\n{problems}",
                            fetched.version
                        ),
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    log::warn!("following the fleet's list: {}", crate::error_chain(&e));
                    fleet = None;
                }
            }
        }
        let wait = tokio::time::sleep(Duration::from_secs(2));
        match changes.as_mut() {
            Some(rx) => {
                tokio::select! {
                    _ = rx.recv() => {}
                    _ = wait => {}
                }
            }
            None => wait.await,
        }
    }
}

async fn follow_file(list: SharedList, config: NoticeConfig) {
    let mut seen = crate::orders::file::fingerprint(&config.orders);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = crate::orders::file::fingerprint(&config.orders);
        if now == seen {
            continue;
        }
        seen = now;
        let loaded = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || load(&config)).await
        };
        match loaded {
            Ok(Ok(l)) => {
                log::info!("reloaded the order list ({} orders)", l.orders.len());
                *list.write().unwrap_or_else(|p| p.into_inner()) = Some(l);
            }
            Ok(Err(e)) => {
                log::warn!("the changed order list is invalid; keeping the previous one:\n{e}")
            }
            Err(e) => log::warn!("reading the changed order list: {e}"),
        }
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// Plain text when the client asks for it and not for HTML; HTML otherwise (browsers).
/// `accept` is lowercased.
fn format_for(accept: &str) -> Format {
    if accept.contains("text/plain") && !accept.contains("text/html") {
        Format::Text
    } else {
        Format::Html
    }
}

/// A notice page: always status 451.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    pub content_type: &'static str,
    /// The value of the `Link` header (RFC 7725 `blocked-by`), when configured and an
    /// order is named. Visible ASCII only, so it cannot break the response's framing.
    pub link: Option<String>,
    pub body: String,
}

/// The page for a request to `local` (the address the client tried to reach) with this
/// `Accept` header (lowercased) and `Host` name. Nothing else from the request is used,
/// and the host only when it is one of the order's names (so it is the list's text
/// that is shown): the page cannot reflect what a client sent.
pub fn page(
    list: Option<&OrderList>,
    local: IpAddr,
    accept: &str,
    host: Option<&DomainName>,
    config: &NoticeConfig,
) -> Page {
    let format = format_for(accept);
    let now = OffsetDateTime::now_utc();
    let decision = list.map(|l| (l, decide(l, now, local, Side::Dst)));
    let by_address = match &decision {
        Some((l, Decision::Order { order, .. })) => Some(&l.orders[*order]),
        _ => None,
    };
    let names = |o: &&Order| host.is_some_and(|h| o.domains.iter().any(|d| d.value == *h));
    // The notice host does not resolve names: an address blocked only because a name
    // resolved to it is known by the Host header the browser sends.
    let by_name = list.and_then(|l| {
        l.orders
            .iter()
            .filter(|o| o.state(now) == OrderState::Active)
            .find(names)
    });
    let order = by_address.or(by_name);
    let domain = order.filter(names).and(host).map(DomainName::unicode);
    let unknown = "-".to_string();
    let values: HashMap<&str, String> = HashMap::from([
        ("address", local.to_string()),
        ("domain", domain.clone().unwrap_or_else(|| unknown.clone())),
        ("site", domain.unwrap_or_else(|| local.to_string())),
        (
            "order_id",
            order.map_or_else(|| unknown.clone(), |o| o.id.clone()),
        ),
        (
            "authority",
            order.map_or_else(|| unknown.clone(), |o| o.authority.clone()),
        ),
        (
            "issued",
            order.map_or_else(|| unknown.clone(), |o| o.issued.text.clone()),
        ),
        (
            "basis",
            order
                .and_then(|o| o.basis.clone())
                .unwrap_or_else(|| unknown.clone()),
        ),
        (
            "valid_from",
            order
                .and_then(|o| o.valid_from.as_ref().map(|v| v.text.clone()))
                .unwrap_or_else(|| unknown.clone()),
        ),
        (
            "expires",
            order
                .and_then(|o| o.expires.as_ref().map(|v| v.text.clone()))
                .unwrap_or_else(|| unknown.clone()),
        ),
    ]);
    let template = templates::load(
        config.templates.as_deref(),
        order.and_then(|o| o.basis.as_deref()),
        format,
    );
    let body = templates::render(&template, &values, format);
    let content_type = match format {
        Format::Html => "text/html; charset=utf-8",
        Format::Text => "text/plain; charset=utf-8",
    };
    let link = match (&config.blocked_by, order) {
        (Some(link), Some(o)) => {
            let value = format!(
                "<{}>; rel=\"blocked-by\"",
                link.replace("{authority}", &percent_encode(&o.authority))
            );
            // The operator's URL goes into a header line: anything but visible ASCII
            // (a line break above all) would break the response, so such a URL is left out.
            value
                .bytes()
                .all(|b| b == b' ' || b.is_ascii_graphic())
                .then_some(value)
        }
        _ => None,
    };
    Page {
        content_type,
        link,
        body,
    }
}

/// Runs the server until the process ends (the binary's entry point).
pub fn run(config: NoticeConfig) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(NoticeError::Runtime)?
        .block_on(async move { Server::bind(config).await?.run().await })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> NoticeConfig {
        NoticeConfig {
            listen: Vec::new(),
            orders: PathBuf::from("/nonexistent"),
            templates: None,
            blocked_by: Some("https://example.invalid/o?a={authority}".into()),
            max_list_bytes: 1 << 20,
            limits: Limits::default(),
            reset_port: None,
            fleet: None,
        }
    }

    fn list() -> OrderList {
        let text = r#"{"version": 1, "orders": [{"id": "R-1/2026", "authority": "Test Court",
            "issued": "2026-01-02", "basis": "gambling", "action": "redirect",
            "prefixes": ["198.51.100.0/24"]}]}"#;
        let (list, problems) = check(text.as_bytes(), &Policy::default());
        list.unwrap_or_else(|| panic!("the test list is invalid: {problems}"))
    }

    #[test]
    fn the_page_names_the_order_for_the_local_address_in_the_format_asked() {
        let (list, config) = (list(), config());
        let blocked: IpAddr = "198.51.100.10".parse().unwrap();
        let html = page(Some(&list), blocked, "", None, &config);
        assert_eq!(html.content_type, "text/html; charset=utf-8");
        assert!(
            html.body.contains("R-1/2026") && html.body.contains("Spillemyndigheden"),
            "{}",
            html.body
        );
        assert_eq!(
            html.link.as_deref(),
            Some("<https://example.invalid/o?a=Test%20Court>; rel=\"blocked-by\"")
        );
        let text = page(Some(&list), blocked, "text/plain, */*", None, &config);
        assert_eq!(text.content_type, "text/plain; charset=utf-8");
        assert!(text.body.contains("Case: R-1/2026"), "{}", text.body);
        assert_eq!(
            page(Some(&list), blocked, "text/plain, text/html", None, &config).content_type,
            "text/html; charset=utf-8"
        );
        // Not under an order, or no list: every field `-`, no Link.
        for (list, addr) in [(Some(&list), "203.0.113.1"), (None, "198.51.100.10")] {
            let p = page(list, addr.parse().unwrap(), "text/plain", None, &config);
            assert!(p.body.contains("Case: -."), "{}", p.body);
            assert_eq!(p.link, None);
        }
    }

    #[test]
    fn a_link_that_would_break_the_header_is_left_out() {
        let mut config = config();
        config.blocked_by = Some("https://example.invalid/\r\nSet-Cookie: x".into());
        let p = page(
            Some(&list()),
            "198.51.100.1".parse().unwrap(),
            "",
            None,
            &config,
        );
        assert_eq!(p.link, None);
    }
}

#[cfg(test)]
mod host_tests {
    use super::*;
    use crate::notice::request::Head;

    #[test]
    fn the_page_names_the_domain_asked_for_when_it_is_one_of_the_orders_names() {
        let text = r#"{"version": 1, "orders": [{"id": "DOM-1", "authority": "Østre Landsret",
            "issued": "2026-01-02", "action": "redirect",
            "domains": ["blåbærgrød.example", "www.allofmp3.example"]}]}"#;
        let (list, problems) = check(text.as_bytes(), &Policy::default());
        let list = list.unwrap_or_else(|| panic!("{problems}"));
        let config = NoticeConfig {
            listen: Vec::new(),
            orders: PathBuf::from("/nonexistent"),
            templates: None,
            blocked_by: None,
            max_list_bytes: 1 << 20,
            limits: Limits::default(),
            reset_port: None,
            fleet: None,
        };
        // An address no prefix lists (a name resolved to it): the Host header finds the
        // order, and the page names the site in its Unicode form.
        let addr: IpAddr = "198.51.100.10".parse().unwrap();
        let host = |h: &str| {
            let mut head = Head::new(4096);
            head.push(format!("GET / HTTP/1.1\r\nHost: {h}\r\n\r\n").as_bytes());
            head.request().host
        };
        let p = page(
            Some(&list),
            addr,
            "text/plain",
            host("xn--blbrgrd-fxak7p.example:80").as_ref(),
            &config,
        );
        assert!(
            p.body.contains("blocked access to blåbærgrød.example")
                && p.body.contains("Case: DOM-1"),
            "{}",
            p.body
        );
        let p = page(
            Some(&list),
            addr,
            "text/plain",
            host("WWW.AllOfMP3.example.").as_ref(),
            &config,
        );
        assert!(
            p.body.contains("blocked access to www.allofmp3.example"),
            "{}",
            p.body
        );
        // A host that is not one of its names is never echoed.
        for other in [
            "evil.example",
            "<script>.example",
            "[2001:db8::1]:80",
            "198.51.100.10",
        ] {
            let p = page(
                Some(&list),
                addr,
                "text/plain",
                host(other).as_ref(),
                &config,
            );
            assert!(
                p.body.contains("blocked access to 198.51.100.10") && p.body.contains("Case: -."),
                "{other}: {}",
                p.body
            );
            assert!(
                !p.body.contains("evil") && !p.body.contains("script"),
                "{}",
                p.body
            );
        }
    }
}
