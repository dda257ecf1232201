//! Schedules against `transformers`' formulas (fixture from `tests/fixtures/gen_schedules.py`).

use bomf_core::schedule::{Schedule, ScheduleKind, Warmup};

#[derive(serde::Deserialize)]
struct Case {
    kind: String,
    total: usize,
    ratio: f64,
    warmup: usize,
    factors: Vec<f64>,
}

#[test]
fn factors_match_transformers() {
    let cases: Vec<Case> = serde_json::from_str(include_str!("fixtures/schedules.json")).unwrap();
    assert_eq!(cases.len(), 12);
    for c in cases {
        let kind = match c.kind.as_str() {
            "constant" => ScheduleKind::Constant,
            "linear" => ScheduleKind::Linear,
            _ => ScheduleKind::Cosine,
        };
        let s = Schedule::new(kind, Warmup::Ratio(c.ratio), c.total).unwrap();
        assert_eq!(s.warmup_steps, c.warmup, "{} {}", c.kind, c.total);
        for (step, want) in c.factors.iter().enumerate() {
            let got = s.factor(step);
            assert!(
                (got - want).abs() < 1e-12,
                "{} total {} step {step}: {got} vs {want}",
                c.kind,
                c.total
            );
        }
    }
}

#[test]
fn bad_schedules_are_rejected() {
    assert!(Schedule::new(ScheduleKind::Constant, Warmup::Ratio(1.5), 10).is_err());
    assert!(Schedule::new(ScheduleKind::Linear, Warmup::Steps(1), 0).is_err());
}
