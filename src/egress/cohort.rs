//! Players in lockstep. The players of one stream on one core that have been sent the same
//! bytes so far (the same [`Position`] in the core's ring and the same [`Form`] state) are
//! sent the same bytes next. So a core builds each flush's batch once (from the shared
//! frames, into one buffer, see `send_ring.rs`) and sends it to every such player: a
//! seated player costs its core one send request per flush, and no task wake-up, no copy and
//! no reference count of its own.
//!
//! A player leaves its cohort when its send falls short, fails, or is still in flight at the
//! next flush, or when it has something of its own to send (control replies, a pause): its
//! task (the RTMP and HTTP-FLV players) takes over from the position its last batch
//! left it at, and seats itself again once it has caught up. Catching up needs no
//! coordination: at each flush, a player at the cohort's position sits down before the
//! cohort writes, and one behind it writes the difference itself and sits down after.
//!
//! It owns the writes to seated players' sockets, and nothing of their reads, sessions or
//! lifetimes: a player's task hands it a socket, and the [`Seat`] it gets back withdraws the
//! socket when dropped, before the socket can close.

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::future::{select, Either};

use super::send_ring::{Batch, Ring};
use super::write::{BatchError, Counters, MAX_BATCH};
use crate::hub::{Consumer, Position};
use crate::media::wire::Form;
use crate::stats::clients::Client;

/// What a player's task resumes from when its cohort lets it go.
#[derive(Debug)]
pub(crate) struct HandBack {
    /// Where its last batch left it.
    pub(crate) at: Position,
    /// Its form after that batch.
    pub(crate) form: Form,
    /// The bytes of that batch that did not go out: they come first.
    pub(crate) rest: Vec<Bytes>,
    /// The socket's error, or a cut for a send that took nothing for `queue_length`.
    pub(crate) result: Result<(), BatchError>,
}

/// A player as its cohort and the core's send ring see it.
#[derive(Debug)]
struct SeatState {
    fd: RawFd,
    client: Arc<Client>,
    /// In its cohort's list; false once it left or was let go.
    seated: Cell<bool>,
    /// The ring's key of its send in flight, and when it was submitted.
    flying: Cell<Option<(usize, Instant)>>,
    /// How long a send may take no data (queue_length) before the player is cut.
    stall: Duration,
    /// Its send in flight was cancelled for that.
    stalled: Cell<bool>,
    back: RefCell<Option<HandBack>>,
    waker: RefCell<Option<Waker>>,
}

impl SeatState {
    /// Counts `n` bytes sent to this player; the caller adds them to the server's total, once
    /// per flush or reap rather than once per player.
    fn sent(&self, n: usize) -> usize {
        self.client
            .send_bytes
            .fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    fn let_go(&self, back: HandBack) {
        self.seated.set(false);
        *self.back.borrow_mut() = Some(back);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

/// What a send in flight needs at its completion.
#[derive(Debug)]
struct Flight {
    seat: Rc<SeatState>,
    /// Where the batch leaves the seat.
    at: Position,
    form: Form,
}

/// How a core sends batches: its own io_uring where the runtime runs on io_uring, else one
/// non-blocking `send` per player.
enum Sender {
    Ring(Box<Ring<Flight>>),
    Direct,
}

thread_local! {
    static COHORTS: RefCell<Vec<Rc<Cohort>>> = const { RefCell::new(Vec::new()) };
    static SENDER: RefCell<Option<Sender>> = const { RefCell::new(None) };
}

fn with_sender<R>(f: impl FnOnce(&mut Sender) -> R) -> R {
    SENDER.with(|s| {
        let mut s = s.borrow_mut();
        let sender = s.get_or_insert_with(|| {
            let uring = compio::runtime::Runtime::try_with_current(|rt| {
                rt.driver_type() == compio::driver::DriverType::IoUring
            });
            if uring.unwrap_or(false) {
                match Ring::new() {
                    Ok(ring) => return Sender::Ring(Box::new(ring)),
                    Err(e) => tracing::warn!("players' send ring unavailable ({e}): a send each"),
                }
            }
            Sender::Direct
        });
        f(sender)
    })
}

/// Reads the send ring's completions: counts what went out, lets go the players whose send
/// fell short or failed, and those that left while it was in flight.
fn reap(counters: &dyn Counters) {
    let mut total = 0;
    with_sender(|s| {
        let Sender::Ring(ring) = s else {
            return;
        };
        ring.complete(|flight, batch, result| {
            let seat = flight.seat;
            seat.flying.set(None);
            let back = |rest, result| HandBack {
                at: flight.at,
                form: flight.form,
                rest,
                result,
            };
            match result {
                Ok(n) => {
                    total += seat.sent(n);
                    if n < batch.len() {
                        seat.let_go(back(batch.rest(n), Ok(())));
                    } else if !seat.seated.get() {
                        seat.let_go(back(Vec::new(), Ok(())));
                    }
                }
                Err(e) => {
                    let e = if seat.stalled.get() {
                        counters.players_cut().fetch_add(1, Ordering::Relaxed);
                        BatchError::Stalled(seat.stall)
                    } else {
                        BatchError::Io(e)
                    };
                    seat.let_go(back(Vec::new(), Err(e)));
                }
            }
        });
    });
    counters
        .bytes_out()
        .fetch_add(total as u64, Ordering::Relaxed);
}

/// The players of one stream on this core in lockstep, and the cursor and form they share.
#[derive(Debug)]
struct Cohort {
    consumer: RefCell<Consumer>,
    form: Cell<Form>,
    seats: RefCell<Vec<Rc<SeatState>>>,
    scratch: RefCell<BytesMut>,
    counters: Arc<dyn Counters>,
    /// Its task, waiting for the next flush.
    waker: RefCell<Option<Waker>>,
}

impl Cohort {
    /// True once no player sits in it.
    fn empty(&self) -> bool {
        self.seats.borrow().iter().all(|s| !s.seated.get())
    }

    /// A player left: the task ends the cohort if it was the last, rather than at a flush
    /// that may never come (the publisher gone), holding the stream on this core until then.
    fn left(&self) {
        if self.empty() {
            if let Some(w) = self.waker.take() {
                w.wake();
            }
        }
    }

    /// Writes what arrived since the last flush to every seated player; false once it has
    /// none left (the cohort then ends).
    fn flush(&self) -> bool {
        reap(&*self.counters);
        let mut seats = self.seats.borrow_mut();
        seats.retain(|s| s.seated.get());
        if seats.is_empty() {
            return false;
        }
        let mut consumer = self.consumer.borrow_mut();
        let mut form = self.form.get();
        let mut bufs = Vec::new();
        let skips = consumer.skips();
        {
            let mut scratch = self.scratch.borrow_mut();
            consumer.next_batch(MAX_BATCH, |f| form.append(f, &mut bufs, &mut scratch));
        }
        if bufs.is_empty() {
            return true;
        }
        if consumer.skips() > skips {
            // The ring moved past the cohort (its relay queue overflowed): each seated
            // player skipped to the keyframe with it.
            let others = seats.len() as u64 - 1;
            consumer.count_skips(others);
        }
        self.form.set(form);
        let at = consumer.position();
        drop(consumer);
        let batch = Rc::new(Batch::new(bufs));
        let now = Instant::now();
        let mut total = 0;
        with_sender(|sender| {
            seats.retain(|seat| {
                if seat.flying.get().is_some() {
                    // Its last send is still in flight: it falls behind and leaves; the
                    // completion lets it go where that send leaves it.
                    seat.seated.set(false);
                    return false;
                }
                let back = |rest, result| HandBack {
                    at,
                    form,
                    rest,
                    result,
                };
                match sender {
                    Sender::Ring(ring) => {
                        let flight = Flight {
                            seat: seat.clone(),
                            at,
                            form,
                        };
                        let key = ring.send(seat.fd, &batch, flight);
                        seat.flying.set(Some((key, now)));
                        true
                    }
                    Sender::Direct => match batch.send_now(seat.fd) {
                        Ok(n) => {
                            total += seat.sent(n);
                            if n == batch.len() {
                                return true;
                            }
                            seat.let_go(back(batch.rest(n), Ok(())));
                            false
                        }
                        Err(e) => {
                            seat.let_go(back(Vec::new(), Err(e.into())));
                            false
                        }
                    },
                }
            });
            if let Sender::Ring(ring) = sender {
                ring.submit();
            }
        });
        self.counters
            .bytes_out()
            .fetch_add(total as u64, Ordering::Relaxed);
        true
    }
}

/// Flushes a cohort at once, then at each of its stream's flushes, until it has no player
/// left. At once: its first player sat down at a flush that it would otherwise miss, with
/// the frames of that flush still to send.
async fn run(cohort: Rc<Cohort>) {
    while cohort.flush() {
        let mut next = std::pin::pin!(cohort.consumer.borrow().flushed());
        poll_fn(|cx| {
            if next.as_mut().poll(cx).is_ready() || cohort.empty() {
                return Poll::Ready(());
            }
            *cohort.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
    }
    COHORTS.with(|c| c.borrow_mut().retain(|x| !Rc::ptr_eq(x, &cohort)));
}

/// A player's place in its cohort, held by its task. Dropping it withdraws the player (and
/// cancels its send in flight), so the task must drop it before closing the socket.
#[derive(Debug)]
pub(crate) struct Seat {
    state: Rc<SeatState>,
    cohort: Rc<Cohort>,
}

/// Seats a player whose socket is `fd`, at `consumer`'s position and in `form`, in its
/// stream's cohort on this core (starting one if there is none); `None` when the cohort is
/// elsewhere in the stream, or the player has not yet written its start (metadata, sequence
/// headers, GOP cache). Only a player with nothing of its own in flight may sit down. A send
/// that takes no data for `stall` (queue_length) cuts the player.
pub(crate) fn seat(
    consumer: &Consumer,
    form: Form,
    fd: RawFd,
    (client, counters): (&Arc<Client>, &Arc<impl Counters + 'static>),
    stall: Duration,
) -> Option<Seat> {
    if consumer.position().is_fresh() {
        return None;
    }
    let cohort = COHORTS.with(|c| {
        let mut cohorts = c.borrow_mut();
        let kin = cohorts
            .iter()
            .find(|co| co.consumer.borrow().same_stream(consumer) && co.form.get().kin(&form));
        match kin {
            Some(co) => (co.consumer.borrow().position() == consumer.position()
                && co.form.get() == form)
                .then(|| co.clone()),
            None => {
                let co = Rc::new(Cohort {
                    consumer: RefCell::new(consumer.fork()),
                    form: Cell::new(form),
                    seats: RefCell::new(Vec::new()),
                    scratch: RefCell::new(BytesMut::new()),
                    counters: counters.clone(),
                    waker: RefCell::new(None),
                });
                cohorts.push(co.clone());
                compio::runtime::spawn(run(co.clone())).detach();
                Some(co)
            }
        }
    })?;
    let state = Rc::new(SeatState {
        fd,
        client: client.clone(),
        seated: Cell::new(true),
        flying: Cell::new(None),
        stall,
        stalled: Cell::new(false),
        back: RefCell::new(None),
        waker: RefCell::new(None),
    });
    cohort.seats.borrow_mut().push(state.clone());
    Some(Seat { state, cohort })
}

impl Seat {
    /// Stays seated until the cohort lets the player go, or `leave()` turns true (checked
    /// whenever the task wakes: the caller's other wakers lead here); then returns where the
    /// player resumes.
    pub(crate) async fn hold(self, leave: impl Fn() -> bool) -> HandBack {
        // The check is for sends stuck in flight; a healthy one completes within a flush.
        let stall = self.state.stall;
        let check = (stall / 4).clamp(Duration::from_millis(100), Duration::from_millis(2500));
        let mut left = false;
        loop {
            let back = poll_fn(|cx| {
                if let Some(back) = self.state.back.take() {
                    return Poll::Ready(Some(back));
                }
                if !left && leave() {
                    return Poll::Ready(None);
                }
                let mut waker = self.state.waker.borrow_mut();
                if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *waker = Some(cx.waker().clone());
                }
                Poll::Pending
            });
            let timer = compio::time::sleep(check);
            match select(std::pin::pin!(back), std::pin::pin!(timer)).await {
                Either::Left((Some(back), _)) => return back,
                Either::Left((None, _)) => {
                    left = true;
                    self.leave();
                }
                Either::Right(_) => self.check_stall(stall),
            }
        }
    }

    /// Withdraws from the cohort: at once when no send is in flight, else at its completion.
    fn leave(&self) {
        reap(&*self.cohort.counters);
        let state = &self.state;
        if !state.seated.get() {
            return;
        }
        state.seated.set(false);
        if state.flying.get().is_none() {
            // Every batch so far reached it whole: it stands where the cohort stands.
            state.let_go(HandBack {
                at: self.cohort.consumer.borrow().position(),
                form: self.cohort.form.get(),
                rest: Vec::new(),
                result: Ok(()),
            });
        }
    }

    fn check_stall(&self, stall: Duration) {
        reap(&*self.cohort.counters);
        if let Some((key, since)) = self.state.flying.get() {
            if since.elapsed() >= stall && !self.state.stalled.replace(true) {
                with_sender(|s| {
                    if let Sender::Ring(ring) = s {
                        ring.cancel(key);
                    }
                });
            }
        }
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.state.seated.set(false);
        self.cohort.left();
        if let Some((key, _)) = self.state.flying.get() {
            with_sender(|s| {
                if let Sender::Ring(ring) = s {
                    ring.cancel(key);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    use std::sync::atomic::AtomicU64;

    use super::*;
    use crate::hub::{Hub, PublishGuard, StreamKey, StreamSettings};
    use crate::media::MediaKind;
    use crate::stats::clients::{ClientKind, ClientRegistry};

    const STALL: Duration = Duration::from_secs(10);

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").expect("listen");
        let w = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (r, _) = l.accept().expect("accept");
        r.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        (r, w)
    }

    fn frame(kind: MediaKind, key: bool, len: usize) -> Bytes {
        let mut b = vec![0u8; len];
        b[0] = match (kind, key) {
            (MediaKind::Video, true) => 0x17,
            (MediaKind::Video, false) => 0x27,
            _ => 0xaf,
        };
        b[1] = 1;
        Bytes::from(b)
    }

    /// Waits for the core's next flush of `consumer`'s stream: the relay task runs once this
    /// task yields, and the cohorts write within that flush.
    async fn next_flush(consumer: &Consumer) {
        compio::time::timeout(Duration::from_secs(5), consumer.flushed())
            .await
            .expect("a flush within 5 s");
    }

    /// Lets the runtime turn until `done` holds, for at most 5 s.
    async fn until(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(Instant::now() < deadline, "{what}: not within 5 s");
            compio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Runs `test` on io_uring (the send ring) and on epoll (a send each), each on a thread
    /// of its own: the sender is chosen once per thread, as on a worker.
    fn on_both_drivers(test: fn(compio::runtime::Runtime)) {
        use crate::runtime::{build_runtime, IoMode};
        for mode in [IoMode::Uring, IoMode::Epoll] {
            std::thread::spawn(move || match build_runtime(0, mode, None) {
                Ok(rt) => test(rt),
                Err(e) if mode == IoMode::Uring => {
                    crate::runtime::no_uring("the cohort on the send ring", e)
                }
                Err(e) => panic!("{e}"),
            })
            .join()
            .unwrap_or_else(|_| panic!("on {mode:?}"));
        }
    }

    #[derive(Debug, Default)]
    struct Tally {
        bytes_out: AtomicU64,
        players_cut: AtomicU64,
    }

    impl Counters for Tally {
        fn bytes_out(&self) -> &AtomicU64 {
            &self.bytes_out
        }
        fn players_cut(&self) -> &AtomicU64 {
            &self.players_cut
        }
    }

    /// What the cohorts see of a server.
    struct Server {
        hub: Arc<Hub>,
        counters: Arc<Tally>,
    }

    /// A server with a stream whose keyframe has reached this core, and a client to count a
    /// player's bytes on.
    async fn stream() -> (
        Server,
        (StreamKey, StreamSettings),
        PublishGuard,
        Arc<Client>,
    ) {
        let shared = Server {
            hub: Hub::new(),
            counters: Arc::default(),
        };
        let (key, settings) = crate::hub::test_stream(STALL);
        let mut publisher = shared.hub.publish(&key, &settings, 1).expect("publish");
        publisher.push(MediaKind::Video, 0, frame(MediaKind::Video, true, 64));
        let clients = ClientRegistry::default();
        let guard = clients.register(
            2,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            key.clone(),
            String::new(),
            String::new(),
            ClientKind::RtmpPlay,
        );
        let client = guard.client().clone();
        (shared, (key, settings), publisher, client)
    }

    /// A player that has written its start on its own, as its task does before it sits down.
    fn started(consumer: &mut Consumer) -> Form {
        let mut form = Form::rtmp(60000);
        let (mut iov, mut scratch) = (Vec::new(), BytesMut::new());
        consumer.next_batch(MAX_BATCH, |f| form.append(f, &mut iov, &mut scratch));
        assert!(!iov.is_empty(), "no start to write");
        form
    }

    #[test]
    fn players_in_step_get_the_same_bytes_and_the_last_one_out_ends_the_cohort() {
        on_both_drivers(|rt| {
            rt.block_on(async {
                let (shared, (key, settings), mut publisher, client) = stream().await;
                let mut a = Consumer::subscribe(&shared.hub, &key, &settings);
                let mut b = Consumer::subscribe(&shared.hub, &key, &settings);
                let (form_a, form_b) = (started(&mut a), started(&mut b));
                let ((mut ra, wa), (mut rb, wb)) = (pair(), pair());
                let seat_a = seat(
                    &a,
                    form_a,
                    wa.as_raw_fd(),
                    (&client, &shared.counters),
                    STALL,
                );
                let seat_b = seat(
                    &b,
                    form_b,
                    wb.as_raw_fd(),
                    (&client, &shared.counters),
                    STALL,
                );
                assert!(
                    seat_a.is_some() && seat_b.is_some(),
                    "players in step not seated"
                );
                assert_eq!(COHORTS.with(|c| c.borrow().len()), 1);

                publisher.push(MediaKind::Video, 40, frame(MediaKind::Video, false, 900));
                publisher.push(MediaKind::Audio, 46, frame(MediaKind::Audio, false, 200));
                next_flush(&a).await;
                // What a player on its own would have written from the same place.
                let (mut form, mut own, mut scratch) = (form_a, Vec::new(), BytesMut::new());
                a.next_batch(MAX_BATCH, |f| form.append(f, &mut own, &mut scratch));
                let own = own.concat();
                for r in [&mut ra, &mut rb] {
                    let mut got = vec![0; own.len()];
                    r.read_exact(&mut got).expect("the cohort's batch");
                    assert!(
                        got == own,
                        "a seated player got other bytes than its own writes"
                    );
                }

                drop((seat_a, seat_b));
                until("the cohort ends with its last player", || {
                    COHORTS.with(|c| c.borrow().is_empty())
                })
                .await;
                drop((a, b, publisher));
                assert!(
                    shared.hub.sources().is_empty(),
                    "the stream outlived everyone"
                );
            });
        });
    }

    #[test]
    fn a_player_whose_socket_is_full_is_let_go_with_the_rest_of_its_batch() {
        on_both_drivers(|rt| {
            rt.block_on(async {
                let (shared, (key, settings), mut publisher, client) = stream().await;
                let mut a = Consumer::subscribe(&shared.hub, &key, &settings);
                let form = started(&mut a);
                let (mut r, w) = pair();
                let sock = socket2::SockRef::from(&w);
                sock.set_send_buffer_size(4096).expect("SO_SNDBUF");
                let seat = seat(&a, form, w.as_raw_fd(), (&client, &shared.counters), STALL)
                    .expect("seat");
                let held = compio::runtime::spawn(seat.hold(|| false));

                // Far more than the socket takes while nobody reads.
                publisher.push(
                    MediaKind::Video,
                    40,
                    frame(MediaKind::Video, false, 4 << 20),
                );
                next_flush(&a).await;
                // The next flush reads the short send's completion.
                publisher.push(MediaKind::Audio, 46, frame(MediaKind::Audio, false, 200));
                let back = compio::time::timeout(Duration::from_secs(5), held)
                    .await
                    .expect("let go within a flush")
                    .expect("hold");
                back.result.expect("a short send is no error");
                let rest: usize = back.rest.iter().map(Bytes::len).sum();
                assert!(rest > 0, "a 4 MB batch fit a full socket");

                // It resumes after the big frame, with the rest of it first, and nothing lost.
                let (mut form, mut own, mut scratch) = (form, Vec::new(), BytesMut::new());
                a.next_batch(1, |f| form.append(f, &mut own, &mut scratch));
                assert_eq!(a.position(), back.at);
                assert_eq!(form, back.form);
                let own = own.concat();
                let mut got = vec![0; own.len() - rest];
                r.read_exact(&mut got).expect("what went out");
                got.extend_from_slice(&back.rest.concat());
                assert!(got == own, "the sent part and the rest are not the batch");
            });
        });
    }
}
