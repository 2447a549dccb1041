//! [`ChildGuard`]: a child process that cannot outlive its test.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// How long [`ChildGuard::terminate`] waits for a graceful exit before SIGKILL.
const TERMINATE_WAIT: Duration = Duration::from_secs(15);

/// Reads the address a server (gateway) prints first on stdout, `listening on ADDR`; the
/// child must have been spawned with a piped stdout. Panics naming `what` on anything else.
pub fn listening_addr(child: &mut Child, what: &str) -> SocketAddr {
    let stdout = child
        .stdout
        .take()
        .unwrap_or_else(|| panic!("{what}: stdout not piped"));
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("{what}: reading stdout: {e}"));
    line.trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("{what}: unexpected first line {line:?}"))
}

/// A child process killed (SIGKILL) and reaped when dropped — also when the test panics.
#[derive(Debug)]
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    /// Guards `child`.
    pub fn new(child: Child) -> Self {
        ChildGuard(Some(child))
    }

    /// The process id (0 once it was killed).
    pub fn pid(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    /// `kill -9` now, and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM (graceful) and wait for the exit; SIGKILL after 15 s.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let deadline = Instant::now() + TERMINATE_WAIT;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill9();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guarded_child_is_killed_and_reaped_on_drop() {
        let child = Command::new("sleep")
            .arg("600")
            .spawn()
            .expect("sleep runs");
        let g = ChildGuard::new(child);
        let pid = g.pid();
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        drop(g);
        // Reaped, so no zombie entry is left either.
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
}
