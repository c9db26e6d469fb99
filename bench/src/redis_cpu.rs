//! Redis's own CPU time, read from `INFO cpu` (`used_cpu_sys` + `used_cpu_user`)
//! of each node given with `--redis-cpu`, at the same moments as the server's
//! `/proc` samples: how much each Redis (each shard of a cluster) worked while
//! the subscribers connected and while the triggers ran. `INFO` rather than
//! `/proc`: it is what a Redis reports wherever it runs, and a cluster's nodes
//! are told apart by address, not by process.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How long one `INFO cpu` may take; a node that does not answer in time is
/// reported without a figure rather than holding the run up.
const INFO_TIMEOUT: Duration = Duration::from_secs(2);

/// The largest `INFO cpu` reply read (a few hundred bytes in practice).
const MAX_REPLY: usize = 64 * 1024;

/// `INFO cpu` as a RESP array.
const INFO_CPU: &[u8] = b"*2\r\n$4\r\nINFO\r\n$3\r\ncpu\r\n";

/// One node's CPU over a run's two phases.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RedisCpu {
    /// `host:port`, as given.
    pub node: String,
    /// CPU seconds while the subscribers connected (null: a sample failed).
    pub cpu_seconds_connecting: Option<f64>,
    /// CPU seconds from the first trigger until the deliveries settled.
    pub cpu_seconds_triggering: Option<f64>,
}

/// The CPU seconds of every node, in the order given (`None` where a node did not answer).
pub async fn sample(nodes: &[SocketAddr]) -> Vec<Option<f64>> {
    futures_util::future::join_all(nodes.iter().map(|&node| async move {
        match tokio::time::timeout(INFO_TIMEOUT, cpu_seconds(node)).await {
            Ok(Ok(seconds)) => Some(seconds),
            Ok(Err(e)) => {
                tracing::warn!(%node, error = %e, "INFO cpu failed");
                None
            }
            Err(_) => {
                tracing::warn!(%node, "INFO cpu timed out");
                None
            }
        }
    }))
    .await
}

/// Each node's CPU per phase, from the samples taken before connecting, once
/// connected and after the triggers.
pub fn phases(
    nodes: &[SocketAddr],
    baseline: &[Option<f64>],
    connected: &[Option<f64>],
    end: &[Option<f64>],
) -> Vec<RedisCpu> {
    let delta = |from: Option<f64>, to: Option<f64>| Some(to? - from?);
    nodes
        .iter()
        .enumerate()
        .map(|(i, node)| RedisCpu {
            node: node.to_string(),
            cpu_seconds_connecting: delta(baseline[i], connected[i]),
            cpu_seconds_triggering: delta(connected[i], end[i]),
        })
        .collect()
}

/// `used_cpu_sys` + `used_cpu_user` of the Redis at `node`.
async fn cpu_seconds(node: SocketAddr) -> std::io::Result<f64> {
    let mut stream = TcpStream::connect(node).await?;
    stream.write_all(INFO_CPU).await?;
    let mut reader = BufReader::new(stream);
    let mut header = String::new();
    reader.read_line(&mut header).await?;
    let invalid = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let len: usize = header
        .trim_end()
        .strip_prefix('$')
        .and_then(|n| n.parse().ok())
        .filter(|&n| n <= MAX_REPLY)
        .ok_or_else(|| invalid(format!("unexpected reply {:?}", header.trim_end())))?;
    let mut body = vec![0; len];
    reader.read_exact(&mut body).await?;
    parse_info_cpu(&String::from_utf8_lossy(&body))
        .ok_or_else(|| invalid("no used_cpu_sys / used_cpu_user in INFO cpu".into()))
}

/// The sum of `used_cpu_sys` and `used_cpu_user` in an `INFO cpu` reply (the
/// server's threads; its forks, `*_children`, are left out).
pub fn parse_info_cpu(info: &str) -> Option<f64> {
    let field = |name: &str| -> Option<f64> {
        info.lines()
            .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':'))?
            .parse()
            .ok()
    };
    Some(field("used_cpu_sys")? + field("used_cpu_user")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "# CPU\r\nused_cpu_sys:1.250000\r\nused_cpu_user:0.500000\r\n\
                        used_cpu_sys_children:9.000000\r\nused_cpu_user_children:9.000000\r\n\
                        used_cpu_sys_main_thread:1.200000\r\nused_cpu_user_main_thread:0.490000\r\n";

    #[test]
    fn info_cpu_is_system_plus_user_without_children() {
        assert_eq!(parse_info_cpu(INFO), Some(1.75));
        assert_eq!(parse_info_cpu("# CPU\r\nused_cpu_sys:1.0\r\n"), None);
        assert_eq!(parse_info_cpu("-ERR unknown command"), None);
    }

    #[test]
    fn phases_are_differences_and_a_missing_sample_leaves_its_phases_empty() {
        let nodes: Vec<SocketAddr> = vec![
            "127.0.0.1:7000".parse().unwrap(),
            "127.0.0.1:7001".parse().unwrap(),
        ];
        let got = phases(
            &nodes,
            &[Some(1.0), Some(2.0)],
            &[Some(1.5), None],
            &[Some(4.0), Some(3.0)],
        );
        assert_eq!(got[0].node, "127.0.0.1:7000");
        assert_eq!(got[0].cpu_seconds_connecting, Some(0.5));
        assert_eq!(got[0].cpu_seconds_triggering, Some(2.5));
        assert_eq!(got[1].cpu_seconds_connecting, None);
        assert_eq!(got[1].cpu_seconds_triggering, None);
    }

    #[tokio::test]
    async fn reads_info_cpu_from_a_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let node = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0; INFO_CPU.len()];
            socket.read_exact(&mut request).await.unwrap();
            assert_eq!(request, INFO_CPU);
            let reply = format!("${}\r\n{INFO}\r\n", INFO.len());
            socket.write_all(reply.as_bytes()).await.unwrap();
        });
        assert_eq!(sample(&[node]).await, vec![Some(1.75)]);
        server.await.unwrap();
    }
}
