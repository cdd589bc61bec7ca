//! The closed loop: connect, seed a read workload, start every simulated
//! client, sample the servers' CPU time at the edges of the measured window,
//! collect what each client measured.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use super::etcd::Etcd;
use super::options::{BenchOptions, System, Workload};
use super::ours::Ours;
use super::procfs;
use super::report::{CpuUse, Report, Setup};
use super::stats::{OpKind, Tally};
use super::target::{Failure, Op, Session, Target, Then};
use super::BenchError;

/// First and largest pause before retrying after a failure.
const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_millis(200);

/// Set once by the first fatal failure; every client stops at its next op.
#[derive(Default)]
struct Stop {
    set: AtomicBool,
    first: Mutex<Option<Failure>>,
}

impl Stop {
    fn is_set(&self) -> bool {
        self.set.load(Ordering::Relaxed)
    }

    fn set(&self, f: Failure) {
        let mut first = self.first.lock().expect("stop flag lock poisoned");
        if first.is_none() {
            *first = Some(f);
        }
        self.set.store(true, Ordering::Relaxed);
    }

    fn take(&self) -> Option<Failure> {
        self.first.lock().expect("stop flag lock poisoned").take()
    }
}

/// Runs the benchmark `opts` describes and returns what it measured.
pub async fn run(opts: &BenchOptions) -> Result<Report, BenchError> {
    opts.validate()?;
    let target = Arc::new(match opts.system {
        System::Surfstore => Target::Ours(
            Ours::connect(
                opts.addr.as_deref().unwrap_or_default(),
                opts.timeout,
                opts.connect_timeout,
                opts.payload,
            )
            .await?,
        ),
        System::Etcd => Target::Etcd(
            Etcd::connect(
                &opts.endpoints,
                opts.timeout,
                opts.connect_timeout,
                opts.payload,
            )
            .await?,
        ),
    });
    let pids = opts.pids.clone();
    let (storage, fsync) = blocking(move || describe_processes(&pids)).await?;
    let leader_at_start = target.leader();

    let mut rng = SmallRng::seed_from_u64(opts.seed);
    let prefix = format!("bench-{:08x}-", rng.gen::<u32>());
    let entries_read = if opts.workload.reads() {
        Some(seed(&target, &prefix, opts).await?)
    } else {
        None
    };

    let t0 = Instant::now();
    let start = t0 + opts.warmup;
    let end = start + opts.duration;
    let stop = Arc::new(Stop::default());

    let pids = opts.pids.clone();
    let sampler = tokio::spawn(async move {
        tokio::time::sleep_until(start).await;
        let p = pids.clone();
        let before = blocking(move || sample_cpu(&p)).await?;
        tokio::time::sleep_until(end).await;
        let after = blocking(move || sample_cpu(&pids)).await?;
        Ok::<_, BenchError>((before, after))
    });

    let mut clients = tokio::task::JoinSet::new();
    for id in 0..opts.clients {
        let session = target.session();
        let c = ClientLoop {
            id,
            workload: opts.workload,
            read_percent: opts.read_percent,
            prefix: prefix.clone(),
            nodes: target.endpoints().len(),
            start,
            end,
            stop: stop.clone(),
            rng: SmallRng::seed_from_u64(opts.seed.wrapping_add(1 + id as u64)),
        };
        clients.spawn(c.run(session));
    }
    let mut tally = Tally::default();
    while let Some(done) = clients.join_next().await {
        let one = done.expect("a bench client task panicked");
        tally.merge(&one);
    }
    if let Some(f) = stop.take() {
        sampler.abort();
        return Err(BenchError::Fatal {
            kind: f.kind,
            detail: f.detail,
        });
    }
    let ((server0, self0), (server1, self1)) = sampler.await.expect("the CPU sampler panicked")?;
    let cpu = CpuUse {
        server: (!opts.pids.is_empty()).then(|| server1.saturating_sub(server0)),
        bench: self1.saturating_sub(self0),
    };
    let setup = Setup {
        system: target.system(),
        endpoints: target.endpoints(),
        nodes: target.nodes(),
        leader_at_start,
        leader_at_end: target.leader(),
        leader_switches: target.leader_switches(),
        storage,
        fsync,
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        payload: opts.payload,
        clients: opts.clients,
        workload: opts.workload,
        read_percent: opts.read_percent,
        entries_read,
        warmup: opts.warmup,
        duration: opts.duration,
        pids: opts.pids.clone(),
        seed: opts.seed,
    };
    Ok(Report { setup, tally, cpu })
}

/// Runs blocking `/proc` reads off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, procfs::ProcError> + Send + 'static,
) -> Result<T, BenchError> {
    tokio::task::spawn_blocking(f)
        .await
        .expect("a /proc read panicked")
        .map_err(BenchError::from)
}

/// (server processes' CPU time summed, this process' CPU time).
fn sample_cpu(pids: &[u32]) -> Result<(Duration, Duration), procfs::ProcError> {
    Ok((
        procfs::total_cpu_time(pids)?,
        procfs::cpu_time(std::process::id())?,
    ))
}

/// Storage and fsync as the servers' command lines state them, or
/// `unknown` without `--pids`; checks every pid can be read.
fn describe_processes(pids: &[u32]) -> Result<(String, String), procfs::ProcError> {
    if pids.is_empty() {
        let u = "unknown (give --pids)".to_owned();
        return Ok((u.clone(), u));
    }
    let mut seen: Vec<(String, String)> = Vec::new();
    for &pid in pids {
        procfs::cpu_time(pid)?;
        let one = procfs::storage_of(&procfs::cmdline(pid)?);
        if !seen.contains(&one) {
            seen.push(one);
        }
    }
    let join = |f: fn(&(String, String)) -> &String| {
        let mut v: Vec<&str> = seen.iter().map(|s| f(s).as_str()).collect();
        v.dedup();
        v.join(" / ")
    };
    Ok((join(|s| &s.0), join(|s| &s.1)))
}

/// Writes `seed_files` entries for a read workload, then reads once and
/// returns how many entries the store holds.
async fn seed(target: &Target, prefix: &str, opts: &BenchOptions) -> Result<u64, BenchError> {
    let mut session = target.session();
    let deadline = Instant::now() + opts.connect_timeout;
    let mut generation = 0u64;
    for j in 0..opts.seed_files {
        loop {
            let key = format!("{prefix}seed{j}-{generation}");
            match session
                .attempt(Op::Write {
                    key: &key,
                    version: 1,
                })
                .await
            {
                Ok(_) => break,
                Err(f) => {
                    generation += 1;
                    give_up_or_wait(&f, deadline).await?;
                }
            }
        }
    }
    loop {
        match session.attempt(Op::Read).await {
            Ok(n) => return Ok(n),
            Err(f) => give_up_or_wait(&f, deadline).await?,
        }
    }
}

async fn give_up_or_wait(f: &Failure, deadline: Instant) -> Result<(), BenchError> {
    if f.then == Then::Fatal || Instant::now() + BACKOFF_MAX > deadline {
        return Err(BenchError::Seed(format!("{}: {}", f.kind, f.detail)));
    }
    tokio::time::sleep(BACKOFF_MAX).await;
    Ok(())
}

/// One simulated client's state.
struct ClientLoop {
    id: usize,
    workload: Workload,
    read_percent: u8,
    prefix: String,
    /// Members of the cluster: this many immediate retries in a row, then back off.
    nodes: usize,
    start: Instant,
    end: Instant,
    stop: Arc<Stop>,
    rng: SmallRng,
}

impl ClientLoop {
    fn in_window(&self, t: Instant) -> bool {
        t >= self.start && t < self.end
    }

    async fn run(mut self, mut session: Session) -> Tally {
        let mut tally = Tally::default();
        // `update`: the file is `c<id>-<generation>`, next version `version`.
        let mut generation = 0u64;
        let mut version = 1i32;
        // `create`: every attempt a new file `c<id>-<created>`.
        let mut created = 0u64;
        let mut key = String::new();
        'ops: while !self.stop.is_set() && Instant::now() < self.end {
            let kind = match self.workload {
                Workload::Read => OpKind::Read,
                Workload::Mix if self.rng.gen_range(0..100u8) < self.read_percent => OpKind::Read,
                _ => OpKind::Write,
            };
            let began = Instant::now();
            let mut in_a_row = 0usize;
            let mut backoff = BACKOFF_MIN;
            loop {
                let op = match kind {
                    OpKind::Read => Op::Read,
                    OpKind::Write => {
                        key.clear();
                        let (n, v) = match self.workload {
                            Workload::Create => (created, 1),
                            _ => (generation, version),
                        };
                        use std::fmt::Write as _;
                        let _ = write!(key, "{}c{}-{n}", self.prefix, self.id);
                        Op::Write {
                            key: &key,
                            version: v,
                        }
                    }
                };
                let result = session.attempt(op).await;
                if kind == OpKind::Write && self.workload == Workload::Create {
                    created += 1;
                }
                let now = Instant::now();
                match result {
                    Ok(_) => {
                        if self.in_window(now) {
                            tally.committed(kind, now - began);
                        }
                        if kind == OpKind::Write && self.workload != Workload::Create {
                            version = version.checked_add(1).unwrap_or_else(|| {
                                generation += 1;
                                1
                            });
                        }
                        continue 'ops;
                    }
                    Err(f) => {
                        if self.in_window(now) {
                            tally.failed(&f.kind);
                        }
                        if f.then == Then::Fatal {
                            self.stop.set(f);
                            break 'ops;
                        }
                        if f.fresh_key && kind == OpKind::Write {
                            generation += 1;
                            version = 1;
                        }
                        if now >= self.end || self.stop.is_set() {
                            break 'ops;
                        }
                        in_a_row += 1;
                        if f.then == Then::Backoff || in_a_row > self.nodes {
                            tokio::time::sleep(backoff.min(self.end - now)).await;
                            backoff = (backoff * 2).min(BACKOFF_MAX);
                        }
                    }
                }
            }
        }
        tally
    }
}
