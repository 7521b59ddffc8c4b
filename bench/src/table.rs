//! Timing and the result table: the median of N runs, each row a ratio against its peer.

use std::time::{Duration, Instant};

/// Runs `f` `runs` times (after one warm-up run) and returns the median duration.
pub fn median<F: FnMut() -> anyhow::Result<()>>(runs: usize, mut f: F) -> anyhow::Result<Duration> {
    f()?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2])
}

/// Runs `f` `runs` times (after one warm-up run), where `f` times the part that counts itself
/// (setup and teardown around it are not measured); returns the median.
pub fn median_timed<F: FnMut() -> anyhow::Result<Duration>>(
    runs: usize,
    mut f: F,
) -> anyhow::Result<Duration> {
    f()?;
    let mut times = (0..runs.max(1))
        .map(|_| f())
        .collect::<anyhow::Result<Vec<_>>>()?;
    times.sort();
    Ok(times[times.len() / 2])
}

/// Times `ours` and `peer` in the same rounds, alternating which goes first, so that drift in
/// the machine (background work, caches) hits both alike. Each closure times the part that
/// counts itself; `between` runs after each round, untimed. One warm-up round is dropped.
/// Returns the two medians.
pub fn paired(
    runs: usize,
    mut ours: impl FnMut() -> anyhow::Result<Duration>,
    mut peer: impl FnMut() -> anyhow::Result<Duration>,
    mut between: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<(Duration, Duration)> {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for round in 0..=runs.max(1) {
        if round % 2 == 0 {
            a.push(ours()?);
            b.push(peer()?);
        } else {
            b.push(peer()?);
            a.push(ours()?);
        }
        between()?;
    }
    let mid = |v: &mut Vec<Duration>| {
        v.remove(0);
        v.sort();
        v[v.len() / 2]
    };
    Ok((mid(&mut a), mid(&mut b)))
}

/// One measured comparison: Realms' time beside the peer's on the same input.
#[derive(Debug)]
pub struct Row {
    pub what: String,
    pub ours: Duration,
    pub peer_name: String,
    pub peer: Duration,
    /// The target ratio (ours / peer) the issue asks for, if any.
    pub target: Option<f64>,
}

impl Row {
    pub fn new(
        what: String,
        ours: Duration,
        peer_name: &str,
        peer: Duration,
        target: Option<f64>,
    ) -> Row {
        Row {
            what,
            ours,
            peer_name: peer_name.to_string(),
            peer,
            target,
        }
    }

    pub fn ratio(&self) -> f64 {
        self.ours.as_secs_f64() / self.peer.as_secs_f64().max(1e-9)
    }
}

/// Prints the table of one suite.
pub fn print(suite: &str, rows: &[Row]) {
    println!("\n## {suite}");
    println!(
        "| {:<44} | {:>10} | {:<28} | {:>10} | {:>7} | {:>7} |",
        "what", "realms", "peer", "peer time", "ratio", "target"
    );
    println!(
        "|{:-<46}|{:->12}|{:-<30}|{:->12}|{:->9}|{:->9}|",
        "", "", "", "", "", ""
    );
    for row in rows {
        let target = row.target.map(|t| format!("<={t:.2}")).unwrap_or_default();
        println!(
            "| {:<44} | {:>10} | {:<28} | {:>10} | {:>7.2} | {:>7} |",
            row.what,
            fmt(row.ours),
            row.peer_name,
            fmt(row.peer),
            row.ratio(),
            target
        );
    }
}

fn fmt(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else {
        format!("{:.1} ms", s * 1000.0)
    }
}
