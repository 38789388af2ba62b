//! Marked load (`logpipe loadgen --run LABEL`): every event carries a unique marker
//! `[LABEL#SEQ]` and the outcome of every request is written down, so a script can later match
//! stored rows to sent events one by one (scripts/lib/stack.sh and its exactly-once check,
//! verify.py). What a run writes:
//!
//! - `--results FILE`: one line per request, `FIRST_SEQ EVENTS STATUS`, sorted by sequence.
//!   STATUS is the HTTP status (`200`), `partial` (2xx but not every event accepted), the status
//!   with the error code of the answer (`503:saturated`), or `conn:KIND` when no HTTP answer came
//!   (the outcome of those events is unknown). No request is retried: every event is sent once.
//! - `--progress FILE`: `SENT OK FAILED` (events), replaced every 0.5 s and at the end.
//!
//! Events are spread over the partitions evenly: two services (the record key) per partition of
//! `--partitions`, chosen with the CRC-32 of the key as librdkafka's default partitioner does.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

/// The flags of marked load.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct MarkedArgs {
    /// Mark every event with `[RUN#SEQ]` (a unique sequence number per event) and record every
    /// request's outcome (see --results, --progress).
    #[arg(long, value_name = "LABEL")]
    pub run: Option<String>,
    /// With --run: write each request's outcome here (`FIRST_SEQ EVENTS STATUS` per line).
    #[arg(long, value_name = "FILE", requires = "run")]
    pub results: Option<PathBuf>,
    /// With --run: keep `SENT OK FAILED` (events so far) in this file.
    #[arg(long, value_name = "FILE", requires = "run")]
    pub progress: Option<PathBuf>,
    /// Stop sending once this file exists.
    #[arg(long, value_name = "FILE")]
    pub stop_file: Option<PathBuf>,
    /// With --run: spread events evenly over this many partitions (two services each).
    #[arg(long, default_value_t = 12, requires = "run")]
    pub partitions: u32,
}

/// Levels of the marked events, by `seq / 7`.
const LEVELS: [&str; 6] = ["INFO", "WARN", "ERROR", "DEBUG", "INFO", "INFO"];

/// A marked run in progress.
pub struct Marked {
    run: String,
    services: Vec<String>,
    results: Option<PathBuf>,
    progress: Option<PathBuf>,
    tally: Mutex<Outcomes>,
}

#[derive(Default)]
struct Outcomes {
    requests: Vec<(u64, u64, String)>,
    sent: u64,
    ok: u64,
}

impl Marked {
    /// The marked run of `args`, when `--run` is given.
    pub fn new(args: &MarkedArgs) -> Option<Arc<Marked>> {
        let run = args.run.clone()?;
        Some(Arc::new(Marked {
            run,
            services: spread_services(args.partitions.max(1)),
            results: args.results.clone(),
            progress: args.progress.clone(),
            tally: Mutex::default(),
        }))
    }

    /// The events `first .. first + n`.
    pub fn events(&self, first: u64, n: u64) -> Vec<Value> {
        (first..first + n)
            .map(|seq| {
                json!({
                    "service": self.services[(seq % self.services.len() as u64) as usize],
                    "level": LEVELS[((seq / 7) % LEVELS.len() as u64) as usize],
                    "message": message(&self.run, seq),
                })
            })
            .collect()
    }

    /// Notes the outcome of the request that sent events `first .. first + n`.
    pub fn record(&self, first: u64, n: u64, status: String) {
        let mut t = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        t.sent += n;
        if is_ok(&status) {
            t.ok += n;
        }
        t.requests.push((first, n, status));
    }

    /// Writes `--progress` now.
    fn write_progress(&self) -> std::io::Result<()> {
        let Some(path) = &self.progress else {
            return Ok(());
        };
        let line = {
            let t = self.tally.lock().unwrap_or_else(|e| e.into_inner());
            format!("{} {} {}\n", t.sent, t.ok, t.sent - t.ok)
        };
        // Replaced whole, so a reader never sees half a line.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, line)?;
        std::fs::rename(&tmp, path)
    }

    /// Keeps `--progress` current until the returned task is aborted.
    pub fn spawn_progress(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let marked = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = marked.write_progress() {
                    tracing::warn!(error = %e, "writing the progress file");
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    }

    /// Writes the final progress and `--results`.
    pub fn finish(&self) -> anyhow::Result<()> {
        use anyhow::Context;
        self.write_progress().context("writing --progress")?;
        let Some(path) = &self.results else {
            return Ok(());
        };
        let mut requests = {
            let t = self.tally.lock().unwrap_or_else(|e| e.into_inner());
            t.requests.clone()
        };
        requests.sort();
        let text: String = requests
            .iter()
            .map(|(first, n, status)| format!("{first} {n} {status}\n"))
            .collect();
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }
}

/// The message of event `seq` of run `run` (verify.py rebuilds it the same way).
pub fn message(run: &str, seq: u64) -> String {
    format!("loadgen event {seq} [{run}#{seq}]")
}

/// Whether a recorded status means every event of the request was accepted.
pub fn is_ok(status: &str) -> bool {
    status.starts_with('2') && status != "partial"
}

/// The recorded status of a request that sent `events` events: `answer` is the HTTP status and
/// JSON body, `None` when no HTTP answer came (`error` says why).
pub fn status(answer: Option<(u16, Option<&Value>)>, events: u64, error: &str) -> String {
    match answer {
        None => format!("conn:{error}"),
        Some((code, Some(body))) if (200..300).contains(&code) => {
            if body["accepted"].as_u64() == Some(events) {
                code.to_string()
            } else {
                "partial".into()
            }
        }
        // A 2xx whose answer cannot be read: how many were accepted is unknown.
        Some((code, None)) if (200..300).contains(&code) => "conn:UnreadableAnswer".into(),
        Some((code, body)) => match body.and_then(|b| b["error"]["code"].as_str()) {
            Some(reason) => format!("{code}:{reason}"),
            None => code.to_string(),
        },
    }
}

/// Two services per partition of `partitions`, by the CRC-32 of the name modulo the count.
fn spread_services(partitions: u32) -> Vec<String> {
    let mut per = vec![0u8; partitions as usize];
    let mut services = Vec::new();
    let mut i = 0;
    while services.len() < 2 * partitions as usize {
        let name = format!("svc-{i:03}");
        let p = (crc32(name.as_bytes()) % partitions) as usize;
        if per[p] < 2 {
            per[p] += 1;
            services.push(name);
        }
        i += 1;
    }
    services
}

/// CRC-32 (IEEE), as librdkafka's default partitioner hashes keys.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_is_the_ieee_one() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn two_services_land_on_every_partition() {
        let services = spread_services(12);
        assert_eq!(services.len(), 24);
        let mut per = [0; 12];
        for s in &services {
            per[(crc32(s.as_bytes()) % 12) as usize] += 1;
        }
        assert_eq!(per, [2; 12]);
    }

    #[test]
    fn statuses_say_what_happened_to_the_events() {
        let ok = json!({"accepted": 10});
        let some = json!({"accepted": 9});
        let refused = json!({"error": {"code": "saturated"}});
        assert_eq!(status(Some((200, Some(&ok))), 10, ""), "200");
        assert_eq!(status(Some((207, Some(&some))), 10, ""), "partial");
        assert_eq!(status(Some((503, Some(&refused))), 10, ""), "503:saturated");
        assert_eq!(status(Some((502, None)), 10, ""), "502");
        assert_eq!(status(None, 10, "Timeout"), "conn:Timeout");
        assert_eq!(status(Some((200, None)), 10, ""), "conn:UnreadableAnswer");
        assert!(is_ok("200") && is_ok("202"));
        assert!(!is_ok("partial") && !is_ok("503:saturated") && !is_ok("conn:Timeout"));
    }

    #[test]
    fn events_carry_their_marker_and_results_are_sorted() {
        let dir = std::env::temp_dir().join(format!("loadgen-marked-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let args = MarkedArgs {
            run: Some("r1".into()),
            results: Some(dir.join("results.txt")),
            progress: Some(dir.join("progress.txt")),
            stop_file: None,
            partitions: 3,
        };
        let marked = Marked::new(&args).unwrap();
        let events = marked.events(20, 2);
        assert_eq!(events[1]["message"], "loadgen event 21 [r1#21]");
        assert_eq!(events[0]["level"], "ERROR", "seq 20: LEVELS[20 / 7]");
        marked.record(10, 10, "503:saturated".into());
        marked.record(0, 10, "200".into());
        marked.finish().unwrap();
        let results = std::fs::read_to_string(dir.join("results.txt")).unwrap();
        assert_eq!(results, "0 10 200\n10 10 503:saturated\n");
        let progress = std::fs::read_to_string(dir.join("progress.txt")).unwrap();
        assert_eq!(progress, "20 10 10\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
