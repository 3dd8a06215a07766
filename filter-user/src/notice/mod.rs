//! `borderfilter notice`: the block-notice host's web server. Redirected packets arrive
//! addressed to the blocked address itself; the server answers every request, whatever
//! its host or path, with 451 Unavailable For Legal Reasons (RFC 7725) and a page naming
//! the order that blocks the address the client tried to reach (the connection's local
//! address), in Danish and English.
//!
//! - this file: the server and the order lookup;
//! - `templates`: the pages and their placeholders.

pub mod templates;

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::{Arc, RwLock},
    time::Duration,
};

use time::OffsetDateTime;

use crate::{
    http::{response, Body},
    orders::{
        file,
        validate::{check, Policy},
        OrderList, Side,
    },
    semantics::{decide, Decision},
};
use templates::Format;

#[derive(Clone, Debug)]
pub struct NoticeConfig {
    pub listen: Vec<SocketAddr>,
    pub orders: PathBuf,
    pub templates: Option<PathBuf>,
    /// `Link: <URL>; rel="blocked-by"` (RFC 7725); `{authority}` in it is replaced by the
    /// order's authority, URL-encoded.
    pub blocked_by: Option<String>,
    pub max_list_bytes: u64,
}

/// The list as last read; kept when a new version fails to validate.
type Shared = Arc<RwLock<Option<OrderList>>>;

fn load(config: &NoticeConfig) -> Result<OrderList, String> {
    let bytes =
        file::read(&config.orders, config.max_list_bytes).map_err(|e| crate::error_chain(&e))?;
    let (list, problems) = check(&bytes, &Policy::default());
    list.ok_or_else(|| problems.to_string())
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

/// The page for a request to `local` (the address the client tried to reach).
pub fn page(
    list: Option<&OrderList>,
    local: IpAddr,
    accept: &str,
    config: &NoticeConfig,
) -> hyper::Response<Body> {
    let format = if accept.contains("text/plain") && !accept.contains("text/html") {
        Format::Text
    } else {
        Format::Html
    };
    let decision = list.map(|l| (l, decide(l, OffsetDateTime::now_utc(), local, Side::Dst)));
    let order = match &decision {
        Some((l, Decision::Order { order, .. })) => Some(&l.orders[*order]),
        _ => None,
    };
    let unknown = "-".to_string();
    let values: HashMap<&str, String> = HashMap::from([
        ("address", local.to_string()),
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
    let mut r = response(451, content_type, body);
    if let (Some(link), Some(o)) = (&config.blocked_by, order) {
        let url = link.replace("{authority}", &percent_encode(&o.authority));
        if let Ok(value) =
            hyper::header::HeaderValue::from_str(&format!("<{url}>; rel=\"blocked-by\""))
        {
            r.headers_mut().insert(hyper::header::LINK, value);
        }
    }
    r
}

pub fn run(config: NoticeConfig) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run_async(config))
}

async fn run_async(config: NoticeConfig) -> anyhow::Result<()> {
    let list: Shared = Arc::new(RwLock::new(match load(&config) {
        Ok(l) => Some(l),
        Err(e) => {
            log::error!(
                "the order list {} cannot be used yet; pages name no order until it can:\n{e}",
                config.orders.display()
            );
            None
        }
    }));
    // Follow the file: a changed list is used once it validates.
    {
        let (list, config) = (Arc::clone(&list), config.clone());
        tokio::spawn(async move {
            let mut seen = crate::orders::file::fingerprint(&config.orders);
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let now = crate::orders::file::fingerprint(&config.orders);
                if now == seen {
                    continue;
                }
                seen = now;
                match load(&config) {
                    Ok(l) => {
                        log::info!("reloaded the order list ({} orders)", l.orders.len());
                        *list.write().unwrap_or_else(|p| p.into_inner()) = Some(l);
                    }
                    Err(e) => log::warn!(
                        "the changed order list is invalid; keeping the previous one:\n{e}"
                    ),
                }
            }
        });
    }
    let mut servers = Vec::new();
    for addr in &config.listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        log::info!("answering every HTTP request on {addr} with the block notice (451)");
        let (list, config) = (Arc::clone(&list), config.clone());
        servers.push(tokio::spawn(crate::http::serve(
            listener,
            move |request, local: SocketAddr| {
                let (list, config) = (Arc::clone(&list), config.clone());
                async move {
                    let accept = request
                        .headers()
                        .get(hyper::header::ACCEPT)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let guard = list.read().unwrap_or_else(|p| p.into_inner());
                    page(guard.as_ref(), local.ip().to_canonical(), &accept, &config)
                }
            },
        )));
    }
    for s in servers {
        s.await?;
    }
    Ok(())
}
