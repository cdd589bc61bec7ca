//! The sync client's benchmark (`examples/client_bench.rs`, smoke-tested in
//! `tests/bench_smoke.rs`): one client against a 3-node loopback cluster in
//! this process (default timing; `disk`: each node on a temporary data
//! directory, every block and log entry fsynced before it counts), each
//! measure on a fresh cluster, printed beside issue 14's target:
//!
//! - the first sync of `files` files of 1 KiB (random bytes): ≤ 3 s;
//! - one file of `mib` MiB (random bytes) at 4 KiB blocks, up (≥ 50 MiB/s)
//!   and down to an empty folder (≥ 150 MiB/s);
//! - the re-sync of `resync_files` unchanged files of 1 KiB: ≤ 1 s.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use super::{sync, SyncOptions, DEFAULT_PARALLEL};
use crate::cluster::{Cluster, ClusterOptions};

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Nodes on disk with fsync (else blocks and logs in memory).
    pub disk: bool,
    /// Files of the first-sync measure.
    pub files: usize,
    /// MiB of the one-file measures.
    pub mib: usize,
    /// Files of the unchanged re-sync measure.
    pub resync_files: usize,
    /// The client's `--parallel`.
    pub parallel: usize,
}

impl Default for BenchOptions {
    /// The sizes, on disk.
    fn default() -> Self {
        BenchOptions {
            disk: true,
            files: 10_000,
            mib: 256,
            resync_files: 100_000,
            parallel: DEFAULT_PARALLEL,
        }
    }
}

/// Whether a measure is a time (lower is better) or a rate (higher is).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Goal {
    AtMostSecs(f64),
    AtLeastMibS(f64),
}

/// One measured number beside its target.
#[derive(Clone, Debug)]
pub struct Measure {
    pub name: String,
    pub goal: Goal,
    /// Seconds for `AtMostSecs`, MiB/s for `AtLeastMibS`.
    pub value: f64,
}

impl Measure {
    /// Measured over target: at most 1 meets a time, at least 1 a rate.
    pub fn ratio(&self) -> f64 {
        match self.goal {
            Goal::AtMostSecs(t) | Goal::AtLeastMibS(t) => self.value / t,
        }
    }

    pub fn met(&self) -> bool {
        match self.goal {
            Goal::AtMostSecs(t) => self.value <= t,
            Goal::AtLeastMibS(t) => self.value >= t,
        }
    }
}

/// The measures as a table: [`header`], then one [`row`] each.
pub fn table(o: &BenchOptions, measures: &[Measure]) -> String {
    let mut out = header(o);
    for m in measures {
        out.push_str(&row(m));
    }
    out
}

/// The setup and the column names, two lines.
pub fn header(o: &BenchOptions) -> String {
    format!(
        "3 nodes, loopback, in one process, {}; 1 client, --parallel {}, {} cores\n\
         {:<44} {:>14} {:>14} {:>6}\n",
        if o.disk {
            "on disk (fsync)"
        } else {
            "in memory"
        },
        o.parallel,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        "measure",
        "target",
        "measured",
        "ratio"
    )
}

/// One measure's line: name, target, value, ratio, met or MISSED.
pub fn row(m: &Measure) -> String {
    let (target, value) = match m.goal {
        Goal::AtMostSecs(t) => (format!("<= {t} s"), format!("{:.3} s", m.value)),
        Goal::AtLeastMibS(t) => (format!(">= {t} MiB/s"), format!("{:.1} MiB/s", m.value)),
    };
    format!(
        "{:<44} {:>14} {:>14} {:>6.2} {}\n",
        m.name,
        target,
        value,
        m.ratio(),
        if m.met() { "met" } else { "MISSED" }
    )
}

/// Runs every measure; `each` sees each one as it is taken.
pub async fn run(o: &BenchOptions, mut each: impl FnMut(&Measure)) -> Result<Vec<Measure>, String> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut out = Vec::new();
    let mut push = |m: Measure| {
        each(&m);
        out.push(m);
    };

    // The first sync of many small files.
    {
        let c = Bench::start(o.disk).await?;
        let d = Tmp::new("first")?;
        small_files(&d.0, o.files, &mut rng)?;
        let t = Instant::now();
        let s = sync(&c.addr, &c.opts(&d.0, o))
            .await
            .map_err(|e| e.to_string())?;
        let took = t.elapsed();
        check(s.uploaded.len() == o.files, "uploaded every small file")?;
        push(Measure {
            name: format!("first sync, {} files of 1 KiB", o.files),
            goal: Goal::AtMostSecs(3.0),
            value: took.as_secs_f64(),
        });
        c.stop().await;
    }

    // One large file up, then down.
    {
        let c = Bench::start(o.disk).await?;
        let (a, b) = (Tmp::new("up")?, Tmp::new("down")?);
        let mut data = vec![0u8; o.mib << 20];
        rng.fill(&mut data[..]);
        std::fs::write(a.0.join("big.bin"), &data).map_err(|e| e.to_string())?;
        let t = Instant::now();
        let s = sync(&c.addr, &c.opts(&a.0, o))
            .await
            .map_err(|e| e.to_string())?;
        let up = t.elapsed();
        check(s.uploaded.len() == 1, "uploaded the large file")?;
        push(Measure {
            name: format!("upload, 1 file of {} MiB, 4 KiB blocks", o.mib),
            goal: Goal::AtLeastMibS(50.0),
            value: mib_s(data.len(), up),
        });
        let t = Instant::now();
        let s = sync(&c.addr, &c.opts(&b.0, o))
            .await
            .map_err(|e| e.to_string())?;
        let down = t.elapsed();
        check(s.downloaded.len() == 1, "downloaded the large file")?;
        let same = std::fs::read(b.0.join("big.bin")).map_err(|e| e.to_string())? == data;
        check(same, "the downloaded file is the uploaded one")?;
        push(Measure {
            name: format!("download, 1 file of {} MiB, 4 KiB blocks", o.mib),
            goal: Goal::AtLeastMibS(150.0),
            value: mib_s(data.len(), down),
        });
        c.stop().await;
    }

    // An unchanged re-sync of many files.
    {
        let c = Bench::start(o.disk).await?;
        let d = Tmp::new("resync")?;
        small_files(&d.0, o.resync_files, &mut rng)?;
        let opts = c.opts(&d.0, o);
        let s = sync(&c.addr, &opts).await.map_err(|e| e.to_string())?;
        if s.uploaded.len() != o.resync_files {
            return Err(format!(
                "the first sync of the re-sync measure uploaded {} of {} files; problems: {}",
                s.uploaded.len(),
                o.resync_files,
                s.problems
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        let t = Instant::now();
        let s = sync(&c.addr, &opts).await.map_err(|e| e.to_string())?;
        let took = t.elapsed();
        check(s.actions.is_empty(), "the re-sync moved nothing")?;
        push(Measure {
            name: format!("re-sync unchanged, {} files of 1 KiB", o.resync_files),
            goal: Goal::AtMostSecs(1.0),
            value: took.as_secs_f64(),
        });
        c.stop().await;
    }
    Ok(out)
}

fn check(ok: bool, what: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("the bench expected that it {what}, and it did not"))
    }
}

fn mib_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64().max(1e-9)
}

fn small_files(dir: &std::path::Path, n: usize, rng: &mut impl Rng) -> Result<(), String> {
    let mut f = vec![0u8; 1024];
    for i in 0..n {
        rng.fill(&mut f[..]);
        std::fs::write(dir.join(format!("f{i:06}.txt")), &f).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A temporary directory, removed on drop.
struct Tmp(PathBuf);

impl Tmp {
    fn new(tag: &str) -> Result<Tmp, String> {
        let d = std::env::temp_dir().join(format!(
            "surfstore-client-bench-{tag}-{:016x}",
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        Ok(Tmp(d))
    }
}

impl Tmp {
    /// The folder's stat cache, beside it (as `run-client.sh` keeps it
    /// outside the folder).
    fn stat_cache(&self) -> PathBuf {
        self.0.with_extension("statcache")
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = std::fs::remove_file(self.stat_cache());
    }
}

/// A loopback cluster and the data directory it owns.
struct Bench {
    cluster: Cluster,
    addr: String,
    _dir: Option<Tmp>,
}

impl Bench {
    async fn start(disk: bool) -> Result<Bench, String> {
        let dir = if disk { Some(Tmp::new("nodes")?) } else { None };
        let opts = ClusterOptions {
            seed: Some(99),
            data_dir: dir.as_ref().map(|d| d.0.clone()),
            ..Default::default()
        };
        let cluster = Cluster::start_loopback(3, &opts)
            .await
            .map_err(|e| format!("the cluster did not start: {e}"))?;
        let leader = cluster.wait_for_leader(None).await;
        let addr = cluster.members()[leader as usize].clone();
        Ok(Bench {
            cluster,
            addr,
            _dir: dir,
        })
    }

    fn opts(&self, dir: &std::path::Path, o: &BenchOptions) -> SyncOptions {
        let mut s = SyncOptions::new(dir, 4096);
        s.parallel = o.parallel;
        s.stat_cache = Some(dir.with_extension("statcache"));
        s
    }

    async fn stop(self) {
        self.cluster.shutdown().await;
    }
}
