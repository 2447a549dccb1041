//! Loopback ports and waiting with a deadline.

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A loopback port nobody listens on right now (bind port 0, read it, close).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free loopback port")
}

/// Waits until something accepts TCP connections on `addr` (`host:port`); panics after
/// `within`.
pub fn wait_listening(addr: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `pred` every 50 ms until it holds; panics naming `what` after `within`.
pub fn until(what: &str, within: Duration, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_is_bindable_and_wait_listening_sees_a_listener() {
        let port = free_port();
        let l = TcpListener::bind(("127.0.0.1", port)).expect("the free port binds");
        wait_listening(&format!("127.0.0.1:{port}"), Duration::from_secs(5));
        drop(l);
    }

    #[test]
    #[should_panic(expected = "timed out waiting for never")]
    fn until_names_what_it_waited_for() {
        until("never", Duration::from_millis(100), || false);
    }
}
