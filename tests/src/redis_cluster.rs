//! A Redis Cluster on free loopback ports, in the test's scratch directory:
//! three primaries with one replica each, built by `redis-cli --cluster create`.
//! A node is declared failing after a second without an answer
//! (`cluster-node-timeout 1000`), so a failover takes a few seconds.
//!
//! Who owns what is read from `CLUSTER NODES`: it is one bulk string, which
//! [`command_at`] returns whole, whereas `CLUSTER SLOTS` and `CLUSTER SHARDS`
//! are nested arrays it flattens. It also flags the nodes known to have failed.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use pushwire_shared::slot::SLOTS;

use crate::process::{ChildGuard, Scratch, free_port};
use crate::redis::{command_at, server_command};
use crate::wait;

/// How many nodes the cluster has: three primaries and their replicas.
const NODES: usize = 6;
/// A node's cluster bus listens on its port plus this.
const BUS_OFFSET: u16 = 10000;
/// How long the cluster may take to be ready (created, every node agreeing and
/// every replica in sync).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a replica may take to replace a killed primary, the other nodes
/// included.
pub const FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `redis-cli --cluster` may run (a reshard migrates keys one batch at a time).
const CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a single `redis-cli -c` command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// The running cluster; every node stopped on drop.
#[derive(Debug)]
pub struct RedisCluster {
    /// Every node's port, in start order, and the node unless it was killed.
    nodes: Vec<(u16, Option<ChildGuard>)>,
    /// Where `redis-cli` says what it did.
    cli_log: PathBuf,
}

/// Who owns which slots, as one node sees it: the first slot of each range,
/// then its last slot and the owner's port.
type SlotMap = BTreeMap<u16, (u16, u16)>;

impl RedisCluster {
    /// Starts six nodes, makes them a cluster of three primaries and three
    /// replicas, and waits until it serves every slot and every replica is in sync.
    pub fn start(scratch: &Scratch) -> Self {
        let dir = scratch.file("redis-cluster");
        std::fs::create_dir_all(&dir).expect("create redis-cluster dir");
        let mut ports: Vec<u16> = Vec::with_capacity(NODES);
        while ports.len() < NODES {
            let port = free_port();
            // The bus port must be free too, and below 65535 like the port.
            let Some(bus) = port.checked_add(BUS_OFFSET).filter(|b| *b < u16::MAX) else {
                continue;
            };
            let taken = ports
                .iter()
                .any(|p| [port, bus].contains(p) || p + BUS_OFFSET == port);
            if !taken && TcpListener::bind(("127.0.0.1", bus)).is_ok() {
                ports.push(port);
            }
        }
        let nodes = ports
            .iter()
            .map(|&port| {
                let node_dir = dir.join(format!("node-{port}"));
                std::fs::create_dir_all(&node_dir).expect("create node dir");
                let mut cmd = server_command(port, &node_dir);
                cmd.args(["--cluster-enabled", "yes", "--cluster-node-timeout", "1000"])
                    .arg("--cluster-config-file")
                    .arg(node_dir.join("nodes.conf"))
                    // By default a primary waits 5 s for more replicas to share
                    // a full sync with; each has one, so it would only wait.
                    .args(["--repl-diskless-sync-delay", "0"]);
                let log = scratch.file(&format!("redis-{port}.log"));
                (
                    port,
                    Some(ChildGuard::spawn("redis-server", cmd, &log, false)),
                )
            })
            .collect();
        let cluster = RedisCluster {
            nodes,
            cli_log: scratch.file("redis-cli.log"),
        };
        for &port in &ports {
            wait::until("redis-server to answer PING", READY_TIMEOUT, || {
                (command_at(port, &["PING"]).ok()? == "+PONG").then_some(())
            });
        }

        let mut cmd = Command::new("redis-cli");
        cmd.args(["--cluster", "create"])
            .args(ports.iter().map(|p| format!("127.0.0.1:{p}")))
            .args(["--cluster-replicas", "1", "--cluster-yes"]);
        cluster.run_cli("redis-cli --cluster create", cmd);

        wait::until("every node to see every slot served", READY_TIMEOUT, || {
            cluster.agreed_slot_map()
        });
        // Right after `create` a replica may still call itself a primary (of
        // no slots) until its `CLUSTER REPLICATE` is seen.
        let replicas = wait::until("three primaries and three replicas", READY_TIMEOUT, || {
            let primaries = cluster.primaries();
            let replicas: Vec<u16> = ports
                .iter()
                .copied()
                .filter(|p| !primaries.contains(p))
                .collect();
            (primaries.len() == NODES / 2 && replicas.len() == NODES / 2).then_some(replicas)
        });
        for port in replicas {
            wait::until("every replica to sync", READY_TIMEOUT, || {
                let info = command_at(port, &["INFO", "replication"]).ok()?;
                info.contains("master_link_status:up").then_some(())
            });
        }
        cluster
    }

    /// `redis+cluster://127.0.0.1:<p1>,127.0.0.1:<p2>,127.0.0.1:<p3>`: the first
    /// three nodes as seeds (primaries or replicas, as a client may be given).
    pub fn seeds(&self) -> String {
        let hosts: Vec<_> = self.nodes[..3]
            .iter()
            .map(|(port, _)| format!("127.0.0.1:{port}"))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// Every node's port, in start order, killed ones included.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|(port, _)| *port).collect()
    }

    /// The port of the primary owning `slot`, as a live node sees it.
    pub fn primary_for_slot(&self, slot: u16) -> u16 {
        let map = self.slot_map();
        let (_, (last, owner)) = map
            .range(..=slot)
            .next_back()
            .unwrap_or_else(|| panic!("no node owns slot {slot}: {map:?}"));
        assert!(slot <= *last, "no node owns slot {slot}: {map:?}");
        *owner
    }

    /// Every slot the node on `port` owns, ascending, as a live node sees it.
    pub fn slots_of(&self, port: u16) -> Vec<u16> {
        owned_by(&self.slot_map(), port)
    }

    /// The ports of the live primaries, ascending, as a live node sees them.
    pub fn primaries(&self) -> Vec<u16> {
        let nodes = self.ask_any(&["CLUSTER", "NODES"]);
        let live: Vec<u16> = self.live_ports().collect();
        let mut ports: Vec<u16> = nodes
            .lines()
            .filter_map(parse_node_line)
            // A killed primary stays listed, flagged as failing once the
            // others noticed; before that only the harness knows.
            .filter(|n| n.flags.contains(&"master") && !n.failing() && live.contains(&n.port))
            .map(|n| n.port)
            .collect();
        ports.sort_unstable();
        ports
    }

    /// SIGKILLs the node on `port`: no chance to tell the others.
    pub fn kill(&mut self, port: u16) {
        let (_, guard) = self
            .nodes
            .iter_mut()
            .find(|(p, _)| *p == port)
            .unwrap_or_else(|| panic!("no node on port {port}"));
        let mut guard = guard
            .take()
            .unwrap_or_else(|| panic!("the node on {port} was killed already"));
        guard.signal("KILL");
        guard.stop();
    }

    /// Waits until every live node says `cluster_state:ok` and sees every
    /// slot owned by a node other than `dead`, all of them agreeing who.
    pub fn wait_for_failover(&self, dead: u16) {
        wait::until(
            &format!("another node to take over the slots of {dead}"),
            FAILOVER_TIMEOUT,
            || {
                let map = self.agreed_slot_map()?;
                owned_by(&map, dead).is_empty().then_some(())
            },
        );
    }

    /// Moves `slots` slots, with their keys, from the primary on `from` to the
    /// one on `to` (`redis-cli --cluster reshard`), and waits until every live
    /// node agrees on the new owners.
    pub fn reshard(&self, from: u16, to: u16, slots: u32) {
        let had = self.slots_of(to).len();
        let entry = self.live_ports().next().expect("a live node");
        let mut cmd = Command::new("redis-cli");
        cmd.args(["--cluster", "reshard", &format!("127.0.0.1:{entry}")])
            .args(["--cluster-from", &node_id(from)])
            .args(["--cluster-to", &node_id(to)])
            .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"]);
        self.run_cli("redis-cli --cluster reshard", cmd);
        let expected = had + slots as usize;
        wait::until(
            &format!("every node to see {slots} more slots on {to}"),
            READY_TIMEOUT,
            || {
                let map = self.agreed_slot_map()?;
                (owned_by(&map, to).len() == expected).then_some(())
            },
        );
    }

    /// CPU time the node on `port` has used so far, in seconds (`INFO cpu`:
    /// system plus user, all its threads but not its forks).
    pub fn cpu_seconds(&self, port: u16) -> f64 {
        let info = command_at(port, &["INFO", "cpu"])
            .unwrap_or_else(|e| panic!("INFO cpu from {port}: {e}"));
        let field = |name: &str| -> f64 {
            info.lines()
                .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in INFO cpu from {port}: {info}"))
        };
        field("used_cpu_sys") + field("used_cpu_user")
    }

    /// Runs `args` with `redis-cli -c` against a live node, following the
    /// cluster's redirections, and returns its output without the final newline.
    pub fn cli(&self, args: &[&str]) -> String {
        let port = self.live_ports().next().expect("a live node");
        self.cli_with_input(port, args, "")
    }

    /// Runs `redis-cli -c` against the node on `port` with one command a line
    /// in `input` (each follows redirections on its own); returns the replies,
    /// one a line.
    pub fn cli_script(&self, port: u16, input: &str) -> String {
        self.cli_with_input(port, &[], input)
    }

    /// `redis-cli -c` against `port` with `args`, fed `input`; its output.
    fn cli_with_input(&self, port: u16, args: &[&str], input: &str) -> String {
        use std::io::Write;
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-c", "-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args);
        let mut guard = ChildGuard::spawn("redis-cli -c", cmd, &self.cli_log, true);
        let child = guard.child_mut();
        let mut stdout = child.stdout.take().expect("piped stdout");
        let mut stdin = child.stdin.take().expect("piped stdin");
        // Written and read on their own threads: a long script fills both pipes.
        let input = input.to_owned();
        let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let reader = std::thread::spawn(move || {
            let mut out = String::new();
            stdout.read_to_string(&mut out).map(|_| out)
        });
        let status = guard.wait_exit(COMMAND_TIMEOUT);
        let out = reader
            .join()
            .expect("stdout reader")
            .expect("read redis-cli's output");
        assert!(status.success(), "redis-cli -c {args:?}: {status}: {out}");
        writer
            .join()
            .expect("stdin writer")
            .expect("write redis-cli's input");
        out.strip_suffix('\n').unwrap_or(&out).to_owned()
    }

    /// Runs a `redis-cli --cluster` command to completion; panics if it fails.
    fn run_cli(&self, what: &str, cmd: Command) {
        let mut guard = ChildGuard::spawn(what, cmd, &self.cli_log, false);
        let status = guard.wait_exit(CLI_TIMEOUT);
        assert!(
            status.success(),
            "{what} failed ({status}); see {}",
            self.cli_log.display()
        );
    }

    /// The ports of the nodes not killed.
    fn live_ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.nodes
            .iter()
            .filter(|(_, guard)| guard.is_some())
            .map(|(port, _)| *port)
    }

    /// The reply of the first live node that answers `args`.
    fn ask_any(&self, args: &[&str]) -> String {
        self.live_ports()
            .find_map(|port| command_at(port, args).ok())
            .unwrap_or_else(|| panic!("no live node answers {args:?}"))
    }

    /// The slot map of the first live node that answers.
    fn slot_map(&self) -> SlotMap {
        self.live_ports()
            .find_map(|port| slot_map_at(port).ok())
            .expect("a live node's slot map")
    }

    /// The slot map, if every live node has the same, covering every slot, and
    /// says the cluster is ok.
    fn agreed_slot_map(&self) -> Option<SlotMap> {
        let mut agreed: Option<SlotMap> = None;
        for port in self.live_ports() {
            let info = command_at(port, &["CLUSTER", "INFO"]).ok()?;
            if !info.contains("cluster_state:ok") {
                return None;
            }
            let map = slot_map_at(port).ok()?;
            match &agreed {
                Some(seen) if *seen != map => return None,
                _ => agreed = Some(map),
            }
        }
        let map = agreed?;
        let covered: usize = map
            .iter()
            .map(|(first, (last, _))| usize::from(last - first) + 1)
            .sum();
        (covered == usize::from(SLOTS)).then_some(map)
    }
}

/// The id of the node on `port` (`CLUSTER MYID`).
fn node_id(port: u16) -> String {
    let id = command_at(port, &["CLUSTER", "MYID"])
        .unwrap_or_else(|e| panic!("CLUSTER MYID from {port}: {e}"));
    assert!(
        id.len() == 40 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "CLUSTER MYID from {port}: {id}"
    );
    id
}

/// One line of `CLUSTER NODES`.
#[derive(Debug)]
struct NodeLine<'a> {
    port: u16,
    flags: Vec<&'a str>,
    /// Slot ranges, first and last; slots being migrated (`[…]`) left out, as
    /// they still belong to the node listed with them.
    slots: Vec<(u16, u16)>,
}

impl NodeLine<'_> {
    /// Whether the node is known or suspected to have failed.
    fn failing(&self) -> bool {
        self.flags.iter().any(|f| matches!(*f, "fail" | "fail?"))
    }
}

/// `<id> <ip:port@bus[,hostname]> <flags> <primary> <ping> <pong> <epoch> <link> <slot>…`
fn parse_node_line(line: &str) -> Option<NodeLine<'_>> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let address = fields.get(1)?;
    let port = address
        .split('@')
        .next()?
        .rsplit_once(':')?
        .1
        .parse()
        .ok()?;
    let flags = fields.get(2)?.split(',').collect();
    let slots = fields
        .iter()
        .skip(8)
        .filter(|s| !s.starts_with('['))
        .map(|s| {
            let (first, last) = s.split_once('-').unwrap_or((s, s));
            Some((first.parse().ok()?, last.parse().ok()?))
        })
        .collect::<Option<_>>()?;
    Some(NodeLine { port, flags, slots })
}

/// Who owns which slots according to the node on `port`.
fn slot_map_at(port: u16) -> std::io::Result<SlotMap> {
    let nodes = command_at(port, &["CLUSTER", "NODES"])?;
    let mut map = SlotMap::new();
    for line in nodes.lines() {
        let node = parse_node_line(line).ok_or_else(|| {
            std::io::Error::other(format!("unexpected CLUSTER NODES line from {port}: {line}"))
        })?;
        for (first, last) in node.slots {
            map.insert(first, (last, node.port));
        }
    }
    Ok(map)
}

/// Every slot `port` owns in `map`.
fn owned_by(map: &SlotMap, port: u16) -> Vec<u16> {
    map.iter()
        .filter(|(_, (_, owner))| *owner == port)
        .flat_map(|(first, (last, _))| *first..=*last)
        .collect()
}
