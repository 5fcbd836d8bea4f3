//! The application: what starts a worker and what the process runs beside its workers. A
//! worker opens its own SO_REUSEPORT listeners (RTMP, HTTP) and its WebRTC socket, accepts
//! connections, counts each against `max_connections`, and hands it to its protocol's driver
//! ([`crate::server`], [`crate::http`]); on [`Shutdown`] it returns, and what it ran is
//! dropped with it. [`report`] is the periodic log line and the rates sampler; [`log`] is SRS's
//! log line layout and the reopenable log file. This is the
//! only folder that knows every driver; no other folder imports it.

#![forbid(unsafe_code)]

pub mod log;
pub mod report;
pub mod shutdown;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use compio::net::{TcpListener, TcpStream};
use compio::runtime::JoinHandle;

pub use shutdown::Shutdown;

use crate::http::{HttpsListener, Roles};
use crate::state::{Shared, WorkerInfo};

/// Runs one worker until `shutdown`: an accept loop per RTMP listen address and per HTTP and
/// HTTPS listener (`https`, loaded once at start), each on this worker's own SO_REUSEPORT
/// socket, and the WebRTC UDP loop when `rtc_server` is enabled.
pub async fn run_worker(
    worker: usize,
    shared: Arc<Shared>,
    shutdown: Shutdown,
    https: Arc<[HttpsListener]>,
) {
    let info = Arc::new(WorkerInfo {
        index: worker,
        tid: nix::unistd::gettid().as_raw(),
        connections: AtomicUsize::new(0),
    });
    shared
        .workers
        .lock()
        .expect("workers lock poisoned")
        .push(info.clone());
    let config = shared.config();
    let mut loops: Vec<JoinHandle<()>> = Vec::new();
    let plain = crate::http::listeners(&config)
        .into_iter()
        .map(|(addr, roles)| (addr, roles, None));
    let tls = https.iter().map(|l| (l.addr, l.roles, Some(l.tls.clone())));
    for (addr, roles, tls) in plain.chain(tls) {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let Some(listener) = listen(addr, worker, scheme) else {
            continue;
        };
        if worker == 0 {
            tracing::info!(
                "{} on {addr}: {}",
                scheme.to_ascii_uppercase(),
                roles_name(roles)
            );
            // Said once, on the plain listener: an HTTPS API always has one beside it.
            let api_plain = roles.api && tls.is_none();
            if let Some(warning) = crate::http::exposure_warning(&config).filter(|_| api_plain) {
                tracing::warn!("{warning}");
            }
        }
        loops.push(compio::runtime::spawn(accept_loop(
            listener,
            Protocol::Http,
            shared.clone(),
            info.clone(),
            move |id, peer, stream, shared| {
                let tls = tls.clone();
                async move {
                    crate::http::serve(id, peer, stream, roles, tls, &shared).await;
                }
            },
        )));
    }
    if config.rtc_server.enabled {
        loops.push(compio::runtime::spawn(crate::rtc::udp::run(
            worker,
            config.rtc_server.clone(),
            shared.rtc.clone(),
            shared.hub.clone(),
            Arc::new(crate::server::whip::Sink::new(shared.clone())),
        )));
    }
    for &addr in &config.listen {
        let Some(listener) = listen(addr, worker, "rtmp") else {
            continue;
        };
        loops.push(compio::runtime::spawn(accept_loop(
            listener,
            Protocol::Rtmp,
            shared.clone(),
            info.clone(),
            |id, peer, stream, shared| async move {
                crate::server::serve(id, peer, stream, &shared).await;
            },
        )));
    }
    drop(config);
    shutdown.wait().await;
    tracing::debug!(worker, "shutting down");
    // Dropping the handles cancels the accept loops and closes the listeners; the connections'
    // tasks go with the runtime when this future returns.
    drop(loops);
}

fn roles_name(roles: Roles) -> String {
    let names = [
        (roles.api, "API"),
        (roles.streams, "HTTP-FLV"),
        (roles.exporter, "exporter"),
    ];
    let on: Vec<&str> = names
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| *n)
        .collect();
    on.join(", ")
}

/// This worker's listener on `addr`, or `None` with the reason logged.
fn listen(addr: SocketAddr, worker: usize, what: &str) -> Option<TcpListener> {
    match crate::runtime::reuseport_listener(addr)
        .map_err(|e| e.to_string())
        .and_then(|l| TcpListener::from_std(l).map_err(|e| e.to_string()))
    {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::error!(worker, "{what}: {e}");
            None
        }
    }
}

/// Which driver an accept loop feeds; RTMP connections are logged at info, HTTP requests
/// (many, short) at debug.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Rtmp,
    Http,
}

impl Protocol {
    /// What starts its log lines.
    fn prefix(self) -> &'static str {
        match self {
            Self::Rtmp => "",
            Self::Http => "http ",
        }
    }
}

/// Accepts on `listener` forever, counts each connection against `max_connections`, and
/// serves it with `serve` in a task of its own.
async fn accept_loop<F, Fut>(
    listener: TcpListener,
    protocol: Protocol,
    shared: Arc<Shared>,
    worker: Arc<WorkerInfo>,
    serve: F,
) where
    F: Fn(u64, SocketAddr, TcpStream, Arc<Shared>) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("{}accept: {e}", protocol.prefix());
                compio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let id = shared.next_conn_id();
        let Some(open) = shared.open_connection(&worker) else {
            let max = shared.config().max_connections;
            tracing::warn!(
                cid = id,
                %peer,
                "{}refused: max_connections {max} reached",
                protocol.prefix()
            );
            continue;
        };
        let _ = stream.set_nodelay(true);
        let served = serve(id, peer, stream, shared.clone());
        let (shared, worker) = (shared.clone(), worker.clone());
        compio::runtime::spawn(async move {
            if protocol == Protocol::Rtmp {
                tracing::info!(cid = id, %peer, "accepted, {open} connection(s)");
            } else {
                tracing::debug!(cid = id, %peer, "http accepted");
            }
            served.await;
            let left = shared.close_connection(&worker);
            if protocol == Protocol::Rtmp {
                tracing::info!(cid = id, "closed, {left} connection(s)");
            }
        })
        .detach();
    }
}
