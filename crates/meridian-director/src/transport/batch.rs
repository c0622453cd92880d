//! Linux: the UDP loop receiving up to [`BATCH`] datagrams per `recvmmsg` and sending their
//! responses with one `sendmmsg`, so that under load a query costs a fraction of a system call
//! instead of a `recvfrom` and a `sendto` each (docs/benchmarks.md). Each datagram is still
//! answered on its own by [`respond`], as the one-datagram loop does.
//!
//! The socket stays registered with tokio: both calls run inside `UdpSocket::async_io`, so a
//! drained socket (EAGAIN) clears tokio's readiness and the loop waits for the next datagram.
//! `recvmmsg` comes from nix, `sendmmsg` from rustix (nix's send results cannot be counted
//! without reading addresses it never wrote); both wrap the calls without unsafe code here.
//! Buffers and addresses are allocated once per loop, the receive headers once per thread.

use std::cell::RefCell;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrLike, SockaddrStorage, recvmmsg};
use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny, sendmmsg};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::{Transport, UDP_RECEIVE, answerable, respond};
use crate::server::Shared;

/// Datagrams per receive and per send. Under dnsperf's load (100 queries outstanding per
/// client) batches fill; a lone query is still one receive and one send.
pub(crate) const BATCH: usize = 32;

pub(crate) async fn udp_loop(socket: Arc<UdpSocket>, state: Arc<Shared>, shutdown: CancellationToken) {
    let mut received = Received {
        buf: Box::new([[0u8; UDP_RECEIVE]; BATCH]),
        got: [(0, None); BATCH],
        v6: socket.local_addr().is_ok_and(|a| a.is_ipv6()),
    };
    let mut outs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(UDP_RECEIVE)).collect();
    let mut to: Vec<(SocketAddr, SocketAddrAny)> = Vec::with_capacity(BATCH);
    loop {
        let n = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = socket.async_io(Interest::READABLE | Interest::ERROR, || received.receive(socket.as_raw_fd())) => {
                match r {
                    Ok(n) => n,
                    // ICMP errors from earlier sends (ECONNREFUSED and the like) surface here;
                    // the socket itself stays usable.
                    Err(e) => {
                        tracing::debug!(error = %e, "udp receive failed");
                        continue;
                    }
                }
            }
        };
        to.clear();
        for i in 0..n {
            let (len, src) = received.got[i];
            let Some(src) = src.filter(|s| answerable(*s)) else { continue };
            let msg = &received.buf[i][..len];
            if respond(&state, msg, src, Transport::Udp, &mut outs[to.len()]) {
                to.push((src, SocketAddrAny::from(src)));
            }
        }
        send_all(&socket, &outs[..to.len()], &to).await;
    }
}

/// What one `recvmmsg` fills: the datagrams, [`UDP_RECEIVE`] bytes apart in `buf`, and each
/// one's length and source.
struct Received {
    buf: Box<[[u8; UDP_RECEIVE]; BATCH]>,
    got: [(usize, Option<SocketAddr>); BATCH],
    /// The socket's address family, which picks the headers ([`HEADERS`]).
    v6: bool,
}

thread_local! {
    /// `recvmmsg`'s headers, allocated once per thread and address family. Not in the loop's
    /// state: they hold raw pointers, so a task holding them across an await could not move
    /// between worker threads. Per family because the kernel leaves each header's address
    /// length as it last wrote it, which fits the next receive only on a socket of the same
    /// family.
    static HEADERS: RefCell<[Option<MultiHeaders<SockaddrStorage>>; 2]> = const { RefCell::new([None, None]) };
}

impl Received {
    fn receive(&mut self, fd: std::os::fd::RawFd) -> io::Result<usize> {
        let (buf, got) = (&mut self.buf, &mut self.got);
        HEADERS.with_borrow_mut(|h| {
            let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] = buf.each_mut().map(|b| [IoSliceMut::new(b)]);
            let headers =
                h[usize::from(self.v6)].get_or_insert_with(|| MultiHeaders::preallocate(BATCH, None));
            let results = recvmmsg(fd, headers, iovs.iter_mut(), MsgFlags::empty(), None)?;
            let mut n = 0;
            for (r, slot) in results.zip(got.iter_mut()) {
                *slot = (r.bytes, r.address.and_then(std_addr));
                n += 1;
            }
            Ok(n)
        })
    }
}

fn std_addr(a: SockaddrStorage) -> Option<SocketAddr> {
    if a.len() == 0 {
        return None;
    }
    match a.as_sockaddr_in() {
        Some(v4) => Some(SocketAddr::V4((*v4).into())),
        None => a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into())),
    }
}

/// Sends `outs[i]` to `to[i]`, as many per `sendmmsg` as the socket takes: when its buffer is
/// full, waits until it is writable and sends the rest. A message the kernel refuses outright
/// (an unreachable destination, say) is logged at debug and skipped, as the one-datagram loop
/// does.
async fn send_all(socket: &UdpSocket, outs: &[Vec<u8>], to: &[(SocketAddr, SocketAddrAny)]) {
    let mut sent = 0;
    while sent < to.len() {
        match socket.async_io(Interest::WRITABLE, || send(socket, &outs[sent..], &to[sent..])).await {
            Ok(n) => sent += n.max(1),
            Err(e) => {
                tracing::debug!(error = %e, src = %to[sent].0, "udp send failed");
                sent += 1;
            }
        }
    }
}

fn send(socket: &UdpSocket, outs: &[Vec<u8>], to: &[(SocketAddr, SocketAddrAny)]) -> io::Result<usize> {
    let n = to.len().min(BATCH);
    let iovs: [[IoSlice<'_>; 1]; BATCH] =
        std::array::from_fn(|i| [IoSlice::new(outs.get(i).map_or(&[][..], Vec::as_slice))]);
    let mut controls: [SendAncillaryBuffer<'_, '_, '_>; BATCH] =
        std::array::from_fn(|_| SendAncillaryBuffer::default());
    let mut i = 0;
    let mut msgs: [MMsgHdr<'_>; BATCH] = controls.each_mut().map(|control| {
        let msg = match to.get(i) {
            Some((_, addr)) => MMsgHdr::new_with_addr(addr, &iovs[i], control),
            None => MMsgHdr::new(&iovs[i], control),
        };
        i += 1;
        msg
    });
    Ok(sendmmsg(socket.as_fd(), &mut msgs[..n], SendFlags::empty())?)
}
