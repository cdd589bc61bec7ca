//! The nemesis of the linearizability scenario: at random intervals it
//! crashes a node (the leader about a third of the time) or restores one,
//! never leaving more than floor((M-1)/2) crashed, so the cluster stays live.
//! Every action is logged with its time on the history's clock; when told to
//! stop it restores everything it crashed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::tester::cluster::{Cluster, CrashGuard};
use crate::tester::error::Result;
use crate::tester::linearizability::Recorder;

/// What the nemesis did: `(seconds on the history clock, action)`.
pub type NemesisLog = Vec<(f64, String)>;

pub async fn run(
    cluster: Cluster,
    recorder: Arc<Recorder>,
    interval: Duration,
    mut rng: SmallRng,
    stop: Arc<AtomicBool>,
) -> Result<NemesisLog> {
    let mut log = NemesisLog::new();
    let k = cluster.minority();
    let mut down: BTreeMap<usize, CrashGuard> = BTreeMap::new();
    let now = |r: &Recorder| r.now() as f64 / 1e9;
    if k == 0 || interval.is_zero() {
        return Ok(log);
    }
    let mean = interval.as_millis() as u64;
    let result = async {
        while !stop.load(Ordering::Relaxed) {
            let pause = rng.gen_range(mean / 2..=mean * 3 / 2);
            // Sleep in slices so a stop is noticed quickly.
            let mut slept = 0;
            while slept < pause && !stop.load(Ordering::Relaxed) {
                let slice = (pause - slept).min(20);
                tokio::time::sleep(Duration::from_millis(slice)).await;
                slept += slice;
            }
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let crash = down.is_empty() || (down.len() < k && rng.gen_bool(0.5));
            if crash {
                let leaders = cluster.leaders().await;
                let up: Vec<usize> = (0..cluster.len())
                    .filter(|i| !down.contains_key(i))
                    .collect();
                let target = match leaders[..] {
                    [l] if rng.gen_bool(0.35) && !down.contains_key(&l) => l,
                    _ => {
                        let followers: Vec<usize> = up
                            .iter()
                            .copied()
                            .filter(|i| !leaders.contains(i))
                            .collect();
                        match followers.choose(&mut rng) {
                            Some(&f) => f,
                            None => continue,
                        }
                    }
                };
                let what = if leaders == [target] { " (leader)" } else { "" };
                down.insert(target, cluster.crash(target).await?);
                log.push((
                    now(&recorder),
                    format!("crash {}{what}", cluster.name(target)),
                ));
            } else {
                let nodes: Vec<usize> = down.keys().copied().collect();
                let &target = nodes.choose(&mut rng).expect("a crashed node");
                let guard = down.remove(&target).expect("crashed");
                guard.restore().await?;
                log.push((now(&recorder), format!("restore {}", cluster.name(target))));
            }
        }
        Ok(())
    }
    .await;
    for (i, guard) in std::mem::take(&mut down) {
        guard.restore().await?;
        log.push((now(&recorder), format!("restore {}", cluster.name(i))));
    }
    result.map(|()| log)
}
