//! Worker threads, one per core, each running its own compio runtime on io_uring or, where
//! io_uring is unavailable (old kernels, Docker's default seccomp) or the operator forces it,
//! on epoll. Also SO_REUSEPORT listeners, so each worker accepts its own connections.
//!
//! Thread-per-core: a connection lives and dies on the worker that accepted it; cores meet
//! only in the hub's relay queues. This module owns threads and sockets' creation, not
//! protocols. [`tuning`] applies the config's process settings (CPU pinning, nice, open-file
//! limit, UDP buffer sizes).

use std::io;
use std::net::SocketAddr;
use std::num::NonZero;
use std::thread::JoinHandle;

use compio::driver::{DriverType, ProactorBuilder};

mod connection;
mod sealed;
pub mod tuning;

pub use connection::{Connection, Input};
pub use sealed::{set_nonblocking, SealedFile};

/// Which I/O driver the workers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IoMode {
    /// io_uring where the kernel allows it, else epoll.
    Auto,
    /// io_uring, or fail.
    Uring,
    /// epoll (the fallback), even where io_uring works.
    Epoll,
}

impl IoMode {
    /// The mode named by `RINGCAST_IO` (auto, uring, epoll), if set.
    pub fn from_env() -> Option<Self> {
        match std::env::var("RINGCAST_IO").ok()?.as_str() {
            "uring" | "io_uring" => Some(Self::Uring),
            "epoll" | "poll" => Some(Self::Epoll),
            _ => Some(Self::Auto),
        }
    }
}

/// Errors starting the runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The runtime of a worker could not be built.
    #[error("worker {worker}: cannot start the {mode:?} driver: {source}")]
    Driver {
        /// The worker index.
        worker: usize,
        /// The mode asked for.
        mode: IoMode,
        /// What the kernel said.
        source: io::Error,
    },
    /// A listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// What the kernel said.
        source: io::Error,
    },
}

/// The shape of the provided buffer ring an io_uring runtime makes on first use. The layer
/// that receives into it (the RTC socket's multishot receive) knows the sizes and passes them
/// in: this module owns threads, not protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferPool {
    /// Buffers in the ring.
    pub buffers: NonZero<u16>,
    /// Bytes of each buffer.
    pub len: usize,
}

/// Builds one worker's runtime for `mode`, with its provided buffer ring shaped as `pool`
/// (compio's default where `None`).
pub fn build_runtime(
    worker: usize,
    mode: IoMode,
    pool: Option<BufferPool>,
) -> Result<compio::runtime::Runtime, RuntimeError> {
    let attempt = |ty: DriverType, tuned: bool| {
        let mut proactor = ProactorBuilder::new();
        proactor.capacity(4096).driver_type(ty);
        if let Some(pool) = pool {
            proactor
                .buffer_pool_size(pool.buffers)
                .buffer_pool_buffer_len(pool.len);
        }
        if tuned {
            // One thread submits to each ring, and completions are reaped in the loop: the
            // kernel need not interrupt the thread to run task work.
            proactor.single_issuer(true).coop_taskrun(true);
        }
        compio::runtime::RuntimeBuilder::new()
            .with_proactor(proactor)
            .sync_queue_size(4096)
            .build()
    };
    let err = |source| RuntimeError::Driver {
        worker,
        mode,
        source,
    };
    match mode {
        IoMode::Epoll => attempt(DriverType::Poll, false).map_err(err),
        IoMode::Uring => attempt(DriverType::IoUring, true)
            .or_else(|_| attempt(DriverType::IoUring, false))
            .map_err(err),
        IoMode::Auto => attempt(DriverType::IoUring, true)
            .or_else(|_| attempt(DriverType::IoUring, false))
            .or_else(|e| {
                if worker == 0 {
                    tracing::warn!("io_uring unavailable ({e}); using the epoll fallback");
                }
                attempt(DriverType::Poll, false)
            })
            .map_err(err),
    }
}

/// The driver a runtime runs on, in words.
pub fn driver_name(rt: &compio::runtime::Runtime) -> &'static str {
    match rt.driver_type() {
        DriverType::IoUring => "io_uring",
        DriverType::Poll => "epoll",
        DriverType::IOCP => "iocp",
    }
}

/// Running workers.
#[derive(Debug)]
pub struct Workers {
    /// One per worker thread.
    pub handles: Vec<JoinHandle<()>>,
    /// The driver they run on ("io_uring" or "epoll").
    pub driver: &'static str,
}

/// Starts `workers` threads named `ringcast-w{i}`; each builds its runtime and runs `main`.
/// Returns once every runtime is built, or with the first error.
pub fn spawn_workers<F, Fut>(workers: usize, mode: IoMode, main: F) -> Result<Workers, RuntimeError>
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = ()>,
{
    spawn_pinned_workers(workers, mode, None, &[], main)
}

/// Like [`spawn_workers`], with each worker's buffer ring shaped as `pool` and worker `i`
/// pinned to `cpus[i % cpus.len()]` before it builds its runtime (so io_uring's kernel workers
/// start there too); empty `cpus` pins none. Logs each worker's CPU, and warns when pinning
/// fails: the worker then runs unpinned.
pub fn spawn_pinned_workers<F, Fut>(
    workers: usize,
    mode: IoMode,
    pool: Option<BufferPool>,
    cpus: &[usize],
    main: F,
) -> Result<Workers, RuntimeError>
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let mut handles = Vec::with_capacity(workers);
    let mut driver = "";
    for worker in 0..workers {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let main = main.clone();
        let cpu = (!cpus.is_empty()).then(|| cpus[worker % cpus.len()]);
        let handle = std::thread::Builder::new()
            .name(format!("ringcast-w{worker}"))
            .spawn(move || {
                if let Some(cpu) = cpu {
                    match tuning::pin_current_thread(&[cpu]) {
                        Ok(()) => tracing::info!("worker {worker} pinned to CPU {cpu}"),
                        Err(e) => tracing::warn!(
                            "worker {worker} not pinned to CPU {cpu}, runs unpinned: {e}. \
                             Fix: cpu_affinity with CPUs this process may use \
                             (taskset -pc {} shows them)",
                            std::process::id()
                        ),
                    }
                }
                let rt = match build_runtime(worker, mode, pool) {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let _ = tx.send(Ok(driver_name(&rt)));
                rt.block_on(main(worker));
            })
            .expect("spawning a worker thread");
        match rx.recv() {
            Ok(Ok(name)) => {
                tracing::debug!(worker, driver = name, "worker started");
                driver = name;
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(RuntimeError::Driver {
                    worker,
                    mode,
                    source: io::Error::other("worker thread died while starting"),
                })
            }
        }
        handles.push(handle);
    }
    Ok(Workers { handles, driver })
}

/// A TCP listener on `addr` in a SO_REUSEPORT group: every worker binds its own, and the
/// kernel spreads connections across them.
pub fn reuseport_listener(addr: SocketAddr) -> Result<std::net::TcpListener, RuntimeError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let make = || -> io::Result<std::net::TcpListener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        Ok(socket.into())
    };
    make().map_err(|source| RuntimeError::Listen { addr, source })
}

/// Checks that every address can be bound, before workers start: a port in use is reported
/// once, clearly, rather than by each worker. The probe has no SO_REUSEPORT, so a port that
/// another ringcast listens on is in use too: the kernel lets any process of the same user
/// join a SO_REUSEPORT group, and would split the connections between the two servers.
pub fn check_bind(addrs: &[SocketAddr]) -> Result<(), RuntimeError> {
    use socket2::{Domain, Protocol, Socket, Type};
    for &addr in addrs {
        let probe = || -> io::Result<()> {
            let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
            // Connections of an earlier run in TIME_WAIT must not count as in use.
            socket.set_reuse_address(true)?;
            socket.bind(&addr.into())
        };
        probe().map_err(|source| RuntimeError::Listen { addr, source })?;
    }
    Ok(())
}

/// For tests of io_uring-only code: whether this run must have io_uring (`RINGCAST_IO=uring`
/// or `CI=true`), so that a test which cannot get a ring fails instead of passing untested.
#[cfg(test)]
pub(crate) fn uring_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true") || IoMode::from_env() == Some(IoMode::Uring)
}

/// For tests of io_uring-only code that could not get a ring (`why`): panics where io_uring is
/// [required](uring_required), else says on stderr what was not tested.
#[cfg(test)]
pub(crate) fn no_uring(what: &str, why: impl std::fmt::Display) {
    assert!(
        !uring_required(),
        "{what}: io_uring is required in this run, but: {why}"
    );
    eprintln!("no io_uring here ({why}): {what} is not tested");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_bind_finds_a_port_held_by_a_reuseport_group() {
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        let held = reuseport_listener(any).expect("listener");
        let addr = held.local_addr().expect("address");
        let err = check_bind(&[addr]).expect_err("a second server must not share the port");
        assert!(
            matches!(&err, RuntimeError::Listen { source, .. } if source.kind() == io::ErrorKind::AddrInUse),
            "{err}"
        );
        drop(held);
        check_bind(&[addr]).expect("the port is free again");
    }
}
