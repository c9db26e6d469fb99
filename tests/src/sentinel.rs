//! A Sentinel-managed Redis on free loopback ports, in the test's scratch
//! directory: one primary, one replica and three sentinels (quorum 2) that
//! fail over a second after the primary stops answering.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::process::{ChildGuard, Scratch, free_port, is_stopped};
use crate::redis::{command_at, server_command};
use crate::wait;

/// The master name the sentinels monitor.
pub const MASTER: &str = "m";
/// How long the setup may take to be ready (the replica in sync, every sentinel
/// knowing the replica and the two other sentinels).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the sentinels may take to promote the replica after the primary died.
pub const FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);

/// The running setup; every process stopped on drop.
#[derive(Debug)]
pub struct SentinelSetup {
    /// Data nodes' ports: the primary at start, then the replica.
    nodes: Vec<(u16, Option<ChildGuard>)>,
    sentinels: Vec<(u16, ChildGuard)>,
}

impl SentinelSetup {
    /// Starts the nodes and the sentinels and waits until a failover could happen.
    pub fn start(scratch: &Scratch) -> Self {
        Self::start_with(scratch, &[])
    }

    /// [`SentinelSetup::start`] with a primary the sentinels cannot demote
    /// (`REPLICAOF` renamed away): after a failover it stays a primary, as one
    /// cut off from the sentinels but not from its clients would.
    pub fn start_with_undemotable_primary(scratch: &Scratch) -> Self {
        Self::start_with(
            scratch,
            &[
                "--rename-command",
                "REPLICAOF",
                "",
                "--rename-command",
                "SLAVEOF",
                "",
            ],
        )
    }

    fn start_with(scratch: &Scratch, primary_args: &[&str]) -> Self {
        let dir = scratch.file("sentinel");
        std::fs::create_dir_all(&dir).expect("create sentinel dir");
        let primary = free_port();
        let replica = free_port();
        let nodes = vec![
            (
                primary,
                Some(node(&dir, scratch, primary, None, primary_args)),
            ),
            (
                replica,
                Some(node(&dir, scratch, replica, Some(primary), &[])),
            ),
        ];
        let sentinels = (1..=3)
            .map(|n| {
                let port = free_port();
                let conf = dir.join(format!("sentinel-{n}.conf"));
                std::fs::write(
                    &conf,
                    format!(
                        "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                         sentinel monitor {MASTER} 127.0.0.1 {primary} 2\n\
                         sentinel down-after-milliseconds {MASTER} 1000\n\
                         sentinel failover-timeout {MASTER} 3000\n",
                        dir = dir.display()
                    ),
                )
                .expect("write sentinel config");
                let mut cmd = Command::new("redis-server");
                cmd.arg(&conf).arg("--sentinel");
                let log = scratch.file(&format!("sentinel-{n}.log"));
                (port, ChildGuard::spawn("redis-sentinel", cmd, &log, false))
            })
            .collect();
        let setup = SentinelSetup { nodes, sentinels };
        wait::until("the replica to sync", READY_TIMEOUT, || {
            let info = command_at(replica, &["INFO", "replication"]).ok()?;
            info.contains("master_link_status:up").then_some(())
        });
        for (port, _) in &setup.sentinels {
            wait::until(
                "each sentinel to know the primary, the replica and the others",
                READY_TIMEOUT,
                || {
                    let master = command_at(*port, &["SENTINEL", "master", MASTER]).ok()?;
                    let field = |name: &str| {
                        let mut lines = master.lines();
                        lines.find(|l| *l == name)?;
                        lines.next().map(str::to_owned)
                    };
                    (field("num-slaves")? == "1" && field("num-other-sentinels")? == "2")
                        .then_some(())
                },
            );
        }
        assert_eq!(setup.primary_port(), Some(primary));
        setup
    }

    /// `redis+sentinel://127.0.0.1:<s1>,127.0.0.1:<s2>,127.0.0.1:<s3>/m`.
    pub fn url(&self) -> String {
        let hosts: Vec<_> = self
            .sentinels
            .iter()
            .map(|(port, _)| format!("127.0.0.1:{port}"))
            .collect();
        format!("redis+sentinel://{}/{MASTER}", hosts.join(","))
    }

    /// The primary's port as the first sentinel that answers names it.
    pub fn primary_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|(port, _)| {
            let reply = command_at(*port, &["SENTINEL", "get-master-addr-by-name", MASTER]).ok()?;
            reply.lines().nth(2)?.parse().ok()
        })
    }

    /// SIGKILLs the current primary (no chance to say goodbye); returns its port.
    pub fn kill_primary(&mut self) -> u16 {
        let port = self.primary_port().expect("a primary to kill");
        let (_, guard) = self
            .nodes
            .iter_mut()
            .find(|(p, _)| *p == port)
            .expect("the primary is one of the nodes");
        let mut guard = guard.take().expect("the primary is running");
        guard.signal("KILL");
        guard.stop();
        port
    }

    /// Asks the sentinels to fail over now (`SENTINEL FAILOVER`): the primary
    /// stays up and becomes a replica of the promoted one. Returns its port.
    pub fn fail_over(&self) -> u16 {
        let port = self.primary_port().expect("a primary to fail over");
        let (sentinel, _) = &self.sentinels[0];
        let reply =
            command_at(*sentinel, &["SENTINEL", "FAILOVER", MASTER]).expect("SENTINEL FAILOVER");
        assert_eq!(reply, "+OK");
        port
    }

    /// The port of the running data node the sentinels do not name as the primary.
    pub fn replica_port(&self) -> u16 {
        let primary = self.primary_port();
        self.nodes
            .iter()
            .find(|(port, guard)| guard.is_some() && Some(*port) != primary)
            .map(|(port, _)| *port)
            .expect("a running replica")
    }

    /// Waits until the replica has applied everything the primary had accepted
    /// when this was called. Compares replication offsets: `WAIT` would only
    /// wait for the writes of the connection that sends it, not the origin's.
    pub fn wait_for_replica_sync(&self) {
        let primary = self.primary_port().expect("a primary");
        let replica = self.replica_port();
        let written =
            replication_offset(primary, "master_repl_offset").expect("the primary's offset");
        wait::until("the replica to catch up", READY_TIMEOUT, || {
            let applied = replication_offset(replica, "slave_repl_offset")?;
            (applied >= written).then_some(())
        });
    }

    /// Cuts the replica off as if it lagged behind a primary about to die: from
    /// now until [`SentinelSetup::thaw_replica`], what the primary accepts
    /// exists only there. Returns the replica's port.
    ///
    /// The replica is frozen (SIGSTOP) and its replication link closed on the
    /// primary. Either alone would not do: the kernel goes on receiving the
    /// replication stream into a frozen replica's socket, and the replica applies
    /// it once it runs again, even after the primary died; and a replica whose
    /// link was closed reconnects and resynchronises within a second.
    ///
    /// A frozen replica answers no PING, so after the down-after period (1 s)
    /// the sentinels hold it down and would not promote it; once thawed it
    /// answers and is eligible again. Its link to the primary is seen down only
    /// from the thaw, far from the sentinels' limit (ten down-after periods
    /// plus the time the primary has been down).
    pub fn cut_off_replica(&self) -> u16 {
        let replica = self.replica_port();
        let primary = self.primary_port().expect("a primary");
        let guard = self.node_guard(replica);
        guard.signal("STOP");
        let pid = guard.pid();
        wait::until("the replica to be stopped", READY_TIMEOUT, || {
            is_stopped(pid).then_some(())
        });
        let closed = command_at(primary, &["CLIENT", "KILL", "TYPE", "replica"])
            .expect("CLIENT KILL on the primary");
        assert_eq!(closed, ":1", "the primary's replication links closed");
        replica
    }

    /// Lets the replica [`SentinelSetup::cut_off_replica`] froze run again (SIGCONT).
    pub fn thaw_replica(&self, port: u16) {
        self.node_guard(port).signal("CONT");
    }

    fn node_guard(&self, port: u16) -> &ChildGuard {
        self.nodes
            .iter()
            .find(|(p, _)| *p == port)
            .and_then(|(_, guard)| guard.as_ref())
            .expect("a running node on that port")
    }

    /// Waits until the sentinels name a primary other than `old` that says it is one.
    pub fn wait_for_failover(&self, old: u16) -> u16 {
        wait::until(
            "the sentinels to promote the replica",
            FAILOVER_TIMEOUT,
            || {
                let port = self.primary_port().filter(|p| *p != old)?;
                let role = command_at(port, &["ROLE"]).ok()?;
                (role.lines().nth(1)? == "master").then_some(port)
            },
        )
    }
}

impl Drop for SentinelSetup {
    fn drop(&mut self) {
        // A frozen node would not act on the SIGTERM that stops it, and would
        // be killed only after the grace period.
        for guard in self.nodes.iter().filter_map(|(_, guard)| guard.as_ref()) {
            guard.signal("CONT");
        }
    }
}

/// A `*_offset` field of `INFO replication` at `port`.
fn replication_offset(port: u16, field: &str) -> Option<u64> {
    let info = command_at(port, &["INFO", "replication"]).ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .parse()
        .ok()
}

fn node(
    dir: &Path,
    scratch: &Scratch,
    port: u16,
    replica_of: Option<u16>,
    args: &[&str],
) -> ChildGuard {
    let node_dir = dir.join(format!("node-{port}"));
    std::fs::create_dir_all(&node_dir).expect("create node dir");
    let mut cmd = server_command(port, &node_dir);
    cmd.args(args);
    if let Some(primary) = replica_of {
        cmd.args(["--replicaof", "127.0.0.1", &primary.to_string()]);
    }
    let log = scratch.file(&format!("redis-{port}.log"));
    let guard = ChildGuard::spawn("redis-server", cmd, &log, false);
    wait::until("redis-server to answer PING", READY_TIMEOUT, || {
        (command_at(port, &["PING"]).ok()? == "+PONG").then_some(())
    });
    guard
}
