//! A private `redis-server` on a free loopback port, in the test's scratch directory.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::process::{ChildGuard, Scratch, free_port};
use crate::wait;

/// How long redis-server may take to answer PING after start.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running redis-server; stopped on drop.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: std::path::PathBuf,
    log: std::path::PathBuf,
    guard: Option<ChildGuard>,
}

impl RedisServer {
    /// Starts redis-server on a free port, with no persistence.
    pub fn start(scratch: &Scratch) -> Self {
        let dir = scratch.file("redis");
        std::fs::create_dir_all(&dir).expect("create redis dir");
        let mut server = RedisServer {
            port: free_port(),
            dir,
            log: scratch.file("redis.log"),
            guard: None,
        };
        server.restart();
        server
    }

    /// `redis://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGTERM, as an operator would).
    pub fn stop(&mut self) {
        if let Some(mut guard) = self.guard.take() {
            // A paused server would not act on SIGTERM until killed after the grace period.
            guard.signal("CONT");
            guard.stop();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, commands wait unanswered.
    pub fn pause(&self) {
        if let Some(guard) = &self.guard {
            guard.signal("STOP");
        }
    }

    /// Lets a [`RedisServer::pause`]d server run again (SIGCONT).
    pub fn resume(&self) {
        if let Some(guard) = &self.guard {
            guard.signal("CONT");
        }
    }

    /// Starts (again) on the same port, empty, and waits until it answers PING.
    pub fn restart(&mut self) {
        self.stop();
        let cmd = server_command(self.port, &self.dir);
        self.guard = Some(ChildGuard::spawn("redis-server", cmd, &self.log, false));
        wait::until("redis-server to answer PING", READY_TIMEOUT, || {
            (self.command(&["PING"]).ok()? == "+PONG").then_some(())
        });
    }

    /// Sends one command and returns the first reply line (RESP), e.g. `":1"` or `"+PONG"`.
    /// Arrays are returned as their elements' lines joined by `\n` after the header.
    pub fn command(&self, args: &[&str]) -> std::io::Result<String> {
        command_at(self.port, args)
    }
}

/// `redis-server` on loopback `port`, keeping nothing on disk but what it needs
/// in `dir`; callers add their own arguments.
pub fn server_command(port: u16, dir: &std::path::Path) -> Command {
    let mut cmd = Command::new("redis-server");
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ])
    .arg("--dir")
    .arg(dir);
    cmd
}

/// [`RedisServer::command`] to whatever listens on loopback `port` (a server or a sentinel).
pub fn command_at(port: u16, args: &[&str]) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    stream.write_all(req.as_bytes())?;
    let mut reader = BufReader::new(stream);
    read_reply(&mut reader)
}

/// A raw `SUBSCRIBE` connection, to see what reaches Redis.
#[derive(Debug)]
pub struct Subscription {
    reader: BufReader<TcpStream>,
}

impl RedisServer {
    /// Subscribes to `channel` and waits for the confirmation.
    pub fn subscribe(&self, channel: &str) -> Subscription {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set timeout");
        let req = format!(
            "*2\r\n$9\r\nSUBSCRIBE\r\n${}\r\n{channel}\r\n",
            channel.len()
        );
        stream.write_all(req.as_bytes()).expect("send SUBSCRIBE");
        let mut sub = Subscription {
            reader: BufReader::new(stream),
        };
        let confirmation = read_reply(&mut sub.reader).expect("SUBSCRIBE confirmation");
        assert!(confirmation.contains("subscribe"), "{confirmation}");
        sub
    }
}

impl Subscription {
    /// The next message's payload (waits up to 10 s).
    pub fn next_message(&mut self) -> String {
        let reply = read_reply(&mut self.reader).expect("a published message");
        reply.lines().last().unwrap_or_default().to_owned()
    }
}

fn read_reply(reader: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end().to_owned();
    match line.as_bytes().first() {
        Some(b'*') => {
            let n: i64 = line[1..].parse().unwrap_or(0);
            let mut parts = vec![line.clone()];
            for _ in 0..n.max(0) {
                parts.push(read_reply(reader)?);
            }
            Ok(parts.join("\n"))
        }
        Some(b'$') => {
            let n: i64 = line[1..].parse().unwrap_or(-1);
            if n < 0 {
                return Ok(line);
            }
            let mut buf = vec![0; n as usize + 2];
            reader.read_exact(&mut buf)?;
            Ok(String::from_utf8_lossy(&buf[..n as usize]).into_owned())
        }
        _ => Ok(line),
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
