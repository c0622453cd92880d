//! The drill's report: one row per service and region, as a table or JSON.

use serde::Serialize;

/// The outcome of taking one service out of one region and bringing it back.
#[derive(Debug, Clone, Serialize, Default)]
pub struct StepReport {
    pub service: String,
    pub region: String,
    /// How the target was taken out: `drain`, `kill`, `stop` or `blackhole`.
    pub method: String,
    /// Until the region's gateway reported it cannot serve the service itself (ms after the
    /// fault); None if it never did (e.g. a drain is immediate and is reported as 0).
    pub detect_ms: Option<u64>,
    /// Until probes through that region's gateway were answered by another region.
    pub failover_ms: Option<u64>,
    /// Serving regions seen during the fault.
    pub served_by: Vec<String>,
    /// After the restore, until the region served the service itself again.
    pub recover_ms: Option<u64>,
    /// Probes sent during the step (every service through every region).
    pub sent: u64,
    /// Probes that did not get a 2xx answer.
    pub failed: u64,
    /// Other services that left the region during the fault (must be empty).
    pub others_moved: Vec<String>,
    pub passed: bool,
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct DrillReport {
    pub steps: Vec<StepReport>,
    pub passed: bool,
}

fn ms(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_string(), |m| format!("{m} ms"))
}

impl DrillReport {
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<12} {:<16} {:<9} {:>9} {:>10} {:>10} {:>6} {:>6}  {}\n",
            "SERVICE", "REGION", "METHOD", "DETECT", "FAILOVER", "RECOVER", "SENT", "FAILED", "RESULT"
        );
        for s in &self.steps {
            let result =
                if s.passed { "pass".to_string() } else { format!("FAIL: {}", s.problems.join("; ")) };
            out.push_str(&format!(
                "{:<12} {:<16} {:<9} {:>9} {:>10} {:>10} {:>6} {:>6}  {}\n",
                s.service,
                s.region,
                s.method,
                ms(s.detect_ms),
                ms(s.failover_ms),
                ms(s.recover_ms),
                s.sent,
                s.failed,
                result
            ));
        }
        out.push_str(if self.passed { "drill passed\n" } else { "drill FAILED\n" });
        out
    }
}
