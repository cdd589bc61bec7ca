//! What the bench reads about server processes from `/proc` (Linux): the CPU
//! time they used (`utime + stime` of `/proc/PID/stat`, every thread
//! included), their resident set (`VmRSS` of `/proc/PID/status`, which the
//! partition harness reads too) and, from `/proc/PID/cmdline`, how they
//! were told to store data.
//!
//! These are blocking reads of tiny files; callers on a tokio worker run them
//! through `spawn_blocking`.

use std::time::Duration;

/// Why a process could not be read.
#[derive(thiserror::Error, Debug)]
pub enum ProcError {
    #[error("cannot read /proc/{pid}/{file}: {source} (is process {pid} running?)")]
    Read {
        pid: u32,
        file: &'static str,
        source: std::io::Error,
    },
    #[error("/proc/{pid}/{file} has an unexpected format: {text:?}")]
    Format {
        pid: u32,
        file: &'static str,
        text: String,
    },
}

/// Clock ticks per second of `utime`/`stime`.
fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions; it only reads a constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// User plus system CPU time `pid` has used so far, all its threads summed.
pub fn cpu_time(pid: u32) -> Result<Duration, ProcError> {
    let text =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|source| ProcError::Read {
            pid,
            file: "stat",
            source,
        })?;
    parse_cpu_ticks(&text)
        .map(|ticks| Duration::from_secs_f64(ticks as f64 / ticks_per_second() as f64))
        .ok_or(ProcError::Format {
            pid,
            file: "stat",
            text,
        })
}

/// `utime + stime` (fields 14 and 15) of a `/proc/PID/stat` line. The
/// command name (field 2) is in parentheses and may hold spaces or
/// parentheses itself, so fields are counted from the last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: field 3 (state) is fields[0], so field 14 is fields[11].
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The summed CPU time of `pids`.
pub fn total_cpu_time(pids: &[u32]) -> Result<Duration, ProcError> {
    pids.iter().map(|&p| cpu_time(p)).sum()
}

/// The resident set of `pid` (`VmRSS` of `/proc/PID/status`), in kB.
pub fn vm_rss_kb(pid: u32) -> Result<u64, ProcError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|source| {
        ProcError::Read {
            pid,
            file: "status",
            source,
        }
    })?;
    parse_vm_rss_kb(&text).ok_or(ProcError::Format {
        pid,
        file: "status",
        text,
    })
}

/// The `VmRSS:   1234 kB` line of a `/proc/PID/status`.
fn parse_vm_rss_kb(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    line.trim().strip_suffix("kB")?.trim().parse().ok()
}

/// The arguments `pid` was started with.
pub fn cmdline(pid: u32) -> Result<Vec<String>, ProcError> {
    let bytes =
        std::fs::read(format!("/proc/{pid}/cmdline")).map_err(|source| ProcError::Read {
            pid,
            file: "cmdline",
            source,
        })?;
    Ok(bytes
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect())
}

/// Storage and fsync of one server process as its command line states them:
/// `(storage, fsync)`, e.g. `("disk", "always")`. Knows `surfstore server` /
/// `surfstore cluster` and `etcd`; anything else is `unknown`.
pub fn storage_of(args: &[String]) -> (String, String) {
    let has = |flag: &str| args.iter().any(|a| a == flag);
    let value = |flag: &str| {
        let eq = format!("{flag}=");
        args.iter().enumerate().find_map(|(i, a)| {
            if a == flag {
                args.get(i + 1).cloned()
            } else {
                a.strip_prefix(&eq).map(str::to_owned)
            }
        })
    };
    let program = args
        .first()
        .map(|p| p.rsplit('/').next().unwrap_or(p).to_owned())
        .unwrap_or_default();
    if program.starts_with("etcd") {
        let fsync = if has("--unsafe-no-fsync") {
            "never (--unsafe-no-fsync)"
        } else {
            "always (etcd default)"
        };
        return ("disk".into(), fsync.into());
    }
    if program.starts_with("surfstore") || args.iter().any(|a| a == "server" || a == "cluster") {
        if has("--in-memory") {
            return ("memory".into(), "none (in memory)".into());
        }
        let fsync = value("--fsync").unwrap_or_else(|| "always".into());
        return ("disk".into(), fsync);
    }
    ("unknown".into(), "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn parses_utime_and_stime_after_an_awkward_name() {
        let line = "4242 (a (b) c) S 1 2 3 0 -1 4194304 118 0 0 0 250 17 0 0 20 0 9 0 58920 0";
        assert_eq!(parse_cpu_ticks(line), Some(267));
        assert_eq!(parse_cpu_ticks("4242 (x) S 1"), None);
        assert_eq!(parse_cpu_ticks("no parenthesis"), None);
    }

    #[test]
    fn reads_the_resident_set() {
        assert_eq!(
            parse_vm_rss_kb("Name:\tx\nVmRSS:\t   9292 kB\nVmSwap: 0 kB\n"),
            Some(9292)
        );
        assert_eq!(parse_vm_rss_kb("Name:\tx\n"), None);
        assert!(vm_rss_kb(std::process::id()).unwrap() > 0);
        assert!(matches!(vm_rss_kb(u32::MAX), Err(ProcError::Read { .. })));
    }

    #[test]
    fn own_process_has_a_cpu_time() {
        let mine = cpu_time(std::process::id()).unwrap();
        let again = total_cpu_time(&[std::process::id()]).unwrap();
        assert!(again >= mine);
        assert!(matches!(cpu_time(u32::MAX), Err(ProcError::Read { .. })));
    }

    #[test]
    fn storage_from_command_lines() {
        let s = |a: &str| storage_of(&args(a));
        assert_eq!(
            s("/x/target/release/surfstore server c.txt 0 --data-dir /tmp/d"),
            ("disk".into(), "always".into())
        );
        assert_eq!(
            s("surfstore server c.txt 0 --fsync never"),
            ("disk".into(), "never".into())
        );
        assert_eq!(
            s("surfstore server c.txt 0 --fsync=never"),
            ("disk".into(), "never".into())
        );
        assert_eq!(s("surfstore cluster c.txt --in-memory").0, "memory");
        assert_eq!(s("/usr/bin/etcd --name a").1, "always (etcd default)");
        assert_eq!(s("etcd --unsafe-no-fsync").1, "never (--unsafe-no-fsync)");
        assert_eq!(s("python3 x.py").0, "unknown");
        assert_eq!(storage_of(&[]).0, "unknown");
    }
}
