//! The autoscaling decision: the seed's formula, made safe.
//!
//! ```text
//! r_conn = ceil(alpha · total_conn / conn_per_pod)
//! r_mps  = ceil(beta  · total_mps  / mps_per_pod)
//! r_lat  = ceil(gamma · exp(delta · max(0, p95 / L_slo − 1)))
//! target = max(r_conn, r_mps, r_lat)
//! ```
//!
//! The raw target is then made safe to act on:
//! - clamped to `[min_nodes, max_nodes]`;
//! - at most `max_step` replicas away from the current count per decision;
//! - at most one decision per `interval_ms` (a cool-down, so a burst does not flap);
//! - scale-in only after the target stayed below the current count for `scale_in_delay_ms`
//!   (hysteresis: load that dips for a moment does not remove a node), and then only to the
//!   highest target seen during that window.
//!
//! [`decide`] is pure: inputs, previous state and the time go in, a decision and the next state
//! come out. The server calls it from its tick and exports the result as a metric for KEDA/HPA.

use serde::{Deserialize, Serialize};

/// Parameters of the formula and of its safety bounds (env names in [`crate::config`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScalingParams {
    /// Weight of the connection term.
    pub alpha: f64,
    /// Weight of the messages-per-second term.
    pub beta: f64,
    /// Base of the latency term (replicas wanted when p95 is at the SLO).
    pub gamma: f64,
    /// Steepness of the latency term above the SLO.
    pub delta: f64,
    /// The p95 latency objective, milliseconds.
    pub l_slo_ms: f64,
    /// Connections one pod is sized for.
    pub conn_per_pod: f64,
    /// Messages per second one pod is sized for.
    pub mps_per_pod: f64,
    /// Never ask for fewer replicas.
    pub min_nodes: u32,
    /// Never ask for more replicas.
    pub max_nodes: u32,
    /// Largest change of the replica count in one decision.
    pub max_step: u32,
    /// Minimum time between two decisions, milliseconds.
    pub interval_ms: u64,
    /// How long the target must stay below the current count before scaling in, milliseconds.
    pub scale_in_delay_ms: u64,
}

impl Default for ScalingParams {
    fn default() -> Self {
        Self {
            alpha: 0.4,
            beta: 0.4,
            gamma: 0.2,
            delta: 2.0,
            l_slo_ms: 500.0,
            conn_per_pod: 5000.0,
            mps_per_pod: 2500.0,
            min_nodes: 1,
            max_nodes: 100,
            max_step: 2,
            interval_ms: 30_000,
            scale_in_delay_ms: 300_000,
        }
    }
}

/// What the cluster reports right now (from live heartbeats).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScalingInputs {
    /// Sum of active connections over live nodes.
    pub total_conn: u64,
    /// Sum of messages per second over live nodes.
    pub total_mps: f64,
    /// Connection-weighted mean of the nodes' p95 latency, milliseconds.
    pub p95_ms: f64,
    /// Replicas that exist now (live active nodes).
    pub current: u32,
}

/// The decision kinds, also the `decision` label of `rtc_lb_scaling_decisions_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    /// Ask for more replicas.
    ScaleOut,
    /// Ask for fewer replicas.
    ScaleIn,
    /// Keep the current count.
    Hold,
}

impl DecisionKind {
    /// The metric label / JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::ScaleOut => "scale_out",
            DecisionKind::ScaleIn => "scale_in",
            DecisionKind::Hold => "hold",
        }
    }

    /// Every kind, so the metric exports all labels from the start.
    pub const ALL: [DecisionKind; 3] = [
        DecisionKind::ScaleOut,
        DecisionKind::ScaleIn,
        DecisionKind::Hold,
    ];
}

/// The formula's terms before any safety bound.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Terms {
    /// Connection term.
    pub r_conn: u32,
    /// Messages-per-second term.
    pub r_mps: u32,
    /// Latency term.
    pub r_lat: u32,
    /// `max` of the three.
    pub target: u32,
}

/// One decision with everything that led to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// When it was made (unix ms, as passed in).
    pub at_ms: u64,
    /// What to do.
    pub kind: DecisionKind,
    /// The replica count to run (the exported metric).
    pub desired: u32,
    /// The inputs it was computed from.
    pub inputs: ScalingInputs,
    /// The raw formula terms.
    pub terms: Terms,
    /// Why `desired` differs from the raw target, in words.
    pub reason: String,
}

/// What [`decide`] remembers between calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScalingState {
    /// When the last decision was made; `None` before the first.
    pub last_decision_ms: Option<u64>,
    /// Since when the target has been below the current count (scale-in hysteresis).
    pub below_since_ms: Option<u64>,
    /// Highest target seen while below (scale-in goes no lower than this).
    pub below_peak: u32,
}

/// Upper bound of any term, so an absurd input (or `exp` overflow) stays a finite count.
const TERM_CEILING: f64 = 1_000_000.0;

fn term(x: f64) -> u32 {
    if x.is_nan() || x <= 0.0 {
        0
    } else {
        x.ceil().min(TERM_CEILING) as u32
    }
}

/// The raw formula.
pub fn terms(p: &ScalingParams, i: &ScalingInputs) -> Terms {
    let r_conn = term(p.alpha * i.total_conn as f64 / p.conn_per_pod);
    let r_mps = term(p.beta * i.total_mps / p.mps_per_pod);
    let over = (i.p95_ms / p.l_slo_ms - 1.0).max(0.0);
    let r_lat = term(p.gamma * (p.delta * over).exp());
    Terms {
        r_conn,
        r_mps,
        r_lat,
        target: r_conn.max(r_mps).max(r_lat),
    }
}

/// Decide, if the cool-down allows it. `None` while cooling down (the previous decision stands).
pub fn decide(
    p: &ScalingParams,
    state: &mut ScalingState,
    inputs: ScalingInputs,
    now_ms: u64,
) -> Option<Decision> {
    if let Some(last) = state.last_decision_ms {
        if now_ms.saturating_sub(last) < p.interval_ms {
            return None;
        }
    }
    let t = terms(p, &inputs);
    let current = inputs.current;
    let bounded = t.target.clamp(p.min_nodes, p.max_nodes.max(p.min_nodes));
    let step = p.max_step.max(1);
    let (kind, desired, reason) = if bounded > current {
        state.below_since_ms = None;
        let desired = bounded.min(current.saturating_add(step));
        let reason = if desired < bounded {
            format!("target {bounded} limited to +{step} per decision")
        } else if bounded != t.target {
            format!(
                "raw target {} clamped to [{}, {}]",
                t.target, p.min_nodes, p.max_nodes
            )
        } else {
            "target above current".to_owned()
        };
        (DecisionKind::ScaleOut, desired, reason)
    } else if bounded < current {
        let since = *state.below_since_ms.get_or_insert(now_ms);
        state.below_peak = state.below_peak.max(bounded);
        let waited = now_ms.saturating_sub(since);
        if waited >= p.scale_in_delay_ms {
            let floor = state.below_peak.max(bounded);
            let desired = floor.max(current.saturating_sub(step));
            state.below_since_ms = None;
            state.below_peak = 0;
            let reason = format!(
                "below current for {} s; to max(peak target {floor}, current − {step})",
                waited / 1000
            );
            (DecisionKind::ScaleIn, desired, reason)
        } else {
            let reason = format!(
                "target {bounded} below current {current} for {} s of {} s (hysteresis)",
                waited / 1000,
                p.scale_in_delay_ms / 1000
            );
            (DecisionKind::Hold, current, reason)
        }
    } else {
        state.below_since_ms = None;
        state.below_peak = 0;
        (
            DecisionKind::Hold,
            current,
            "target equals current".to_owned(),
        )
    };
    state.last_decision_ms = Some(now_ms);
    Some(Decision {
        at_ms: now_ms,
        kind,
        desired,
        inputs,
        terms: t,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(total_conn: u64, total_mps: f64, p95_ms: f64, current: u32) -> ScalingInputs {
        ScalingInputs {
            total_conn,
            total_mps,
            p95_ms,
            current,
        }
    }

    #[test]
    fn formula_table() {
        let p = ScalingParams::default();
        // (conn, mps, p95, expected r_conn, r_mps, r_lat)
        let cases: &[(u64, f64, f64, u32, u32, u32)] = &[
            (0, 0.0, 0.0, 0, 0, 1),
            (5000, 0.0, 100.0, 1, 0, 1),
            (100_000, 0.0, 100.0, 8, 0, 1),
            (100_001, 0.0, 100.0, 9, 0, 1),
            (0, 25_000.0, 0.0, 0, 4, 1),
            (0, 0.0, 500.0, 0, 0, 1),
            // p95 = 2×SLO → 0.2·e² = 1.478 → 2
            (0, 0.0, 1000.0, 0, 0, 2),
            // p95 = 3×SLO → 0.2·e⁴ = 10.92 → 11
            (0, 0.0, 1500.0, 0, 0, 11),
            (0, f64::NAN, f64::INFINITY, 0, 0, 1_000_000),
        ];
        for &(c, m, l, rc, rm, rl) in cases {
            let t = terms(&p, &inputs(c, m, l, 1));
            assert_eq!(
                (t.r_conn, t.r_mps, t.r_lat),
                (rc, rm, rl),
                "case {c} {m} {l}"
            );
            assert_eq!(t.target, rc.max(rm).max(rl));
        }
    }

    fn params() -> ScalingParams {
        ScalingParams {
            min_nodes: 2,
            max_nodes: 10,
            max_step: 2,
            interval_ms: 10_000,
            scale_in_delay_ms: 60_000,
            ..ScalingParams::default()
        }
    }

    #[test]
    fn bounded_by_min_max_and_step() {
        let p = params();
        // (inputs, expected kind, expected desired)
        let cases = [
            (inputs(0, 0.0, 0.0, 2), DecisionKind::Hold, 2),
            (inputs(0, 0.0, 0.0, 0), DecisionKind::ScaleOut, 2),
            (inputs(125_000, 0.0, 0.0, 2), DecisionKind::ScaleOut, 4),
            (inputs(10_000_000, 0.0, 0.0, 9), DecisionKind::ScaleOut, 10),
            (inputs(10_000_000, 0.0, 0.0, 10), DecisionKind::Hold, 10),
        ];
        for (i, kind, desired) in cases {
            let mut s = ScalingState::default();
            let d = decide(&p, &mut s, i, 1_000).expect("first decision");
            assert_eq!((d.kind, d.desired), (kind, desired), "{i:?}");
        }
    }

    #[test]
    fn one_decision_per_interval() {
        let p = params();
        let mut s = ScalingState::default();
        assert!(decide(&p, &mut s, inputs(125_000, 0.0, 0.0, 2), 0).is_some());
        assert!(decide(&p, &mut s, inputs(125_000, 0.0, 0.0, 4), 9_999).is_none());
        let d = decide(&p, &mut s, inputs(125_000, 0.0, 0.0, 4), 10_000).expect("after interval");
        assert_eq!((d.kind, d.desired), (DecisionKind::ScaleOut, 6));
    }

    #[test]
    fn scale_in_waits_and_keeps_the_window_peak() {
        let p = params();
        let mut s = ScalingState::default();
        // 8 replicas running, load wants 3 then 5 then 3.
        let want = |n: u64| inputs(n * 12_500, 0.0, 0.0, 8);
        let d = decide(&p, &mut s, want(3), 0).unwrap();
        assert_eq!((d.kind, d.desired), (DecisionKind::Hold, 8));
        let d = decide(&p, &mut s, want(5), 30_000).unwrap();
        assert_eq!((d.kind, d.desired), (DecisionKind::Hold, 8));
        let d = decide(&p, &mut s, want(3), 60_000).unwrap();
        // Peak in the window was 5, step allows down to 6.
        assert_eq!((d.kind, d.desired), (DecisionKind::ScaleIn, 6));
        // A fresh window starts after a scale-in.
        let d = decide(&p, &mut s, inputs(3 * 12_500, 0.0, 0.0, 6), 70_000).unwrap();
        assert_eq!((d.kind, d.desired), (DecisionKind::Hold, 6));
    }

    #[test]
    fn a_load_bump_resets_the_scale_in_window() {
        let p = params();
        let mut s = ScalingState::default();
        let d = decide(&p, &mut s, inputs(12_500 * 3, 0.0, 0.0, 6), 0).unwrap();
        assert_eq!(d.kind, DecisionKind::Hold);
        let d = decide(&p, &mut s, inputs(12_500 * 6, 0.0, 0.0, 6), 50_000).unwrap();
        assert_eq!(d.kind, DecisionKind::Hold);
        let d = decide(&p, &mut s, inputs(12_500 * 3, 0.0, 0.0, 6), 70_000).unwrap();
        assert_eq!(d.kind, DecisionKind::Hold, "window restarted at 70 s");
        let d = decide(&p, &mut s, inputs(12_500 * 3, 0.0, 0.0, 6), 130_000).unwrap();
        assert_eq!((d.kind, d.desired), (DecisionKind::ScaleIn, 4));
    }
}
