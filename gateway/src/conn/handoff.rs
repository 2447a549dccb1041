//! Moving an upgraded connection to its user's home shard.
//!
//! A connection is accepted by whichever shard the kernel's SO_REUSEPORT balancing picked; the
//! user lives on `shard_of(user)`. After the handshake the accepting shard duplicates the
//! socket's file descriptor, drops its own glommio stream (closing the original descriptor, not
//! the socket) and sends the duplicate through the SPSC ring to the home shard, which wraps it
//! in a glommio stream registered with its own reactor. If the ring is full the [`OwnedFd`] is
//! dropped with the message, which closes it: no descriptor leaks.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use glommio::net::TcpStream;

/// Duplicates the stream's socket descriptor (close-on-exec), for another shard to own.
#[allow(unsafe_code)]
pub fn dup_stream(stream: &TcpStream) -> io::Result<OwnedFd> {
    // SAFETY: `stream` owns this descriptor and stays alive (borrowed) for the whole call,
    // so the descriptor is open and valid while the `BorrowedFd` exists; the borrow ends
    // before this function returns (only the dup'ed, separately owned descriptor escapes).
    let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    fd.try_clone_to_owned()
}

/// Wraps a descriptor received from another shard in a stream on this shard's reactor.
pub fn adopt_stream(fd: OwnedFd) -> TcpStream {
    let std_stream = std::net::TcpStream::from(fd);
    TcpStream::from(socket2::Socket::from(std_stream))
}
